//! Every catalog table with positions as a HATS collection over HTTP, the layout lsdb and hats read
//! (`lsdb.open_catalog("http://HOST/hats/sky.object")`):
//!
//! ```text
//! /hats/SCHEMA.TABLE/collection.properties                 the collection: its catalog and its margin
//! /hats/SCHEMA.TABLE/catalog/hats.properties               (and `properties`) ra, dec, _healpix_29, row count
//! /hats/SCHEMA.TABLE/catalog/partition_info.csv            Norder,Npix of every chunk
//! /hats/SCHEMA.TABLE/catalog/dataset/_common_metadata      the partitions' Parquet schema
//! /hats/SCHEMA.TABLE/catalog/dataset/Norder=K/Dir=D/Npix=N.parquet   a chunk's own rows
//! /hats/SCHEMA.TABLE/margin/...                            the same for the margin: each chunk's overlap copies
//! ```
//!
//! A chunk id is a NUNIQ HEALPix cell, so chunk = (Norder, Npix) exactly, and a chunk's overlap file is what HATS
//! calls its margin (rows of neighbouring cells within the table's overlap). A partition is read by the engine, on
//! a worker holding the chunk, through an ordinary ADQL query run as the caller: the same access decision (a user
//! table is a catalog to those who may read it, and does not exist for others), the caller's sync turn and the
//! sync time limit; the scan is restricted to the one chunk by [`czar::OnlyChunk`]. lsdb's push-down (`columns=`
//! and `filters=` on the partition URL) becomes the query's select list and WHERE clause, so only the rows and
//! columns asked for travel; lsdb applies both again itself, so a term this does not understand is left out (a
//! wider answer), never guessed at. The czar relays rather than redirects: workers speak only Flight to the czar,
//! and the caller's identity and share are decided here. Each answer is written once as a Parquet file in a bounded
//! cache beside the jobs (keyed by the table's load, the chunk and the push-down), because a Parquet reader asks
//! for the size (HEAD) and then byte ranges, which must all come from the same bytes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Extension, Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use czar::TableInfo;
use futures::TryStreamExt;
use metastore::TableKind;
use partitioner::ChunkId;
use platform::access::Reader;
use platform::identity::Caller;
use platform::quota::Client;

use crate::reply::{busy, error};
use crate::service::Tap;

/// The HEALPix index column of every partition, as HATS names it (depth 29, nested).
const INDEX: &str = "_healpix_29";

/// Bytes the partition cache may hold before the oldest files are removed.
const CACHE_BYTES: u64 = 2 << 30;

/// Files the partition cache may hold.
const CACHE_FILES: usize = 20_000;

/// `GET|HEAD /hats/{table}/{*path}`.
pub(crate) async fn get(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    Extension(client): Extension<Client>,
    UrlPath((table, path)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let info = match table_of(&tap, &caller, &table) {
        Ok(info) => info,
        Err(response) => return response,
    };
    let (part, rest) = match path.split_once('/') {
        Some((part, rest)) => (part, rest),
        None if path == "collection.properties" => return text(&collection(&info)),
        None => return missing(&table, &path),
    };
    let margin = match part {
        "catalog" => false,
        "margin" => true,
        _ => return missing(&table, &path),
    };
    match rest {
        "hats.properties" | "properties" => text(&properties(&info, margin)),
        "partition_info.csv" => text(&partition_info(&info)),
        "dataset/_common_metadata" => {
            common_metadata(&tap, &caller, &client, &info, margin, &headers).await
        }
        _ => match partition_of(rest) {
            Some(chunk) if chunk != partitioner::layout::ORPHANS_CHUNK && info.chunks.contains(&chunk) => {
                let pushed = Pushdown::parse(query.as_deref().unwrap_or(""), &info);
                partition(&tap, &caller, &client, &info, chunk, margin, &pushed, &headers).await
            }
            _ => missing(&table, &path),
        },
    }
}

/// The table `name` names, if the caller may read it and it has positions.
fn table_of(tap: &Tap, caller: &Caller, name: &str) -> Result<Arc<TableInfo>, Response> {
    let lower = name.to_ascii_lowercase();
    let visible = tap.visible_to(Reader::of(caller));
    let seen = visible.as_deref().is_none_or(|v| v(&lower));
    let info = tap
        .czar
        .tables()
        .into_iter()
        .find(|t| seen && t.record.qualified_name() == lower);
    match info {
        None => Err(error(
            StatusCode::NOT_FOUND,
            &format!("no table {} (or none you may read): /tap/tables lists them", shown(name)),
        )),
        Some(t) if !matches!(t.record.kind, TableKind::Director { .. }) => Err(error(
            StatusCode::NOT_FOUND,
            &format!(
                "{lower} has no positions of its own: only tables with positions (director tables) are HATS catalogs"
            ),
        )),
        Some(t) => Ok(t),
    }
}

fn missing(table: &str, path: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!(
            "no {} in the HATS collection of {}",
            shown(path),
            shown(table)
        ),
    )
}

