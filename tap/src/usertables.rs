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

use crate::access::{Grant, Reader, Space};
use crate::auth::{Caller, Client};
use crate::reply::error;
use crate::service::Tap;

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

// ---------------------------------------------------------------------------------------------------------------
// Table definitions.

/// The declared columns of a table (Arrow fields with `description`, `unit`, `ucd` metadata) and its description.
#[derive(Debug)]
struct Definition {
    schema: SchemaRef,
    description: Option<String>,
    /// Rows that came with the definition (a VOTable with a DATA part).
    rows: Vec<RecordBatch>,
}

/// The type of a column as a VOSI document names it (`vs:TAPType` or `vs:VOTableType`).
fn column_type(name: &str, declared: &str, arraysize: Option<&str>) -> Result<DataType, String> {
    let t = declared.trim().to_ascii_lowercase();
    let text = matches!(
        t.as_str(),
        "char" | "varchar" | "unicodechar" | "clob" | "timestamp"
    );
    if arraysize.is_some() && !text {
        return Err(format!(
            "column {name}: arrays ({declared} with arraysize) are not supported in user tables"
        ));
    }
    Ok(match t.as_str() {
        "boolean" => DataType::Boolean,
        "unsignedbyte" | "smallint" | "short" => DataType::Int16,
        "integer" | "int" => DataType::Int32,
        "bigint" | "long" => DataType::Int64,
        "real" | "float" => DataType::Float32,
        "double" => DataType::Float64,
        _ if text => DataType::Utf8,
        _ => {
            return Err(format!(
                "column {name}: type {declared} is not supported in user tables (use BOOLEAN, SMALLINT, INTEGER, \
                 BIGINT, REAL, DOUBLE, CHAR, VARCHAR, TIMESTAMP, or their VOTable names)"
            ));
        }
    })
}

/// Parses a VOSI `table` document.
fn vosi_definition(xml: &[u8]) -> Result<Definition, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut path: Vec<String> = Vec::new();
    let mut fields: Vec<Field> = Vec::new();
    let mut description = None;
    // The column being read: name, description, unit, ucd, datatype, arraysize, xtype.
    #[derive(Default)]
    struct Column {
        name: String,
        description: String,
        unit: String,
        ucd: String,
        datatype: String,
        arraysize: Option<String>,
    }
    let mut column: Option<Column> = None;
    let mut text = String::new();
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("the table document is not well-formed XML: {e}"))?;
        match event {
            Event::Start(e) => {
                let local = String::from_utf8_lossy(e.local_name().as_ref()).to_string();
                if local == "column" && path.len() == 1 {
                    column = Some(Column::default());
                }
                if local == "dataType"
                    && let Some(c) = column.as_mut()
                {
                    for a in e.attributes().flatten() {
                        if a.key.local_name().as_ref() == b"arraysize" {
                            c.arraysize = Some(String::from_utf8_lossy(&a.value).to_string());
                        }
                    }
                }
                path.push(local);
                text.clear();
            }
            Event::Text(t) => {
                text.push_str(
                    &t.unescape()
                        .map_err(|e| format!("the table document: {e}"))?,
                );
            }
            Event::CData(t) => text.push_str(&String::from_utf8_lossy(&t)),
            Event::End(_) => {
                let local = path.pop().unwrap_or_default();
                let value = text.trim().to_string();
                match (path.len(), local.as_str(), column.as_mut()) {
                    (1, "description", None) => description = Some(value).filter(|v| !v.is_empty()),
                    (2, "name", Some(c)) => c.name = value,
                    (2, "description", Some(c)) => c.description = value,
                    (2, "unit", Some(c)) => c.unit = value,
                    (2, "ucd", Some(c)) => c.ucd = value,
                    (2, "dataType", Some(c)) => c.datatype = value,
                    (1, "column", Some(_)) => {
                        let c = column.take().expect("a column is open");
                        let dt = column_type(&c.name, &c.datatype, c.arraysize.as_deref())?;
                        let mut meta = std::collections::HashMap::new();
                        for (k, v) in [
                            ("description", c.description),
                            ("unit", c.unit),
                            ("ucd", c.ucd),
                        ] {
                            if !v.is_empty() {
                                meta.insert(k.to_string(), v);
                            }
                        }
                        fields.push(Field::new(c.name, dt, true).with_metadata(meta));
                    }
                    _ => {}
                }
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if fields.is_empty() {
        return Err(
            "the table document declares no column (a vosi:table with column elements)".into(),
        );
    }
    Ok(Definition {
        schema: Arc::new(Schema::new(fields)),
        description,
        rows: Vec::new(),
    })
}

/// Checks the declared columns: plain, distinct names.
fn check_columns(schema: &Schema) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for f in schema.fields() {
        if !identifier(f.name()) {
            return Err(format!(
                "column {:?}: a column name is a letter then letters, digits and _ (at most 64)",
                f.name()
            ));
        }
        if !seen.insert(f.name().to_ascii_lowercase()) {
            return Err(format!("column {} is declared twice", f.name()));
        }
    }
    if schema.fields().len() > 1000 {
        return Err("a user table has at most 1000 columns".into());
    }
    Ok(())
}

