//! Loading through the czar (`skyshard load`): the client uploads its input files (`PUT
//! /admin/loads/SESSION/FILE`, streamed to `DATA_DIR/incoming/SESSION/`), then asks for the load (`POST
//! /admin/loads/SESSION` with the load flags as JSON, [`loader::args::LoadArgs`]). The czar runs the loader into
//! its data directory and, before the one metadata write that publishes the load, ships every chunk file to the
//! workers that hold that chunk (Flight `DoPut`, [`Cluster::placement`] with its replicas; replicated tables to
//! every worker). If any worker cannot take its files, nothing is published: the catalog stays as it was.
//! Workers that share the czar's data directory (`skyshard serve`) already have the files and are skipped.
//!
//! The admin routes answer only clients on the czar's own machine (loopback).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_flight::{FlightData, FlightDescriptor};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use futures::{StreamExt, TryStreamExt};
use metastore::{TableKind, TableRecord};
use prost::Message;
use tokio::io::AsyncWriteExt;

use crate::cluster::{Cluster, WorkerHandle};
use crate::tap::Tap;

pub fn routes() -> Router<Arc<Tap>> {
    Router::new()
        .route("/admin/loads/{session}/{file}", put(upload))
        .route("/admin/loads/{session}", post(load))
        .layer(DefaultBodyLimit::disable())
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn refused(status: StatusCode, message: impl Into<String>) -> Response {
    json(status, serde_json::json!({ "error": message.into() }))
}

/// A name the client chose: letters, digits, `_`, `-`, `.`, not starting with a dot.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn local_only(peer: &SocketAddr) -> Result<(), Response> {
    if peer.ip().is_loopback() {
        Ok(())
    } else {
        Err(refused(
            StatusCode::FORBIDDEN,
            "loads are taken only from the czar's own machine",
        ))
    }
}

fn session_dir(tap: &Tap, session: &str) -> PathBuf {
    tap.czar.data_dir().join("incoming").join(session)
}

async fn upload(
    State(tap): State<Arc<Tap>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath((session, file)): UrlPath<(String, String)>,
    body: Body,
) -> Response {
    if let Err(r) = local_only(&peer) {
        return r;
    }
    if !plain(&session) || !plain(&file) {
        return refused(
            StatusCode::BAD_REQUEST,
            "session and file names must be plain names",
        );
    }
    let dir = session_dir(&tap, &session);
    let path = dir.join(&file);
    let write = async {
        tokio::fs::create_dir_all(&dir).await?;
        let mut out = tokio::fs::File::create(&path).await?;
        let mut stream = body.into_data_stream();
        let mut bytes = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(std::io::Error::other)?;
            bytes += chunk.len() as u64;
            out.write_all(&chunk).await?;
        }
        out.flush().await?;
        Ok::<u64, std::io::Error>(bytes)
    };
    match write.await {
        Ok(bytes) => json(
            StatusCode::OK,
            serde_json::json!({ "file": file, "bytes": bytes }),
        ),
        Err(e) => refused(StatusCode::BAD_REQUEST, format!("receiving {file}: {e}")),
    }
}

