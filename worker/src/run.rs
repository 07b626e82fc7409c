//! A worker as a library call (Ballista's executor `main` is the model): [`run`] serves Arrow Flight over a data
//! directory's chunk files, and plain HTTP for probes and Prometheus when asked, until `stop` resolves; then it
//! refuses new fragments and lets running ones finish within the grace. `skyshard worker` turns its flags into a
//! [`WorkerConfig`] and calls it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::Worker;

/// How a worker runs.
pub struct WorkerConfig {
    /// HOST:PORT to listen on (port 0: any free port).
    pub listen: String,
    /// Where it keeps the chunk files it holds.
    pub data_dir: PathBuf,
    /// Bytes one query's fragment may hold.
    pub fragment_memory: usize,
    /// Answer only calls carrying this secret.
    pub cluster_secret: Option<String>,
    /// HOST:PORT of the plain HTTP listener (/metrics, /health, /ready), if any.
    pub http: Option<String>,
    /// How long fragments in flight may take to finish once `stop` resolves.
    pub shutdown_grace: Duration,
}

/// Where the worker listens, once it does.
#[derive(Debug, Clone, Copy)]
pub struct Listening {
    pub flight: SocketAddr,
    pub http: Option<SocketAddr>,
}

/// Serves as `config` says until `stop` resolves; `listening` is told the addresses once bound.
pub async fn run(
    config: WorkerConfig,
    stop: impl std::future::Future<Output = ()>,
    listening: impl FnOnce(Listening),
) -> Result<(), String> {
    let listener = bind(&config.listen).await?;
    let flight = listener.local_addr().map_err(|e| e.to_string())?;
    let worker = Worker::new(&config.data_dir)
        .with_fragment_memory(config.fragment_memory)
        .with_secret(config.cluster_secret);
    let mut http = None;
    if let Some(address) = &config.http {
        let listener = bind(address).await?;
        http = Some(listener.local_addr().map_err(|e| e.to_string())?);
        tokio::spawn(worker.clone().serve_http(listener));
    }
    listening(Listening { flight, http });
    worker
        .serve_until(listener, stop, config.shutdown_grace)
        .await
        .map_err(|e| e.to_string())
}

async fn bind(address: &str) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))
}
