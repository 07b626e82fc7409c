//! `skyshard worker`: one worker ([`worker::run`] until SIGTERM), or, with a subcommand, the czar's workers
//! through its admin API (list, add, drain).

use std::process::ExitCode;

use crate::client::error_of;
use crate::failure;
use crate::http::{self, Payload};
use crate::serve::{runtime, stop_signal};

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
    if args.cluster_secret.is_none() {
        eprintln!(
            "warning: no --cluster-secret: anything that can reach this port can read chunks and drop tables"
        );
    }
    let config = worker::WorkerConfig {
        listen,
        data_dir,
        fragment_memory: args.fragment_memory_mb << 20,
        cluster_secret: args.cluster_secret,
        http: args.http,
        shutdown_grace: std::time::Duration::from_secs(args.shutdown_grace),
    };
    let result = runtime().block_on(worker::run(config, stop_signal(), |at| {
        println!("worker at {}", at.flight);
        if let Some(http) = at.http {
            println!("worker metrics at http://{http}/metrics");
        }
    }));
    println!("stopped");
    match result {
        Ok(()) => ExitCode::SUCCESS,
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
