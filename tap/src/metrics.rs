//! Operating the service: `/metrics` (Prometheus text format: requests by route and status, latency histograms,
//! chunk runs, rows from workers, failovers, replica counts, queue depths, memory), `/ready` for orchestrators
//! (`/health` is in [`crate::reply`]), and the stop of a graceful shutdown: once [`Tap::stop`] is called every new
//! request but `/health` and `/metrics` is answered 503 with Retry-After while those in flight finish.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use protocol::metrics::{describe, label, sample};

use crate::service::Tap;

/// Counts and times every request; while the service stops, refuses new ones with 503.
pub(crate) async fn observe(State(tap): State<Arc<Tap>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if tap.stopping() && path != "/health" && path != "/metrics" {
        let mut response = crate::reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the service is shutting down; try again in a moment",
        );
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        headers.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return response;
    }
    let start = Instant::now();
    let response = next.run(request).await;
    tap.metrics.record(&response, start.elapsed());
    response
}

/// `/ready`: 200 when the service takes queries (not stopping, and a worker answers), else 503.
pub(crate) async fn ready(State(tap): State<Arc<Tap>>) -> Response {
    let (up, workers) = tap
        .czar
        .cluster()
        .up(std::time::Duration::from_secs(2))
        .await;
    let (status, why) = if tap.stopping() {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping".to_string())
    } else if up == 0 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no worker answers".to_string(),
        )
    } else {
        (StatusCode::OK, "ready".to_string())
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({
            "status": why,
            "workers_answering": up,
            "workers": workers,
            "tables": catalog_tables(&tap),
        })
        .to_string(),
    )
        .into_response()
}

/// The catalog's tables: users' and groups' tables are not counted (their number is nobody else's business).
fn catalog_tables(tap: &Tap) -> usize {
    tap.czar
        .tables()
        .iter()
        .filter(|t| platform::access::Space::of(&t.record.schema).is_none())
        .count()
}

/// Whether a caller is on this machine or a private network (a cluster's pod network, a scraper beside it).
fn private(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || v6.to_ipv4_mapped().is_some_and(|v4| private(v4.into()))
        }
    }
}

/// `/metrics`, to callers on loopback or a private network only (what is counted is the operators' business).
pub(crate) async fn metrics(
    State(tap): State<Arc<Tap>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
) -> Response {
    if !private(peer.ip()) {
        return crate::reply::error(
            StatusCode::NOT_FOUND,
            "no such resource: the TAP service is at /tap",
        );
    }
    let mut out = String::new();
    tap.metrics.write(&mut out);
    let (chunk_runs, rows) = czar::dispatch::chunk_counters();
    describe(
        &mut out,
        "skyshard_chunk_runs_total",
        "counter",
        "Chunk fragments asked of workers.",
    );
    sample(&mut out, "skyshard_chunk_runs_total", "", chunk_runs);
    describe(
        &mut out,
        "skyshard_worker_rows_total",
        "counter",
        "Rows received from workers.",
    );
    sample(&mut out, "skyshard_worker_rows_total", "", rows);
    describe(
        &mut out,
        "skyshard_chunk_failovers_total",
        "counter",
        "Chunk runs served by another worker than the chunk's first holder.",
    );
    sample(
        &mut out,
        "skyshard_chunk_failovers_total",
        "",
        czar::dispatch::chunks_failed_over(),
    );
    describe(
        &mut out,
        "skyshard_queries_planned_total",
        "counter",
        "Queries planned by the czar.",
    );
    sample(
        &mut out,
        "skyshard_queries_planned_total",
        "",
        tap.czar.queries_planned(),
    );
    let (sync_running, sync_waiting) = tap.sync_load();
    describe(
        &mut out,
        "skyshard_sync_queries",
        "gauge",
        "Sync queries running and waiting for a turn.",
    );
    sample(
        &mut out,
        "skyshard_sync_queries",
        "state=\"running\"",
        sync_running,
    );
    sample(
        &mut out,
        "skyshard_sync_queries",
        "state=\"waiting\"",
        sync_waiting,
    );
    let active = tap.jobs.active();
    describe(
        &mut out,
        "skyshard_async_jobs_active",
        "gauge",
        "Async jobs queued or executing in this process.",
    );
    sample(&mut out, "skyshard_async_jobs_active", "", active);
    describe(&mut out, "skyshard_tables", "gauge", "Published catalog tables (users' tables not counted).");
    sample(&mut out, "skyshard_tables", "", catalog_tables(&tap));
    let cluster = tap.czar.cluster();
    describe(
        &mut out,
        "skyshard_workers",
        "gauge",
        "Workers queries go to, by whether the last call succeeded.",
    );
    let healthy = cluster.workers.iter().filter(|w| w.healthy()).count();
    sample(&mut out, "skyshard_workers", "health=\"ok\"", healthy);
    sample(
        &mut out,
        "skyshard_workers",
        "health=\"failed\"",
        cluster.workers.len() - healthy,
    );
    if let Some(healer) = tap.healer.get() {
        let (made, removed, bytes, histogram, members) = healer.counters();
        describe(
            &mut out,
            "skyshard_replica_copies_total",
            "counter",
            "Chunk files copied by the replica healer.",
        );
        sample(&mut out, "skyshard_replica_copies_total", "", made);
        describe(
            &mut out,
            "skyshard_replica_removals_total",
            "counter",
            "Moved chunk copies removed from their old holder.",
        );
        sample(&mut out, "skyshard_replica_removals_total", "", removed);
        describe(
            &mut out,
            "skyshard_replica_bytes_copied_total",
            "counter",
            "Bytes copied by the replica healer.",
        );
        sample(&mut out, "skyshard_replica_bytes_copied_total", "", bytes);
        describe(
            &mut out,
            "skyshard_chunks_by_copies",
            "gauge",
            "Chunks of shipped tables by the number of live copies at the last census.",
        );
        for (copies, n) in histogram {
            sample(
                &mut out,
                "skyshard_chunks_by_copies",
                &format!("copies=\"{copies}\""),
                n,
            );
        }
        describe(
            &mut out,
            "skyshard_member_up",
            "gauge",
            "Whether a member answered the last census, by state.",
        );
        for (address, state, up) in members {
            let state = serde_json::to_value(state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            sample(
                &mut out,
                "skyshard_member_up",
                &format!("worker=\"{}\",state=\"{state}\"", label(&address)),
                u8::from(up),
            );
        }
    }
    protocol::metrics::write_process(&mut out);
    (
        [(header::CONTENT_TYPE, protocol::metrics::CONTENT_TYPE)],
        out,
    )
        .into_response()
}
