//! The service as a library call (Ballista's scheduler `main` is the model): [`run`] takes a czar and a
//! [`ServiceConfig`] and serves TAP (and Flight SQL, and the replica healer when asked) until `stop` resolves, then
//! shuts down gracefully. `skyshard serve`, `czar` and `demo` only turn their flags into a config and call it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use czar::Czar;
use platform::identity::Auth;

use crate::{Limits, Tap};

/// How the service runs.
pub struct ServiceConfig {
    /// The address the HTTP service listens on, and its port (0: any free port).
    pub host: String,
    pub port: u16,
    /// Also serve Arrow Flight SQL on this port of the same host (0: any free port).
    pub flight_sql_port: Option<u16>,
    pub limits: Limits,
    /// Accounts and the `--auth` policy (None: nobody is asked who they are).
    pub auth: Option<Auth>,
    /// Where async jobs live (default `DATA_DIR/jobs`).
    pub jobs_dir: Option<PathBuf>,
    /// How long requests in flight may take to finish once `stop` resolves.
    pub shutdown_grace: Duration,
    /// Run the replica healer (`skyshard czar`, whose workers hold their own copies).
    pub heal: Option<czar::heal::HealOptions>,
}

/// Where the service listens, once it does.
#[derive(Debug, Clone, Copy)]
pub struct Listening {
    pub http: SocketAddr,
    pub flight_sql: Option<SocketAddr>,
}

/// Serves `czar` as `config` says until `stop` resolves; `listening` is told the addresses once both listeners are
/// bound (before the first request is taken), so a caller can print them.
pub async fn run(
    czar: Arc<Czar>,
    config: ServiceConfig,
    stop: impl std::future::Future<Output = ()>,
    listening: impl FnOnce(Listening),
) -> Result<(), String> {
    let tap = Tap::open_with(
        czar.clone(),
        config.limits,
        config.jobs_dir.as_deref(),
        config.auth,
    )?;
    if let Some(options) = config.heal {
        let healer = czar::heal::Healer::new(czar.clone(), options).map_err(|e| e.to_string())?;
        healer.spawn();
        let _ = tap.healer.set(healer);
    }
    czar.watch(Duration::from_secs(2));
    let host = if config.host.is_empty() {
        "127.0.0.1"
    } else {
        config.host.as_str()
    };
    let listener = bind(&format!("{host}:{}", config.port)).await?;
    let http = listener.local_addr().map_err(|e| e.to_string())?;
    let mut flight_sql = None;
    // Flight SQL stops with the HTTP service: at the stop signal it refuses new calls ([`Tap::stop`]), and the
    // process ends when HTTP has drained.
    if let Some(port) = config.flight_sql_port {
        let listener = bind(&format!("{host}:{port}")).await?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let _ = tap.flight_sql_port.set(address.port());
        flight_sql = Some(address);
        let tap = tap.clone();
        tokio::spawn(async move {
            if let Err(e) =
                crate::flight_sql::serve_until(listener, tap, std::future::pending()).await
            {
                tracing::error!(event = "flight_sql", "{e}");
            }
        });
    }
    listening(Listening { http, flight_sql });
    crate::serve_until(listener, tap, stop, config.shutdown_grace).await
}

async fn bind(address: &str) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))
}
