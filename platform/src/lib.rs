//! The science platform's rules, each in one place and none of them HTTP: who is calling ([`identity`]), who may
//! see or change which table, job or file ([`access`]), what a caller's and their groups' shares allow
//! ([`quota`]), the async jobs ([`jobs`]) and the audit log ([`audit`]). Every front end (TAP and UWS, Flight SQL,
//! WebDAV, the portal's API) asks these modules, so a new endpoint cannot decide a rule its own way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use czar::Czar;

pub mod access;
pub mod audit;
pub mod error;
pub mod files;
pub mod identity;
pub mod jobs;
pub mod quota;
pub mod usertables;

use access::{Grants, Reader};
use identity::{Auth, Policy};
use jobs::Jobs;
use quota::{Busy, Client, SyncTurns, Turn};

/// What a caller sees of the published tables: None for everything.
pub type Visible = Option<Arc<dyn Fn(&str) -> bool + Send + Sync>>;

/// The platform's state, shared by every front end: the czar it serves, its limits, accounts and grants, the async
/// job store, the shares in use, the audit log.
pub struct Platform {
    pub czar: Arc<Czar>,
    pub limits: Limits,
    pub jobs: Arc<Jobs>,
    /// Accounts and the `--auth` policy; None: `--auth none` (nobody is asked who they are).
    pub auth: Option<Auth>,
    /// Who user tables are shared with ([`access`]).
    pub grants: Arc<Grants>,
    /// The audit log (`--audit-log`), when there is one.
    pub audit: Option<audit::AuditLog>,
    /// One change of user tables at a time.
    pub user_tables_lock: tokio::sync::Mutex<()>,
    /// The czar's replica census and healer, when its workers hold their own copies (`skyshard czar`).
    pub healer: OnceLock<Arc<czar::heal::Healer>>,
    /// Turns of sync queries ([`Limits::concurrent_sync`], and each caller's share).
    sync_turns: SyncTurns,
    /// One change at a time in each user's file space.
    space_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Set by [`Platform::stop`]: new requests are refused while those in flight finish.
    stopping: AtomicBool,
    /// Held while a job is admitted ([`Platform::run_job`]): shares are checked and taken as one step.
    admission: Mutex<()>,
    /// What a query job does: the front end's TAP work.
    query_jobs: Arc<dyn jobs::QueryJobs>,
    /// Failed logins, per user and per address.
    pub logins: quota::LoginThrottle,
}

impl Platform {
    /// The platform over `czar`; async jobs live in `jobs_dir` (default `DATA_DIR/jobs`: a record per job plus
    /// result files; one czar per jobs directory) and query jobs run as `query_jobs` says. `auth` None or of policy
    /// `none`: nobody is asked who they are. Call [`Platform::requeue_interrupted`] once a runtime runs.
    pub fn open(
        czar: Arc<Czar>,
        limits: Limits,
        jobs_dir: Option<&std::path::Path>,
        auth: Option<Auth>,
        query_jobs: Arc<dyn jobs::QueryJobs>,
    ) -> Result<Platform, String> {
        let dir = jobs_dir.map_or_else(
            || partitioner::layout::jobs_dir(czar.data_dir()),
            |d| d.to_path_buf(),
        );
        let jobs = Arc::new(Jobs::open(&dir, limits.concurrent_jobs)?);
        jobs.start_reaper();
        let audit = match &limits.audit_log {
            None => None,
            Some(path) => Some(audit::AuditLog::open(path)?),
        };
        let grants = Arc::new(Grants::open(czar.data_dir())?);
        Ok(Platform {
            sync_turns: SyncTurns::new(&limits),
            czar,
            limits,
            jobs,
            auth: auth.filter(|a| a.policy != Policy::None),
            grants,
            audit,
            user_tables_lock: Default::default(),
            healer: Default::default(),
            space_locks: Default::default(),
            stopping: Default::default(),
            admission: Default::default(),
            query_jobs,
            logins: Default::default(),
        })
    }

    /// Starts a graceful shutdown: new requests are refused (503 with Retry-After, gRPC UNAVAILABLE); those in
    /// flight finish.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// The lock of a user's file space.
    pub fn space_lock(&self, owner: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.space_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(owner.to_string())
            .or_default()
            .clone()
    }

    /// What a reader sees of the user tables (None: everything; also under `--auth none`, where there are none).
    pub fn visible_to(&self, reader: Reader) -> Visible {
        self.auth.as_ref()?;
        self.grants.visible(reader)
    }

    /// What the owner of a job sees (their groups as the accounts say now).
    pub fn visible_to_owner(&self, owner: Option<&str>) -> Visible {
        self.visible_to(self.reader_of_owner(owner))
    }

    /// The owner of a job as a reader, with their groups as the accounts say now (anonymous when the job has no
    /// owner, the service no accounts, or the user is gone).
    pub fn reader_of_owner(&self, owner: Option<&str>) -> Reader {
        let user = self
            .auth
            .as_ref()
            .zip(owner)
            .and_then(|(auth, o)| auth.accounts.user(o).ok().flatten());
        match user {
            Some(user) => Reader {
                user: Some(user.name),
                groups: user.groups,
                admin: false,
            },
            None => Reader::default(),
        }
    }

    /// A turn to run a sync query, held until its result is written ([`SyncTurns::take`]).
    pub async fn sync_turn(&self, client: &Client) -> Result<Turn, Busy> {
        self.sync_turns.take(client).await
    }

    /// Sync queries in flight now that count against a share (`user NAME`, `group NAME`, `address IP`).
    pub fn sync_of(&self, key: &str) -> usize {
        self.sync_turns.of(key)
    }

    /// Sync queries (running, waiting for a turn).
    pub fn sync_load(&self) -> (usize, usize) {
        self.sync_turns.load()
    }
}

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
