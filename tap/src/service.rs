//! The service's shared state: the czar it serves, its limits, and the async job store.

use std::sync::Arc;

use czar::Czar;
use partitioner::layout;

use crate::auth::{Auth, Policy};
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

/// The shared state of the service.
pub struct Tap {
    pub czar: Arc<Czar>,
    pub limits: Limits,
    pub jobs: Arc<Jobs>,
    /// Accounts and the `--auth` policy; None: `--auth none` (nobody is asked who they are).
    pub auth: Option<Auth>,
    /// Turns of sync queries ([`Limits::concurrent_sync`]), and how many wait for one.
    sync_slots: Arc<tokio::sync::Semaphore>,
    sync_waiting: std::sync::atomic::AtomicUsize,
    /// The audit log, appended to by [`crate::auth::authenticate`].
    pub(crate) audit: Option<crate::audit::AuditLog>,
    /// Who user tables are shared with ([`crate::access`]).
    pub grants: Arc<crate::access::Grants>,
    /// One change of user tables at a time ([`crate::usertables`]).
    pub(crate) user_tables_lock: tokio::sync::Mutex<()>,
    /// One change at a time in each user's file space ([`crate::files`]).
    space_locks: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Sync queries in flight per caller ([`Limits::caller_sync`]).
    sync_shares: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    /// The czar's replica census and healer, when its workers hold their own copies (`skyshard czar`).
    pub healer: std::sync::OnceLock<Arc<czar::heal::Healer>>,
    /// Requests counted for `/metrics`.
    pub(crate) metrics: crate::metrics::Metrics,
    /// Set by [`Tap::stop`]: new requests are refused with 503 while those in flight finish.
    pub(crate) stopping: std::sync::atomic::AtomicBool,
}

/// Why the service would not take a request now.
#[derive(Debug)]
pub struct Busy {
    pub what: &'static str,
    pub limit: u64,
    /// The caller's own quota (429), not the service's capacity (503).
    pub mine: bool,
    /// How much of it the caller uses (for `mine`).
    pub used: u64,
    /// Whose share it is (`user NAME`, `group NAME`, `address IP`), for `mine`.
    pub whose: String,
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
        let sync_slots = Arc::new(tokio::sync::Semaphore::new(limits.concurrent_sync.max(1)));
        let audit = match &limits.audit_log {
            None => None,
            Some(path) => Some(crate::audit::AuditLog::open(path)?),
        };
        let grants = Arc::new(crate::access::Grants::open(czar.data_dir())?);
        let tap = Arc::new(Tap {
            grants,
            user_tables_lock: Default::default(),
            space_locks: Default::default(),
            czar,
            limits,
            jobs,
            auth: auth.filter(|a| a.policy != Policy::None),
            audit,
            sync_slots,
            sync_waiting: Default::default(),
            sync_shares: Default::default(),
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
        (
            self.limits.concurrent_sync.max(1) - self.sync_slots.available_permits(),
            self.sync_waiting.load(std::sync::atomic::Ordering::Relaxed),
        )
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
        reader: crate::access::Reader,
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
    pub(crate) fn reader_of_owner(&self, owner: Option<&str>) -> crate::access::Reader {
        let user = self
            .auth
            .as_ref()
            .zip(owner)
            .and_then(|(auth, o)| auth.accounts.user(o).ok().flatten());
        match user {
            Some(user) => crate::access::Reader {
                user: Some(user.name),
                groups: user.groups,
                admin: false,
            },
            None => crate::access::Reader::default(),
        }
    }

    /// A turn to run a sync query, held until its result is written: at once when one is free, after waiting in a
    /// bounded line otherwise; [`Busy`] when the line is full.
    pub async fn sync_turn(&self, client: &crate::auth::Client) -> Result<Turn, Busy> {
        let share = self.sync_share(client)?;
        let permit = self.service_turn().await?;
        Ok(Turn {
            _permit: permit,
            _share: share,
        })
    }

    /// Sync queries in flight now that count against a share (`user NAME`, `group NAME`, `address IP`).
    pub fn sync_of(&self, key: &str) -> usize {
        self.sync_shares
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// The caller's share of sync queries and their groups', all counted until the returned guard drops, or none
    /// when one of them is used up.
    fn sync_share(&self, client: &crate::auth::Client) -> Result<Share, Busy> {
        let mut shares = self
            .sync_shares
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (key, allowance) in client.shares() {
            let used = shares.get(key).copied().unwrap_or(0);
            if used >= allowance.sync {
                return Err(Busy {
                    what: "sync queries in flight",
                    limit: allowance.sync as u64,
                    mine: true,
                    used: used as u64,
                    whose: key.to_string(),
                });
            }
        }
        let keys: Vec<String> = client.shares().map(|(k, _)| k.to_string()).collect();
        for k in &keys {
            *shares.entry(k.clone()).or_insert(0) += 1;
        }
        Ok(Share {
            shares: self.sync_shares.clone(),
            keys,
        })
    }

    async fn service_turn(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Busy> {
        use std::sync::atomic::Ordering;
        if let Ok(permit) = self.sync_slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let busy = Busy {
            what: "sync queries waiting",
            limit: self.limits.waiting_sync as u64,
            mine: false,
            used: 0,
            whose: String::new(),
        };
        if self.sync_waiting.fetch_add(1, Ordering::AcqRel) >= self.limits.waiting_sync {
            self.sync_waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(busy);
        }
        let permit = self.sync_slots.clone().acquire_owned().await;
        self.sync_waiting.fetch_sub(1, Ordering::AcqRel);
        permit.map_err(|_| busy)
    }
}

/// A sync query's turn: the service's slot and the caller's share, both given back when it drops.
pub struct Turn {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _share: Share,
}

struct Share {
    shares: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    keys: Vec<String>,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut shares = self
            .shares
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for key in &self.keys {
            if let Some(n) = shares.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    shares.remove(key);
                }
            }
        }
    }
}