async fn load(
    State(tap): State<Arc<Tap>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath(session): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = local_only(&peer) {
        return r;
    }
    if !plain(&session) {
        return refused(
            StatusCode::BAD_REQUEST,
            "the session name must be a plain name",
        );
    }
    let mut args: loader::args::LoadArgs = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return refused(StatusCode::BAD_REQUEST, format!("the load request: {e}")),
    };
    let dir = session_dir(&tap, &session);
    // Inputs and the column metadata name files of this session.
    for p in args.input.iter_mut().chain(args.columns_meta.iter_mut()) {
        let name = p.to_string_lossy().to_string();
        if !plain(&name) || !dir.join(&name).is_file() {
            return refused(
                StatusCode::BAD_REQUEST,
                format!("{name} was not uploaded in this session"),
            );
        }
        *p = dir.join(name);
    }
    args.quiet = true;
    let options = match args.options() {
        Ok(o) => o,
        Err(e) => return refused(StatusCode::BAD_REQUEST, e),
    };
    let data_dir = tap.czar.data_dir().to_path_buf();
    let cluster = tap.czar.cluster.clone();
    let runtime = tokio::runtime::Handle::current();
    let inputs = args.input.clone();
    let shipped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = shipped.clone();
    // A child table's chunks go where its director's are (their joins run chunk-local).
    let follow: std::collections::HashMap<u64, Vec<String>> = match &options.kind {
        loader::ingest::LoadKind::Child { director, .. } => tap
            .czar
            .tables()
            .iter()
            .find(|t| t.record.qualified_name().eq_ignore_ascii_case(director))
            .map(|t| t.record.placement.iter().cloned().collect())
            .unwrap_or_default(),
        _ => Default::default(),
    };
    let result = tokio::task::spawn_blocking(move || {
        let hook = |load_dir: &Path, record: &mut TableRecord| {
            let n = runtime.block_on(ship(&cluster, &data_dir, load_dir, record, &follow))?;
            counter.store(n, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        };
        loader::ingest::ingest_with(&data_dir, &inputs, &options, &hook)
    })
    .await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    let report = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return refused(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => {
            return refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the load stopped: {e}"),
            );
        }
    };
    // Older loads of the table on the workers are garbage now (queries name the new load).
    for w in &tap.czar.cluster.workers {
        let body = protocol::DropTable {
            table: report.record.qualified_name(),
            keep_load: report.record.load_id.clone(),
        };
        let _ = w
            .client()
            .do_action(arrow_flight::Action {
                r#type: protocol::ACTION_DROP.into(),
                body: body.encode_to_vec().into(),
            })
            .await;
    }
    if let Err(e) = tap.czar.refresh() {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("loaded, but the catalog could not be re-read: {e}"),
        );
    }
    json(
        StatusCode::OK,
        serde_json::json!({
            "table": report.record.qualified_name(),
            "load_id": report.record.load_id,
            "rows": report.record.rows,
            "chunks": report.chunks_with_rows,
            "skipped": report.skipped,
            "replaced": report.replaced,
            "files_shipped": shipped.load(std::sync::atomic::Ordering::Relaxed),
        }),
    )
}

/// The chunk a load file belongs to: `UNIQ.parquet`, `UNIQ.overlap.parquet`, `orphans.parquet` (chunk 0).
fn chunk_of(name: &str) -> Option<u64> {
    if name == loader::partition::ORPHANS_FILE {
        return Some(0);
    }
    name.trim_end_matches(".parquet")
        .trim_end_matches(".overlap")
        .parse()
        .ok()
}