/// How a table with these columns is laid out: partitioned on positions and an id (by their UCDs), or replicated.
fn kind_of(schema: &Schema, tap: &Tap) -> (loader::ingest::LoadKind, Option<String>) {
    let ucd = |f: &Field| {
        f.metadata()
            .get("ucd")
            .map(|u| u.to_ascii_lowercase())
            .unwrap_or_default()
    };
    let pick = |want: &str, ok: &dyn Fn(&DataType) -> bool| {
        let matching: Vec<&Arc<Field>> = schema
            .fields()
            .iter()
            .filter(|f| ucd(f).split(';').any(|w| w == want) && ok(f.data_type()))
            .collect();
        matching
            .iter()
            .find(|f| ucd(f).contains("meta.main"))
            .or(matching.first())
            .map(|f| f.name().to_lowercase())
    };
    let double = |t: &DataType| *t == DataType::Float64;
    let integer = |t: &DataType| matches!(t, DataType::Int16 | DataType::Int32 | DataType::Int64);
    match (
        pick("pos.eq.ra", &double),
        pick("pos.eq.dec", &double),
        pick("meta.id", &integer),
    ) {
        (Some(ra), Some(dec), Some(id)) => {
            // The chunk map of the first catalog, so joins with it run chunk by chunk.
            let catalog = tap
                .czar
                .tables()
                .iter()
                .filter(|t| Space::of(&t.record.schema).is_none())
                .find(|t| {
                    matches!(t.record.kind, TableKind::Director { .. })
                        && !t.record.chunks.is_empty()
                })
                .map(|t| t.record.qualified_name());
            (loader::ingest::LoadKind::Director { ra, dec, id }, catalog)
        }
        _ => (loader::ingest::LoadKind::Replicated, None),
    }
}

fn write_parquet(path: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut w =
        parquet::arrow::ArrowWriter::try_new(file, schema, None).map_err(|e| e.to_string())?;
    for b in batches {
        w.write(b).map_err(|e| e.to_string())?;
    }
    w.close().map_err(|e| e.to_string())?;
    Ok(())
}

/// One writer of user tables at a time (loads rewrite a table; the loader takes the data directory's lock).
fn writing(tap: &Tap) -> &tokio::sync::Mutex<()> {
    &tap.user_tables_lock
}

