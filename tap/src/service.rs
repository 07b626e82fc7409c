//! The service's shared state: the czar it serves, its limits, and the async job store.

use std::sync::Arc;

use czar::Czar;
use partitioner::layout;

use crate::jobs::Jobs;

/// What the service allows; advertised in `/capabilities`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub default_maxrec: u64,
    pub max_maxrec: u64,
    /// Seconds an async job may run (default and hard cap).
    pub default_duration: u64,
    pub max_duration: u64,
    /// Seconds an async job and its result are kept (default and hard cap).
    pub default_retention: u64,
    pub max_retention: u64,
    /// Bytes of one request body (inline uploads) and of one fetched upload.
    pub max_upload_bytes: usize,
    /// Seconds to fetch an upload URL.
    pub upload_timeout: u64,
    /// Fetch upload URLs on loopback and private networks (off: a TAP service must not reach into its own network).
    pub allow_private_uploads: bool,
    /// Async jobs executing at once; more wait QUEUED.
    pub concurrent_jobs: usize,
    /// Seconds a sync query (or a cone search) may run.
    pub sync_duration: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            default_maxrec: 100_000,
            max_maxrec: 10_000_000,
            default_duration: 3600,
            max_duration: 4 * 3600,
            default_retention: 3 * 24 * 3600,
            max_retention: 14 * 24 * 3600,
            max_upload_bytes: 64 << 20,
            upload_timeout: 30,
            allow_private_uploads: false,
            concurrent_jobs: 4,
            sync_duration: 600,
        }
    }
}

/// The shared state of the service.
pub struct Tap {
    pub czar: Arc<Czar>,
    pub limits: Limits,
    pub jobs: Arc<Jobs>,
}

impl Tap {
    /// The service over `czar`; async jobs live in `jobs_dir` (default `DATA_DIR/jobs`: RocksDB plus result
    /// files; one czar per jobs directory).
    pub fn open(
        czar: Arc<Czar>,
        limits: Limits,
        jobs_dir: Option<&std::path::Path>,
    ) -> Result<Arc<Tap>, String> {
        let dir = jobs_dir.map_or_else(|| layout::jobs_dir(czar.data_dir()), |d| d.to_path_buf());
        let jobs = Arc::new(Jobs::open(&dir, limits.concurrent_jobs)?);
        jobs.start_reaper();
        let tap = Arc::new(Tap { czar, limits, jobs });
        Ok(tap)
    }
}
