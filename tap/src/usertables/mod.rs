//! User tables over HTTP, through the interface of CADC's youcat (the VOSI-tables 1.2 draft's user-managed tables),
//! which pyvo (`activate_features('cadc-tb-upload')`) and cadctap call unchanged:
//! - `PUT /tap/tables/S.T` creates a table from a VOSI table document (`text/xml`) or a VOTable (its FIELDs; any
//!   rows it holds are loaded too): 201;
//! - `POST /tap/load/S.T` adds rows: CSV, TSV, a FITS binary table, a VOTable or Parquet, received to disk first
//!   (within the space left and the body deadline, before any lock is taken), then loaded with the table's rows as
//!   a new load of it, so a load either lands whole or changes nothing; `?source=/files/NAME/PATH` loads (or
//!   creates the table from) a file of the caller's space;
//! - `DELETE /tap/tables/S.T` drops it (its chunks on every worker too);
//! - `POST /tap/table-update` (`table`, `index`, `unique`) answers 303 to a UWS job that marks the column indexed
//!   in TAP_SCHEMA (after checking, for `unique=true`, that no value repeats);
//! - `GET`/`POST /tap/permissions/S.T` (cadctap's `permission`): who else may read it, as `public=true|false` and
//!   `r-group=ivo://...?GROUP` lines;
//! - `POST /tap/Upload` (astroquery's): a job's result or a file saved as a table;
//! - `DELETE /api/v1/users/NAME` (admin): a user and everything of theirs.
//!
//! The rules (names, rights, quotas, layout, the load itself) are [`platform::usertables`]'; here requests are
//! read and answered.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use metastore::TableKind;
use platform::access::{Change, Grant, Space};
use platform::error::PlatformError;
use platform::usertables::RowsFormat;
use tokio::io::AsyncWriteExt;

use crate::auth::Caller;
use crate::reply::{error, refused};
use crate::service::Tap;

mod define;
mod index;
mod permissions;
mod rows;

use define::{Definition, vosi_definition};
pub(crate) use index::table_update;
pub(crate) use permissions::{permissions, set_permissions};
use rows::{receive, upload_format};

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `PUT /tap/tables/S.T`.
pub(crate) async fn create(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let target = match tap.user_table(&caller, &name, Change::Table) {
        Ok(t) => t,
        Err(e) => return refused(&headers, &e),
    };
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let definition = if mime.contains("votable") {
        votable::VoTableReader::new(std::io::Cursor::new(&body[..]))
            .and_then(|r| r.read_all(65_536))
            .map(|(schema, rows)| Definition {
                schema,
                description: None,
                rows,
            })
            .map_err(|e| format!("the VOTable: {e}"))
    } else if mime.is_empty() || mime.contains("xml") {
        vosi_definition(&body)
    } else {
        Err(format!(
            "Content-Type {mime}: define a table with a VOSI table document (text/xml) or a VOTable \
             (application/x-votable+xml)"
        ))
    };
    let definition = match definition {
        Ok(d) => d,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    let columns = definition.schema.fields().len();
    match tap.platform.create_user_table(&target, definition).await {
        Ok(report) => text(
            StatusCode::CREATED,
            format!(
                "created {} ({columns} columns, {}{})\n",
                target.qualified,
                layout(&report.record.kind),
                if report.record.rows > 0 {
                    format!(", {} rows", report.record.rows)
                } else {
                    String::new()
                }
            ),
        ),
        Err(e) => refused(&headers, &e),
    }
}

fn layout(kind: &TableKind) -> &'static str {
    match kind {
        TableKind::Director { .. } => "partitioned on its positions",
        _ => "replicated",
    }
}

