//! User tables, through the interface of CADC's youcat (the VOSI-tables 1.2 draft's user-managed tables), which
//! pyvo (`activate_features('cadc-tb-upload')`) and cadctap call unchanged:
//! - `PUT /tap/tables/S.T` creates a table from a VOSI table document (`text/xml`) or a VOTable (its FIELDs; any
//!   rows it holds are loaded too): 201;
//! - `POST /tap/load/S.T` adds rows: CSV, TSV, a FITS binary table, a VOTable or Parquet, streamed to disk,
//!   matched to the table's columns by name and type, and loaded with the table's rows as a new load of it, so a
//!   load either lands whole or changes nothing;
//! - `DELETE /tap/tables/S.T` drops it (its chunks on every worker too);
//! - `POST /tap/table-update` (`table`, `index`, `unique`) answers 303 to a UWS job that marks the column indexed
//!   in TAP_SCHEMA (after checking, for `unique=true`, that no value repeats);
//! - `GET`/`POST /tap/permissions/S.T` (cadctap's `permission`): who else may read it, as `public=true|false` and
//!   `r-group=ivo://...?GROUP` lines.
//!
//! Tables live in the schemas `user_NAME` (written by that user) and `group_NAME` (by the group's members), need the
//! `write:tables` scope, and count against the space's table quota (`skyshard user quota --tables-mb`, the
//! service's `--user-tables-mb` by default), checked on the finished load before it is published. A table whose
//! columns carry the UCDs `pos.eq.ra` and `pos.eq.dec` (doubles) and an integer `meta.id` column is partitioned like a
//! catalog, on the chunk map of the first catalog, so its joins with that catalog run chunk by chunk on the
//! workers; any other table is replicated to every worker. The declared columns are kept as an empty Parquet file
//! (`DATA_DIR/usertables/templates/S.T.parquet`) that every load is matched against.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use metastore::TableKind;
use tokio::io::AsyncWriteExt;

use crate::auth::{Caller, Client};
use crate::reply::error;
use crate::service::Tap;
use platform::access::{Grant, Reader, Space};

mod define;
mod index;
mod permissions;
mod quota;
mod rows;

use define::{Definition, check_columns, kind_of, vosi_definition, write_parquet};
pub(crate) use index::table_update;
pub(crate) use permissions::{permissions, set_permissions};
use quota::load_within_quota;
pub(crate) use quota::{space_bytes, space_quota};
use rows::{Upload, convert, receive, template_schema, upload_format};

/// Why a request about a user table was refused: the status and the message of its DALI error document.
type Refusal = (StatusCode, String);

fn refuse(r: Refusal) -> Response {
    error(r.0, &r.1)
}

fn bad(message: impl Into<String>) -> Refusal {
    (StatusCode::BAD_REQUEST, message.into())
}

/// A user table's name, checked: `(schema, table, space)`, lower-case.
fn table_name(name: &str) -> Result<(String, String, Space), Refusal> {
    let lower = name.trim().to_ascii_lowercase();
    let (schema, table) = lower.split_once('.').ok_or_else(|| {
        bad(format!(
            "{name}: name a table as SCHEMA.TABLE, in your schema user_NAME (or a group's, group_NAME)"
        ))
    })?;
    let Some(space) = Space::of(schema) else {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "{schema} is a catalog schema, loaded by the operator; user tables go in user_NAME or group_NAME"
            ),
        ));
    };
    let owner = match &space {
        Space::User(n) | Space::Group(n) => n,
    };
    if !metastore::accounts::valid_name(owner) || !identifier(table) {
        return Err(bad(format!(
            "{name}: a table name is a letter then letters, digits and _ (at most 64), in user_NAME or group_NAME"
        )));
    }
    Ok((schema.to_string(), table.to_string(), space))
}