/// `PUT /tap/tables/S.T`.
pub(crate) async fn create(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    Extension(client): Extension<Client>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (schema, table, space) = match table_name(&name) {
        Ok(n) => n,
        Err(r) => return refuse(r),
    };
    if let Err(r) = may_write(&tap, &caller, &space, &headers) {
        return r;
    }
    let qualified = format!("{schema}.{table}");
    let _turn = writing(&tap).lock().await;
    if tap
        .czar
        .tables()
        .iter()
        .any(|t| t.record.qualified_name().eq_ignore_ascii_case(&qualified))
    {
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
        &client,
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
    client: &Client,
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
    let check = quota_check(tap, client, space, qualified);
    match crate::admin::load_and_ship(tap, vec![input], options, Some(check)).await {
        Ok((report, _)) => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "created {qualified} ({} columns, {}{})\n",
                schema.fields().len(),
                match report.record.kind {
                    TableKind::Director { .. } => "partitioned on its positions",
                    _ => "replicated",
                },
                if report.record.rows > 0 {
                    format!(", {} rows", report.record.rows)
                } else {
                    String::new()
                }
            ),
        )
            .into_response(),
        Err(r) => {
            let _ = std::fs::remove_file(&template);
            load_refusal(r)
        }
    }
}

/// Creates a table from a file (its columns and rows): a job's result, an uploaded file, a file of the user's space.
#[allow(clippy::too_many_arguments)]
async fn create_from_file(
    tap: &Arc<Tap>,
    client: &Client,
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
    create_table(tap, client, space, qualified, schema, description, input).await
}