/// `POST /tap/Upload` (the Gaia archive's, which astroquery's `TapPlus(..., upload_context="Upload")` calls):
/// `JOBID` and `TABLE_NAME` save a finished job's result as the table `user_NAME.TABLE_NAME`; without a job, the
/// `FILE` part (a VOTable, or `FORMAT` csv, fits or parquet) becomes the table. `TABLE_DESC` describes it; the
/// description also says where the rows came from (the job, its query, the date).
pub(crate) async fn upload(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    params: crate::params::Params,
) -> Response {
    let Some(user) = caller.user().map(str::to_string) else {
        return crate::reply::unauthorized(
            &headers,
            "saving a table needs a named user: log in first",
        );
    };
    let Some(table) = params
        .get("TABLE_NAME")
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
    else {
        return error(StatusCode::BAD_REQUEST, "TABLE_NAME is missing");
    };
    let name = if table.contains('.') {
        table
    } else {
        format!("user_{user}.{table}")
    };
    let target = match tap.user_table(&caller, &name, Change::Table) {
        Ok(t) => t,
        Err(e) => return refused(&headers, &e),
    };
    if tap.published(&target.qualified) {
        return error(
            StatusCode::CONFLICT,
            &format!("{} exists: delete it first", target.qualified),
        );
    }
    let described = params
        .get("TABLE_DESC")
        .map(str::trim)
        .filter(|d| !d.is_empty());
    let scratch = match tap.scratch() {
        Ok(s) => s,
        Err(e) => return refused(&headers, &e),
    };
    let job_id = params
        .get("JOBID")
        .map(str::trim)
        .filter(|j| !j.is_empty() && *j != "None");
    let (source, format, provenance) = if let Some(id) = job_id {
        match tap.job_result_source(&caller, id) {
            Ok(s) => s,
            Err(e) => return refused(&headers, &e),
        }
    } else {
        let Some((_, bytes)) = params
            .parts
            .iter()
            .find(|(n, b)| n.eq_ignore_ascii_case("FILE") && !b.is_empty())
        else {
            return error(
                StatusCode::BAD_REQUEST,
                "send JOBID (a finished job of yours) or a FILE to make a table of",
            );
        };
        let format = match params
            .get("FORMAT")
            .map(|f| f.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("") | Some("votable") | Some("format") => RowsFormat::VoTable,
            Some("csv") => RowsFormat::Csv(b','),
            Some("fits") => RowsFormat::Fits,
            Some("parquet") => RowsFormat::Parquet,
            Some(other) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("FORMAT={other}: use votable, csv, fits or parquet"),
                );
            }
        };
        let path = scratch.path().join("file");
        if let Err(e) = std::fs::write(&path, bytes) {
            return refused(&headers, &PlatformError::unavailable(e));
        }
        let now = platform::jobs::iso(platform::jobs::now_ms());
        (path, format, format!("uploaded on {now}"))
    };
    let description = Some(match described {
        Some(d) => format!("{d} ({provenance})"),
        None => provenance,
    });
    match tap
        .platform
        .create_user_table_from_file(&target, source, format, description)
        .await
    {
        // astroquery expects 200.
        Ok(_) => text(StatusCode::OK, format!("created {}\n", target.qualified)),
        Err(e) => refused(&headers, &e),
    }
}

/// `POST /tap/load/S.T`: rows in the body, or `?source=/files/NAME/PATH`, a file of the caller's space (which also
/// creates the table from the file's columns if it does not exist yet). The body is received before the platform
/// takes its user-tables lock, so one slow client holds up nobody else's tables.
pub(crate) async fn load(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    UrlPath(name): UrlPath<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let source = query
        .as_deref()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("source"))
        .map(|(_, v)| v);
    let target = match tap.user_table(&caller, &name, Change::Rows) {
        Ok(t) => t,
        Err(e) => return refused(&headers, &e),
    };
    let scratch = match tap.scratch() {
        Ok(s) => s,
        Err(e) => return refused(&headers, &e),
    };
    let (file, format) = match &source {
        Some(source) => match tap.file_source(&caller, source) {
            Ok(f) => f,
            Err(e) => return refused(&headers, &e),
        },
        None => {
            let mime = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let Some(format) = upload_format(mime) else {
                return error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    &format!(
                        "Content-Type {mime:?}: load text/csv, text/tab-separated-values, application/fits, \
                         application/x-votable+xml or application/vnd.apache.parquet"
                    ),
                );
            };
            let upload = scratch.path().join("upload");
            let left = tap.table_space_left(&target.space);
            let deadline = std::time::Duration::from_secs(tap.limits.body_timeout.max(1));
            if let Err(e) = receive(body, &upload, left, deadline).await {
                return refused(&headers, &e);
            }
            (upload, format)
        }
    };
    match tap
        .platform
        .load_rows(&caller, &target, &file, format, source.as_deref())
        .await
    {
        Ok(loaded) if loaded.created => text(
            StatusCode::CREATED,
            format!(
                "created {} ({} columns, {}, {} rows)\n",
                target.qualified,
                loaded.report.record.columns.len(),
                layout(&loaded.report.record.kind),
                loaded.report.record.rows
            ),
        ),
        Ok(loaded) => text(
            StatusCode::OK,
            format!(
                "loaded {} rows into {}; it has {} rows\n",
                loaded.added, target.qualified, loaded.report.record.rows
            ),
        ),
        Err(e) => refused(&headers, &e),
    }
}

/// `DELETE /tap/tables/S.T`.
pub(crate) async fn remove(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let result = match tap.user_table(&caller, &name, Change::Table) {
        Ok(target) => tap
            .platform
            .drop_user_table(&caller, &target)
            .await
            .map(|()| target),
        Err(e) => Err(e),
    };
    match result {
        Ok(target) => text(StatusCode::OK, format!("dropped {}\n", target.qualified)),
        Err(e) => refused(&headers, &e),
    }
}

/// `DELETE /api/v1/users/NAME` (the admin scope): a user and everything of theirs: their tables (on every worker
/// too), their file space, their jobs and results, their account and tokens. Answers what went, as JSON.
pub(crate) async fn delete_user(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    match tap.platform.delete_user(&caller, &name).await {
        Ok(deleted) => {
            let body = serde_json::json!({
                "user": name,
                "tables_dropped": deleted.tables,
                "file_bytes_removed": deleted.file_bytes,
                "jobs_deleted": deleted.jobs,
                "account": "removed, with every token",
            });
            (
                [(header::CONTENT_TYPE, "application/json")],
                format!("{body}\n"),
            )
                .into_response()
        }
        Err(e) => refused(&headers, &e),
    }
}
