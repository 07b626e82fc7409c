//! The log lines of the czar and the workers, on standard error: plain text by default (`warning: ...`), or one JSON
//! object per line with `--log-format json` (`{"ts": 1764470000.123, "level": "warning", "event": "failover",
//! "message": "...", "table": "sky.object", "chunk": 12, ...}`) for a log collector; the fields carry the ids an
//! operator searches by (query, job, worker, table, chunk). Informational events (a query planned, a job's phase)
//! are written only in JSON; warnings, errors and the replica healer's actions always.

use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// Writes JSON lines from now on.
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Only in JSON.
    Info,
    /// An action worth knowing about (a chunk copied, a worker drained): always.
    Notice,
    Warning,
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Notice => "notice",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// One event: `message` is the text line (without its `warning: ` prefix); `fields` its searchable parts.
pub fn event(level: Level, event: &str, message: &str, fields: &[(&str, serde_json::Value)]) {
    if json() {
        let mut line = serde_json::Map::new();
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        line.insert("ts".into(), ts.into());
        line.insert("level".into(), level.name().into());
        line.insert("event".into(), event.into());
        line.insert("message".into(), message.into());
        for (k, v) in fields {
            line.insert((*k).into(), v.clone());
        }
        eprintln!("{}", serde_json::Value::Object(line));
        return;
    }
    match level {
        Level::Info => {}
        Level::Notice => eprintln!("{message}"),
        Level::Warning => eprintln!("warning: {message}"),
        Level::Error => eprintln!("error: {message}"),
    }
}

/// A warning with no fields.
pub fn warning(event_name: &str, message: &str) {
    event(Level::Warning, event_name, message, &[]);
}

/// An error with no fields.
pub fn error(event_name: &str, message: &str) {
    event(Level::Error, event_name, message, &[]);
}