/// An ADQL regular identifier.
fn identifier(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The caller may change tables of `space`: a named user with the `write:tables` scope whose space it is.
fn may_write(
    tap: &Tap,
    caller: &Caller,
    space: &Space,
    headers: &HeaderMap,
) -> Result<(), Response> {
    if tap.auth.is_none() {
        return Err(error(
            StatusCode::FORBIDDEN,
            "this service has no accounts (--auth none): user tables need a named user",
        ));
    }
    let Caller::User(identity) = caller else {
        return Err(crate::auth::unauthorized(
            headers,
            "user tables belong to named users: send a token or log in",
        ));
    };
    if !identity.may("write:tables") {
        return Err(error(
            StatusCode::FORBIDDEN,
            "your token lacks the write:tables scope",
        ));
    }
    if !Reader::of(caller).owns(space) {
        let whose = match space {
            Space::User(u) => format!("user {u}'s"),
            Space::Group(g) => format!("group {g}'s (you are not a member)"),
        };
        return Err(error(
            StatusCode::FORBIDDEN,
            &format!(
                "that schema is {whose}: you may write only in user_{} and your groups' schemas",
                identity.user
            ),
        ));
    }
    Ok(())
}

/// The caller may add rows to `table` (and index it): [`may_write`] in its space, or a member of a group it is
/// shared with for writing (`rw-group`).
fn may_add_rows(
    tap: &Tap,
    caller: &Caller,
    space: &Space,
    table: &str,
    headers: &HeaderMap,
) -> Result<(), Response> {
    let refused = match may_write(tap, caller, space, headers) {
        Ok(()) => return Ok(()),
        Err(r) => r,
    };
    if caller.may("write:tables") && tap.grants.may_add_rows(&Reader::of(caller), table) {
        return Ok(());
    }
    Err(refused)
}

/// What a request changes: a table itself (create, drop, share), or only its rows (load, index).
#[derive(Clone, Copy, PartialEq)]
enum Change {
    Table,
    Rows,
}

/// The table a changing request names, checked ([`table_name`]) with the caller's right to make the change
/// ([`may_write`], or for rows [`may_add_rows`]): its `schema.table` and space, or the refusal.
fn target(
    tap: &Tap,
    caller: &Caller,
    name: &str,
    headers: &HeaderMap,
    change: Change,
) -> Result<(String, Space), Response> {
    let (schema, table, space) = table_name(name).map_err(refuse)?;
    let qualified = format!("{schema}.{table}");
    match change {
        Change::Table => may_write(tap, caller, &space, headers)?,
        Change::Rows => may_add_rows(tap, caller, &space, &qualified, headers)?,
    }
    Ok((qualified, space))
}

/// Whether a table of that name is published (whoever may see it).
fn published(tap: &Tap, qualified: &str) -> bool {
    tap.czar
        .tables()
        .iter()
        .any(|t| t.record.qualified_name().eq_ignore_ascii_case(qualified))
}

fn template_path(data_dir: &Path, table: &str) -> PathBuf {
    data_dir
        .join("usertables")
        .join("templates")
        .join(format!("{table}.parquet"))
}

/// A scratch directory for one request under `DATA_DIR/incoming` (removed when dropped).
struct Scratch(PathBuf);

impl Scratch {
    fn new(tap: &Tap) -> Result<Scratch, Refusal> {
        let id = metastore::accounts::random_hex(8).map_err(unavailable)?;
        let dir = partitioner::layout::incoming_dir(tap.czar.data_dir()).join(format!("user-{id}"));
        std::fs::create_dir_all(&dir).map_err(unavailable)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unavailable(e: impl std::fmt::Display) -> Refusal {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the service cannot store that just now: {e}"),
    )
}

/// The table's record, if it exists and the caller may see it (others get the same 404 as for no table).
fn existing(tap: &Tap, caller: &Caller, table: &str) -> Option<Arc<czar::TableInfo>> {
    let reader = Reader::of(caller);
    tap.czar
        .tables()
        .into_iter()
        .find(|t| t.record.qualified_name().eq_ignore_ascii_case(table))
        .filter(|_| tap.grants.may_read(&reader, table))
}

/// One writer of user tables at a time (loads rewrite a table; the loader takes the data directory's lock).
fn writing(tap: &Tap) -> &tokio::sync::Mutex<()> {
    &tap.user_tables_lock
}

/// `PUT /tap/tables/S.T`.
pub(crate) async fn create(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (qualified, space) = match target(&tap, &caller, &name, &headers, Change::Table) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let _turn = writing(&tap).lock().await;
    if published(&tap, &qualified) {
        return error(
            StatusCode::CONFLICT,
            &format!("{qualified} exists: DELETE it first, or POST rows to /tap/load/{qualified}"),
        );
    }
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
    let definition = match definition.and_then(|d| check_columns(&d.schema).map(|_| d)) {
        Ok(d) => d,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    let scratch = match Scratch::new(&tap) {
        Ok(s) => s,
        Err(r) => return refuse(r),
    };
    let input = scratch.0.join("rows.parquet");
    if let Err(e) = write_parquet(&input, definition.schema.clone(), &definition.rows) {
        return refuse(unavailable(e));
    }
    create_table(
        &tap,
        &space,
        &qualified,
        definition.schema,
        definition.description,
        input,
    )
    .await
}

/// Creates a table of `schema` (its declared columns) with the rows of the Parquet file `input`: its template
/// kept, laid out by its UCDs, loaded within the space's quota. 201, or the refusal.
async fn create_table(
    tap: &Arc<Tap>,
    space: &Space,
    qualified: &str,
    schema: SchemaRef,
    description: Option<String>,
    input: PathBuf,
) -> Response {
    let template = template_path(tap.czar.data_dir(), qualified);
    let written = template
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .map_err(|e| e.to_string())
        .and_then(|_| write_parquet(&template, schema.clone(), &[]));
    if let Err(e) = written {
        return refuse(unavailable(e));
    }
    let (kind, chunk_map_of) = kind_of(&schema, tap);
    let mut options = loader::ingest::IngestOptions::new(qualified, kind);
    options.description = description;
    options.chunk_map_of = chunk_map_of;
    options.format = Some(loader::input::InputFormat::Parquet);
    match load_within_quota(tap, space, qualified, vec![input], options).await {
        Ok(loaded) => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "created {qualified} ({} columns, {}{})\n",
                schema.fields().len(),
                match loaded.report.record.kind {
                    TableKind::Director { .. } => "partitioned on its positions",
                    _ => "replicated",
                },
                if loaded.report.record.rows > 0 {
                    format!(", {} rows", loaded.report.record.rows)
                } else {
                    String::new()
                }
            ),
        )
            .into_response(),
        Err(r) => {
            let _ = std::fs::remove_file(&template);
            refuse(r)
        }
    }
}

/// Creates a table from a file (its columns and rows): a job's result, an uploaded file, a file of the user's space.
#[allow(clippy::too_many_arguments)]
async fn create_from_file(
    tap: &Arc<Tap>,
    space: &Space,
    qualified: &str,
    source: PathBuf,
    format: loader::input::InputFormat,
    description: Option<String>,
    scratch: &Scratch,
) -> Response {
    let dir = scratch.0.join("convert");
    let prepared = tokio::task::spawn_blocking(move || -> Result<(PathBuf, SchemaRef), String> {
        let prepared =
            loader::input::prepare(&[source], Some(format), &dir).map_err(|e| e.to_string())?;
        let file = std::fs::File::open(&prepared[0]).map_err(|e| e.to_string())?;
        let schema = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| e.to_string())?
            .schema()
            .clone();
        Ok((prepared[0].clone(), schema))
    })
    .await;
    let (input, schema) = match prepared {
        Ok(Ok(p)) => p,
        Ok(Err(m)) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("the rows cannot be read: {m}"),
            );
        }
        Err(e) => return refuse(unavailable(e)),
    };
    if let Err(m) = check_columns(&schema) {
        return error(StatusCode::BAD_REQUEST, &m);
    }
    create_table(tap, space, qualified, schema, description, input).await
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
        return crate::auth::unauthorized(
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
    let (qualified, space) = match target(&tap, &caller, &name, &headers, Change::Table) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let _turn = writing(&tap).lock().await;
    if published(&tap, &qualified) {
        return error(
            StatusCode::CONFLICT,
            &format!("{qualified} exists: delete it first"),
        );
    }
    let described = params
        .get("TABLE_DESC")
        .map(str::trim)
        .filter(|d| !d.is_empty());
    let scratch = match Scratch::new(&tap) {
        Ok(s) => s,
        Err(r) => return refuse(r),
    };
    let now = platform::jobs::iso(platform::jobs::now_ms());
    let job_id = params
        .get("JOBID")
        .map(str::trim)
        .filter(|j| !j.is_empty() && *j != "None");
    let (source, format, provenance) = if let Some(id) = job_id {
        let Some(job) = tap.jobs.get(id) else {
            return error(StatusCode::NOT_FOUND, &format!("no job {id}"));
        };
        if job.owner.as_deref() != Some(user.as_str()) {
            return error(StatusCode::FORBIDDEN, &format!("job {id} is not yours"));
        }
        let Some(result) = job
            .result
            .as_ref()
            .filter(|_| job.phase == platform::jobs::Phase::Completed)
        else {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "job {id} is {}: only a COMPLETED job's result can be saved",
                    job.phase.name()
                ),
            );
        };
        let format = match result.file.rsplit('.').next() {
            Some("vot") => loader::input::InputFormat::VoTable,
            Some("csv") => loader::input::InputFormat::Csv,
            Some("parquet") => loader::input::InputFormat::Parquet,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "a result in TSV cannot be saved: run the job with RESPONSEFORMAT votable, csv or parquet",
                );
            }
        };
        let query = job
            .params
            .iter()
            .find(|(k, _)| k == "query")
            .map_or("", |(_, q)| q.as_str());
        let provenance = format!("saved from job {id} on {now}; query: {query}");
        (tap.jobs.job_dir(id).join(&result.file), format, provenance)
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
            None | Some("") | Some("votable") | Some("format") => {
                loader::input::InputFormat::VoTable
            }
            Some("csv") => loader::input::InputFormat::Csv,
            Some("fits") => loader::input::InputFormat::Fits,
            Some("parquet") => loader::input::InputFormat::Parquet,
            Some(other) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("FORMAT={other}: use votable, csv, fits or parquet"),
                );
            }
        };
        let path = scratch.0.join("file");
        if let Err(e) = std::fs::write(&path, bytes) {
            return refuse(unavailable(e));
        }
        (path, format, format!("uploaded on {now}"))
    };
    let description = Some(match described {
        Some(d) => format!("{d} ({provenance})"),
        None => provenance,
    });
    let created = create_from_file(
        &tap,
        &space,
        &qualified,
        source,
        format,
        description,
        &scratch,
    )
    .await;
    if created.status() == StatusCode::CREATED {
        // astroquery expects 200.
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("created {qualified}\n"),
        )
            .into_response();
    }
    created
}

