//! `skyshard serve`, `worker`, `czar` and `query`: running a cluster and asking it.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::failure;
use crate::http::{self, Payload, encode};

const PER_WORKER: usize = 4;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn bind(address: &str) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))
}

/// Flags of the TAP service (`serve`, `czar`).
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

/// Starts the HTTP service of a czar and reports where it listens.
async fn run_czar(
    data_dir: &Path,
    port: u16,
    cluster: czar::cluster::Cluster,
    service: &ServiceArgs,
    howto: Option<fn(&str) -> String>,
    heal: Option<czar::heal::HealOptions>,
) -> Result<(), String> {
    crate::logging::init(&service.log_format, &service.log_level)?;
    let czar = Arc::new(
        czar::Czar::open(
            data_dir,
            cluster,
            tap::czar_options(Some(service.query_memory_mb.max(1) << 20)),
        )
        .map_err(|e| e.to_string())?,
    );
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
    let tap = tap::Tap::open_with(
        czar.clone(),
        limits,
        service.jobs_dir.as_deref(),
        Some(auth),
    )?;
    if let Some(options) = heal {
        let healer = czar::heal::Healer::new(czar.clone(), options).map_err(|e| e.to_string())?;
        healer.spawn();
        let _ = tap.healer.set(healer);
    }
    czar.watch(std::time::Duration::from_secs(2));
    let host = if service.host.is_empty() {
        "127.0.0.1"
    } else {
        service.host.as_str()
    };
    let listener = bind(&format!("{host}:{port}")).await?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let tables: Vec<String> = czar
        .tables()
        .iter()
        .map(|t| format!("{} ({} rows)", t.record.qualified_name(), t.record.rows))
        .collect();
    println!(
        "TAP service at http://{address}/tap  tables: {}",
        if tables.is_empty() {
            "none".into()
        } else {
            tables.join(", ")
        }
    );
    // Flight SQL stops with the HTTP service: at the stop signal it refuses new calls ([`tap::Tap::stop`]), and the
    // process ends when HTTP has drained.
    if let Some(port) = service.flight_sql_port {
        let listener = bind(&format!("{host}:{port}")).await?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        println!(
            "Flight SQL at grpc://{address}  (ADQL statements; ADBC: adbc_driver_flightsql.dbapi.connect(\"grpc://{address}\"))"
        );
        let tap = tap.clone();
        tokio::spawn(async move {
            if let Err(e) =
                tap::flight_sql::serve_until(listener, tap, std::future::pending()).await
            {
                tracing::error!(event = "flight_sql", "{}", e);
            }
        });
    }
    if let Some(howto) = howto {
        println!("{}", howto(&format!("http://{address}")));
    }
    let served = tap::serve_until(
        listener,
        tap,
        stop_signal(),
        std::time::Duration::from_secs(service.shutdown_grace),
    )
    .await;
    println!("stopped");
    served
}

/// Resolves at SIGTERM (an orchestrator stopping the process) or SIGINT (Ctrl-C).
async fn stop_signal() {
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
            let listener = bind("127.0.0.1:0").await?;
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

/// Flags of `skyshard worker` when it runs one.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WorkerArgs {
    /// HOST:PORT to listen on (port 0: any free port, printed).
    #[arg(long)]
    pub listen: Option<String>,
    /// Where the worker keeps the chunk files it holds (`tables/SCHEMA.TABLE/LOAD/chunks/`).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Memory one query's fragment may hold on this worker (hash tables, sorts, aggregates), in MiB.
    #[arg(long, default_value_t = 2048)]
    pub fragment_memory_mb: usize,
    /// Answer only calls carrying this secret (give the czar the same one): without it, anything that can
    /// reach the port can read chunks, ship files and drop tables.
    #[arg(long, env = "SKYSHARD_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// HOST:PORT of a plain HTTP listener for /metrics, /health and /ready (probes and Prometheus); none by default.
    #[arg(long)]
    pub http: Option<String>,
    /// Seconds a stopping worker (SIGTERM) lets fragments in flight finish before it exits.
    #[arg(long, default_value_t = 30)]
    pub shutdown_grace: u64,
    /// Log lines on standard error: text, or json (one object per line, for a log collector).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// How much to log: error, warn, info (the default), debug (also the gRPC library's own events), trace.
    #[arg(long, default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,
}