/// A name from the request, as an error message may show it.
fn shown(name: &str) -> &str {
    let plain = name.len() <= 200
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '='));
    if plain { name } else { "that name" }
}

fn text(body: &str) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body.to_string()).into_response()
}

/// (ra, dec) column names of a director table, lower case.
fn position(info: &TableInfo) -> (String, String) {
    match &info.record.kind {
        TableKind::Director { ra, dec, .. } => (ra.to_lowercase(), dec.to_lowercase()),
        _ => unreachable!("table_of passes only director tables"),
    }
}

fn collection(info: &TableInfo) -> String {
    format!(
        "obs_collection={}\nhats_primary_table_url=catalog\nall_margins=margin\ndefault_margin=margin\n",
        info.record.qualified_name()
    )
}

fn properties(info: &TableInfo, margin: bool) -> String {
    let (ra, dec) = position(info);
    let name = info.record.qualified_name();
    let order = info.chunks.iter().filter(|c| **c != 0).map(|c| ChunkId(*c).depth()).max().unwrap_or(0);
    let mut p = vec![
        format!("obs_collection={name}{}", if margin { "_margin" } else { "" }),
        format!("dataproduct_type={}", if margin { "margin" } else { "object" }),
        format!("hats_col_ra={ra}"),
        format!("hats_col_dec={dec}"),
        format!("hats_col_healpix={INDEX}"),
        "hats_col_healpix_order=29".to_string(),
        "hats_npix_suffix=.parquet".to_string(),
        format!("hats_order={order}"),
        "hats_version=v1.0".to_string(),
        format!("hats_builder=skyshard {}", env!("CARGO_PKG_VERSION")),
    ];
    if margin {
        p.push("hats_primary_table_url=catalog".to_string());
        p.push(format!("hats_margin_threshold={}", info.record.overlap_arcsec));
    } else {
        // Rows without a position (a child's orphans) have no HEALPix cell: directors have none.
        p.push(format!("hats_nrows={}", info.record.rows));
    }
    if let Some(d) = &info.record.description {
        p.push(format!("obs_title={}", d.replace(['\n', '\r'], " ")));
    }
    p.join("\n") + "\n"
}

fn partition_info(info: &TableInfo) -> String {
    let mut out = String::from("Norder,Npix\n");
    for c in info.chunks.iter().filter(|c| **c != 0) {
        let id = ChunkId(*c);
        out.push_str(&format!("{},{}\n", id.depth(), id.hash()));
    }
    out
}

/// The chunk a `dataset/Norder=K/Dir=D/Npix=N.parquet` path names (D must be N's directory, as HATS writes it).
fn partition_of(rest: &str) -> Option<u64> {
    let rest = rest.strip_prefix("dataset/Norder=")?;
    let (order, rest) = rest.split_once("/Dir=")?;
    let (dir, rest) = rest.split_once("/Npix=")?;
    let npix = rest.strip_suffix(".parquet")?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(order) && digits(dir) && digits(npix)) {
        return None;
    }
    let (order, dir, npix): (u8, u64, u64) = (order.parse().ok()?, dir.parse().ok()?, npix.parse().ok()?);
    if order > partitioner::chunk::MAX_DEPTH || npix >= 12u64 << (2 * order as u32) || dir != npix / 10_000 * 10_000 {
        return None;
    }
    Some(ChunkId::new(order, npix).0)
}

