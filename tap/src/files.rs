//! User files over WebDAV (RFC 4918, class 1) at `/files/NAME/` (and a group's, shared by its members, at
//! `/files/group_NAME/`): desktop mounts (davfs2, Finder, Windows), rclone and
//! scripts reach the user's file space with a token (HTTP Basic with the token as password, or Bearer). A space is
//! its owner's only (the `write:files` scope), kept under `DATA_DIR/files/NAME/`, and bounded by the files quota
//! (`skyshard user quota --files-mb`, the service's `--user-files-mb` by default): a PUT or COPY past it answers 507
//! and leaves nothing behind. Uploads are written beside the space and renamed into place when complete, so a
//! reader never sees half a file. A file of the space can become a user table without being sent again
//! (`POST /tap/load/S.T?source=/files/NAME/PATH`, [`crate::usertables`]).
//!
//! Methods: OPTIONS, GET, HEAD, PUT, DELETE, MKCOL, COPY, MOVE, PROPFIND (depth 0 and 1; PROPPATCH and locks are not
//! offered).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use metastore::files::size_of;
use platform::files::{FilePath, Use};
use tokio::io::AsyncWriteExt;

use crate::auth::Caller;
use crate::reply::{error, refused};
use crate::service::Tap;

const ALLOW: &str = "OPTIONS, GET, HEAD, PUT, DELETE, MKCOL, COPY, MOVE, PROPFIND";

fn status(code: StatusCode) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "",
    )
        .into_response()
}

/// The root of every user's space.
fn root(tap: &Tap) -> PathBuf {
    partitioner::layout::files_dir(tap.czar.data_dir())
}

/// The `href` of a path in a PROPFIND answer (`collection`: with a trailing slash).
fn href(path: &FilePath, collection: bool) -> String {
    let mut out = format!("/files/{}/", path.owner);
    out.push_str(
        &path
            .segments
            .iter()
            .map(|s| percent_encode(s))
            .collect::<Vec<_>>()
            .join("/"),
    );
    if collection && !path.segments.is_empty() {
        out.push('/');
    }
    out
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn xml_escape(s: &str) -> String {
    votable::write::xml_escape(s)
}

fn insufficient(used: u64, quota: u64) -> Response {
    error(
        StatusCode::INSUFFICIENT_STORAGE,
        &format!(
            "the file space is full: it would hold more than its quota of {} MiB (it holds {} MiB); nothing was \
             written. Delete files, or ask for more (skyshard user quota --files-mb)",
            quota >> 20,
            used >> 20
        ),
    )
}

/// Every method under `/files/`.
pub(crate) async fn dav(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if tap.auth.is_none() {
        return refused(
            &headers,
            &platform::error::PlatformError::NotFound(
                "this service has no accounts (--auth none), so no user files".into(),
            ),
        );
    }
    if method == Method::OPTIONS {
        return (
            StatusCode::OK,
            [("DAV", "1"), ("Allow", ALLOW), ("MS-Author-Via", "DAV")],
            "",
        )
            .into_response();
    }
    let path = match FilePath::parse(uri.path()) {
        Ok(p) => p,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    let writes = !matches!(method.as_str(), "GET" | "HEAD" | "PROPFIND");
    let what = if writes { Use::Write } else { Use::Read };
    if let Err(e) = tap.may_use_space(&caller, &path, what) {
        return refused(&headers, &e);
    }
    let space = root(&tap).join(&path.owner);
    if let Err(e) = tokio::fs::create_dir_all(&space).await {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the file space cannot be opened: {e}"),
        );
    }
    // A file's bytes are received first, to a staging file, with no lock held and within the body deadline: one
    // slow upload stalls nobody. Then one change at a time in a space (quota checks and renames see a still space);
    // other spaces go on.
    let (received, body) = if method.as_str() == "PUT" {
        match receive(&tap, &path, body).await {
            Ok(staged) => (Some(staged), Body::empty()),
            Err(response) => return response,
        }
    } else {
        (None, body)
    };
    let _writer = if writes {
        Some(tap.space_lock(&path.owner).lock_owned().await)
    } else {
        None
    };
    match method.as_str() {
        "GET" | "HEAD" => get(&tap.local_path(&path), method == Method::HEAD).await,
        "PUT" => match received {
            Some(staged) => put(&tap, &path, staged).await,
            None => error(StatusCode::BAD_REQUEST, "no file was received"),
        },
        "DELETE" => delete(&tap.local_path(&path), &path).await,
        "MKCOL" => mkcol(&tap, &path, body).await,
        "COPY" | "MOVE" => copy_or_move(&tap, &path, &headers, method.as_str() == "MOVE").await,
        "PROPFIND" => propfind(&tap, &path, &headers, body).await,
        _ => (StatusCode::METHOD_NOT_ALLOWED, [("Allow", ALLOW)], "").into_response(),
    }
}

async fn get(local: &Path, head: bool) -> Response {
    let meta = match tokio::fs::metadata(local).await {
        Ok(m) => m,
        Err(_) => return error(StatusCode::NOT_FOUND, "no such file"),
    };
    if meta.is_dir() {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "a collection: list it with PROPFIND",
        );
    }
    // A user's file is a download, never a page of this origin: a colleague's XHTML in a shared space must not run
    // with the reader's session (a sandboxing CSP, and attachment, whatever its type).
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let headers = [
        (header::CONTENT_TYPE, content_type(local).to_string()),
        (header::CONTENT_LENGTH, meta.len().to_string()),
        (header::ETAG, etag(&meta)),
        (header::LAST_MODIFIED, http_date(&meta)),
        (header::CONTENT_DISPOSITION, attachment(&name)),
        (
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'".to_string(),
        ),
    ];
    if head {
        return (StatusCode::OK, headers, Body::empty()).into_response();
    }
    match tokio::fs::File::open(local).await {
        Ok(file) => (
            StatusCode::OK,
            headers,
            Body::from_stream(chunks(file)),
        )
            .into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the file cannot be read: {e}"),
        ),
    }
}