pub fn worker(args: WorkerArgs) -> ExitCode {
    let (Some(listen), Some(data_dir)) = (args.listen.clone(), args.data_dir.clone()) else {
        return failure(
            "a worker needs --listen HOST:PORT and --data-dir DIR (or a --config file giving them)",
        );
    };
    if let Err(e) = crate::logging::init(&args.log_format, &args.log_level) {
        return failure(&e);
    }
    let result = runtime().block_on(async {
        let listener = bind(&listen).await?;
        println!(
            "worker at {}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        if args.cluster_secret.is_none() {
            eprintln!(
                "warning: no --cluster-secret: anything that can reach this port can read chunks and drop tables"
            );
        }
        let worker = worker::Worker::new(&data_dir)
            .with_fragment_memory(args.fragment_memory_mb << 20)
            .with_secret(args.cluster_secret);
        if let Some(http) = &args.http {
            let http = bind(http).await?;
            println!(
                "worker metrics at http://{}/metrics",
                http.local_addr().map_err(|e| e.to_string())?
            );
            tokio::spawn(worker.clone().serve_http(http));
        }
        worker
            .serve_until(
                listener,
                stop_signal(),
                std::time::Duration::from_secs(args.shutdown_grace),
            )
            .await
            .map_err(|e| e.to_string())?;
        println!("stopped");
        Ok::<(), String>(())
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

/// A form POST: status and body.
fn post(url: &str, form: &str) -> Result<(u16, String), String> {
    http::send(
        "POST",
        url,
        "application/x-www-form-urlencoded",
        Payload::Bytes(form.as_bytes().to_vec()),
    )
}

/// `skyshard load`: uploads the inputs to the czar and asks it to load them.
pub fn load(url: &str, mut args: loader::args::LoadArgs) -> ExitCode {
    let base = url.trim_end_matches('/').trim_end_matches("/tap");
    let inputs = match loader::input::expand(&args.input) {
        Ok(i) => i,
        Err(e) => return failure(e),
    };
    let session = format!(
        "s{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let send = |i: usize, path: &Path| -> Result<std::path::PathBuf, String> {
        let base_name: String = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let name = format!("{i}-{base_name}");
        let (status, body) = http::send(
            "PUT",
            &format!("{base}/admin/loads/{session}/{name}"),
            "application/octet-stream",
            Payload::File(path.to_path_buf()),
        )?;
        if status != 200 {
            return Err(format!("uploading {}: {}", path.display(), error_of(&body)));
        }
        Ok(std::path::PathBuf::from(name))
    };
    let mut uploaded = Vec::new();
    for (i, path) in inputs.iter().enumerate() {
        match send(i, path) {
            Ok(name) => uploaded.push(name),
            Err(e) => return failure(e),
        }
    }
    if let Some(meta) = args.columns_meta.clone() {
        match send(inputs.len(), &meta) {
            Ok(name) => args.columns_meta = Some(name),
            Err(e) => return failure(e),
        }
    }
    args.input = uploaded;
    let request = match serde_json::to_string(&args) {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    match http::send(
        "POST",
        &format!("{base}/admin/loads/{session}"),
        "application/json",
        Payload::Bytes(request.into_bytes()),
    ) {
        Ok((200, body)) => {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            println!(
                "loaded {}: {} rows in {} chunks (load {}), {} files shipped to workers",
                v["table"].as_str().unwrap_or("?"),
                v["rows"],
                v["chunks"],
                v["load_id"].as_str().unwrap_or("?"),
                v["files_shipped"]
            );
            ExitCode::SUCCESS
        }
        Ok((_, body)) => failure(error_of(&body)),
        Err(e) => failure(e),
    }
}

/// The message of a JSON error answer (or the body as it is).
fn error_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(String::from))
        .unwrap_or_else(|| body.to_string())
}

pub fn query(url: &str, explain: bool, query: Option<String>) -> ExitCode {
    let query = match query {
        Some(q) => q,
        None => {
            let mut q = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut q) {
                return failure(format!("cannot read the query from standard input: {e}"));
            }
            q
        }
    };
    let base = url.trim_end_matches('/');
    let (endpoint, form) = if explain {
        (
            format!("{base}/explain"),
            format!("QUERY={}", encode(&query)),
        )
    } else {
        (
            format!("{base}/sync"),
            format!(
                "LANG=ADQL&RESPONSEFORMAT=csv&MAXREC={}&QUERY={}",
                tap::Limits::default().max_maxrec,
                encode(&query)
            ),
        )
    };
    match post(&endpoint, &form) {
        Ok((200, body)) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok((_, body)) => failure(http::error_text(&body)),
        Err(e) => failure(e),
    }
}

/// `skyshard worker list|add|drain`: the czar's workers, through its admin API (on the czar's machine).
#[derive(clap::Subcommand, Debug, Clone)]
pub enum WorkerAction {
    /// The replica census: each worker's state, whether it answers, what it holds; chunks by number of copies.
    List {
        /// The czar (its base URL or TAP URL).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Adds a worker: it receives the replicated tables, then its share of the chunks (moved from the fullest
    /// workers, checksummed, published atomically).
    Add {
        /// HOST:PORT of the new worker (started with the cluster secret).
        address: String,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Drains a worker: its chunks are copied to the others, then it leaves the cluster and its files are
    /// removed. Waits until it has left, printing progress.
    Drain {
        /// HOST:PORT of the worker.
        address: String,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Return once the drain has started.
        #[arg(long)]
        no_wait: bool,
        /// Seconds to wait for the drain to end.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
}

fn admin_base(url: &str) -> String {
    url.trim_end_matches('/')
        .trim_end_matches("/tap")
        .to_string()
}

fn census(base: &str) -> Result<serde_json::Value, String> {
    match http::send(
        "GET",
        &format!("{base}/admin/cluster"),
        "application/json",
        Payload::Bytes(Vec::new()),
    )? {
        (200, body) => serde_json::from_str(&body).map_err(|e| e.to_string()),
        (_, body) => Err(error_of(&body)),
    }
}

fn print_census(v: &serde_json::Value) {
    println!(
        "{:<24} {:<9} {:<9} {:>7} {:>14}",
        "worker", "state", "answers", "chunks", "bytes"
    );
    for w in v["workers"].as_array().into_iter().flatten() {
        println!(
            "{:<24} {:<9} {:<9} {:>7} {:>14}",
            w["address"].as_str().unwrap_or("?"),
            w["state"].as_str().unwrap_or("?"),
            if w["answering"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            w["chunk_files"],
            w["bytes"]
        );
    }
    println!(
        "chunks by live copies: {}; copies made {}, removed {}",
        v["chunks_by_copies"], v["copies_made"], v["copies_removed"]
    );
    if let Some(e) = v["last_error"].as_str() {
        println!("last error: {e}");
    }
}

pub fn worker_action(action: WorkerAction) -> ExitCode {
    let result = match action {
        WorkerAction::List { url } => census(&admin_base(&url)).map(|v| print_census(&v)),
        WorkerAction::Add { address, url } => {
            let body = serde_json::json!({ "address": address }).to_string();
            match http::send(
                "POST",
                &format!("{}/admin/workers", admin_base(&url)),
                "application/json",
                Payload::Bytes(body.into_bytes()),
            ) {
                Ok((200, _)) => {
                    println!(
                        "{address} joins: it receives the replicated tables, then its share of the chunks"
                    );
                    Ok(())
                }
                Ok((_, body)) => Err(error_of(&body)),
                Err(e) => Err(e),
            }
        }
        WorkerAction::Drain {
            address,
            url,
            no_wait,
            timeout,
        } => drain(&admin_base(&url), &address, no_wait, timeout),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure(e),
    }
}

fn drain(base: &str, address: &str, no_wait: bool, timeout: u64) -> Result<(), String> {
    let body = serde_json::json!({ "address": address }).to_string();
    match http::send(
        "POST",
        &format!("{base}/admin/workers/drain"),
        "application/json",
        Payload::Bytes(body.into_bytes()),
    )? {
        (200, _) => {}
        (_, body) => return Err(error_of(&body)),
    }
    println!("draining {address}");
    if no_wait {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        let v = census(base)?;
        let member = v["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|w| w["address"].as_str() == Some(address))
            .cloned();
        let Some(member) = member else {
            println!("{address} has left the cluster: its chunks live on the other workers");
            return Ok(());
        };
        let line = format!("{address}: {} chunk files left", member["chunk_files"]);
        if line != last {
            println!("{line}");
            last = line;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    Err(format!(
        "{address} is still draining after {timeout} s (`skyshard worker list` shows why)"
    ))
}