/// A delimited ADQL identifier (a name from the catalog, never from the request).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What lsdb asks a partition for: columns (checked against the table's) and OR-ed groups of AND-ed comparisons.
#[derive(Debug, Default, PartialEq)]
struct Pushdown {
    /// None: every column.
    columns: Option<Vec<String>>,
    /// Each group: terms (column, operator, number); the rows kept are those of any group. Empty: all rows.
    groups: Vec<Vec<(String, &'static str, String)>>,
}

impl Pushdown {
    /// Reads `columns=` and `filters=` (as hats writes them: terms `COLUMN OP VALUE` joined by `,`, groups by `;`).
    /// Unknown columns and terms that are not a column compared with a number are left out: lsdb applies its own
    /// filters and projection again, so a wider answer is right and a guessed one is not.
    fn parse(query: &str, info: &TableInfo) -> Pushdown {
        let known = |c: &str| c == INDEX || info.schema.fields().iter().any(|f| f.name() == c);
        let mut pushed = Pushdown::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "columns" => {
                    let mut cols: Vec<String> = Vec::new();
                    for c in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                        if !known(c) {
                            return Pushdown::default(); // a column it does not have: everything, let lsdb say
                        }
                        if c != INDEX && !cols.iter().any(|x| x == c) {
                            cols.push(c.to_string());
                        }
                    }
                    pushed.columns = Some(cols);
                }
                "filters" => {
                    for group in v.split(';') {
                        let terms: Vec<_> = group.split(',').filter_map(|t| term(t.trim(), &known)).collect();
                        if terms.is_empty() {
                            // A group with no term understood keeps every row: so does the whole OR.
                            pushed.groups.clear();
                            break;
                        }
                        pushed.groups.push(terms);
                    }
                }
                _ => {}
            }
        }
        pushed
    }

    /// A canonical text of what was pushed, for the cache key.
    fn key(&self) -> String {
        // The same columns in any order are the same file (they are written in the table's order).
        let mut columns = self.columns.clone();
        if let Some(c) = &mut columns {
            c.sort();
        }
        format!("{columns:?}|{:?}", self.groups)
    }
}

/// One `COLUMN OP NUMBER` term; the number as ADQL text (an integer exactly: HEALPix indexes exceed a double's
/// 53 bits).
fn term(t: &str, known: &impl Fn(&str) -> bool) -> Option<(String, &'static str, String)> {
    let at = t.find(['<', '>', '=', '!'])?;
    let (column, rest) = t.split_at(at);
    let (op, value) = ["<=", ">=", "==", "!=", "<", ">", "="]
        .iter()
        .find_map(|op| rest.strip_prefix(op).map(|v| (*op, v)))?;
    let op = match op {
        "==" | "=" => "=",
        "!=" => "<>",
        other => other,
    };
    let value = value.trim();
    let value = match value.parse::<i64>() {
        Ok(i) => i.to_string(),
        Err(_) => format!("{:?}", value.parse::<f64>().ok().filter(|v| v.is_finite())?),
    };
    let column = column.trim();
    known(column).then(|| (column.to_string(), op, value))
}