/// A file of the caller's space named by `source=/files/NAME/PATH`, and its format by its extension.
fn source_file(tap: &Tap, caller: &Caller, source: &str) -> Result<(PathBuf, Upload), Response> {
    let path = crate::files::FilePath::parse(source)
        .map_err(|m| error(StatusCode::BAD_REQUEST, &format!("source: {m}")))?;
    let member = path.owner.strip_prefix("group_").is_some_and(|g| {
        caller.user().is_some() && Reader::of(caller).groups.iter().any(|x| x == g)
    });
    if caller.user() != Some(path.owner.as_str()) && !member {
        return Err(error(
            StatusCode::FORBIDDEN,
            &format!("source {source}: not your file space"),
        ));
    }
    let local = path.local(tap);
    if !local.is_file() {
        return Err(error(
            StatusCode::NOT_FOUND,
            &format!("source {source}: no such file"),
        ));
    }
    let ext = local
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let format = match ext.as_str() {
        "csv" => Upload::Csv(b','),
        "tsv" | "tab" => Upload::Csv(b'\t'),
        "fits" | "fit" | "fts" => Upload::Fits,
        "vot" | "votable" | "xml" => Upload::VoTable,
        "parquet" | "pq" => Upload::Parquet,
        _ => {
            return Err(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("source {source}: name a .parquet, .csv, .tsv, .fits or .vot file"),
            ));
        }
    };
    Ok((local, format))
}