/// `attachment; filename="..."` (RFC 6266) with the name's unsafe characters replaced, and its UTF-8 form.
fn attachment(name: &str) -> String {
    let plain: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' && c != ';' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{plain}\"; filename*=UTF-8''{}",
        percent_encode(name)
    )
}

/// A file (or a part of one: `file.take(n)`) as a stream of chunks.
pub(crate) fn chunks(
    file: impl tokio::io::AsyncRead + Unpin,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> {
    futures::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
}

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => "text/csv",
        Some("tsv") => "text/tab-separated-values",
        Some("txt") => "text/plain",
        Some("fits" | "fit" | "fts") => "application/fits",
        Some("xml" | "vot") => "application/x-votable+xml",
        Some("parquet") => "application/vnd.apache.parquet",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn modified(meta: &std::fs::Metadata) -> chrono::DateTime<chrono::Utc> {
    meta.modified()
        .map(chrono::DateTime::<chrono::Utc>::from)
        .unwrap_or_default()
}

fn http_date(meta: &std::fs::Metadata) -> String {
    modified(meta)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

fn etag(meta: &std::fs::Metadata) -> String {
    format!(
        "\"{:x}-{:x}\"",
        meta.len(),
        modified(meta).timestamp_nanos_opt().unwrap_or(0)
    )
}

/// A file received to the staging directory, not yet in its space; removed when dropped unless moved in.
struct Staged {
    tmp: std::path::PathBuf,
    bytes: u64,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Receives a PUT's body to the staging directory, within the space's quota as it stands and the body deadline.
async fn receive(tap: &Tap, path: &FilePath, body: Body) -> Result<Staged, Response> {
    let unavailable =
        |e: &dyn std::fmt::Display| error(StatusCode::SERVICE_UNAVAILABLE, &format!("cannot store the file: {e}"));
    let quota = tap.file_space_quota(&path.owner);
    let local = tap.local_path(path);
    let existing = local.metadata().map(|m| m.len()).unwrap_or(0);
    let used = size_of(&root(tap).join(&path.owner)).saturating_sub(existing);
    let staging = root(tap).join(".uploads");
    tokio::fs::create_dir_all(&staging)
        .await
        .map_err(|e| unavailable(&e))?;
    let tmp = staging.join(metastore::accounts::random_hex(8).map_err(|e| unavailable(&e))?);
    let mut staged = Staged { tmp, bytes: 0 };
    let deadline = std::time::Duration::from_secs(tap.limits.body_timeout.max(1));
    let written = async {
        let mut out = tokio::fs::File::create(&staged.tmp)
            .await
            .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| (StatusCode::BAD_REQUEST, format!("receiving the file: {e}")))?;
            staged.bytes += chunk.len() as u64;
            if used + staged.bytes > quota {
                return Err((StatusCode::INSUFFICIENT_STORAGE, String::new()));
            }
            out.write_all(&chunk)
                .await
                .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        }
        out.sync_all()
            .await
            .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
    };
    let written = tokio::time::timeout(deadline, written)
        .await
        .unwrap_or_else(|_| {
            Err((
                StatusCode::REQUEST_TIMEOUT,
                format!("the file did not arrive within {} s", deadline.as_secs()),
            ))
        });
    match written {
        Ok(()) => Ok(staged),
        Err((StatusCode::INSUFFICIENT_STORAGE, _)) => Err(insufficient(used, quota)),
        Err((code, message)) => Err(error(code, &format!("the file was not stored: {message}"))),
    }
}

/// Moves a received file into its place, under the space's lock: the quota is checked again against the space as
/// it is now (another upload may have landed meanwhile).
async fn put(tap: &Tap, path: &FilePath, staged: Staged) -> Response {
    let local = tap.local_path(path);
    let Some(parent) = path.parent() else {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "the space itself is a collection, not a file",
        );
    };
    if !tap.local_path(&parent).is_dir() {
        return error(
            StatusCode::CONFLICT,
            "the parent collection does not exist (MKCOL it first)",
        );
    }
    if local.is_dir() {
        return error(StatusCode::METHOD_NOT_ALLOWED, "that is a collection");
    }
    let quota = tap.file_space_quota(&path.owner);
    let existing = local.metadata().map(|m| m.len()).unwrap_or(0);
    let used = size_of(&root(tap).join(&path.owner)).saturating_sub(existing);
    if used + staged.bytes > quota {
        return insufficient(used, quota);
    }
    let existed = local.exists();
    if let Err(e) = tokio::fs::rename(&staged.tmp, &local).await {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the file was not stored: {e}"),
        );
    }
    status(if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

async fn delete(local: &Path, path: &FilePath) -> Response {
    if path.segments.is_empty() {
        return error(StatusCode::FORBIDDEN, "the space itself cannot be deleted");
    }
    let removed = match tokio::fs::symlink_metadata(local).await {
        Err(_) => return error(StatusCode::NOT_FOUND, "no such file or collection"),
        Ok(m) if m.is_dir() => tokio::fs::remove_dir_all(local).await,
        Ok(_) => tokio::fs::remove_file(local).await,
    };
    match removed {
        Ok(()) => status(StatusCode::NO_CONTENT),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("cannot delete it: {e}"),
        ),
    }
}

