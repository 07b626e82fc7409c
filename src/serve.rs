//! `skyshard serve`, `czar` (and the demo's service): the service's flags turned into a [`tap::ServiceConfig`],
//! the czar and its cluster made, and [`tap::run`] called until SIGTERM or Ctrl-C.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::failure;

/// Concurrent chunk queries the czar sends one worker.
const PER_WORKER: usize = 4;

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// The flags of the TAP service, shared by `serve` and `czar` (flattened into each: a doc comment here would
// become their description).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServiceArgs {
    /// Log lines on standard error: text, or json (one object per line with the ids of queries, jobs, workers,
    /// tables and chunks, for a log collector; informational events too).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// How much to log: error, warn, info (the default), debug (also each query planned, and the HTTP and gRPC
    /// libraries' own events), trace.
    #[arg(long, default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,
    /// The address the HTTP service listens on (0.0.0.0: every interface, as in a container).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Also serve Arrow Flight SQL on this port of the same host (0: any free port): ADQL statements with the TAP
    /// service's tokens, turns and limits, results as Arrow record batches (ADBC's Flight SQL driver,
    /// pyarrow.flight). Off unless given.
    #[arg(long)]
    pub flight_sql_port: Option<u16>,
    /// Seconds a stopping service (SIGTERM, Ctrl-C) lets requests in flight finish; new ones get 503 meanwhile.
    #[arg(long, default_value_t = 30)]
    pub shutdown_grace: u64,
    /// Seconds a replaced load's files stay on the workers after `skyshard load --replace`, so queries that started
    /// on it finish with its rows.
    #[arg(long, default_value_t = 60)]
    pub replaced_load_linger: u64,
    /// Where async jobs and their results live (default: DATA_DIR/jobs); one czar per directory.
    #[arg(long)]
    pub jobs_dir: Option<std::path::PathBuf>,
    /// Fetch upload URLs on loopback and private networks (off by default: a public TAP service must not reach
    /// into its own network).
    #[arg(long)]
    pub allow_private_uploads: bool,
    /// Memory one query may hold at the czar (hash tables, sorts, aggregates; sorts and aggregates spill to disk
    /// beyond it), in MiB.
    #[arg(long, default_value_t = 2048)]
    pub query_memory_mb: usize,
    /// Seconds a sync query may run (async jobs have their own execution duration).
    #[arg(long, default_value_t = 600)]
    pub sync_timeout: u64,
    /// The most rows one result may have: the largest MAXREC a TAP query may ask for (a longer result is cut there
    /// and marked OVERFLOW), and past which a Flight SQL result ends with an error.
    #[arg(long, default_value_t = 10_000_000)]
    pub max_maxrec: u64,
    /// Sync queries and cone searches running at once; more wait in line.
    #[arg(long, default_value_t = 32)]
    pub concurrent_sync: usize,
    /// Sync queries that may wait for a turn; past them the service answers 503 with Retry-After.
    #[arg(long, default_value_t = 512)]
    pub waiting_sync: usize,
    /// Async jobs queued or executing at once; past them PHASE=RUN answers 503 with Retry-After.
    #[arg(long, default_value_t = 200)]
    pub queued_jobs: usize,
    /// Seconds a worker may stay silent (no batch, and none of the keep-alives a working worker sends every second)
    /// before its chunks go to a replica: a hung worker is treated like a dead one.
    #[arg(long, default_value_t = 60.0)]
    pub worker_silence: f64,
    /// `serve`: memory one query's fragment may hold on each worker, in MiB.
    #[arg(long, default_value_t = 2048)]
    pub fragment_memory_mb: usize,
    /// MiB of inline uploads one request may carry (and of one fetched upload URL); a larger body is refused
    /// with 413 before it is read.
    #[arg(long, default_value_t = 64)]
    pub max_upload_mb: usize,
    /// Seconds a request body may take to arrive; a slower one is answered 408.
    #[arg(long, default_value_t = 300)]
    pub body_timeout: u64,
    /// Seconds a request's line and headers may take to arrive; a client trickling them is disconnected.
    #[arg(long, default_value_t = 30)]
    pub header_timeout: u64,
    /// Who must say who they are: none (nobody is asked; every job is everyone's), optional (anonymous callers
    /// query; named ones own their jobs), required (every request but capabilities, availability and login needs a
    /// token). Accounts: `skyshard user add`, `skyshard token create`.
    #[arg(long, default_value = "none", value_parser = ["none", "optional", "required"])]
    pub auth: String,
    /// Sync queries one caller (a user, or an anonymous address) may have in flight; past it, 429.
    #[arg(long, default_value_t = 8)]
    pub caller_sync: usize,
    /// Async jobs one caller may have queued or executing; past it, PHASE=RUN answers 429.
    #[arg(long, default_value_t = 8)]
    pub caller_jobs: usize,
    /// MiB of async results one caller may keep; past it, new jobs answer 429 until finished ones are deleted.
    #[arg(long, default_value_t = 10240)]
    pub caller_storage_mb: u64,
    /// `czar`: the secret its workers were started with (`skyshard worker --cluster-secret`); `serve` makes one
    /// of its own for the workers it starts.
    #[arg(long, env = "SKYSHARD_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// MiB of user tables each user's schema (user_NAME) and each group's may hold, unless `skyshard user quota
    /// --tables-mb` says otherwise; past it a load answers 413 and changes nothing.
    #[arg(long, default_value_t = 1024)]
    pub user_tables_mb: u64,
    /// MiB of files each user's space (/files/NAME/) may hold, unless `skyshard user quota --files-mb` says
    /// otherwise; past it a PUT answers 507 and stores nothing.
    #[arg(long, default_value_t = 10240)]
    pub user_files_mb: u64,
    /// The address of an authenticating proxy in front (Gafaelfawr, oauth2-proxy; repeat for several): its
    /// --proxy-user-header names the caller, and its X-Forwarded-For and X-Forwarded-Proto are believed. The same
    /// headers from any other address are ignored.
    #[arg(long = "trusted-proxy")]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The header a --trusted-proxy names the caller in.
    #[arg(long, default_value = "X-Auth-Request-User")]
    pub proxy_user_header: String,
    /// Appends one JSON line per request (time, user or address, method, path, status, milliseconds) to this file.
    #[arg(long)]
    pub audit_log: Option<std::path::PathBuf>,
}

