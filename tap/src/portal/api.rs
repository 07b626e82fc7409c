//! The portal's JSON endpoints beside TAP and UWS: the ADQL check, the schema browser, the caller's jobs and a
//! job's progress as server-sent events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::extract::OwnedJob;
use crate::params::Params;
use crate::reply::{error, streamed_response};
use crate::service::Tap;
use platform::jobs::{Job, iso};

/// Checks a query while it is typed.
pub(super) async fn check(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> Response {
    let Some(query) = params.get("QUERY") else {
        return error(StatusCode::BAD_REQUEST, "QUERY is missing");
    };
    // Uploaded tables exist only in the request that sends them: a query that reads one is checked for its syntax.
    let outcome = if query.to_lowercase().contains("tap_upload") {
        adql::check(query)
            .map(|_| ())
            .map_err(czar::CzarError::from)
    } else {
        let visible = tap.visible_to(platform::access::Reader::of(&caller));
        tap.czar.check(query, visible.as_deref())
    };
    let body = match outcome {
        Ok(()) => json!({"ok": true}),
        Err(czar::CzarError::Adql(e)) => {
            let pos = e.pos();
            json!({
                "ok": false,
                "message": e.message(),
                "line": pos.map(|p| p.line),
                "col": pos.map(|p| p.col),
            })
        }
        Err(e) => json!({"ok": false, "message": e.to_string()}),
    };
    json_response(&body)
}

pub(super) fn json_response(value: &Value) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        value.to_string(),
    )
        .into_response()
}

/// The schema browser's view of the catalog.
pub(super) async fn tables(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let visible = tap.visible_to(platform::access::Reader::of(&caller));
    let records: HashMap<String, Arc<czar::catalog::TableInfo>> = tap
        .czar
        .tables()
        .into_iter()
        .map(|t| (t.record.qualified_name().to_lowercase(), t))
        .collect();
    let keys = tap.czar.foreign_keys_for(visible.as_deref());
    let mut out: Vec<Value> = tap
        .czar
        .catalog_tables_for(visible.as_deref())
        .iter()
        .map(|t| {
            let name = t.qualified_name();
            let record = records.get(&name.to_lowercase());
            let position = record.and_then(|r| match &r.record.kind {
                metastore::TableKind::Director { ra, dec, .. } => Some(json!([ra, dec])),
                _ => None,
            });
            let columns: Vec<Value> = t
                .columns
                .iter()
                .map(|c| {
                    json!({
                        "name": crate::tap_schema::column_name(c),
                        "datatype": crate::tap_schema::column_type(c).0,
                        "unit": c.unit,
                        "ucd": c.ucd,
                        "description": c.description,
                        "principal": c.principal,
                        "indexed": c.indexed,
                    })
                })
                .collect();
            let fks: Vec<Value> = keys
                .iter()
                .filter(|k| {
                    k.from.eq_ignore_ascii_case(&name) || k.target.eq_ignore_ascii_case(&name)
                })
                .map(|k| {
                    json!({"from": k.from, "target": k.target, "fromColumn": k.from_column,
                           "targetColumn": k.target_column})
                })
                .collect();
            json!({
                "schema": t.schema,
                "name": name,
                "description": t.description,
                "rows": record.map(|r| r.record.rows),
                "position": position,
                "columns": columns,
                "keys": fks,
            })
        })
        .collect();
    out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    json_response(&Value::Array(out))
}

pub(super) fn query_of(job: &Job) -> Option<&str> {
    job.params
        .iter()
        .find(|(k, _)| k == "query")
        .map(|(_, v)| v.as_str())
}

pub(super) fn job_json(tap: &Tap, job: &Job) -> Value {
    let progress = tap.jobs.progress_of(&job.id).map(|p| p.snapshot());
    json!({
        "id": job.id,
        "phase": job.phase.name(),
        "runId": job.run_id,
        "owner": job.owner,
        "query": query_of(job),
        "format": job.params.iter().find(|(k, _)| k == "responseformat" || k == "format").map(|(_, v)| v),
        "creationTime": iso(job.creation),
        "startTime": job.start.map(iso),
        "endTime": job.end.map(iso),
        "elapsedMs": job.start.map(|s| job.end.unwrap_or_else(platform::jobs::now_ms).saturating_sub(s)),
        "rows": job.result.as_ref().map(|r| r.rows),
        "bytes": job.result.as_ref().map(|r| r.bytes),
        "overflow": job.result.as_ref().map(|r| r.overflow),
        "mime": job.result.as_ref().map(|r| r.mime.clone()),
        "error": job.error,
        "progress": progress,
    })
}

/// The caller's jobs, newest first (as `/tap/async` lists them: with accounts, a caller's own; anonymous jobs are
/// listed to nobody).
pub(super) async fn list(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let mut jobs = crate::uws::listed_to(&tap, &caller);
    jobs.truncate(200);
    json_response(&Value::Array(
        jobs.iter().map(|j| job_json(&tap, j)).collect(),
    ))
}

pub(super) async fn job(State(tap): State<Arc<Tap>>, OwnedJob(job): OwnedJob) -> Response {
    json_response(&job_json(&tap, &job))
}

/// Server-sent events of a job's progress until it ends (or, for a job that never ends here, until its execution
/// duration and a minute more have passed: the stream is not held open for ever).
pub(super) async fn progress(State(tap): State<Arc<Tap>>, OwnedJob(first): OwnedJob) -> Response {
    let id = first.id.clone();
    let until = tokio::time::Instant::now() + Duration::from_secs(first.duration + 60);
    let mut changes = tap.jobs.changed.subscribe();
    streamed_response(
        StatusCode::OK,
        "text/event-stream",
        vec![(header::CACHE_CONTROL, "no-cache".to_string())],
        move |tx| {
            tokio::spawn(async move {
                let mut last = String::new();
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                let mut quiet = 0u32;
                loop {
                    let Some(job) = tap.jobs.get(&id) else {
                        let _ = tx
                            .send(Ok(Bytes::from(
                                "event: end\ndata: {\"phase\":\"DELETED\"}\n\n",
                            )))
                            .await;
                        return;
                    };
                    let data = job_json(&tap, &job).to_string();
                    let ended = !job.phase.active();
                    let message = if ended {
                        Some(format!("event: end\ndata: {data}\n\n"))
                    } else if data != last {
                        quiet = 0;
                        Some(format!("data: {data}\n\n"))
                    } else {
                        // A comment now and then keeps proxies from closing a quiet stream.
                        quiet += 1;
                        (quiet % 40 == 0).then(|| ": still running\n\n".to_string())
                    };
                    if let Some(m) = message
                        && tx.send(Ok(Bytes::from(m))).await.is_err()
                    {
                        return; // the browser went away
                    }
                    if ended || tokio::time::Instant::now() > until {
                        return;
                    }
                    last = data;
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = changes.changed() => {}
                    }
                }
            });
        },
    )
}