async fn mkcol(tap: &Tap, path: &FilePath, body: Body) -> Response {
    let has_body = body
        .into_data_stream()
        .next()
        .await
        .is_some_and(|c| c.is_ok_and(|c| !c.is_empty()));
    if has_body {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "MKCOL takes no body");
    }
    let local = tap.local_path(path);
    if local.exists() || path.segments.is_empty() {
        return error(StatusCode::METHOD_NOT_ALLOWED, "it exists already");
    }
    if !path.parent().is_some_and(|p| tap.local_path(&p).is_dir()) {
        return error(StatusCode::CONFLICT, "the parent collection does not exist");
    }
    match tokio::fs::create_dir(&local).await {
        Ok(()) => status(StatusCode::CREATED),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("cannot create it: {e}"),
        ),
    }
}

/// Copies a file or a tree (`depth` 0: a collection without its members).
fn copy_tree(from: &Path, to: &Path, depth_infinity: bool) -> std::io::Result<()> {
    if from.is_dir() {
        std::fs::create_dir(to)?;
        if depth_infinity {
            for e in std::fs::read_dir(from)? {
                let e = e?;
                copy_tree(&e.path(), &to.join(e.file_name()), true)?;
            }
        }
        Ok(())
    } else {
        std::fs::copy(from, to).map(|_| ())
    }
}