/// `POST /tap/load/S.T`: rows in the body, or `?source=/files/NAME/PATH`, a file of the caller's space (which also
/// creates the table from the file's columns if it does not exist yet).
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
    let (qualified, space) = match target(&tap, &caller, &name, &headers, Change::Rows) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let from_file = match source
        .as_deref()
        .map(|s| source_file(&tap, &caller, s))
        .transpose()
    {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(format) = from_file
        .as_ref()
        .map(|f| f.1)
        .or_else(|| upload_format(mime))
    else {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!(
                "Content-Type {mime:?}: load text/csv, text/tab-separated-values, application/fits, \
                 application/x-votable+xml or application/vnd.apache.parquet"
            ),
        );
    };
    let _turn = writing(&tap).lock().await;
    let Some(info) = existing(&tap, &caller, &qualified) else {
        if let (Some((file, format)), Some(source)) = (from_file, &source) {
            if published(&tap, &qualified) {
                return error(
                    StatusCode::CONFLICT,
                    &format!("{qualified} exists and is not yours to load"),
                );
            }
            let input = match format {
                Upload::Csv(b'\t') => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "a table is created from a .parquet, .csv, .fits or .vot file; load TSV into a table \
                         created first",
                    );
                }
                Upload::Csv(_) => loader::input::InputFormat::Csv,
                Upload::Fits => loader::input::InputFormat::Fits,
                Upload::VoTable => loader::input::InputFormat::VoTable,
                Upload::Parquet => loader::input::InputFormat::Parquet,
            };
            let scratch = match Scratch::new(&tap) {
                Ok(s) => s,
                Err(r) => return refuse(r),
            };
            let now = platform::jobs::iso(platform::jobs::now_ms());
            let description = Some(format!("registered from {source} on {now}"));
            return create_from_file(&tap, &space, &qualified, file, input, description, &scratch)
                .await;
        }
        return error(
            StatusCode::NOT_FOUND,
            &format!("no table {qualified}: create it first (PUT /tap/tables/{qualified})"),
        );
    };
    let target = match template_schema(&tap, &qualified) {
        Ok(s) => s,
        Err(r) => return refuse(r),
    };
    let scratch = match Scratch::new(&tap) {
        Ok(s) => s,
        Err(r) => return refuse(r),
    };
    let quota = space_quota(&tap, &space);
    let used = space_bytes(&tap, &space, None);
    let upload = match from_file {
        Some((file, _)) => file,
        None => {
            let upload = scratch.0.join("upload");
            if let Err(r) = receive(body, &upload, quota.saturating_sub(used)).await {
                return refuse(r);
            }
            upload
        }
    };
    let rows_path = scratch.0.join("rows.parquet");
    let (up, t, rp, sc) = (
        upload.clone(),
        target.clone(),
        rows_path.clone(),
        scratch.0.join("convert"),
    );
    let converted = tokio::task::spawn_blocking(move || convert(&up, format, &t, &rp, &sc)).await;
    let rows = match converted {
        Ok(Ok(rows)) => rows,
        Ok(Err(m)) => return error(StatusCode::BAD_REQUEST, &format!("{m}; nothing was loaded")),
        Err(e) => return refuse(unavailable(e)),
    };
    let kind = match &info.record.kind {
        TableKind::Director { ra, dec, id } => loader::ingest::LoadKind::Director {
            ra: ra.clone(),
            dec: dec.clone(),
            id: id.clone(),
        },
        _ => loader::ingest::LoadKind::Replicated,
    };
    let mut options = loader::ingest::IngestOptions::new(&qualified, kind);
    options.append = true;
    options.format = Some(loader::input::InputFormat::Parquet);
    options.chunk_map_of = kind_of(&target, &tap).1;
    match load_within_quota(&tap, &space, &qualified, vec![rows_path], options).await {
        Ok(loaded) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "loaded {rows} rows into {qualified}; it has {} rows\n",
                loaded.report.record.rows
            ),
        )
            .into_response(),
        Err(r) => refuse(r),
    }
}

