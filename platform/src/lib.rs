//! The science platform's rules, each in one place and none of them HTTP: who is calling ([`identity`]), who may
//! see or change which table, job or file ([`access`]), what a caller's and their groups' shares allow
//! ([`quota`]), the async jobs ([`jobs`]) and the audit log ([`audit`]). Every front end (TAP and UWS, Flight SQL,
//! WebDAV, the portal's API) asks these modules, so a new endpoint cannot decide a rule its own way.

pub mod access;
pub mod audit;
pub mod identity;
pub mod jobs;
pub mod quota;

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
    /// Sync queries (and cone searches) running at once, and waiting for a turn beyond those; past both a request
    /// is answered 503 with `Retry-After` at once, never left hanging.
    pub concurrent_sync: usize,
    pub waiting_sync: usize,
    /// Async jobs queued or executing in this process; past it, PHASE=RUN answers 503 with `Retry-After`.
    pub queued_jobs: usize,
    /// Seconds a request body may take to arrive.
    pub body_timeout: u64,
    /// Seconds a request's line and headers may take to arrive (a client trickling them is cut off).
    pub header_timeout: u64,
    /// One caller's share (a user, or an anonymous client's address): sync queries in flight, and async jobs
    /// queued or executing. Past it, 429: one caller cannot take every turn from the others.
    pub caller_sync: usize,
    pub caller_jobs: usize,
    /// Bytes of async results one caller may keep; past it, PHASE=RUN answers 429 until jobs are deleted.
    pub caller_storage: u64,
    /// Where one JSON line per request is appended (None: no audit log).
    pub audit_log: Option<std::path::PathBuf>,
    /// Bytes of user tables a user's (or a group's) schema may hold, unless `skyshard user quota --tables-mb` says
    /// otherwise.
    pub user_tables: u64,
    /// Bytes of files a user's space (`/files/NAME/`) may hold, unless `skyshard user quota --files-mb` says
    /// otherwise.
    pub user_files: u64,
    /// Seconds a replaced load's files stay on the workers, so queries that started on it finish with its rows.
    pub replaced_load_linger: u64,
}

impl Limits {
    /// The largest request body taken: the inline uploads plus room for the other parameters.
    pub fn max_body_bytes(&self) -> usize {
        self.max_upload_bytes + (1 << 20)
    }
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
            concurrent_sync: 32,
            waiting_sync: 512,
            queued_jobs: 200,
            body_timeout: 300,
            header_timeout: 30,
            caller_sync: 8,
            caller_jobs: 8,
            caller_storage: 10 << 30,
            audit_log: None,
            user_tables: 1 << 30,
            user_files: 10 << 30,
            replaced_load_linger: 60,
        }
    }
}