async fn copy_or_move(tap: &Tap, path: &FilePath, headers: &HeaderMap, moving: bool) -> Response {
    let Some(destination) = headers.get("destination").and_then(|v| v.to_str().ok()) else {
        return error(StatusCode::BAD_REQUEST, "the Destination header is missing");
    };
    // An absolute URL or a path; only the path counts, and it must be in the same space.
    let dest_path = match destination.find("://") {
        Some(i) => destination[i + 3..]
            .find('/')
            .map_or("/", |j| &destination[i + 3 + j..]),
        None => destination,
    };
    let dest = match FilePath::parse(dest_path) {
        Ok(d) if d.owner == path.owner => d,
        Ok(_) => {
            return error(
                StatusCode::FORBIDDEN,
                "copy and move stay within your own space",
            );
        }
        Err(m) => return error(StatusCode::BAD_REQUEST, &format!("Destination: {m}")),
    };
    let (from, to) = (tap.local_path(path), tap.local_path(&dest));
    if !from.exists() {
        return error(StatusCode::NOT_FOUND, "no such file or collection");
    }
    if path.segments.is_empty()
        || dest.segments.is_empty()
        || dest.segments.starts_with(&path.segments)
    {
        return error(
            StatusCode::FORBIDDEN,
            "a collection cannot be copied or moved into itself or over the space",
        );
    }
    if !dest.parent().is_some_and(|p| tap.local_path(&p).is_dir()) {
        return error(
            StatusCode::CONFLICT,
            "the destination's parent collection does not exist",
        );
    }
    let overwrite = !headers
        .get("overwrite")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"F"));
    let existed = to.exists();
    if existed && !overwrite {
        return error(
            StatusCode::PRECONDITION_FAILED,
            "the destination exists and Overwrite is F",
        );
    }
    let depth_infinity = !headers.get("depth").is_some_and(|v| v.as_bytes() == b"0");
    if !moving {
        let quota = tap.file_space_quota(&path.owner);
        let used = size_of(&root(tap).join(&path.owner));
        let added = size_of(&from).saturating_sub(if existed { size_of(&to) } else { 0 });
        if used + added > quota {
            return insufficient(used, quota);
        }
    }
    let (f, t) = (from.clone(), to.clone());
    let done = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        if t.exists() {
            if t.is_dir() {
                std::fs::remove_dir_all(&t)?;
            } else {
                std::fs::remove_file(&t)?;
            }
        }
        if moving {
            std::fs::rename(&f, &t)
        } else {
            copy_tree(&f, &t, depth_infinity)
        }
    })
    .await;
    match done {
        Ok(Ok(())) => status(if existed {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::CREATED
        }),
        Ok(Err(e)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("cannot do it: {e}"),
        ),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("cannot do it: {e}"),
        ),
    }
}

fn response_xml(path: &FilePath, meta: &std::fs::Metadata, names_only: bool) -> String {
    let collection = meta.is_dir();
    let name = path
        .segments
        .last()
        .cloned()
        .unwrap_or_else(|| path.owner.clone());
    let created = meta
        .created()
        .map(chrono::DateTime::<chrono::Utc>::from)
        .unwrap_or_else(|_| modified(meta))
        .format("%Y-%m-%dT%H:%M:%SZ");
    let props = if names_only {
        "<D:resourcetype/><D:displayname/><D:getlastmodified/><D:creationdate/>\
         <D:getcontentlength/><D:getcontenttype/><D:getetag/>"
            .to_string()
    } else if collection {
        format!(
            "<D:resourcetype><D:collection/></D:resourcetype><D:displayname>{}</D:displayname>\
             <D:getlastmodified>{}</D:getlastmodified><D:creationdate>{created}</D:creationdate>",
            xml_escape(&name),
            http_date(meta)
        )
    } else {
        format!(
            "<D:resourcetype/><D:displayname>{}</D:displayname><D:getlastmodified>{}</D:getlastmodified>\
             <D:creationdate>{created}</D:creationdate><D:getcontentlength>{}</D:getcontentlength>\
             <D:getcontenttype>{}</D:getcontenttype><D:getetag>{}</D:getetag>",
            xml_escape(&name),
            http_date(meta),
            meta.len(),
            content_type(Path::new(&name)),
            xml_escape(&etag(meta))
        )
    };
    format!(
        "<D:response><D:href>{}</D:href><D:propstat><D:prop>{props}</D:prop>\
         <D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>\n",
        xml_escape(&href(path, collection))
    )
}

