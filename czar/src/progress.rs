//! How far a running query has got: chunks done of the total and rows received, per worker. A caller that wants to
//! watch a query ([`crate::Czar::execute_watched`]) hands in a [`Progress`]; the czar counts the chunks of the
//! plan's fragments into it before the first call, and each `RemoteExec` partition ([`crate::dispatch`]) reports to
//! it (found through the task context's session config) as its chunks end. The portal streams it to the browser.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// The counters of one query; shared between the query's tasks and whoever watches it.
#[derive(Debug, Default)]
pub struct Progress {
    chunks_total: AtomicU64,
    chunks_done: AtomicU64,
    rows_received: AtomicU64,
    rows_returned: AtomicU64,
    workers: Mutex<BTreeMap<String, WorkerProgress>>,
}

/// One worker's share of a query.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct WorkerProgress {
    pub chunks_done: u64,
    pub rows: u64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    pub chunks_total: u64,
    pub chunks_done: u64,
    /// Rows the workers sent to the czar (before the merge: a partial aggregate sends few).
    pub rows_received: u64,
    /// Rows of the result so far (after the merge, before MAXREC).
    pub rows_returned: u64,
    pub workers: BTreeMap<String, WorkerProgress>,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }

    /// Adds `chunk_runs` to the chunk runs expected (a plan's: [`crate::dispatch::chunk_runs`]).
    pub(crate) fn expect(&self, chunk_runs: u64) {
        self.chunks_total.fetch_add(chunk_runs, Ordering::Relaxed);
    }

    /// `n` rows arrived from `worker`.
    pub(crate) fn rows(&self, worker: &str, n: u64) {
        self.rows_received.fetch_add(n, Ordering::Relaxed);
        self.lock().entry(worker.to_string()).or_default().rows += n;
    }

    /// `worker` finished `chunks` chunk runs.
    pub(crate) fn done(&self, worker: &str, chunks: u64) {
        self.chunks_done.fetch_add(chunks, Ordering::Relaxed);
        self.lock()
            .entry(worker.to_string())
            .or_default()
            .chunks_done += chunks;
    }

    /// `n` more rows of the result were passed on.
    pub fn returned(&self, n: u64) {
        self.rows_returned.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            chunks_total: self.chunks_total.load(Ordering::Relaxed),
            chunks_done: self.chunks_done.load(Ordering::Relaxed),
            rows_received: self.rows_received.load(Ordering::Relaxed),
            rows_returned: self.rows_returned.load(Ordering::Relaxed),
            workers: self.lock().clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, WorkerProgress>> {
        self.workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The progress a task reports to, if its query is watched.
pub(crate) fn of(context: &datafusion::execution::TaskContext) -> Option<Arc<Progress>> {
    context.session_config().get_extension::<Progress>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_worker_and_in_all() {
        let p = Progress::new();
        p.rows("w1", 10);
        p.rows("w2", 5);
        p.done("w1", 2);
        p.rows("w1", 1);
        p.done("w2", 1);
        let s = p.snapshot();
        assert_eq!((s.chunks_done, s.rows_received), (3, 16));
        assert_eq!(
            s.workers["w1"],
            WorkerProgress {
                chunks_done: 2,
                rows: 11
            }
        );
        assert_eq!(s.workers["w2"].chunks_done, 1);
    }
}