/// The ADQL of a partition: the columns asked for (ra and dec always), the HEALPix index, the pushed filters.
fn adql(info: &TableInfo, pushed: &Pushdown) -> String {
    let (ra, dec) = position(info);
    let index = format!("ivo_healpix_index(29, {}, {})", quoted(&ra), quoted(&dec));
    let columns: Vec<String> = match &pushed.columns {
        None => info.schema.fields().iter().map(|f| f.name().clone()).collect(),
        Some(asked) => {
            let mut cols = asked.clone();
            for c in [&ra, &dec] {
                if !cols.contains(c) {
                    cols.push(c.clone());
                }
            }
            // In the table's order, as the full partitions have them.
            info.schema.fields().iter().map(|f| f.name().clone()).filter(|f| cols.contains(f)).collect()
        }
    };
    let select: Vec<String> = columns.iter().map(|c| quoted(c)).collect();
    let (schema, table) = (&info.record.schema, &info.record.name);
    let mut q = format!(
        "SELECT {}, {index} AS {} FROM {}.{}",
        select.join(", "),
        quoted(INDEX),
        quoted(schema),
        quoted(table)
    );
    if !pushed.groups.is_empty() {
        let groups: Vec<String> = pushed
            .groups
            .iter()
            .map(|g| {
                let terms: Vec<String> = g
                    .iter()
                    .map(|(c, op, v)| {
                        let col = if c == INDEX { index.clone() } else { quoted(c) };
                        format!("{col} {op} {v}")
                    })
                    .collect();
                format!("({})", terms.join(" AND "))
            })
            .collect();
        q.push_str(&format!(" WHERE {}", groups.join(" OR ")));
    }
    q
}

/// `dataset/_common_metadata`: a Parquet file with the partitions' schema and no rows.
async fn common_metadata(
    tap: &Tap,
    caller: &Caller,
    client: &Client,
    info: &TableInfo,
    margin: bool,
    headers: &HeaderMap,
) -> Response {
    let pushed = Pushdown {
        columns: None,
        groups: vec![vec![(position(info).1, "<", "-1000.0".to_string())]], // no rows: only the schema
    };
    let first = info.chunks.iter().copied().find(|c| *c != 0);
    match first {
        Some(chunk) => partition(tap, caller, client, info, chunk, margin, &pushed, headers).await,
        None => error(StatusCode::NOT_FOUND, "the table has no chunks"),
    }
}

/// A partition (or, with a filter that keeps nothing, the schema alone) as Parquet, from the cache or made now.
#[allow(clippy::too_many_arguments)]
async fn partition(
    tap: &Tap,
    caller: &Caller,
    client: &Client,
    info: &TableInfo,
    chunk: u64,
    margin: bool,
    pushed: &Pushdown,
    headers: &HeaderMap,
) -> Response {
    let dir = tap.jobs.dir().join("hats-cache");
    // SHA-256 of the push-down: a hash a caller cannot make collide, or one caller's empty answer could be cached
    // under the name of another's whole partition.
    let digest = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(pushed.key().as_bytes());
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let name = format!(
        "{}-{}-{chunk}-{}-{digest}.parquet",
        info.record.qualified_name(),
        info.record.load_id,
        if margin { "m" } else { "c" },
    );
    let path = dir.join(&name);
    if !path.is_file() {
        let turn = match tap.sync_turn(client).await {
            Ok(t) => t,
            Err(b) => return busy(&b),
        };
        let made = tokio::time::timeout(
            std::time::Duration::from_secs(tap.limits.sync_duration),
            make(tap, caller, info, chunk, margin, pushed, &dir, &path),
        )
        .await;
        drop(turn);
        match made {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return e,
            Err(_) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "reading the partition took longer than the sync limit of {} s",
                        tap.limits.sync_duration
                    ),
                );
            }
        }
    }
    ranged(&path, headers).await
}

