//! The portal: a web page for exploring the catalogs, writing ADQL, watching jobs, plotting and mapping the sky,
//! served from the binary at `/portal` (and `/` leads there), and the JSON endpoints it uses beside TAP and UWS.
//!
//! - Static files: `tap/portal/` (the app as plain ES modules, the vendored CodeMirror bundle), compiled into the
//!   binary ([`ASSETS`]), served with a strong ETag (`If-None-Match` answers 304), gzip when the client takes it,
//!   and a Content-Security-Policy that allows nothing but this origin.
//! - `GET|POST /api/v1/adql/check?QUERY=`: `{"ok": true}` or `{"ok": false, "message", "line", "col"}`; the
//!   syntax, the names against what the caller sees and the types, without choosing chunks or running anything.
//! - `GET /api/v1/tables`: the tables the caller sees, with their columns (ADQL type, unit, UCD, description),
//!   row counts, foreign keys and, for tables partitioned by position, their RA and Dec columns.
//! - `GET /api/v1/jobs`: the caller's async jobs as JSON (as `/tap/async` lists them); `GET /api/v1/jobs/ID`: one.
//! - `GET /api/v1/jobs/ID/progress`: server-sent events, a JSON snapshot of the job's phase and progress (chunks
//!   done of the total, rows received per worker, rows of the result) at most every 250 ms while it changes,
//!   ending with an `end` event once the job has ended.
//! - `GET /api/v1/jobs/ID/rows?offset=&limit=&sort=&order=`: a page of a Parquet result, sorted by any column.
//! - `GET /api/v1/jobs/ID/result?RESPONSEFORMAT=`: a Parquet result written again in any result format, with
//!   `QUERY_STATUS` OVERFLOW when the job's result was cut.
//!
//! Who may see a job is decided before these handlers run, as for `/tap/async/ID` ([`crate::auth`]).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use datafusion::arrow::array::{Array, RecordBatch, UInt32Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::Column;
use datafusion::logical_expr::Expr;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::StreamExt;
use serde_json::{Value, json};
use sha2::Digest;

use crate::auth::Caller;
use crate::extract::OwnedJob;
use crate::output::{OutputFormat, stream_result};
use crate::params::Params;
use crate::reply::{error, streamed_response};
use crate::service::Tap;
use platform::jobs::{Job, Phase, iso};

pub fn routes() -> Router<Arc<Tap>> {
    // Hash and compress the files now, off the request path: the first visitor should not wait for it.
    std::thread::spawn(|| {
        prepared();
    });
    Router::new()
        .route("/", get(to_portal))
        .route("/portal", get(to_portal))
        .route("/portal/", get(index))
        .route("/portal/{*path}", get(asset))
        .route("/api/v1/adql/check", get(check).post(check))
        .route("/api/v1/tables", get(tables))
        .route("/api/v1/jobs", get(list))
        .route("/api/v1/jobs/{id}", get(job))
        .route("/api/v1/jobs/{id}/progress", get(progress))
        .route("/api/v1/jobs/{id}/rows", get(rows))
        .route("/api/v1/jobs/{id}/result", get(result))
}

/// A file of the portal, compiled in.
pub struct Asset {
    pub path: &'static str,
    pub mime: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $mime:literal) => {
        Asset {
            path: $path,
            mime: $mime,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/portal/", $path)),
        }
    };
}

/// Every file the portal serves (a test checks that each file under `tap/portal/` but the vendor sources is here).
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!("editor.js", "text/javascript; charset=utf-8"),
    asset!("schema.js", "text/javascript; charset=utf-8"),
    asset!("jobs.js", "text/javascript; charset=utf-8"),
    asset!("results.js", "text/javascript; charset=utf-8"),
    asset!("plot.js", "text/javascript; charset=utf-8"),
    asset!("sky.js", "text/javascript; charset=utf-8"),
    asset!("healpix.js", "text/javascript; charset=utf-8"),
    asset!("handoff.js", "text/javascript; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("vendor/codemirror.js", "text/javascript; charset=utf-8"),
    asset!("vendor/LICENSES.md", "text/markdown; charset=utf-8"),
];

/// An asset with its ETag and, where it pays, its gzipped bytes: computed once, at the first request.
struct Prepared {
    asset: &'static Asset,
    etag: String,
    gzip: Option<Bytes>,
}

