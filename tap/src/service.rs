//! The service's shared state: the czar it serves, its limits, and the async job store.

use std::sync::Arc;

use czar::Czar;
use partitioner::layout;

pub use platform::Limits;
use platform::jobs::Jobs;
use platform::quota::SyncTurns;
pub use platform::quota::{Busy, Turn};

use crate::auth::{Auth, Policy};

/// The shared state of the service.
pub struct Tap {
    pub czar: Arc<Czar>,
    pub limits: Limits,
    pub jobs: Arc<Jobs>,
    /// Accounts and the `--auth` policy; None: `--auth none` (nobody is asked who they are).
    pub auth: Option<Auth>,
    /// Turns of sync queries ([`Limits::concurrent_sync`], and each caller's share).
    sync_turns: SyncTurns,
    /// The audit log, appended to by [`crate::auth::authenticate`].
    pub(crate) audit: Option<crate::audit::AuditLog>,
    /// Who user tables are shared with ([`platform::access`]).
    pub grants: Arc<platform::access::Grants>,
    /// One change of user tables at a time ([`crate::usertables`]).
    pub(crate) user_tables_lock: tokio::sync::Mutex<()>,
    /// One change at a time in each user's file space ([`crate::files`]).
    space_locks: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The czar's replica census and healer, when its workers hold their own copies (`skyshard czar`).
    pub healer: std::sync::OnceLock<Arc<czar::heal::Healer>>,
    /// Requests counted for `/metrics`.
    pub(crate) metrics: crate::metrics::Metrics,
    /// Set by [`Tap::stop`]: new requests are refused with 503 while those in flight finish.
    pub(crate) stopping: std::sync::atomic::AtomicBool,
}

impl Tap {
    /// The service over `czar`; async jobs live in `jobs_dir` (default `DATA_DIR/jobs`: a record per job plus result
    /// files; one czar per jobs directory).
    pub fn open(
        czar: Arc<Czar>,
        limits: Limits,
        jobs_dir: Option<&std::path::Path>,
    ) -> Result<Arc<Tap>, String> {
        Tap::open_with(czar, limits, jobs_dir, None)
    }

    /// [`Tap::open`] with accounts and a policy other than `none`.
    pub fn open_with(
        czar: Arc<Czar>,
        limits: Limits,
        jobs_dir: Option<&std::path::Path>,
        auth: Option<Auth>,
    ) -> Result<Arc<Tap>, String> {
        let dir = jobs_dir.map_or_else(|| layout::jobs_dir(czar.data_dir()), |d| d.to_path_buf());
        let jobs = Arc::new(Jobs::open(&dir, limits.concurrent_jobs)?);
        jobs.start_reaper();
        let sync_turns = SyncTurns::new(&limits);
        let audit = match &limits.audit_log {
            None => None,
            Some(path) => Some(crate::audit::AuditLog::open(path)?),
        };
        let grants = Arc::new(platform::access::Grants::open(czar.data_dir())?);
        let tap = Arc::new(Tap {
            grants,
            user_tables_lock: Default::default(),
            space_locks: Default::default(),
            czar,
            limits,
            jobs,
            auth: auth.filter(|a| a.policy != Policy::None),
            audit,
            sync_turns,
            healer: Default::default(),
            metrics: Default::default(),
            stopping: Default::default(),
        });
        // Jobs the last run left queued or running run again (inside a runtime only: unit tests open services
        // without one).
        if tokio::runtime::Handle::try_current().is_ok() {
            for id in tap.jobs.interrupted() {
                crate::uws::enqueue(&tap, &id);
            }
        }
        Ok(tap)
    }

    /// Starts a graceful shutdown: `/ready` says 503, new requests are refused with 503 and Retry-After, requests
    /// in flight finish.
    pub fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sync queries (running, waiting for a turn).
    pub(crate) fn sync_load(&self) -> (usize, usize) {
        self.sync_turns.load()
    }

    /// The lock of a user's file space.
    pub(crate) fn space_lock(&self, owner: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.space_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(owner.to_string())
            .or_default()
            .clone()
    }

    /// What a caller sees of the user tables (None: everything; also under `--auth none`, where there are none).
    pub fn visible_to(
        &self,
        reader: platform::access::Reader,
    ) -> Option<Arc<dyn Fn(&str) -> bool + Send + Sync>> {
        self.auth.as_ref()?;
        self.grants.visible(reader)
    }

    /// What the owner of a job sees (their groups as the accounts say now).
    pub fn visible_to_owner(
        &self,
        owner: Option<&str>,
    ) -> Option<Arc<dyn Fn(&str) -> bool + Send + Sync>> {
        self.visible_to(self.reader_of_owner(owner))
    }

    /// The owner of a job as a reader, with their groups as the accounts say now (anonymous when the job has no
    /// owner, the service no accounts, or the user is gone).
    pub(crate) fn reader_of_owner(&self, owner: Option<&str>) -> platform::access::Reader {
        let user = self
            .auth
            .as_ref()
            .zip(owner)
            .and_then(|(auth, o)| auth.accounts.user(o).ok().flatten());
        match user {
            Some(user) => platform::access::Reader {
                user: Some(user.name),
                groups: user.groups,
                admin: false,
            },
            None => platform::access::Reader::default(),
        }
    }

    /// A turn to run a sync query, held until its result is written ([`SyncTurns::take`]).
    pub async fn sync_turn(&self, client: &crate::auth::Client) -> Result<Turn, Busy> {
        self.sync_turns.take(client).await
    }

    /// Sync queries in flight now that count against a share (`user NAME`, `group NAME`, `address IP`).
    pub fn sync_of(&self, key: &str) -> usize {
        self.sync_turns.of(key)
    }
}