/// Runs the partition's query as the caller and writes its rows into `path` (through a temporary file).
#[allow(clippy::too_many_arguments)]
async fn make(
    tap: &Tap,
    caller: &Caller,
    info: &TableInfo,
    chunk: u64,
    margin: bool,
    pushed: &Pushdown,
    dir: &Path,
    path: &Path,
) -> Result<(), Response> {
    let visible = tap.visible_to(Reader::of(caller));
    let only = czar::OnlyChunk {
        table: info.record.qualified_name(),
        chunk,
        margin,
    };
    let query = czar::QueryContext {
        visible: visible.as_deref(),
        only_chunk: Some(&only),
        ..Default::default()
    };
    let failed = |e: String| error(StatusCode::SERVICE_UNAVAILABLE, &format!("reading the partition: {e}"));
    let mut stream = tap
        .czar
        .execute(&adql(info, pushed), &query)
        .await
        .map_err(|e| crate::reply::failure(&e.into()))?;
    std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
    // Removed however this ends: an error, or the request dropped (the client went away) mid-partition.
    let temp = Scratch(dir.join(format!(".{}.{}", std::process::id(), rand_suffix())));
    let result: Result<(), String> = async {
        let file = std::fs::File::create(&temp.0).map_err(|e| e.to_string())?;
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .set_created_by(format!("skyshard {}", env!("CARGO_PKG_VERSION")))
            .build();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, stream.schema(), Some(props))
            .map_err(|e| e.to_string())?;
        while let Some(batch) = stream.try_next().await.map_err(|e| e.to_string())? {
            tokio::task::block_in_place(|| writer.write(&batch)).map_err(|e| e.to_string())?;
        }
        tokio::task::block_in_place(|| writer.close()).map_err(|e| e.to_string())?;
        std::fs::rename(&temp.0, path).map_err(|e| e.to_string())
    }
    .await;
    if let Err(e) = result {
        return Err(failed(e));
    }
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || trim_cache(&dir));
    Ok(())
}