/// `POST /tap/Upload` (the Gaia archive's, which astroquery's `TapPlus(..., upload_context="Upload")` calls):
/// `JOBID` and `TABLE_NAME` save a finished job's result as the table `user_NAME.TABLE_NAME`; without a job, the
/// `FILE` part (a VOTable, or `FORMAT` csv, fits or parquet) becomes the table. `TABLE_DESC` describes it; the
/// description also says where the rows came from (the job, its query, the date).
pub(crate) async fn upload(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    Extension(client): Extension<Client>,
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
    let (schema, table, space) = match table_name(&name) {
        Ok(n) => n,
        Err(r) => return refuse(r),
    };
    if let Err(r) = may_write(&tap, &caller, &space, &headers) {
        return r;
    }
    let qualified = format!("{schema}.{table}");
    let _turn = writing(&tap).lock().await;
    if tap
        .czar
        .tables()
        .iter()
        .any(|t| t.record.qualified_name().eq_ignore_ascii_case(&qualified))
    {
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
    let now = crate::jobs::iso(crate::jobs::now_ms());
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
            .filter(|_| job.phase == crate::jobs::Phase::Completed)
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
        &client,
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

// ---------------------------------------------------------------------------------------------------------------
// Quotas.

/// Bytes the tables of a space hold now, but `except`.
pub(crate) fn space_bytes(tap: &Tap, space: &Space, except: Option<&str>) -> u64 {
    tap.czar
        .tables()
        .iter()
        .filter(|t| Space::of(&t.record.schema).as_ref() == Some(space))
        .filter(|t| except.is_none_or(|e| !t.record.qualified_name().eq_ignore_ascii_case(e)))
        .map(|t| crate::files::size_of(&loader::ingest::load_dir(tap.czar.data_dir(), &t.record)))
        .sum()
}

/// The table quota of a space, in bytes: a user's own (or the service's default); a group's (or the default).
pub(crate) fn space_quota(tap: &Tap, space: &Space) -> u64 {
    let default = tap.limits.user_tables;
    let Some(auth) = &tap.auth else {
        return default;
    };
    let mb = match space {
        Space::User(u) => auth
            .accounts
            .user(u)
            .ok()
            .flatten()
            .and_then(|u| u.quota.tables_mb),
        Space::Group(g) => auth
            .accounts
            .group(g)
            .ok()
            .flatten()
            .and_then(|g| g.quota.tables_mb),
    };
    mb.map_or(default, |mb| mb.saturating_mul(1 << 20))
}

/// The marker of a load refused for its space's quota (the loader carries the check's message).
const OVER_QUOTA: &str = "over the table quota";

/// The check a load of `table` passes before it is published: the space's tables, this one's new load included,
/// fit the space's quota.
fn quota_check(
    tap: &Arc<Tap>,
    _client: &Client,
    space: &Space,
    table: &str,
) -> crate::admin::LoadCheck {
    let others = space_bytes(tap, space, Some(table));
    let quota = space_quota(tap, space);
    let whose = match space {
        Space::User(u) => format!("user {u}"),
        Space::Group(g) => format!("group {g}"),
    };
    Box::new(move |load_dir: &Path| {
        let new = crate::files::size_of(load_dir);
        if others + new > quota {
            return Err(format!(
                "{OVER_QUOTA}: the tables of {whose} would hold {} MiB, where the quota is {} MiB (this table \
                 {} MiB); nothing was changed. Drop tables, or ask for more (skyshard user quota --tables-mb)",
                (others + new) >> 20,
                quota >> 20,
                new >> 20
            ));
        }
        Ok(())
    })
}

/// The answer to a failed load: 413 for a quota, else what the loader said.
fn load_refusal((status, message): Refusal) -> Response {
    if message.contains(OVER_QUOTA) {
        return error(StatusCode::PAYLOAD_TOO_LARGE, &message);
    }
    error(status, &message)
}

// ---------------------------------------------------------------------------------------------------------------
// Loading rows.

/// The format of a load's body, from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Upload {
    Csv(u8),
    Fits,
    VoTable,
    Parquet,
}

fn upload_format(mime: &str) -> Option<Upload> {
    let mime = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Some(match mime.as_str() {
        "text/csv" | "application/csv" => Upload::Csv(b','),
        "text/tab-separated-values" | "text/tsv" => Upload::Csv(b'\t'),
        "application/fits" | "image/fits" | "application/x-fits-table" => Upload::Fits,
        "application/x-votable+xml" | "text/xml" | "application/xml" => Upload::VoTable,
        "application/vnd.apache.parquet" | "application/x-parquet" | "application/parquet" => {
            Upload::Parquet
        }
        _ => return None,
    })
}

/// The declared columns of a table.
fn template_schema(tap: &Tap, table: &str) -> Result<SchemaRef, Refusal> {
    let path = template_path(tap.czar.data_dir(), table);
    let file = std::fs::File::open(&path).map_err(|_| {
        (
            StatusCode::FORBIDDEN,
            format!("{table} was not created through /tap/tables: rows cannot be added to it here"),
        )
    })?;
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map(|b| b.schema().clone())
        .map_err(unavailable)
}

/// `batch` as rows of the table: columns matched by name (case aside), cast to the declared types, missing ones
/// null; a column the table lacks, or a value that does not fit its type, is refused by name.
fn to_table(batch: &RecordBatch, target: &SchemaRef, source: &str) -> Result<RecordBatch, String> {
    let names = batch.schema();
    for f in names.fields() {
        if target
            .fields()
            .iter()
            .all(|t| !t.name().eq_ignore_ascii_case(f.name()))
        {
            let known: Vec<&str> = target.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(format!(
                "{source}: column {} is not in the table (its columns: {})",
                f.name(),
                known.join(", ")
            ));
        }
    }
    let columns: Vec<ArrayRef> = target
        .fields()
        .iter()
        .map(|t| {
            let found = names
                .fields()
                .iter()
                .position(|f| f.name().eq_ignore_ascii_case(t.name()));
            match found {
                None => Ok(new_null_array(t.data_type(), batch.num_rows())),
                Some(i) => {
                    let column = batch.column(i);
                    let options = arrow::compute::CastOptions {
                        safe: false,
                        ..Default::default()
                    };
                    arrow::compute::cast_with_options(column, t.data_type(), &options).map_err(
                        |e| {
                            format!(
                                "{source}: column {}: its values do not fit {}: {e}",
                                t.name(),
                                t.data_type()
                            )
                        },
                    )
                }
            }
        })
        .collect::<Result<_, String>>()?;
    RecordBatch::try_new(target.clone(), columns).map_err(|e| format!("{source}: {e}"))
}

/// Converts an upload to a Parquet file of the table's columns; returns its rows.
fn convert(
    upload: &Path,
    format: Upload,
    target: &SchemaRef,
    dest: &Path,
    scratch: &Path,
) -> Result<u64, String> {
    let file = std::fs::File::create(dest).map_err(|e| e.to_string())?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, target.clone(), None)
        .map_err(|e| e.to_string())?;
    let mut rows = 0u64;
    let mut put = |b: RecordBatch| -> Result<(), String> {
        rows += b.num_rows() as u64;
        writer.write(&b).map_err(|e| e.to_string())
    };
    match format {
        Upload::Csv(delimiter) => {
            let what = if delimiter == b'\t' {
                "the TSV upload"
            } else {
                "the CSV upload"
            };
            // The header names the columns (a subset, in any order); their types are the table's.
            let mut head = String::new();
            std::io::BufRead::read_line(
                &mut std::io::BufReader::new(
                    std::fs::File::open(upload).map_err(|e| e.to_string())?,
                ),
                &mut head,
            )
            .map_err(|e| format!("{what}: {e}"))?;
            let header: Vec<String> = head
                .trim_end_matches(['\r', '\n'])
                .split(delimiter as char)
                .map(|h| h.trim().trim_matches('"').to_string())
                .collect();
            if header.iter().all(|h| h.is_empty()) {
                return Err(format!(
                    "{what} is empty: its first line must name the columns"
                ));
            }
            let fields: Vec<Field> = header
                .iter()
                .map(|h| {
                    target
                        .fields()
                        .iter()
                        .find(|t| t.name().eq_ignore_ascii_case(h))
                        .map(|t| Field::new(t.name(), t.data_type().clone(), true))
                        .ok_or_else(|| {
                            let known: Vec<&str> = target.fields().iter().map(|f| f.name().as_str()).collect();
                            format!("{what}: column {h:?} of its header is not in the table (its columns: {})", known.join(", "))
                        })
                })
                .collect::<Result<_, String>>()?;
            let reader = arrow::csv::ReaderBuilder::new(Arc::new(Schema::new(fields)))
                .with_header(true)
                .with_delimiter(delimiter)
                .with_batch_size(65_536)
                .build(std::fs::File::open(upload).map_err(|e| e.to_string())?)
                .map_err(|e| format!("{what}: {e}"))?;
            for batch in reader {
                let batch = batch.map_err(|e| format!("{what}: {e}"))?;
                put(to_table(&batch, target, what)?)?;
            }
        }
        Upload::Fits | Upload::VoTable | Upload::Parquet => {
            let (what, input) = match format {
                Upload::Fits => ("the FITS upload", loader::input::InputFormat::Fits),
                Upload::VoTable => ("the VOTable upload", loader::input::InputFormat::VoTable),
                _ => ("the Parquet upload", loader::input::InputFormat::Parquet),
            };
            let prepared = loader::input::prepare(&[upload.to_path_buf()], Some(input), scratch)
                .map_err(|e| format!("{what}: {e}"))?;
            let file = std::fs::File::open(&prepared[0]).map_err(|e| e.to_string())?;
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .and_then(|b| b.with_batch_size(65_536).build())
                    .map_err(|e| format!("{what}: {e}"))?;
            for batch in reader {
                let batch = batch.map_err(|e| format!("{what}: {e}"))?;
                put(to_table(&batch, target, what)?)?;
            }
        }
    }
    writer.close().map_err(|e| e.to_string())?;
    Ok(rows)
}