fn prepared() -> &'static HashMap<&'static str, Prepared> {
    static PREPARED: OnceLock<HashMap<&'static str, Prepared>> = OnceLock::new();
    PREPARED.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = sha2::Sha256::digest(a.bytes);
                let etag = format!("\"{}\"", hex(&digest[..12]));
                let gzip = (a.bytes.len() > 1024)
                    .then(|| {
                        let mut z =
                            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                        z.write_all(a.bytes).ok()?;
                        z.finish().ok()
                    })
                    .flatten()
                    .filter(|z| z.len() < a.bytes.len())
                    .map(Bytes::from);
                (
                    a.path,
                    Prepared {
                        asset: a,
                        etag,
                        gzip,
                    },
                )
            })
            .collect()
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The headers every portal file carries: revalidate with the ETag, and load nothing from anywhere else.
fn guard(response: &mut Response) {
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::CACHE_CONTROL, "no-cache");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::VARY, "Accept-Encoding");
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(p) = prepared().get(path) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("the portal has no file {path}"),
        );
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == p.etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let takes_gzip = headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',').any(|e| {
                    let mut parts = e.split(';');
                    let name = parts.next().unwrap_or("").trim();
                    let refused = parts.any(|q| q.trim().replace(' ', "") == "q=0");
                    name.eq_ignore_ascii_case("gzip") && !refused
                })
            });
        match (&p.gzip, takes_gzip) {
            (Some(z), true) => (
                [
                    (header::CONTENT_TYPE, p.asset.mime),
                    (header::CONTENT_ENCODING, "gzip"),
                ],
                z.clone(),
            )
                .into_response(),
            _ => (
                [(header::CONTENT_TYPE, p.asset.mime)],
                Bytes::from_static(p.asset.bytes),
            )
                .into_response(),
        }
    };
    if let Ok(v) = HeaderValue::from_str(&p.etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    guard(&mut response);
    response
}

async fn to_portal() -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/portal/")]).into_response()
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(UrlPath(path): UrlPath<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

/// Checks a query while it is typed.
async fn check(
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

fn json_response(value: &Value) -> Response {
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
async fn tables(State(tap): State<Arc<Tap>>, Extension(caller): Extension<Caller>) -> Response {
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

fn query_of(job: &Job) -> Option<&str> {
    job.params
        .iter()
        .find(|(k, _)| k == "query")
        .map(|(_, v)| v.as_str())
}

fn job_json(tap: &Tap, job: &Job) -> Value {
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
async fn list(State(tap): State<Arc<Tap>>, Extension(caller): Extension<Caller>) -> Response {
    let mut jobs = crate::uws::listed_to(&tap, &caller);
    jobs.truncate(200);
    json_response(&Value::Array(
        jobs.iter().map(|j| job_json(&tap, j)).collect(),
    ))
}

async fn job(State(tap): State<Arc<Tap>>, OwnedJob(job): OwnedJob) -> Response {
    json_response(&job_json(&tap, &job))
}

/// Server-sent events of a job's progress until it ends (or, for a job that never ends here, until its execution
/// duration and a minute more have passed: the stream is not held open for ever).
async fn progress(State(tap): State<Arc<Tap>>, OwnedJob(first): OwnedJob) -> Response {
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

/// The stored Parquet result of a completed job, or the response that says why there is none.
async fn parquet_result(
    tap: &Tap,
    job: Job,
) -> Result<(Job, datafusion::dataframe::DataFrame), Response> {
    let id = job.id.as_str();
    let Some(r) = job.result.clone().filter(|_| job.phase == Phase::Completed) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            &format!("the job is {}: it has no result", job.phase.name()),
        ));
    };
    if r.mime != OutputFormat::Parquet.mime() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            &format!(
                "the job's result is {}: pages and other formats are made from Parquet results \
                 (RESPONSEFORMAT=parquet)",
                r.mime
            ),
        ));
    }
    let path = tap.jobs.job_dir(id).join(&r.file);
    // The fields' units, UCDs and descriptions are in the file's Arrow schema: keep them.
    let frame = SessionContext::new()
        .read_parquet(
            path.to_string_lossy().as_ref(),
            ParquetReadOptions::default().skip_metadata(false),
        )
        .await
        .map_err(|e| {
            error(
                StatusCode::NOT_FOUND,
                &format!("the result cannot be read: {e}"),
            )
        })?;
    Ok((job, frame))
}

/// The most rows one page may have.
const PAGE_MAX: usize = 1000;

fn number(params: &Params, name: &str, default: usize) -> Result<usize, Response> {
    match params.get(name) {
        None => Ok(default),
        Some(v) => v.trim().parse::<usize>().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("{name}={v} is not a non-negative integer"),
            )
        }),
    }
}

