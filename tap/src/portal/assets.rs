//! The portal's files: compiled into the binary, hashed and gzipped once, served with a strict CSP.

use std::collections::HashMap;
use std::io::Write;
use std::sync::OnceLock;

use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sha2::Digest;

use crate::reply::error;

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
pub(super) struct Prepared {
    asset: &'static Asset,
    etag: String,
    gzip: Option<Bytes>,
}

pub(super) fn prepared() -> &'static HashMap<&'static str, Prepared> {
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

pub(super) async fn to_portal() -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/portal/")]).into_response()
}

pub(super) async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

pub(super) async fn asset(UrlPath(path): UrlPath<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
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
}