/// `DELETE /tap/tables/S.T`.
pub(crate) async fn remove(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let (qualified, _) = match target(&tap, &caller, &name, &headers, Change::Table) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let _turn = writing(&tap).lock().await;
    if existing(&tap, &caller, &qualified).is_none() {
        return error(StatusCode::NOT_FOUND, &format!("no table {qualified}"));
    }
    match drop_user_table(&tap, &qualified).await {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("dropped {qualified}\n"),
        )
            .into_response(),
        Err(r) => refuse(r),
    }
}

/// Drops a user table: its record and files, its chunks on every worker, its template and grant.
pub(crate) async fn drop_user_table(tap: &Tap, qualified: &str) -> Result<(), Refusal> {
    let data_dir = tap.czar.data_dir().to_path_buf();
    let name = qualified.to_string();
    tokio::task::spawn_blocking(move || loader::ingest::drop_table(&data_dir, &name))
        .await
        .map_err(unavailable)?
        .map_err(|e| bad(e.to_string()))?;
    // No load is kept: every worker drops every load of the table.
    czar::ship::drop_old_loads(&tap.czar.cluster(), qualified, "").await;
    let _ = std::fs::remove_file(template_path(tap.czar.data_dir(), qualified));
    let _ = tap.grants.set(qualified, Grant::default());
    tap.czar.refresh().map_err(unavailable)
}