async fn rows(State(tap): State<Arc<Tap>>, OwnedJob(job): OwnedJob, params: Params) -> Response {
    let (job, frame) = match parquet_result(&tap, job).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (offset, limit) = match (number(&params, "OFFSET", 0), number(&params, "LIMIT", 100)) {
        (Ok(o), Ok(l)) => (o, l.min(PAGE_MAX)),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let descending = match params.get("ORDER").map(|o| o.trim().to_lowercase()) {
        None => false,
        Some(o) if o == "asc" => false,
        Some(o) if o == "desc" => true,
        Some(o) => {
            return error(StatusCode::BAD_REQUEST, &format!("ORDER={o}: asc or desc"));
        }
    };
    let schema = frame.schema().as_arrow().clone();
    let batches = match params.get("SORT").filter(|s| !s.is_empty()) {
        None => match frame.limit(offset, Some(limit)) {
            Ok(f) => f.collect().await,
            Err(e) => Err(e),
        },
        Some(name) => {
            if schema.field_with_name(name).is_err() {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("the result has no column {name} to sort by"),
                );
            }
            let key = (job.id.clone(), name.to_string(), descending);
            let file_bytes = job.result.as_ref().map_or(0, |r| r.bytes);
            sorted_page(frame, key, file_bytes, offset, limit).await
        }
    };
    let batches = match batches {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("the page cannot be read: {e}"),
            );
        }
    };
    let columns: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| {
            let meta = |k: &str| f.metadata().get(k).cloned();
            json!({
                "name": f.name(),
                "datatype": f.data_type().to_string(),
                "numeric": f.data_type().is_numeric(),
                "unit": meta("unit"),
                "ucd": meta("ucd"),
                "description": meta("description"),
            })
        })
        .collect();
    let rows = match page_rows(&batches) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    json_response(&json!({
        "total": job.result.as_ref().map_or(0, |r| r.rows),
        "overflow": job.result.as_ref().is_some_and(|r| r.overflow),
        "offset": offset,
        "columns": columns,
        "rows": rows,
    }))
}

/// Results kept sorted for paging, newest last: (job, column, descending), the whole result as one batch and the
/// order of its rows by that column. A result is sorted once (the order of one column, `sort_to_indices`) and each
/// page is the rows it names (a page of a million-row result sorted by a column took 0.7 s sorted again for every
/// page, then 0.28 s for a first page fully sorted by DataFusion).
type SortedResult = ((String, String, bool), RecordBatch, Arc<UInt32Array>, usize);
static SORTED: std::sync::Mutex<std::collections::VecDeque<SortedResult>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());

/// Memory the sorted results may hold in all.
const SORTED_BYTES: usize = 512 << 20;

/// Stored results larger than this (Parquet bytes) are not read whole to be sorted: each page is a top-k.
const SORTED_FILE_BYTES: u64 = 128 << 20;

/// Rows `offset..offset + limit` of the result in `frame` (a file of `file_bytes`) sorted by `key`'s column.
async fn sorted_page(
    frame: datafusion::dataframe::DataFrame,
    key: (String, String, bool),
    file_bytes: u64,
    offset: usize,
    limit: usize,
) -> datafusion::common::Result<Vec<RecordBatch>> {
    let order = Expr::Column(Column::new_unqualified(&key.1)).sort(!key.2, key.2);
    if file_bytes > SORTED_FILE_BYTES {
        return frame
            .sort(vec![order])?
            .limit(offset, Some(limit))?
            .collect()
            .await;
    }
    let cached = SORTED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .find(|(k, ..)| *k == key)
        .map(|(_, b, o, _)| (b.clone(), o.clone()));
    let (batch, rows) = match cached {
        Some(c) => c,
        None => {
            let schema = Arc::new(frame.schema().as_arrow().clone());
            let batches = frame.collect().await?;
            let batch = datafusion::arrow::compute::concat_batches(&schema, &batches)?;
            let column = batch.column_by_name(&key.1).ok_or_else(|| {
                datafusion::common::DataFusionError::Plan(format!("no column {}", key.1))
            })?;
            let options = datafusion::arrow::compute::SortOptions {
                descending: key.2,
                nulls_first: key.2,
            };
            let rows = Arc::new(datafusion::arrow::compute::sort_to_indices(
                column,
                Some(options),
                None,
            )?);
            let bytes = batch.get_array_memory_size() + rows.get_array_memory_size();
            if bytes <= SORTED_BYTES / 2 {
                let mut kept = SORTED
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                kept.retain(|(k, ..)| *k != key);
                kept.push_back((key, batch.clone(), rows.clone(), bytes));
                while kept.iter().map(|(.., n)| n).sum::<usize>() > SORTED_BYTES {
                    kept.pop_front();
                }
            }
            (batch, rows)
        }
    };
    let start = offset.min(rows.len());
    let wanted = rows.slice(start, limit.min(rows.len() - start));
    Ok(vec![datafusion::arrow::compute::take_record_batch(
        &batch, &wanted,
    )?])
}

