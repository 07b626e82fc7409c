//! The UWS job store: a job is a JSON record in a `metastore::RecordStore` (`DATA_DIR/jobs/db`) plus a directory
//! (`DATA_DIR/jobs/ID/`) holding its inline uploads and its result file. Records are written with synced writes
//! before a request is answered, so a job the client was told about survives a czar restart; jobs that were QUEUED
//! or EXECUTING when the czar stopped are queued again at the next start (once: a job interrupted twice ends in
//! ERROR, [`Jobs::interrupted`]). A reaper removes jobs at their
//! destruction time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metastore::RecordStore;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Phase {
    Pending,
    Queued,
    Executing,
    Completed,
    Error,
    Aborted,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Pending => "PENDING",
            Phase::Queued => "QUEUED",
            Phase::Executing => "EXECUTING",
            Phase::Completed => "COMPLETED",
            Phase::Error => "ERROR",
            Phase::Aborted => "ABORTED",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        [
            Phase::Pending,
            Phase::Queued,
            Phase::Executing,
            Phase::Completed,
            Phase::Error,
            Phase::Aborted,
        ]
        .into_iter()
        .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
    }

    pub fn active(self) -> bool {
        matches!(self, Phase::Pending | Phase::Queued | Phase::Executing)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultFile {
    pub mime: String,
    pub file: String,
    pub rows: u64,
    pub overflow: bool,
    pub bytes: u64,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a job does. Set by the endpoint that creates the job, never by a request parameter: `/tap/async` makes only
/// queries, `/tap/table-update` only index jobs, and changing a job's parameters cannot turn one into the other.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum JobKind {
    /// A TAP query (its ADQL and options are the job's parameters).
    #[default]
    Query,
    /// Mark a column of a user table indexed, after checking that no value repeats when `unique`.
    Index {
        table: String,
        column: String,
        unique: bool,
    },
}

fn is_query(kind: &JobKind) -> bool {
    *kind == JobKind::Query
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    /// What it does; records written before job kinds existed are queries.
    #[serde(default, skip_serializing_if = "is_query")]
    pub work: JobKind,
    pub run_id: Option<String>,
    pub phase: Phase,
    /// TAP parameters (names lower-case), in the order they came.
    pub params: Vec<(String, String)>,
    /// Inline upload parts saved in the job directory.
    pub parts: Vec<String>,
    /// Milliseconds since the Unix epoch.
    pub creation: u64,
    pub start: Option<u64>,
    pub end: Option<u64>,
    /// Seconds the job may run.
    pub duration: u64,
    /// Milliseconds since the Unix epoch.
    pub destruction: u64,
    pub error: Option<String>,
    pub result: Option<ResultFile>,
    /// The user who created it; None: an anonymous job, reachable by anyone who has its (unguessable) URL.
    #[serde(default)]
    pub owner: Option<String>,
    /// Whose share of jobs it counts against ([`crate::quota::Client`]).
    #[serde(default)]
    pub client: Option<String>,
    /// The group shares it also counts against (`group NAME`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Times the job was queued again after the service stopped while it was queued or running.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: u32,
}

impl Job {
    /// Whether the job counts against a share (`user NAME`, `group NAME`, `address IP`).
    pub fn counts_against(&self, share: &str) -> bool {
        self.client.as_deref() == Some(share) || self.groups.iter().any(|g| g == share)
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// ISO 8601 UTC with milliseconds, e.g. `2026-11-25T13:45:00.123Z`.
pub fn iso(ms: u64) -> String {
    let t = i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .unwrap_or(chrono::DateTime::UNIX_EPOCH);
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Parses an ISO 8601 UTC time as UWS parameters give it (`YYYY-MM-DD`, optionally `THH:MM`, `:SS`, `.fff`, and a
/// trailing `Z` or an offset) to milliseconds since the epoch; None for anything else, a date that does not exist,
/// or a time before the epoch.
pub fn parse_iso(s: &str) -> Option<u64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let s = s.trim();
    let utc = if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        t.timestamp_millis()
    } else {
        let s = s.strip_suffix('Z').unwrap_or(s);
        let naive = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
            .or_else(|| {
                Some(
                    NaiveDate::parse_from_str(s, "%Y-%m-%d")
                        .ok()?
                        .and_hms_opt(0, 0, 0)?,
                )
            })?;
        naive.and_utc().timestamp_millis()
    };
    u64::try_from(utc).ok()
}

/// The job store and the jobs running in this process.
pub struct Jobs {
    store: RecordStore,
    dir: PathBuf,
    /// Serializes read-modify-write of records.
    write: Mutex<()>,
    /// The tasks of jobs running in this process, by job id (ABORT and DELETE abort them).
    pub running: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    /// Bumped at every change of a record: WAIT watches it.
    pub changed: watch::Sender<u64>,
    /// Execution slots: at most this many jobs EXECUTING, the rest wait QUEUED.
    pub slots: Arc<Semaphore>,
    /// How far each job run by this process has got (chunks, rows), for the portal's progress stream; in memory
    /// only, dropped with the job.
    pub progress: Mutex<HashMap<String, Arc<czar::progress::Progress>>>,
}

impl Jobs {
    /// The jobs directory (result files; the service's other scratch, such as HATS partitions, lives beside them).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub fn open(dir: &Path, concurrent: usize) -> Result<Jobs, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let store = RecordStore::open(&dir.join("db")).map_err(|e| {
            let hint = if e.is_locked() {
                "; is another czar using it? Give each czar its own --jobs-dir"
            } else {
                ""
            };
            format!(
                "cannot open the async job store in {} ({e}){hint}",
                dir.display()
            )
        })?;
        let jobs = Jobs {
            store,
            dir: dir.to_path_buf(),
            write: Mutex::new(()),
            running: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
            slots: Arc::new(Semaphore::new(concurrent.max(1))),
            progress: Mutex::new(HashMap::new()),
        };
        Ok(jobs)
    }

    /// Jobs queued or running when the service stopped: each is queued again once (returned, for the service to
    /// run); one interrupted a second time (a query that takes the service down with it) ends in ERROR.
    pub fn interrupted(&self) -> Vec<String> {
        let mut again = Vec::new();
        for job in self.list() {
            if matches!(job.phase, Phase::Queued | Phase::Executing) {
                let updated = self.update(&job.id, |j| {
                    if j.restarts == 0 {
                        j.phase = Phase::Queued;
                        j.start = None;
                        j.restarts += 1;
                    } else {
                        j.phase = Phase::Error;
                        j.end = Some(now_ms());
                        j.error = Some(
                            "the service stopped twice while this job was queued or running; run it again"
                                .into(),
                        );
                    }
                });
                if updated.is_some_and(|j| j.phase == Phase::Queued) {
                    again.push(job.id);
                }
            }
        }
        again
    }

    /// Jobs queued or executing in this process.
    pub fn active(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        let bytes = self.store.get(&format!("job/{id}")).ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn put(&self, job: &Job) -> Result<(), String> {
        let bytes = serde_json::to_vec(job).map_err(|e| e.to_string())?;
        self.store
            .put(&format!("job/{}", job.id), &bytes)
            .map_err(|e| e.to_string())?;
        self.changed.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Changes a job's record; None when there is no such job.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut Job)) -> Option<Job> {
        let _guard = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut job = self.get(id)?;
        change(&mut job);
        self.put(&job).ok()?;
        Some(job)
    }

    /// How many jobs counted against a share (`user NAME`, `group NAME`, `address IP`: [`crate::quota::Client`])
    /// are queued or executing in this process.
    pub fn active_of(&self, share: &str) -> usize {
        let ids: Vec<String> = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        ids.iter()
            .filter(|id| self.get(id).is_some_and(|j| j.counts_against(share)))
            .count()
    }

    /// Bytes of the results kept (by jobs not yet destroyed or deleted) that count against a share.
    pub fn result_bytes_of(&self, share: &str) -> u64 {
        self.list()
            .iter()
            .filter(|j| j.counts_against(share))
            .filter_map(|j| j.result.as_ref().map(|r| r.bytes))
            .sum()
    }

    /// How many jobs `user` has.
    pub fn owned_by(&self, user: &str) -> usize {
        self.list()
            .iter()
            .filter(|j| j.owner.as_deref() == Some(user))
            .count()
    }

    pub fn list(&self) -> Vec<Job> {
        self.store
            .all()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect()
    }

    pub fn job_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub fn stop(&self, id: &str) -> bool {
        match self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id)
        {
            Some(handle) => {
                handle.abort();
                true
            }
            None => false,
        }
    }

    /// The progress of a job this process has run or is running.
    pub fn progress_of(&self, id: &str) -> Option<Arc<czar::progress::Progress>> {
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// A new progress record for a job about to run.
    pub fn watch(&self, id: &str) -> Arc<czar::progress::Progress> {
        let progress = czar::progress::Progress::new();
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.to_string(), progress.clone());
        progress
    }

    pub fn delete(&self, id: &str) {
        self.stop(id);
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
        let _guard = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = self.store.delete(&format!("job/{id}"));
        let _ = std::fs::remove_dir_all(self.job_dir(id));
        self.changed.send_modify(|v| *v += 1);
    }

    /// Removes jobs past their destruction time, every few seconds, for as long as the store lives.
    pub fn start_reaper(self: &Arc<Self>) {
        let jobs = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(jobs) = jobs.upgrade() {
                let now = now_ms();
                for job in jobs.list() {
                    if job.destruction <= now {
                        jobs.delete(&job.id);
                    }
                }
                drop(jobs);
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times_round_trip() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        let t = 1_795_614_300_123; // 2026-11-25
        let s = iso(t);
        assert!(s.starts_with("2026-11-25T"), "{s}");
        assert_eq!(parse_iso(&s), Some(t));
        assert_eq!(parse_iso("2000-02-29"), Some(951_782_400_000));
        assert_eq!(parse_iso("2000-13-01"), None);
        assert_eq!(parse_iso("2001-02-29"), None);
        assert_eq!(parse_iso("yesterday"), None);
        assert_eq!(parse_iso("1969-12-31T23:59:59Z"), None);
        assert_eq!(
            parse_iso("2026-11-25T13:45"),
            parse_iso("2026-11-25T13:45:00.000Z")
        );
        assert_eq!(
            parse_iso("2026-11-25T14:45:00+01:00"),
            parse_iso("2026-11-25T13:45:00Z")
        );
    }
}