/// The service's limits and identity from its flags.
fn service_config(
    data_dir: &Path,
    port: u16,
    service: &ServiceArgs,
    heal: Option<czar::heal::HealOptions>,
) -> Result<tap::ServiceConfig, String> {
    let max_maxrec = service.max_maxrec.max(1);
    let limits = tap::Limits {
        max_maxrec,
        default_maxrec: tap::Limits::default().default_maxrec.min(max_maxrec),
        allow_private_uploads: service.allow_private_uploads,
        sync_duration: service.sync_timeout.max(1),
        concurrent_sync: service.concurrent_sync.max(1),
        waiting_sync: service.waiting_sync,
        queued_jobs: service.queued_jobs.max(1),
        max_upload_bytes: service.max_upload_mb.max(1) << 20,
        body_timeout: service.body_timeout.max(1),
        header_timeout: service.header_timeout.max(1),
        caller_sync: service.caller_sync.max(1),
        caller_jobs: service.caller_jobs.max(1),
        caller_storage: service.caller_storage_mb.max(1) << 20,
        audit_log: service.audit_log.clone(),
        user_tables: service.user_tables_mb.saturating_mul(1 << 20),
        user_files: service.user_files_mb.saturating_mul(1 << 20),
        replaced_load_linger: service.replaced_load_linger,
        ..Default::default()
    };
    let policy: tap::auth::Policy = service.auth.parse()?;
    let auth = tap::auth::Auth {
        policy,
        accounts: metastore::accounts::Accounts::new(data_dir),
        proxy: if service.trusted_proxies.is_empty() {
            None
        } else {
            Some(tap::auth::Proxy {
                addresses: service.trusted_proxies.clone(),
                header: hyper::http::HeaderName::from_bytes(service.proxy_user_header.as_bytes())
                    .map_err(|_| {
                        format!(
                            "--proxy-user-header {}: not a header name",
                            service.proxy_user_header
                        )
                    })?
                    .as_str()
                    .to_string(),
            })
        },
    };
    if auth.proxy.is_some() && policy == tap::auth::Policy::None {
        return Err("--trusted-proxy needs --auth optional or required: with --auth none nobody is asked who they are".into());
    }
    if policy == tap::auth::Policy::Required && !auth.accounts.any() {
        eprintln!(
            "warning: --auth required and no users yet: every query will be refused until `skyshard user add` and \
             `skyshard token create` (run while serving)"
        );
    }
    Ok(tap::ServiceConfig {
        host: service.host.clone(),
        port,
        flight_sql_port: service.flight_sql_port,
        limits,
        auth: Some(auth),
        jobs_dir: service.jobs_dir.clone(),
        shutdown_grace: std::time::Duration::from_secs(service.shutdown_grace),
        heal,
    })
}