/// `DELETE /api/v1/users/NAME` (the admin scope): a user and everything of theirs: their tables (on every worker
/// too), their file space, their jobs and results, their account and tokens. Answers what went, as JSON.
pub(crate) async fn delete_user(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let Some(auth) = &tap.auth else {
        return error(
            StatusCode::NOT_FOUND,
            "this service has no accounts (--auth none)",
        );
    };
    if !caller.may("admin") {
        return error(
            StatusCode::FORBIDDEN,
            "deleting a user needs a token with the admin scope",
        );
    }
    if !metastore::accounts::valid_name(&name) || auth.accounts.user(&name).ok().flatten().is_none()
    {
        return error(StatusCode::NOT_FOUND, &format!("no user {name}"));
    }
    let _turn = writing(&tap).lock().await;
    let space = Space::User(name.clone());
    let mut tables = Vec::new();
    for t in tap.czar.tables() {
        if Space::of(&t.record.schema).as_ref() == Some(&space) {
            let qualified = t.record.qualified_name();
            if let Err(r) = drop_user_table(&tap, &qualified).await {
                return refuse(r);
            }
            tables.push(qualified);
        }
    }
    let files = tap.czar.data_dir().join("files").join(&name);
    let file_bytes = metastore::files::size_of(&files);
    {
        let _space = tap.space_lock(&name).lock_owned().await;
        if let Err(e) = tokio::fs::remove_dir_all(&files).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return refuse(unavailable(e));
        }
    }
    let jobs: Vec<String> = tap
        .jobs
        .list()
        .into_iter()
        .filter(|j| j.owner.as_deref() == Some(name.as_str()))
        .map(|j| j.id)
        .collect();
    for id in &jobs {
        tap.jobs.delete(id);
    }
    let removed = auth
        .accounts
        .writer()
        .map_err(|e| e.to_string())
        .and_then(|w| w.remove_user(&name).map_err(|e| e.to_string()));
    if let Err(e) = removed {
        return refuse(unavailable(e));
    }
    let body = serde_json::json!({
        "user": name,
        "tables_dropped": tables,
        "file_bytes_removed": file_bytes,
        "jobs_deleted": jobs.len(),
        "account": "removed, with every token",
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_whose_a_table_is() {
        assert_eq!(
            table_name("user_ada.T1").unwrap().2,
            Space::User("ada".into())
        );
        assert_eq!(
            table_name("group_optics.t").unwrap().2,
            Space::Group("optics".into())
        );
        assert_eq!(
            table_name("sky.object").unwrap_err().0,
            StatusCode::FORBIDDEN
        );
        for bad in [
            "user_ada",
            "user_ada.1t",
            "user_.t",
            "user_ada.t-x",
            "user_Ada!.t",
        ] {
            assert!(table_name(bad).is_err(), "{bad}");
        }
    }
}