/// A file being written, removed when dropped unless it was renamed into place.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Removes the oldest files while the cache holds more than [`CACHE_BYTES`] or [`CACHE_FILES`] (many tiny answers,
/// each a filter that keeps nothing, must not fill a directory either).
fn trim_cache(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            // Files being written (`.PID.N`) are not the cache's yet.
            if e.file_name().to_string_lossy().starts_with('.') {
                return None;
            }
            let m = e.metadata().ok()?;
            m.is_file().then(|| (m.modified().unwrap_or(std::time::UNIX_EPOCH), m.len(), e.path()))
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    let mut count = files.len();
    for (_, len, path) in files {
        if total <= CACHE_BYTES && count <= CACHE_FILES {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= len;
            count -= 1;
        }
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// A file answered whole, or the one byte range asked for (206), with its length and `Accept-Ranges`.
async fn ranged(path: &Path, headers: &HeaderMap) -> Response {
    let gone = || error(StatusCode::SERVICE_UNAVAILABLE, "the partition was removed from the cache just now: ask again");
    let Ok(mut file) = tokio::fs::File::open(path).await else { return gone() };
    let Ok(len) = file.metadata().await.map(|m| m.len()) else { return gone() };
    // A Range this does not take (several ranges, another unit, unreadable) is ignored: the whole file, 200, as
    // RFC 9110 allows; one that lies past the end is refused (416).
    let range = match headers.get(header::RANGE).map(|v| parse_range(v.as_bytes(), len)) {
        None | Some(Err(RangeError::Ignored)) => None,
        Some(Ok(r)) => Some(r),
        Some(Err(RangeError::Unsatisfiable)) => {
            let mut r = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &format!("the range asked for is not within the {len} bytes of the partition (one range: bytes=A-B)"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let (status, start, count) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        None => (StatusCode::OK, 0, len),
    };
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    if start > 0 && file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return gone();
    }
    let body = axum::body::Body::from_stream(crate::files::chunks(file.take(count)));
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.apache.parquet"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", start + count - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    response
}

/// Why a Range header is not served as asked.
#[derive(Debug, PartialEq)]
enum RangeError {
    /// Not one this takes (several ranges, another unit, unreadable): answered with the whole file.
    Ignored,
    /// Past the end of the file (or empty): 416.
    Unsatisfiable,
}

/// One range of `bytes=A-B`, `bytes=A-` or `bytes=-N` within `len` bytes: inclusive (first, last).
fn parse_range(value: &[u8], len: u64) -> Result<(u64, u64), RangeError> {
    use RangeError::{Ignored, Unsatisfiable};
    let v = std::str::from_utf8(value).map_err(|_| Ignored)?.trim();
    let spec = v.strip_prefix("bytes=").ok_or(Ignored)?;
    if spec.contains(',') {
        return Err(Ignored);
    }
    let (a, b) = spec.split_once('-').ok_or(Ignored)?;
    let (a, b) = (a.trim(), b.trim());
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse::<u64>().ok()).flatten().ok_or(Ignored)
    };
    if len == 0 {
        return Err(Unsatisfiable);
    }
    let (first, last) = if a.is_empty() {
        let n = number(b)?;
        if n == 0 {
            return Err(Unsatisfiable);
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let first = number(a)?;
        let last = if b.is_empty() { len - 1 } else { number(b)?.min(len - 1) };
        if !b.is_empty() && number(b)? < first {
            return Err(Ignored); // an invalid range: RFC 9110 says to ignore the header
        }
        (first, last)
    };
    if first >= len || first > last {
        return Err(Unsatisfiable);
    }
    Ok((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_paths_name_chunks_as_hats_writes_them() {
        assert_eq!(partition_of("dataset/Norder=4/Dir=0/Npix=1129.parquet"), Some(ChunkId::new(4, 1129).0));
        assert_eq!(partition_of("dataset/Norder=7/Dir=10000/Npix=12345.parquet"), Some(ChunkId::new(7, 12345).0));
        for bad in [
            "dataset/Norder=7/Dir=0/Npix=12345.parquet",   // the wrong directory
            "dataset/Norder=1/Dir=0/Npix=48.parquet",      // no such cell at depth 1
            "dataset/Norder=30/Dir=0/Npix=1.parquet",      // deeper than HEALPix goes here
            "dataset/Norder=4/Dir=0/Npix=+11.parquet",
            "dataset/Norder=4/Dir=0/Npix=11.parquet/x",
            "dataset/Norder=4/Dir=0/Npix=99999999999999999999999.parquet",
        ] {
            assert_eq!(partition_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(parse_range(b"bytes=0-9", 100), Ok((0, 9)));
        assert_eq!(parse_range(b"bytes=90-", 100), Ok((90, 99)));
        assert_eq!(parse_range(b"bytes=-10", 100), Ok((90, 99)));
        assert_eq!(parse_range(b"bytes=-1000", 100), Ok((0, 99)));
        assert_eq!(parse_range(b"bytes=50-1000", 100), Ok((50, 99)));
        for past in [&b"bytes=100-"[..], b"bytes=100-200", b"bytes=-0"] {
            assert_eq!(parse_range(past, 100), Err(RangeError::Unsatisfiable), "{}", String::from_utf8_lossy(past));
        }
        for odd in [&b"bytes=5-1"[..], b"bytes=0-1,3-4", b"items=0-1", b"bytes=a-b", b"bytes=+1-2", b"bytes=-"] {
            assert_eq!(parse_range(odd, 100), Err(RangeError::Ignored), "{}", String::from_utf8_lossy(odd));
        }
    }

    #[test]
    fn filter_terms_are_numbers_compared_with_known_columns() {
        let known = |c: &str| matches!(c, "mag" | "_healpix_29");
        assert_eq!(term("mag<18", &known), Some(("mag".into(), "<", "18".into())));
        assert_eq!(term("mag!=1e3", &known), Some(("mag".into(), "<>", "1000.0".into())));
        assert_eq!(term("mag>=-0.5", &known), Some(("mag".into(), ">=", "-0.5".into())));
        // Exactly, past a double's 53 bits.
        assert_eq!(
            term("_healpix_29>=3458764513820540927", &known),
            Some(("_healpix_29".into(), ">=", "3458764513820540927".into()))
        );
        assert_eq!(term("mag==x", &known), None);
        assert_eq!(term("nope<1", &known), None);
        assert_eq!(term("magin[1, 2]", &known), None);
        assert_eq!(term("mag<1;DROP", &known), None);
        assert_eq!(term("mag<nan", &known), None);
    }
}
