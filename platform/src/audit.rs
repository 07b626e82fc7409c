//! The audit log (`--audit-log`): one JSON line per request, written when its response has been sent in full (or
//! the client went away): time, who (`user NAME` or `address IP`), method, path, status, the job it made or
//! touched, the fingerprint of its query, rows, bytes and milliseconds; and one line per async job when it ends,
//! with its rows and bytes. Queries are logged by fingerprint (the first 16 hex digits of their SHA-256), not in
//! clear: the log says who ran the same query without copying what users asked into another file.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

/// The log file, appended to a line at a time.
pub struct AuditLog(Mutex<std::fs::File>);

impl AuditLog {
    pub fn open(path: &std::path::Path) -> Result<AuditLog, String> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(|f| AuditLog(Mutex::new(f)))
            .map_err(|e| format!("the audit log {}: {e}", path.display()))
    }

    pub fn write(&self, line: &serde_json::Value) {
        use std::io::Write;
        let mut file = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = writeln!(file, "{line}") {
            tracing::warn!(event = "audit", "the audit log: {e}");
        }
    }
}

/// What the handler of a request tells its audit line (in the request's extensions).
#[derive(Debug, Default)]
pub struct Tally {
    rows: AtomicU64,
    query: OnceLock<String>,
    job: OnceLock<String>,
}

impl Tally {
    pub fn query(&self, text: &str) {
        let _ = self.query.set(fingerprint(text));
    }

    pub fn rows(&self, n: u64) {
        self.rows.store(n, Ordering::Relaxed);
    }

    pub fn job(&self, id: &str) {
        let _ = self.job.set(id.to_string());
    }

    /// The tally's fields of an audit line.
    pub fn fill(&self, line: &mut serde_json::Value) {
        line["rows"] = self.rows.load(Ordering::Relaxed).into();
        if let Some(q) = self.query.get() {
            line["query"] = q.as_str().into();
        }
        if let Some(j) = self.job.get() {
            line["job"] = j.as_str().into();
        }
    }
}

/// The fingerprint of a query: the first 16 hex digits of the SHA-256 of its text.
pub fn fingerprint(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn fingerprints_are_short_and_stable() {
        let f = super::fingerprint("SELECT 1");
        assert_eq!(f.len(), 16);
        assert_eq!(f, super::fingerprint("SELECT 1"));
        assert_ne!(f, super::fingerprint("SELECT 2"));
    }
}