/// Sends every file of a load to the workers that are to hold its chunk (those in `follow`, else the cluster's
/// placement) and notes them in `record.placement`; returns how many puts were made.
pub async fn ship(
    cluster: &Cluster,
    czar_dir: &Path,
    load_dir: &Path,
    record: &mut TableRecord,
    follow: &std::collections::HashMap<u64, Vec<String>>,
) -> Result<usize, String> {
    // Workers serving the czar's own data directory have the files already.
    let own = std::fs::canonicalize(czar_dir).unwrap_or_else(|_| czar_dir.to_path_buf());
    let mut remote: Vec<Arc<WorkerHandle>> = Vec::new();
    for w in &cluster.workers {
        let health = w
            .client()
            .do_action(arrow_flight::Action {
                r#type: protocol::ACTION_HEALTH.into(),
                body: Default::default(),
            })
            .await
            .map_err(|s| format!("worker {} does not answer: {}", w.address, s.message()))?;
        let mut results = health.into_inner();
        let body = results
            .message()
            .await
            .map_err(|s| format!("worker {}: {}", w.address, s.message()))?
            .map(|r| r.body)
            .unwrap_or_default();
        let data_dir = protocol::Health::decode(body)
            .map(|h| PathBuf::from(h.data_dir))
            .unwrap_or_default();
        let theirs = std::fs::canonicalize(&data_dir).unwrap_or(data_dir);
        if theirs != own {
            remote.push(w.clone());
        }
    }
    if remote.is_empty() {
        return Ok(0);
    }
    let mut puts: Vec<(PathBuf, String, Vec<Arc<WorkerHandle>>)> = Vec::new();
    let mut placement: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
    for sub in ["chunks", "replicated"] {
        let Ok(entries) = std::fs::read_dir(load_dir.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !name.ends_with(".parquet") {
                continue;
            }
            let targets: Vec<Arc<WorkerHandle>> = if record.kind == TableKind::Replicated
                || sub == "replicated"
            {
                remote.clone()
            } else {
                let chunk =
                    chunk_of(&name).ok_or_else(|| format!("unexpected file {name} in the load"))?;
                let holders: Vec<Arc<WorkerHandle>> = match follow.get(&chunk) {
                    Some(addresses) => addresses
                        .iter()
                        .filter_map(|a| cluster.workers.iter().find(|w| &w.address == a).cloned())
                        .collect(),
                    None => cluster.placement(chunk),
                };
                let holders: Vec<Arc<WorkerHandle>> = holders
                    .into_iter()
                    .filter(|w| remote.iter().any(|r| r.address == w.address))
                    .collect();
                if holders.is_empty() {
                    return Err(format!("no worker of this cluster can hold chunk {chunk}"));
                }
                if !name.contains(".overlap.") {
                    placement.insert(chunk, holders.iter().map(|w| w.address.clone()).collect());
                }
                holders
            };
            if !targets.is_empty() {
                puts.push((entry.path(), format!("{sub}/{name}"), targets));
            }
        }
    }
    let table = record.qualified_name();
    let load = record.load_id.clone();
    let jobs = puts.into_iter().flat_map(|(path, rel, targets)| {
        targets
            .into_iter()
            .map(move |w| (path.clone(), rel.clone(), w))
    });
    let results: Vec<Result<(), String>> = futures::stream::iter(jobs)
        .map(|(path, rel, worker)| {
            let descriptor =
                FlightDescriptor::new_path(vec![table.clone(), load.clone(), rel.clone()]);
            async move {
                put_file(&worker, descriptor, &path)
                    .await
                    .map_err(|e| format!("{rel} to worker {}: {e}", worker.address))
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let n = results.len();
    results.into_iter().collect::<Result<Vec<_>, _>>()?;
    record.placement = placement.into_iter().collect();
    Ok(n)
}

/// Streams one file to a worker with `DoPut`, in pieces of 1 MiB.
async fn put_file(
    worker: &WorkerHandle,
    descriptor: FlightDescriptor,
    path: &Path,
) -> Result<(), String> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| e.to_string())?;
    let pieces = futures::stream::unfold(
        (file, Some(descriptor)),
        |(mut file, descriptor)| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 1 << 20];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read(&mut buf[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(_) => break,
                }
            }
            if filled == 0 && descriptor.is_none() {
                return None;
            }
            buf.truncate(filled);
            let message = FlightData {
                flight_descriptor: descriptor,
                data_body: buf.into(),
                ..Default::default()
            };
            Some((message, (file, None)))
        },
    );
    let expected = tokio::fs::metadata(path)
        .await
        .map_err(|e| e.to_string())?
        .len();
    let response = worker
        .client()
        .do_put(pieces)
        .await
        .map_err(|s| s.message().to_string())?;
    let results = response
        .into_inner()
        .try_collect::<Vec<_>>()
        .await
        .map_err(|s| s.message().to_string())?;
    // The worker says how many bytes it wrote: a short read here must not pass for a whole file.
    let written: Option<u64> = results
        .first()
        .and_then(|r| std::str::from_utf8(&r.app_metadata).ok()?.parse().ok());
    if written != Some(expected) {
        return Err(format!("the worker wrote {written:?} bytes of {expected}"));
    }
    Ok(())
}