/// The rows of `batches` as JSON arrays: numbers as numbers (non-finite ones, which JSON lacks, as text), nulls
/// as null, everything else as Arrow displays it.
fn page_rows(batches: &[RecordBatch]) -> Result<Vec<Value>, String> {
    let options = FormatOptions::default();
    let mut out = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        for row in 0..batch.num_rows() {
            let cells = batch
                .columns()
                .iter()
                .zip(&formatters)
                .map(|(column, f)| {
                    if column.is_null(row) {
                        return Value::Null;
                    }
                    let text = f.value(row).to_string();
                    let numeric = matches!(
                        column.data_type(),
                        DataType::Int8
                            | DataType::Int16
                            | DataType::Int32
                            | DataType::Int64
                            | DataType::UInt8
                            | DataType::UInt16
                            | DataType::UInt32
                            | DataType::UInt64
                            | DataType::Float32
                            | DataType::Float64
                    );
                    if numeric
                        && let Ok(n) = text.parse::<f64>()
                        && n.is_finite()
                        && let Some(v) = serde_json::Number::from_f64(n)
                    {
                        // Integers keep their exact digits (an f64 holds 53 bits; ids have 64).
                        if let Ok(i) = text.parse::<i64>() {
                            return Value::from(i);
                        }
                        if let Ok(u) = text.parse::<u64>() {
                            return Value::from(u);
                        }
                        return Value::Number(v);
                    }
                    Value::String(text)
                })
                .collect();
            out.push(Value::Array(cells));
        }
    }
    Ok(out)
}

/// A Parquet result written again in another format. A result that was cut at MAXREC says OVERFLOW again: one
/// row past the stored ones is offered to the writer (and, being past MAXREC, never written).
async fn result(State(tap): State<Arc<Tap>>, OwnedJob(job): OwnedJob, params: Params) -> Response {
    let (job, frame) = match parquet_result(&tap, job).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let format = match params
        .get("RESPONSEFORMAT")
        .or(params.get("FORMAT"))
        .map(OutputFormat::parse)
        .unwrap_or(Ok(OutputFormat::VoTable))
    {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let stored = job.result.clone().expect("a completed job's result");
    let stream = match frame.execute_stream().await {
        Ok(s) => s,
        Err(e) => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("the result cannot be read: {e}"),
            );
        }
    };
    let schema = stream.schema();
    let stream: datafusion::physical_plan::SendableRecordBatchStream = if stored.overflow {
        let last = Arc::new(std::sync::Mutex::new(None::<RecordBatch>));
        let keep = last.clone();
        let rows = stream
            .inspect(move |item| {
                if let Ok(b) = item
                    && b.num_rows() > 0
                {
                    *keep
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(b.slice(0, 1));
                }
            })
            .chain(
                futures::stream::once(async move {
                    last.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .take()
                })
                .filter_map(|b| async move { b.map(Ok) }),
            );
        Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, rows))
    } else {
        stream
    };
    let mut info = vec![("QUERY", query_of(&job).unwrap_or("").to_string())];
    if let Some(r) = &job.run_id {
        info.push(("RUNID", r.clone()));
    }
    let name = format!("{}.{}", job.id, format.extension());
    let extra = vec![(
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{name}\""),
    )];
    streamed_response(StatusCode::OK, format.mime(), extra, move |tx| {
        tokio::spawn(async move {
            let body = tx.clone();
            let written = stream_result(stream, format, stored.rows, &info, tx, None, false);
            if let Err(e) = written.await {
                let _ = body.send(Err(std::io::Error::other(e))).await;
            }
        });
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_portal_file_is_served() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("portal");
        let mut files = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).expect("the portal directory") {
                let p = e.expect("an entry").path();
                let rel = p
                    .strip_prefix(&root)
                    .expect("under root")
                    .to_string_lossy()
                    .to_string();
                if rel.starts_with("vendor-src") {
                    continue;
                }
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    files.push(rel);
                }
            }
        }
        assert!(files.len() > 5, "{files:?}");
        for f in files {
            assert!(prepared().contains_key(f.as_str()), "{f} is not in ASSETS");
        }
    }

    #[test]
    fn etags_differ_and_big_files_are_gzipped() {
        let p = prepared();
        let cm = &p["vendor/codemirror.js"];
        assert!(
            cm.gzip
                .as_ref()
                .is_some_and(|z| z.len() * 2 < cm.asset.bytes.len())
        );
        assert_ne!(p["app.js"].etag, p["index.html"].etag);
    }

    #[test]
    fn pages_keep_ids_exact() {
        use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
        use datafusion::arrow::datatypes::{Field, Schema};
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(9007199254740993), None])),
                Arc::new(Float64Array::from(vec![Some(1.5), Some(f64::NAN)])),
                Arc::new(StringArray::from(vec![Some("a"), Some("b")])),
            ],
        )
        .expect("a batch");
        let rows = page_rows(&[batch]).expect("rows");
        assert_eq!(rows[0], json!([9007199254740993i64, 1.5, "a"]));
        assert_eq!(rows[1], json!([null, "NaN", "b"]));
    }
}