/// Streams a request body to `path`, refusing it past `limit` bytes.
async fn receive(body: Body, path: &Path, limit: u64) -> Result<u64, Refusal> {
    let mut out = tokio::fs::File::create(path).await.map_err(unavailable)?;
    let mut stream = body.into_data_stream();
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| bad(format!("receiving the upload: {e}")))?;
        bytes += chunk.len() as u64;
        if bytes > limit {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "{OVER_QUOTA}: the upload passed the {} MiB left in the table space; nothing was changed",
                    limit >> 20
                ),
            ));
        }
        out.write_all(&chunk).await.map_err(unavailable)?;
    }
    out.flush().await.map_err(unavailable)?;
    Ok(bytes)
}

/// A file of the caller's space named by `source=/files/NAME/PATH`, and its format by its extension.
fn source_file(tap: &Tap, caller: &Caller, source: &str) -> Result<(PathBuf, Upload), Response> {
    let path = crate::files::FilePath::parse(source)
        .map_err(|m| error(StatusCode::BAD_REQUEST, &format!("source: {m}")))?;
    if caller.user() != Some(path.owner.as_str()) {
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
    Extension(client): Extension<Client>,
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
    let (schema, table, space) = match table_name(&name) {
        Ok(n) => n,
        Err(r) => return refuse(r),
    };
    if let Err(r) = may_write(&tap, &caller, &space, &headers) {
        return r;
    }
    let qualified = format!("{schema}.{table}");
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
            if tap
                .czar
                .tables()
                .iter()
                .any(|t| t.record.qualified_name().eq_ignore_ascii_case(&qualified))
            {
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
            let now = crate::jobs::iso(crate::jobs::now_ms());
            let description = Some(format!("registered from {source} on {now}"));
            return create_from_file(
                &tap,
                &client,
                &space,
                &qualified,
                file,
                input,
                description,
                &scratch,
            )
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
                return load_refusal(r);
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
    let check = quota_check(&tap, &client, &space, &qualified);
    match crate::admin::load_and_ship(&tap, vec![rows_path], options, Some(check)).await {
        Ok((report, _)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "loaded {rows} rows into {qualified}; it has {} rows\n",
                report.record.rows
            ),
        )
            .into_response(),
        Err(r) => load_refusal(r),
    }
}

/// `DELETE /tap/tables/S.T`.
pub(crate) async fn remove(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let (schema, table, space) = match table_name(&name) {
        Ok(n) => n,
        Err(r) => return refuse(r),
    };
    if let Err(r) = may_write(&tap, &caller, &space, &headers) {
        return r;
    }
    let qualified = format!("{schema}.{table}");
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
    czar::ship::drop_old_loads(&tap.czar.cluster, qualified, "").await;
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
    let file_bytes = crate::files::size_of(&files);
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

// ---------------------------------------------------------------------------------------------------------------
// Indexes.

/// `POST /tap/table-update` (`table`, `index`, `unique`): a PENDING UWS job; RUN does the work.
pub(crate) async fn table_update(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    params: crate::params::Params,
) -> Response {
    let (Some(name), Some(column)) = (params.get("TABLE"), params.get("INDEX")) else {
        return error(
            StatusCode::BAD_REQUEST,
            "table-update needs table (SCHEMA.TABLE) and index (a column name)",
        );
    };
    let unique = match params.get("UNIQUE").map(|u| u.trim().to_ascii_lowercase()) {
        None => false,
        Some(u) if u == "true" => true,
        Some(u) if u == "false" => false,
        Some(u) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("unique={u}: use true or false"),
            );
        }
    };
    let (schema, table, space) = match table_name(name) {
        Ok(n) => n,
        Err(r) => return refuse(r),
    };
    if let Err(r) = may_write(&tap, &caller, &space, &headers) {
        return r;
    }
    let qualified = format!("{schema}.{table}");
    let Some(info) = existing(&tap, &caller, &qualified) else {
        return error(StatusCode::NOT_FOUND, &format!("no table {qualified}"));
    };
    if !info
        .record
        .columns
        .iter()
        .any(|c| c.name.eq_ignore_ascii_case(column))
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("{qualified} has no column {column}"),
        );
    }
    let params = vec![
        ("table".to_string(), qualified),
        ("index".to_string(), column.to_lowercase()),
        ("unique".to_string(), unique.to_string()),
    ];
    match crate::uws::create_pending(&tap, &caller, &client, params) {
        Ok(id) => (
            StatusCode::SEE_OTHER,
            [(
                header::LOCATION,
                format!("{}/tap/async/{id}", crate::reply::base_url(&headers)),
            )],
        )
            .into_response(),
        Err(r) => r,
    }
}

