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
//! Who may see a job is decided on the matched route, by the `OwnedJob` extractor ([`crate::extract`]).
//!
//! Files: [`assets`] (the page's files, compiled in), [`api`] (check, tables, jobs and their progress),
//! [`results`] (pages of a stored result, and the result in another format).

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use crate::service::Tap;

mod api;
mod assets;
mod results;

use api::{check, job, list, progress, tables};
pub use assets::{ASSETS, Asset};
use assets::{asset, index, prepared, to_portal};
use results::{result, rows};

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