/// A refusal for an element that binds a namespace prefix to the empty name (not allowed in XML namespaces 1.0).
fn empty_prefix(e: &quick_xml::events::BytesStart) -> Option<Response> {
    e.attributes()
        .flatten()
        .any(|a| a.key.as_ref().starts_with(b"xmlns:") && a.value.is_empty())
        .then(|| {
            error(
                StatusCode::BAD_REQUEST,
                "the PROPFIND body binds a namespace prefix to nothing",
            )
        })
}

async fn propfind(tap: &Tap, path: &FilePath, headers: &HeaderMap, body: Body) -> Response {
    let body = match axum::body::to_bytes(body, 1 << 20).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "a PROPFIND body is at most 1 MiB",
            );
        }
    };
    // The body, if any, must be well-formed XML (a propfind element); which properties it names, all are given.
    let mut names_only = false;
    if !body.iter().all(u8::is_ascii_whitespace) {
        let mut reader = quick_xml::Reader::from_reader(&body[..]);
        let mut depth = 0i32;
        let mut seen_root = false;
        let mut buf = Vec::new();
        loop {
            match reader.read_event_into(&mut buf) {
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("the PROPFIND body is not XML: {e}"),
                    );
                }
                Ok(quick_xml::events::Event::Start(e)) => {
                    if let Some(refusal) = empty_prefix(&e) {
                        return refusal;
                    }
                    if depth == 0 {
                        if e.local_name().as_ref() != b"propfind" {
                            return error(
                                StatusCode::BAD_REQUEST,
                                "a PROPFIND body is a propfind element",
                            );
                        }
                        seen_root = true;
                    }
                    depth += 1;
                }
                Ok(quick_xml::events::Event::Empty(e)) => {
                    if let Some(refusal) = empty_prefix(&e) {
                        return refusal;
                    }
                    if depth == 0 {
                        seen_root = e.local_name().as_ref() == b"propfind";
                    }
                    names_only |= e.local_name().as_ref() == b"propname";
                }
                Ok(quick_xml::events::Event::End(_)) => depth -= 1,
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(_) => {}
            }
            buf.clear();
        }
        if !seen_root || depth != 0 {
            return error(
                StatusCode::BAD_REQUEST,
                "the PROPFIND body is not a complete propfind element",
            );
        }
    }
    let depth = headers
        .get("depth")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("infinity");
    if !matches!(depth, "0" | "1") {
        return error(
            StatusCode::FORBIDDEN,
            "PROPFIND with Depth: infinity is not offered; use 0 or 1",
        );
    }
    let local = tap.local_path(path);
    let Ok(meta) = std::fs::metadata(&local) else {
        return error(StatusCode::NOT_FOUND, "no such file or collection");
    };
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:multistatus xmlns:D=\"DAV:\">\n",
    );
    out.push_str(&response_xml(path, &meta, names_only));
    if depth == "1" && meta.is_dir() {
        let mut entries: Vec<_> = match std::fs::read_dir(&local) {
            Ok(e) => e.flatten().collect(),
            Err(e) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("cannot list it: {e}"),
                );
            }
        };
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let (Ok(m), Some(name)) = (e.metadata(), e.file_name().to_str().map(String::from))
            else {
                continue;
            };
            let mut child = path.clone();
            child.segments.push(name);
            out.push_str(&response_xml(&child, &m, names_only));
        }
    }
    out.push_str("</D:multistatus>\n");
    (
        StatusCode::MULTI_STATUS,
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_in_their_space() {
        let p = FilePath::parse("/files/ada/dir/a%20b.csv").unwrap();
        assert_eq!(
            (p.owner.as_str(), p.segments.clone()),
            ("ada", vec!["dir".to_string(), "a b.csv".to_string()])
        );
        assert_eq!(href(&p, false), "/files/ada/dir/a%20b.csv");
        for bad in [
            "/files/ada/../bob/x",
            "/files/ada/%2e%2e/x",
            "/files/ada/a%2fb",
            "/files/Bob/x",
            "/files/ada/%00",
            "/files/ada/%zz",
            "/other/ada",
        ] {
            assert!(FilePath::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(FilePath::parse("/files/ada/").unwrap().segments.len(), 0);
    }
}