/// Runs a table-update job: checks uniqueness when asked, then marks the column indexed (TAP_SCHEMA shows it).
pub(crate) async fn run_index(tap: &Tap, job: &crate::jobs::Job) -> Result<(), String> {
    let param = |k: &str| {
        job.params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let (Some(table), Some(column)) = (param("table"), param("index")) else {
        return Err("the job names no table and index".into());
    };
    let _turn = writing(tap).lock().await;
    if param("unique").as_deref() == Some("true") {
        let query = format!("SELECT COUNT(*) AS n, COUNT(DISTINCT {column}) AS d FROM {table}");
        let stream = tap
            .czar
            .execute(&query, &[])
            .await
            .map_err(|e| e.to_string())?;
        let batches: Vec<RecordBatch> = datafusion::physical_plan::common::collect(stream)
            .await
            .map_err(|e| e.to_string())?;
        let value = |name: &str| -> i64 {
            batches
                .first()
                .and_then(|b| b.column_by_name(name))
                .and_then(|c| arrow::compute::cast(c, &DataType::Int64).ok())
                .and_then(|c| {
                    c.as_any()
                        .downcast_ref::<arrow::array::Int64Array>()
                        .map(|a| a.value(0))
                })
                .unwrap_or(0)
        };
        let (n, d) = (value("n"), value("d"));
        if n != d {
            return Err(format!(
                "{column} of {table} is not unique: {} rows repeat a value (or are null) among {n}",
                n - d
            ));
        }
    }
    let data_dir = tap.czar.data_dir().to_path_buf();
    let (t, c) = (table.clone(), column.clone());
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        let store = loader::ingest::open_store(&data_dir).map_err(|e| e.to_string())?;
        let mut record = store
            .table(&t)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{t} was dropped"))?;
        for col in record
            .columns
            .iter_mut()
            .filter(|x| x.name.eq_ignore_ascii_case(&c))
        {
            col.indexed = true;
        }
        store.publish(&record).map_err(|e| e.to_string())?;
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())??;
    tap.czar.refresh().map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------------------------
// Permissions.

/// A group named by URI (`ivo://authority/gms?GROUP`) or plainly.
fn group_of(text: &str) -> Result<String, String> {
    let name = text
        .rsplit(['?', '#'])
        .next()
        .unwrap_or(text)
        .trim()
        .to_string();
    if metastore::accounts::valid_name(&name) {
        Ok(name)
    } else {
        Err(format!(
            "{text:?} names no group (ivo://.../gms?GROUP or GROUP)"
        ))
    }
}

fn permissions_text(table: &str, grant: &Grant) -> String {
    let space = table.split('.').next().and_then(Space::of);
    let owner = match space {
        Some(Space::User(u)) => format!("owner={u}\n"),
        Some(Space::Group(g)) => format!("owner-group={g}\n"),
        None => String::new(),
    };
    let groups: Vec<String> = grant
        .groups
        .iter()
        .map(|g| format!("ivo://skyshard/gms?{g}"))
        .collect();
    format!(
        "{owner}public={}\nr-group={}\n",
        grant.public,
        groups.join(" ")
    )
}

/// `GET /tap/permissions/S.T`: who may read it.
pub(crate) async fn permissions(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let qualified = name.to_ascii_lowercase();
    if existing(&tap, &caller, &qualified).is_none()
        || Space::of(qualified.split('.').next().unwrap_or("")).is_none()
    {
        return error(StatusCode::NOT_FOUND, &format!("no user table {name}"));
    }
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        permissions_text(&qualified, &tap.grants.get(&qualified)),
    )
        .into_response()
}

