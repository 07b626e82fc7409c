//! The czar's HTTP service: the first slice of IVOA TAP 1.1.
//!
//! - `GET|POST /tap/sync`: `LANG=ADQL` (also `ADQL-2.0`, `ADQL-2.1`), `QUERY`, `RESPONSEFORMAT` or `FORMAT`
//!   (`votable` / `application/x-votable+xml` (default), `csv` / `text/csv`, `tsv` / `text/tab-separated-values`),
//!   `MAXREC` (default [`DEFAULT_MAXREC`], capped at [`MAX_MAXREC`]; a result cut there ends with `QUERY_STATUS` =
//!   `OVERFLOW`). Parameter names are case-insensitive; unknown ones (pyvo's `REQUEST`) are ignored.
//! - `GET /tap/availability`: VOSI availability (`available` false when no worker answers).
//! - `GET|POST /tap/explain` (skyshard's own): the distributed plan of `QUERY`, as text.
//!
//! Every error is a DALI error VOTable (`QUERY_STATUS` = `ERROR`) with a 4xx status, or 503 when chunks are
//! unavailable.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::TryStreamExt;

use crate::format;
use crate::{Czar, QueryError};

pub const DEFAULT_MAXREC: usize = 100_000;
pub const MAX_MAXREC: usize = 10_000_000;

/// The routes, over a shared czar.
pub fn router(czar: Arc<Czar>) -> Router {
    Router::new()
        .route("/tap/sync", get(sync).post(sync))
        .route("/tap/explain", get(explain).post(explain))
        .route("/tap/availability", get(availability))
        .with_state(czar)
}

/// Serves `router` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, czar: Arc<Czar>) -> std::io::Result<()> {
    axum::serve(listener, router(czar)).await
}

/// Request parameters from the query string and an urlencoded body, names upper-cased.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<String>, headers: &HeaderMap, body: &Bytes) -> Params {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut add = |text: &str| {
            for (k, v) in form_urlencoded(text) {
                pairs.push((k.to_uppercase(), v));
            }
        };
        if let Some(q) = query {
            add(&q);
        }
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form && !body.is_empty() {
            add(&String::from_utf8_lossy(body));
        }
        Params(pairs)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Decodes `a=b&c=d` (`+` is a space, `%XX` a byte).
fn form_urlencoded(text: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    match std::str::from_utf8(&bytes[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/x-votable+xml")],
        format::error_votable(message),
    )
        .into_response()
}

fn query_error(e: QueryError) -> Response {
    match &e {
        QueryError::Execution(m) if m.contains("unavailable") => {
            error(StatusCode::SERVICE_UNAVAILABLE, m)
        }
        _ => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

#[derive(Clone, Copy)]
enum Format {
    VoTable,
    Csv,
    Tsv,
}

/// The checked parameters of a query request.
fn query_params(p: &Params) -> Result<(String, Format, usize), Response> {
    match p.get("LANG") {
        None => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "LANG is missing: this service speaks LANG=ADQL",
            ));
        }
        Some(l) if !matches!(l.to_uppercase().as_str(), "ADQL" | "ADQL-2.0" | "ADQL-2.1") => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &format!("LANG={l} is not supported: this service speaks ADQL (2.0, 2.1)"),
            ));
        }
        _ => {}
    }
    let query = p
        .get("QUERY")
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "QUERY is missing"))?;
    let format = match p
        .get("RESPONSEFORMAT")
        .or_else(|| p.get("FORMAT"))
        .map(|f| f.to_lowercase())
    {
        None => Format::VoTable,
        Some(f) => match f.split(';').next().unwrap_or("").trim() {
            "votable" | "application/x-votable+xml" | "text/xml" | "votable/td" => Format::VoTable,
            "csv" | "text/csv" => Format::Csv,
            "tsv" | "text/tab-separated-values" => Format::Tsv,
            other => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    &format!("RESPONSEFORMAT {other} is not supported (votable, csv, tsv)"),
                ));
            }
        },
    };
    let maxrec = match p.get("MAXREC") {
        None => DEFAULT_MAXREC,
        Some(m) => m
            .trim()
            .parse::<usize>()
            .map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    &format!("MAXREC={m} is not a non-negative integer"),
                )
            })?
            .min(MAX_MAXREC),
    };
    Ok((query.to_string(), format, maxrec))
}

async fn sync(
    State(czar): State<Arc<Czar>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = Params::parse(q, &headers, &body);
    let (query, format, maxrec) = match query_params(&params) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut stream = match czar.execute(&query).await {
        Ok(s) => s,
        Err(e) => return query_error(e),
    };
    let schema = stream.schema();
    let mut batches = Vec::new();
    let mut rows = 0;
    let mut overflow = false;
    loop {
        match stream.try_next().await {
            Ok(Some(batch)) => {
                if rows + batch.num_rows() > maxrec {
                    batches.push(batch.slice(0, maxrec - rows));
                    overflow = true;
                    break;
                }
                rows += batch.num_rows();
                batches.push(batch);
            }
            Ok(None) => break,
            Err(e) => return query_error(QueryError::run(e)),
        }
    }
    drop(stream);
    let mut out = Vec::new();
    let (content_type, written) = match format {
        Format::VoTable => (
            "application/x-votable+xml",
            format::write_votable(&mut out, &schema, &batches, overflow),
        ),
        Format::Csv => ("text/csv", format::write_csv(&mut out, &schema, &batches)),
        Format::Tsv => (
            "text/tab-separated-values",
            format::write_tsv(&mut out, &schema, &batches),
        ),
    };
    if let Err(e) = written {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("writing the result failed: {e}"),
        );
    }
    ([(header::CONTENT_TYPE, content_type)], out).into_response()
}

async fn explain(
    State(czar): State<Arc<Czar>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = Params::parse(q, &headers, &body);
    let Some(query) = params.get("QUERY") else {
        return error(StatusCode::BAD_REQUEST, "QUERY is missing");
    };
    match czar.explain(query).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        Err(e) => query_error(e),
    }
}

async fn availability(State(czar): State<Arc<Czar>>) -> Response {
    let mut up = 0;
    for w in &czar.cluster.workers {
        let mut client = w.client();
        let ask = client.do_action(arrow_flight::Action {
            r#type: protocol::ACTION_HEALTH.into(),
            body: Default::default(),
        });
        if let Ok(Ok(_)) = tokio::time::timeout(std::time::Duration::from_secs(2), ask).await {
            up += 1;
        }
    }
    let total = czar.cluster.workers.len();
    let available = up > 0;
    let note = format!("{up} of {total} workers answer");
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<vosi:availability xmlns:vosi=\"http://www.ivoa.net/xml/VOSIAvailability/v1.0\">\n  <vosi:available>{available}</vosi:available>\n  <vosi:note>{note}</vosi:note>\n</vosi:availability>\n"
    );
    ([(header::CONTENT_TYPE, "text/xml")], body).into_response()
}
