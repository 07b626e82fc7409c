//! The czar's HTTP service: IVOA TAP 1.1 at `/tap` with UWS 1.1 async jobs, VOSI, TAP_SCHEMA, uploads and
//! streamed result formats, plus Simple Cone Search at `/scs/SCHEMA.TABLE`.
//!
//! - `/tap/sync` (GET, POST urlencoded or multipart): `LANG` (ADQL, ADQL-2.0, ADQL-2.1), `QUERY`,
//!   `RESPONSEFORMAT` or `FORMAT` ([`crate::output::FORMATS`]), `MAXREC` (default and hard cap in [`Limits`];
//!   `MAXREC=0` gives the result's metadata without running it; `QUERY_STATUS` = `OVERFLOW` only when rows were
//!   really cut), `RUNID`, `UPLOAD`. Parameter names are case-insensitive; unknown ones (pyvo's `REQUEST`) are
//!   ignored.
//! - `/tap/async`: UWS jobs ([`uws`]). `/tap/capabilities`, `/tap/availability`, `/tap/tables[/NAME]`,
//!   `/tap/examples`: VOSI and DALI ([`vosi`]). `/tap/explain` (skyshard's own): the distributed plan as text.
//!
//! Every failure is a DALI error VOTable (`QUERY_STATUS` = `ERROR`): 400 for the user's mistakes, 404 for
//! unknown jobs or tables, 503 when chunks are unavailable.

pub mod params;
pub mod scs;
pub mod upload;
pub mod uws;
pub mod vosi;

use std::sync::Arc;

use adql::CatalogTable;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::output::{OutputFormat, stream_result};
use crate::{Czar, QueryError, format};
use params::Params;

/// What the service allows; advertised in `/capabilities`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub default_maxrec: u64,
    pub max_maxrec: u64,
    /// Seconds an async job may run (default and hard cap).
    pub default_duration: u64,
    pub max_duration: u64,
    /// Seconds an async job and its result are kept (default and hard cap).
    pub default_retention: u64,
    pub max_retention: u64,
    /// Bytes of one request body (inline uploads) and of one fetched upload.
    pub max_upload_bytes: usize,
    /// Seconds to fetch an upload URL.
    pub upload_timeout: u64,
    /// Fetch upload URLs on loopback and private networks (off: a TAP service must not reach into its own network).
    pub allow_private_uploads: bool,
    /// Async jobs executing at once; more wait QUEUED.
    pub concurrent_jobs: usize,
    /// Seconds a sync query (or a cone search) may run.
    pub sync_duration: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            default_maxrec: 100_000,
            max_maxrec: 10_000_000,
            default_duration: 3600,
            max_duration: 4 * 3600,
            default_retention: 3 * 24 * 3600,
            max_retention: 14 * 24 * 3600,
            max_upload_bytes: 64 << 20,
            upload_timeout: 30,
            allow_private_uploads: false,
            concurrent_jobs: 4,
            sync_duration: 600,
        }
    }
}

/// The shared state of the service.
pub struct Tap {
    pub czar: Arc<Czar>,
    pub limits: Limits,
    pub jobs: uws::Jobs,
}

impl Tap {
    /// The service over `czar`; async jobs live in `jobs_dir` (default `DATA_DIR/jobs`: RocksDB plus result
    /// files; one czar per jobs directory).
    pub fn open(
        czar: Arc<Czar>,
        limits: Limits,
        jobs_dir: Option<&std::path::Path>,
    ) -> Result<Arc<Tap>, String> {
        let dir = jobs_dir.map_or_else(|| czar.data_dir().join("jobs"), |d| d.to_path_buf());
        let jobs = uws::Jobs::open(&dir, limits.concurrent_jobs)?;
        let tap = Arc::new(Tap { czar, limits, jobs });
        uws::start_reaper(tap.clone());
        Ok(tap)
    }
}

/// The routes.
pub fn router(tap: Arc<Tap>) -> Router {
    let body_limit = tap.limits.max_upload_bytes + (1 << 20);
    Router::new()
        .route("/tap", get(vosi::root))
        .route("/tap/", get(vosi::root))
        .route("/tap/sync", get(sync).post(sync))
        .route("/tap/explain", get(explain).post(explain))
        .route("/tap/availability", get(vosi::availability))
        .route("/tap/capabilities", get(vosi::capabilities))
        .route("/tap/tables", get(vosi::tables))
        .route("/tap/tables/{name}", get(vosi::table))
        .route("/tap/examples", get(vosi::examples))
        .merge(uws::routes())
        .merge(crate::load::routes())
        .route("/scs/{table}", get(scs::cone).post(scs::cone))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::map_response(server_header))
        .with_state(tap)
}

/// Serves the TAP service on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, tap: Arc<Tap>) -> Result<(), String> {
    axum::serve(
        listener,
        router(tap).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await
    .map_err(|e| e.to_string())
}

async fn server_header(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::SERVER,
        header::HeaderValue::from_static(concat!("skyshard/", env!("CARGO_PKG_VERSION"))),
    );
    response
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such resource: the TAP service is at /tap",
    )
}

pub fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/x-votable+xml")],
        format::error_votable(message),
    )
        .into_response()
}

pub fn query_error(e: &QueryError) -> Response {
    error(status_of(e), &e.to_string())
}