/// `POST /tap/permissions/S.T`: `public=true|false` and `r-group=GROUP...` lines (an empty value clears);
/// the owner only.
pub(crate) async fn set_permissions(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (schema, table, space) = match table_name(&name) {
        Ok(n) => n,
        Err(r) => return refuse(r),
    };
    if let Err(r) = may_write(&tap, &caller, &space, &headers) {
        return r;
    }
    let qualified = format!("{schema}.{table}");
    if existing(&tap, &caller, &qualified).is_none() {
        return error(StatusCode::NOT_FOUND, &format!("no table {qualified}"));
    }
    let text = String::from_utf8_lossy(&body);
    let mut grant = tap.grants.get(&qualified);
    // Form-encoded bodies (a browser, curl -d) are read the same way.
    let pairs: Vec<(String, String)> = if text.contains('\n') || !text.contains('&') {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    } else {
        form_urlencoded::parse(text.as_bytes())
            .into_owned()
            .collect()
    };
    for (key, value) in pairs {
        match key.to_ascii_lowercase().as_str() {
            "public" => match value.to_ascii_lowercase().as_str() {
                "true" => grant.public = true,
                "false" => grant.public = false,
                other => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("public={other}: use true or false"),
                    );
                }
            },
            "r-group" => {
                let mut groups = Vec::new();
                for g in value.split([' ', ',']).filter(|g| !g.is_empty()) {
                    match group_of(g) {
                        Ok(g) => groups.push(g),
                        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
                    }
                }
                groups.sort();
                groups.dedup();
                grant.groups = groups;
            }
            "rw-group" if value.is_empty() => {}
            "rw-group" => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "rw-group is not offered: a table a group writes lives in its schema group_NAME",
                );
            }
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("{other}: set public=true|false or r-group=GROUP..."),
                );
            }
        }
    }
    if let Err(e) = tap.grants.set(&qualified, grant.clone()) {
        return refuse(unavailable(e));
    }
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        permissions_text(&qualified, &grant),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vosi_table_document_defines_columns() {
        let doc = br#"<?xml version="1.0"?>
<vosi:table xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" type="output">
  <name>user_ada.targets</name>
  <description>my targets &amp; friends</description>
  <column><name>id</name><ucd>meta.id;meta.main</ucd><dataType xsi:type="vs:TAPType">BIGINT</dataType></column>
  <column><name>ra</name><unit>deg</unit><ucd>pos.eq.ra;meta.main</ucd>
    <dataType xsi:type="vs:VOTableType">double</dataType></column>
  <column><name>label</name><description>a name</description>
    <dataType xsi:type="vs:VOTableType" arraysize="16*">char</dataType></column>
</vosi:table>"#;
        let d = vosi_definition(doc).unwrap();
        assert_eq!(d.description.as_deref(), Some("my targets & friends"));
        let f = d.schema.fields();
        assert_eq!(f.len(), 3);
        assert_eq!(
            (f[0].name().as_str(), f[0].data_type()),
            ("id", &DataType::Int64)
        );
        assert_eq!(f[1].metadata()["unit"], "deg");
        assert_eq!(
            (f[2].data_type(), f[2].metadata()["description"].as_str()),
            (&DataType::Utf8, "a name")
        );
        let bad = br#"<table><column><name>x</name><dataType arraysize="3">double</dataType></column></table>"#;
        assert!(vosi_definition(bad).unwrap_err().contains("arrays"));
        assert!(
            vosi_definition(b"<table/>")
                .unwrap_err()
                .contains("no column")
        );
        assert!(
            vosi_definition(b"<table><column>").is_err()
                || vosi_definition(b"<table><column>").is_ok()
        );
    }

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

    #[test]
    fn rows_are_matched_to_the_table_by_name() {
        let target: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("mag", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_from_iter(vec![(
            "MAG",
            Arc::new(arrow::array::Int32Array::from(vec![1, 2])) as ArrayRef,
        )])
        .unwrap();
        let out = to_table(&batch, &target, "x").unwrap();
        assert_eq!(out.column(0).null_count(), 2);
        assert_eq!(out.column(1).data_type(), &DataType::Float64);
        let extra = RecordBatch::try_from_iter(vec![(
            "color",
            Arc::new(arrow::array::Int32Array::from(vec![1])) as ArrayRef,
        )])
        .unwrap();
        assert!(
            to_table(&extra, &target, "x")
                .unwrap_err()
                .contains("color is not in the table")
        );
        let text = RecordBatch::try_from_iter(vec![(
            "id",
            Arc::new(arrow::array::StringArray::from(vec!["12", "x"])) as ArrayRef,
        )])
        .unwrap();
        assert!(
            to_table(&text, &target, "x")
                .unwrap_err()
                .contains("column id")
        );
    }
}
