//! The HTTP face's state: the [`Platform`] it serves (everything a request is decided by), and what only HTTP
//! needs (the request counters of `/metrics`). `Tap` dereferences to its platform, so a handler reads
//! `tap.czar`, `tap.jobs` or `tap.grants` as the platform's.

use std::sync::Arc;

use czar::Czar;
pub use platform::Limits;
use platform::Platform;
pub use platform::quota::{Busy, Turn};

use platform::identity::Auth;

/// The shared state of the HTTP service.
pub struct Tap {
    pub platform: Arc<Platform>,
    /// Requests counted for `/metrics`.
    pub(crate) metrics: crate::counters::Metrics,
    /// The port Flight SQL listens on, when it does (told to clients in `/api/v1/me`, so a client given only the HTTP
    /// URL finds it).
    pub flight_sql_port: std::sync::OnceLock<u16>,
}

impl std::ops::Deref for Tap {
    type Target = Platform;

    fn deref(&self) -> &Platform {
        &self.platform
    }
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
        let platform = Arc::new(Platform::open(
            czar,
            limits,
            jobs_dir,
            auth,
            Arc::new(crate::async_query::QueryWork),
        )?);
        let tap = Arc::new(Tap {
            platform,
            metrics: Default::default(),
            flight_sql_port: Default::default(),
        });
        // Jobs the last run left queued or running run again (inside a runtime only: unit tests open services
        // without one).
        if tokio::runtime::Handle::try_current().is_ok() {
            tap.platform.requeue_interrupted();
        }
        Ok(tap)
    }
}

impl crate::params::BodyLimits for Arc<Tap> {
    fn limits(&self) -> &Limits {
        &self.platform.limits
    }
}
