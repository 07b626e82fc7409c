//! Loading through the czar (`skyshard load`): the client uploads its input files (`PUT
//! /admin/loads/SESSION/FILE`, streamed to `DATA_DIR/incoming/SESSION/`), then asks for the load (`POST
//! /admin/loads/SESSION` with the load flags as JSON, [`czar::load::LoadArgs`]). The czar runs the loader into
//! its data directory and ships the files before publishing ([`czar::ship`]): if any worker cannot take its files,
//! nothing is published and the catalog stays as it was.
//!
//! The admin routes answer only clients on the czar's own machine (loopback), and with accounts (`--auth optional`
//! or `required`) only tokens with the `admin` scope.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Extension, Router};
use futures::StreamExt;
use partitioner::layout;
use tokio::io::AsyncWriteExt;

use crate::reply::plain;
use crate::auth::Caller;
use crate::service::Tap;

pub fn routes() -> Router<Arc<Tap>> {
    Router::new()
        .route("/admin/loads/{session}/{file}", put(upload))
        .route("/admin/loads/{session}", post(load))
        .layer(DefaultBodyLimit::disable())
        .route("/admin/cluster", axum::routing::get(cluster))
        .route("/admin/workers", post(add_worker))
        .route("/admin/workers/drain", post(drain_worker))
        .route("/admin/heal", post(heal))
        .route("/admin/refresh", post(refresh))
}

/// The czar's healer, for a caller the admin API answers.
fn healer_for<'a>(
    tap: &'a Tap,
    caller: &Caller,
    peer: &SocketAddr,
) -> Result<&'a Arc<czar::heal::Healer>, Response> {
    allowed(tap, caller, peer)?;
    tap.healer.get().ok_or_else(|| {
        refused(
            StatusCode::NOT_FOUND,
            "this czar runs no replica healer (its workers share its data directory)",
        )
    })
}

/// The replica census: members, what each holds, chunks by copies, what the healer did.
async fn cluster(
    State(tap): State<Arc<Tap>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(caller): Extension<Caller>,
) -> Response {
    match healer_for(&tap, &caller, &peer) {
        Ok(h) => json(StatusCode::OK, h.status()),
        Err(r) => r,
    }
}

/// `{"address": "HOST:PORT"}` of an admin request about a worker.
fn worker_address(body: &[u8]) -> Result<String, Response> {
    let address = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["address"].as_str().map(str::to_string))
        .filter(|a| {
            a.rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        });
    address.ok_or_else(|| {
        refused(
            StatusCode::BAD_REQUEST,
            "the body must be {\"address\": \"HOST:PORT\"}",
        )
    })
}

async fn change_worker(
    tap: Arc<Tap>,
    caller: Caller,
    peer: SocketAddr,
    body: axum::body::Bytes,
    drain: bool,
) -> Response {
    let healer = match healer_for(&tap, &caller, &peer) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let address = match worker_address(&body) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let done = if drain {
        healer.drain(&address)
    } else {
        healer.add(&address)
    };
    match done {
        Ok(()) => json(StatusCode::OK, healer.status()),
        Err(e) => refused(heal_status(&e), e.to_string()),
    }
}

/// Adds a worker: it receives the replicated tables, then serves and receives its share of the chunks.
async fn add_worker(
    State(tap): State<Arc<Tap>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    change_worker(tap, caller, peer, body, false).await
}

/// Drains a worker: its chunks move to the others, then it leaves the cluster.
async fn drain_worker(
    State(tap): State<Arc<Tap>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    change_worker(tap, caller, peer, body, true).await
}

/// Runs a round of the healer now and answers the census after it.
async fn heal(
    State(tap): State<Arc<Tap>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let healer = match healer_for(&tap, &caller, &peer) {
        Ok(h) => h,
        Err(r) => return r,
    };
    match healer.run_round().await {
        Ok(()) => json(StatusCode::OK, healer.status()),
        Err(e) => refused(heal_status(&e), e.to_string()),
    }
}

/// Re-reads the catalog now (what `skyshard ingest` published into the data directory; the czar also notices by
/// itself within seconds).
async fn refresh(
    State(tap): State<Arc<Tap>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(caller): Extension<Caller>,
) -> Response {
    if let Err(r) = allowed(&tap, &caller, &peer) {
        return r;
    }
    match tap.czar.refresh() {
        Ok(()) => json(
            StatusCode::OK,
            serde_json::json!({ "tables": tap.czar.tables().len() }),
        ),
        Err(e) => refused(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The status of a healer's refusal, by its kind.
fn heal_status(e: &czar::heal::HealError) -> StatusCode {
    use czar::heal::HealError as E;
    match e {
        E::NotAMember(_) => StatusCode::NOT_FOUND,
        E::LastServing(_) => StatusCode::CONFLICT,
        E::Cluster(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
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

/// Loads are taken from the czar's own machine only, and, when the service has accounts, from a caller whose
/// token carries the `admin` scope.
fn allowed(tap: &Tap, caller: &Caller, peer: &SocketAddr) -> Result<(), Response> {
    if !peer.ip().is_loopback() {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "the admin API (loads, workers) answers only the czar's own machine",
        ));
    }
    if tap.auth.is_some() && !caller.may("admin") {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "the admin API (loads, workers) needs a token with the admin scope (--token, or SKYSHARD_TOKEN)",
        ));
    }
    Ok(())
}

fn session_dir(tap: &Tap, session: &str) -> PathBuf {
    layout::incoming_dir(tap.czar.data_dir()).join(session)
}

async fn upload(
    State(tap): State<Arc<Tap>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(caller): Extension<Caller>,
    UrlPath((session, file)): UrlPath<(String, String)>,
    body: Body,
) -> Response {
    if let Err(r) = allowed(&tap, &caller, &peer) {
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
    Extension(caller): Extension<Caller>,
    UrlPath(session): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = allowed(&tap, &caller, &peer) {
        return r;
    }
    if !plain(&session) {
        return refused(
            StatusCode::BAD_REQUEST,
            "the session name must be a plain name",
        );
    }
    let mut args: czar::load::LoadArgs = match serde_json::from_slice(&body) {
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
    let linger = std::time::Duration::from_secs(tap.limits.replaced_load_linger);
    let result = tap.czar.load(args.input.clone(), options, linger).await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    let loaded = match result {
        Ok(r) => r,
        Err(e) => {
            let status =
                StatusCode::from_u16(e.code().http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            return refused(status, e.to_string());
        }
    };
    let report = &loaded.report;
    json(
        StatusCode::OK,
        serde_json::json!({
            "table": report.record.qualified_name(),
            "load_id": report.record.load_id,
            "rows": report.record.rows,
            "chunks": report.chunks_with_rows,
            "skipped": report.skipped,
            "replaced": report.replaced,
            "files_shipped": loaded.files_shipped,
        }),
    )
}