/// Opens the czar over `cluster`, runs the service and prints where it listens (and `howto`, the demo's page).
async fn run_czar(
    data_dir: &Path,
    port: u16,
    cluster: czar::cluster::Cluster,
    service: &ServiceArgs,
    howto: Option<fn(&str) -> String>,
    heal: Option<czar::heal::HealOptions>,
) -> Result<(), String> {
    crate::logging::init(&service.log_format, &service.log_level)?;
    let config = service_config(data_dir, port, service, heal)?;
    let czar = Arc::new(
        czar::Czar::open(
            data_dir,
            cluster,
            tap::czar_options(Some(service.query_memory_mb.max(1) << 20)),
        )
        .map_err(|e| e.to_string())?,
    );
    let tables: Vec<String> = czar
        .tables()
        .iter()
        .map(|t| format!("{} ({} rows)", t.record.qualified_name(), t.record.rows))
        .collect();
    let served = tap::run(czar, config, stop_signal(), |at| {
        println!(
            "TAP service at http://{}/tap  tables: {}",
            at.http,
            if tables.is_empty() {
                "none".into()
            } else {
                tables.join(", ")
            }
        );
        if let Some(address) = at.flight_sql {
            println!(
                "Flight SQL at grpc://{address}  (ADQL statements; ADBC: adbc_driver_flightsql.dbapi.connect(\"grpc://{address}\"))"
            );
        }
        if let Some(howto) = howto {
            println!("{}", howto(&format!("http://{}", at.http)));
        }
    })
    .await;
    println!("stopped");
    served
}

/// Resolves at SIGTERM (an orchestrator stopping the process) or SIGINT (Ctrl-C).
pub(crate) async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

pub fn serve(
    data_dir: &Path,
    port: u16,
    workers: usize,
    replicas: usize,
    service: &ServiceArgs,
) -> ExitCode {
    serve_with(data_dir, port, workers, replicas, service, None)
}

/// `serve`, printing `howto(base URL)` once the service listens.
pub fn serve_with(
    data_dir: &Path,
    port: u16,
    workers: usize,
    replicas: usize,
    service: &ServiceArgs,
    howto: Option<fn(&str) -> String>,
) -> ExitCode {
    // The in-process workers listen on loopback ports any local process can reach: they answer only this czar.
    let secret = match service.cluster_secret.clone().filter(|s| !s.is_empty()) {
        Some(s) => s,
        None => match metastore::accounts::random_hex(16) {
            Ok(secret) => secret,
            Err(e) => return failure(format!("the cluster secret: {e}")),
        },
    };
    let result = runtime().block_on(async {
        let mut addresses = Vec::new();
        for _ in 0..workers.max(1) {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("cannot listen on loopback: {e}"))?;
            addresses.push(
                listener
                    .local_addr()
                    .map_err(|e| e.to_string())?
                    .to_string(),
            );
            let w = worker::Worker::new(data_dir)
                .with_fragment_memory(service.fragment_memory_mb.max(1) << 20)
                .with_secret(Some(secret.clone()));
            tokio::spawn(async move {
                if let Err(e) = w.serve(listener).await {
                    eprintln!("error: worker stopped: {e}");
                }
            });
        }
        println!("{} workers at {}", addresses.len(), addresses.join(", "));
        let cluster = czar::cluster::Cluster::new(&addresses, replicas, PER_WORKER)
            .map_err(|e| e.to_string())?
            .with_silence(std::time::Duration::from_secs_f64(
                service.worker_silence.max(0.1),
            ))
            .with_secret(&secret)
            .map_err(|e| e.to_string())?;
        run_czar(data_dir, port, cluster, service, howto, None).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure(e),
    }
}

pub fn czar(
    port: u16,
    data_dir: &Path,
    workers: &[String],
    replicas: usize,
    service: &ServiceArgs,
    heal: czar::heal::HealOptions,
) -> ExitCode {
    // Workers added since the start (`skyshard worker add`) are members too; drained ones have left.
    let workers = czar::heal::starting_workers(data_dir, workers);
    let result = runtime().block_on(async {
        let mut cluster = czar::cluster::Cluster::new(&workers, replicas, PER_WORKER)
            .map_err(|e| e.to_string())?
            .with_silence(std::time::Duration::from_secs_f64(
                service.worker_silence.max(0.1),
            ));
        if let Some(secret) = service.cluster_secret.as_deref().filter(|s| !s.is_empty()) {
            cluster = cluster.with_secret(secret).map_err(|e| e.to_string())?;
        }
        run_czar(data_dir, port, cluster, service, None, Some(heal)).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure(e),
    }
}