fn status_of(e: &QueryError) -> StatusCode {
    match e {
        QueryError::Execution(m) if m.contains("unavailable") => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// A request's parameters, or the 400 error document that says why they cannot be read.
pub fn request_params(
    q: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Params, Response> {
    Params::parse(q.as_deref(), headers, body).map_err(|m| error(StatusCode::BAD_REQUEST, &m))
}

/// A checked query request (sync, or the parameters of an async job).
#[derive(Debug, Clone)]
pub struct QueryRequest {
    pub query: String,
    pub format: OutputFormat,
    pub maxrec: u64,
    pub run_id: Option<String>,
}

impl QueryRequest {
    pub fn from_params(p: &Params, limits: &Limits) -> Result<QueryRequest, String> {
        match p.get("LANG") {
            None => return Err("LANG is missing: this service speaks LANG=ADQL".into()),
            Some(l)
                if !matches!(
                    l.trim().to_uppercase().as_str(),
                    "ADQL" | "ADQL-2.0" | "ADQL-2.1"
                ) =>
            {
                return Err(format!(
                    "LANG={l} is not supported: this service speaks ADQL (2.0, 2.1)"
                ));
            }
            _ => {}
        }
        let query = p
            .get("QUERY")
            .filter(|q| !q.trim().is_empty())
            .ok_or("QUERY is missing")?;
        let format = match p.get("RESPONSEFORMAT").or_else(|| p.get("FORMAT")) {
            None => OutputFormat::VoTable,
            Some(f) if f.trim().is_empty() => OutputFormat::VoTable,
            Some(f) => OutputFormat::parse(f)?,
        };
        let maxrec = match p.get("MAXREC") {
            None => limits.default_maxrec,
            Some(m) => m
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("MAXREC={m} is not a non-negative integer"))?
                .min(limits.max_maxrec),
        };
        Ok(QueryRequest {
            query: query.to_string(),
            format,
            maxrec,
            run_id: p.get("RUNID").map(String::from),
        })
    }
}

/// INFO elements a result VOTable carries.
fn result_info(req: &QueryRequest) -> Vec<(&'static str, String)> {
    let mut info = vec![("QUERY", req.query.clone())];
    if let Some(r) = &req.run_id {
        info.push(("RUNID", r.clone()));
    }
    info
}

/// Plans and starts a query; returns a stream whose first batch (or first error) has been looked at, so a query
/// that fails at once is reported as an error rather than as a cut document.
pub async fn start_query(
    czar: &Czar,
    req: &QueryRequest,
    uploads: &[Arc<CatalogTable>],
) -> Result<datafusion::physical_plan::SendableRecordBatchStream, QueryError> {
    if req.maxrec == 0 {
        // Metadata only: plan, don't run.
        let (plan, _) = czar.plan(&req.query, uploads).await?;
        return Ok(Box::pin(
            datafusion::physical_plan::EmptyRecordBatchStream::new(plan.schema()),
        ));
    }
    let mut stream = czar.execute(&req.query, uploads).await?;
    let schema = stream.schema();
    let first = stream.next().await;
    if let Some(Err(e)) = first {
        return Err(QueryError::run(e));
    }
    let rest = futures::stream::iter(first).chain(stream);
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, rest)))
}

/// A response whose body is produced by `producer` writing into the channel it is given.
pub fn streamed_response(
    status: StatusCode,
    content_type: &str,
    extra: Vec<(header::HeaderName, String)>,
    producer: impl FnOnce(mpsc::Sender<std::io::Result<Bytes>>) + Send + 'static,
) -> Response {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    producer(tx);
    let body =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let mut response = (
        status,
        [(header::CONTENT_TYPE, content_type.to_string())],
        Body::from_stream(body),
    )
        .into_response();
    for (k, v) in extra {
        if let Ok(v) = v.parse() {
            response.headers_mut().insert(k, v);
        }
    }
    response
}

async fn sync(
    State(tap): State<Arc<Tap>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match request_params(q, &headers, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let req = match QueryRequest::from_params(&params, &tap.limits) {
        Ok(r) => r,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    let uploads = match upload::load_all(&params, &tap.limits).await {
        Ok(u) => u,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    let secs = tap.limits.sync_duration;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    let stream = match tokio::time::timeout_at(deadline, start_query(&tap.czar, &req, &uploads))
        .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return query_error(&e),
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "the query ran longer than the limit of {secs} s for sync queries and was stopped; run it as an async job"
                ),
            );
        }
    };
    let info = result_info(&req);
    let extra = match req.format {
        OutputFormat::Parquet => vec![(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"result.parquet\"".to_string(),
        )],
        _ => Vec::new(),
    };
    streamed_response(StatusCode::OK, req.format.mime(), extra, move |tx| {
        tokio::spawn(async move {
            let info: Vec<(&str, String)> = info.iter().map(|(k, v)| (*k, v.clone())).collect();
            let _ = stream_result(
                stream,
                req.format,
                req.maxrec,
                &info,
                tx,
                Some((deadline, secs)),
            )
            .await;
        });
    })
}

async fn explain(
    State(tap): State<Arc<Tap>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match request_params(q, &headers, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(query) = params.get("QUERY") else {
        return error(StatusCode::BAD_REQUEST, "QUERY is missing");
    };
    let uploads = match upload::load_all(&params, &tap.limits).await {
        Ok(u) => u,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    match tap.czar.explain(query, &uploads).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        Err(e) => query_error(&e),
    }
}

/// The base URL clients reached the service at (from the Host header).
pub fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}
