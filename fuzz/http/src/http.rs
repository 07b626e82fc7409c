//! The HTTP surface must answer every request cleanly: TAP parameters (query string, urlencoded and multipart
//! bodies), uploads in the three VOTable serializations, UWS parameters and sub-resources, Simple Cone Search,
//! content types and paths. A real service answers (one worker on loopback, the czar, the TAP router with its
//! layers, a 2,000-row catalog); a panic, a 500, a 4xx without a DALI error document or a panic caught by the
//! catch-panic layer is a crash.
//!
//! Two users: ada (whose tokens the inputs use, or none: anonymous) and bob, whose private table `user_bob.secret`
//! and file `/files/bob/secret.txt` hold a canary, random per run. The oracle: an answer to anyone but bob that
//! holds the canary is a crash (a row or a file of a table the caller may not see). Inputs name bob's table and
//! space (seeds do), and each kind is tried as ada and as an anonymous caller.
//!
//! The first byte of an input chooses the request; the rest is its raw material (see `request`). Seeds:
//! `fuzz/http/seeds` (written by `seeds.py`). Coverage-guided run: docs/benchmarks.md#fuzzing.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct Service {
    runtime: tokio::runtime::Runtime,
    tap: Arc<tap::Tap>,
    /// A valid token of the service's one user (`--auth optional`).
    token: String,
    /// A token of the same user that may write tables and files.
    writer: String,
    /// What bob's private table and file hold: no answer to another caller may contain it.
    canary: String,
}

fn service() -> &'static Service {
    static SERVICE: OnceLock<Service> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("skyshard-http-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let release = dir.join("release");
        loader::synth::generate(2_000, &release, 7).expect("a release");
        let mut opts = loader::ingest::IngestOptions::new(
            "sky.object",
            loader::ingest::LoadKind::Director {
                ra: "ra".into(),
                dec: "dec".into(),
                id: "id".into(),
            },
        );
        opts.chunk_rows = 400;
        loader::ingest::ingest(&dir, &[release.join("object.parquet")], &opts).expect("ingest");
        let writer = metastore::accounts::Accounts::new(&dir)
            .writer()
            .expect("accounts");
        writer.add_user("ada", &[], false, 0).expect("a user");
        writer.add_user("bob", &[], false, 0).expect("a user");
        let (_, bob) = writer
            .create_token("bob", &["read:tap", "write:tables", "write:files"].map(String::from), None, 0)
            .expect("bob's token");
        let canary = format!(
            "CANARY{}",
            metastore::accounts::random_hex(8).expect("random bytes")
        );
        let (_, token) = writer
            .create_token("ada", &["read:tap".into()], None, 0)
            .expect("a token");
        let scopes = ["read:tap", "write:tables", "write:files"].map(String::from);
        let (_, writer_token) = writer
            .create_token("ada", &scopes, None, 0)
            .expect("a token");
        drop(writer);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let tap = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let address = listener.local_addr().expect("address").to_string();
            tokio::spawn(worker::Worker::new(&dir).serve(listener));
            let cluster = czar::cluster::Cluster::new(&[address], 1, 4).expect("cluster");
            let czar =
                czar::Czar::open(&dir, cluster, tap::czar_options(Some(256 << 20))).expect("czar");
            let limits = tap::Limits {
                sync_duration: 20,
                max_upload_bytes: 4 << 20,
                body_timeout: 5,
                // User tables and files stay small however many inputs write them.
                user_tables: 8 << 20,
                user_files: 8 << 20,
                ..Default::default()
            };
            let auth = tap::auth::Auth {
                policy: tap::auth::Policy::Optional,
                proxy: None,
                accounts: metastore::accounts::Accounts::new(&dir),
            };
            tap::Tap::open_with(Arc::new(czar), limits, None, Some(auth)).expect("tap")
        });
        // The user table that loads, permissions and index jobs act on.
        let base = Request::put("/tap/tables/user_ada.base")
            .header(header::CONTENT_TYPE, "text/xml")
            .header(header::AUTHORIZATION, format!("Bearer {writer_token}"))
            .body(Body::from(BASE_TABLE))
            .expect("a PUT");
        let (status, ..) = runtime.block_on(check(&tap, base));
        assert_eq!(status, StatusCode::CREATED, "the base user table");
        // Bob's secrets, made as bob (his answers are not checked against the canary).
        let as_bob = |method: &str, uri: &str, content_type: &str, body: String| {
            Request::builder()
                .method(method)
                .uri(uri)
                .header(header::CONTENT_TYPE, content_type)
                .header(header::AUTHORIZATION, format!("Bearer {bob}"))
                .body(Body::from(body))
                .expect("a request")
        };
        for (request, want) in [
            (
                as_bob(
                    "PUT",
                    "/tap/tables/user_bob.secret",
                    "text/xml",
                    BASE_TABLE.replace("user_ada.base", "user_bob.secret"),
                ),
                StatusCode::CREATED,
            ),
            (
                as_bob(
                    "POST",
                    "/tap/load/user_bob.secret",
                    "text/csv",
                    format!("tid,ra,dec,label\n1,10.0,20.0,{canary}\n2,180.0,0.0,{canary}\n"),
                ),
                StatusCode::OK,
            ),
            (
                as_bob("PUT", "/files/bob/secret.txt", "text/plain", canary.clone()),
                StatusCode::CREATED,
            ),
        ] {
            let uri = request.uri().to_string();
            let status = runtime.block_on(async {
                tap::router(tap.clone())
                    .oneshot(request)
                    .await
                    .expect("infallible")
                    .status()
            });
            assert_eq!(status, want, "{uri} as bob");
        }
        Service {
            runtime,
            tap,
            token,
            writer: writer_token,
            canary,
        }
    })
}

/// Bytes as a query string: URI-safe bytes kept, the others percent-encoded.
fn query_string(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"&=%+*-_.,()'!~:/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The raw material split at the first NUL: (before, after).
fn split(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| b == 0) {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[]),
    }
}

const UPLOAD_QUERIES: [&str; 4] = [
    "SELECT * FROM TAP_UPLOAD.t",
    "SELECT COUNT(*) AS n FROM TAP_UPLOAD.t",
    "SELECT t.*, o.id FROM TAP_UPLOAD.t AS t JOIN sky.object AS o \
     ON 1 = CONTAINS(POINT(o.ra, o.dec), CIRCLE(t.ra, t.dec, 0.5))",
    "SELECT TOP 5 * FROM TAP_UPLOAD.t ORDER BY 1",
];

fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file, content) in parts {
        body.extend_from_slice(b"--XyZzy\r\nContent-Disposition: form-data; name=\"");
        body.extend_from_slice(name.as_bytes());
        body.push(b'"');
        if let Some(f) = file {
            body.extend_from_slice(
                format!("; filename=\"{f}\"\r\nContent-Type: application/x-votable+xml").as_bytes(),
            );
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XyZzy--\r\n");
    body
}

fn post(uri: &str, content_type: &str, body: Vec<u8>) -> Option<Request<Body>> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .ok()
}

/// The definition of the user table the inputs load into.
const BASE_TABLE: &str = r#"<vosi:table xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0"
  xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <name>user_ada.base</name>
  <column><name>tid</name><ucd>meta.id;meta.main</ucd><dataType xsi:type="vs:TAPType">BIGINT</dataType></column>
  <column><name>ra</name><ucd>pos.eq.ra;meta.main</ucd><dataType xsi:type="vs:TAPType">DOUBLE</dataType></column>
  <column><name>dec</name><ucd>pos.eq.dec;meta.main</ucd><dataType xsi:type="vs:TAPType">DOUBLE</dataType></column>
  <column><name>label</name><dataType xsi:type="vs:TAPType">VARCHAR</dataType></column>
</vosi:table>"#;

const FORM: &str = "application/x-www-form-urlencoded";
const MULTIPART: &str = "multipart/form-data; boundary=XyZzy";

/// User tables (kind 9): a definition PUT, a load in each format into the base table, permissions, an index job.
fn user_table(raw: &[u8], writer: &str) -> Option<(Request<Body>, bool)> {
    let (op, rest) = raw.split_first()?;
    let body = rest.to_vec();
    let (method, uri, content_type, created) = match op % 8 {
        0 => (
            "PUT",
            format!("/tap/tables/user_ada.fz{}", op % 3),
            "text/xml",
            true,
        ),
        1 => (
            "PUT",
            format!("/tap/tables/user_ada.fz{}", op % 3),
            "application/x-votable+xml",
            true,
        ),
        2 => ("POST", "/tap/load/user_ada.base".into(), "text/csv", false),
        3 => (
            "POST",
            "/tap/load/user_ada.base".into(),
            "text/tab-separated-values",
            false,
        ),
        4 => (
            "POST",
            "/tap/load/user_ada.base".into(),
            "application/x-votable+xml",
            false,
        ),
        5 => (
            "POST",
            "/tap/load/user_ada.base".into(),
            "application/fits",
            false,
        ),
        6 => (
            "POST",
            "/tap/permissions/user_ada.base".into(),
            "text/plain",
            false,
        ),
        _ => ("POST", "/tap/table-update".into(), FORM, false),
    };
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::AUTHORIZATION, format!("Bearer {writer}"))
        .body(Body::from(body))
        .ok()?;
    Some((req, created))
}

/// User files (kind 10): a WebDAV method on a path of the input's choosing in the user's space, with a body (or,
/// for COPY and MOVE, a destination) of its choosing, with Basic credentials as a desktop mount sends them.
fn dav(raw: &[u8], writer: &str) -> Option<Request<Body>> {
    const METHODS: [&str; 8] = [
        "PUT", "GET", "PROPFIND", "MKCOL", "COPY", "MOVE", "DELETE", "OPTIONS",
    ];
    let (op, rest) = raw.split_first()?;
    let (path, body) = split(rest);
    // The bits above the method's: one in four requests aims at bob's space (refused: ada is not bob), the rest
    // at ada's own.
    let space = if (op / 8) % 4 == 3 { "bob" } else { "ada" };
    let path = format!("/files/{space}/{}", query_string(path).replace('%', "%25"));
    let method = METHODS[*op as usize % METHODS.len()];
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("ada:{writer}"));
    let mut req = Request::builder()
        .method(method)
        .uri(&path)
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .header("Depth", if op % 2 == 0 { "1" } else { "0" });
    if matches!(method, "COPY" | "MOVE") {
        // A destination in ada's space, or (COPY or MOVE of bob's file into hers) the same.
        req = req.header("Destination", format!("/files/ada/{}", query_string(body)));
        return req.body(Body::empty()).ok();
    }
    req.body(Body::from(body.to_vec())).ok()
}

/// The request an input stands for (None: not a request an HTTP client could send, e.g. an invalid URI).
fn request(kind: u8, raw: &[u8], token: &str) -> Option<Request<Body>> {
    match kind % 11 {
        // TAP parameters in a urlencoded body, in the query string, in a multipart body.
        0 => post("/tap/sync", FORM, raw.to_vec()),
        1 => Request::get(format!("/tap/sync?{}", query_string(raw)))
            .body(Body::empty())
            .ok(),
        2 => post("/tap/sync", MULTIPART, raw.to_vec()),
        // An upload (any serialization: the seeds hold TABLEDATA, BINARY and BINARY2) queried four ways.
        3 => {
            let (choice, table) = raw.split_first()?;
            let query = UPLOAD_QUERIES[*choice as usize % UPLOAD_QUERIES.len()];
            let body = multipart(&[
                ("LANG", None, b"ADQL"),
                ("QUERY", None, query.as_bytes()),
                ("UPLOAD", None, b"t,param:tab"),
                ("tab", Some("t.xml"), table),
            ]);
            post("/tap/sync", MULTIPART, body)
        }
        // Simple Cone Search parameters.
        4 => Request::get(format!("/scs/sky.object?{}", query_string(raw)))
            .body(Body::empty())
            .ok(),
        // A content type of the input's choosing over a body of its choosing.
        5 => {
            let (content_type, body) = split(raw);
            let content_type = std::str::from_utf8(content_type).ok()?;
            post("/tap/sync", content_type, body.to_vec())
        }
        // Any path under /tap (VOSI tables, UWS sub-resources of unknown jobs, examples); or, for input that starts
        // with `api/` or `portal`, the portal's files and JSON endpoints (a `?` starts the query string).
        6 => {
            let uri = if raw.starts_with(b"api/") || raw.starts_with(b"portal") {
                let (path, query) = match raw.iter().position(|&b| b == b'?') {
                    Some(i) => (&raw[..i], &raw[i + 1..]),
                    None => (raw, &[][..]),
                };
                format!(
                    "/{}?{}",
                    query_string(path).replace('%', "%25"),
                    query_string(query)
                )
            } else {
                format!("/tap/{}", query_string(raw).replace('%', "%25"))
            };
            Request::get(uri).body(Body::empty()).ok()
        }
        // Credentials: an Authorization header or a cookie of the input's choosing (`TOKEN` in it stands for the
        // valid token), on a sync query.
        8 => {
            let (which, value) = raw.split_first()?;
            let value = String::from_utf8_lossy(value).replace("TOKEN", token);
            let name = if which % 2 == 0 {
                header::AUTHORIZATION
            } else {
                header::COOKIE
            };
            let mut req = Request::get("/tap/sync?LANG=ADQL&QUERY=SELECT+1+AS+one")
                .body(Body::empty())
                .ok()?;
            req.headers_mut().insert(name, value.parse().ok()?);
            Some(req)
        }
        // UWS: handled in `uws`.
        _ => None,
    }
}

const DALI: &[u8] = b"<INFO name=\"QUERY_STATUS\" value=\"ERROR\">";

/// Bob's canary, set once his secrets are in place: from then on every answer is checked against it.
static CANARY: OnceLock<String> = OnceLock::new();

/// Asserts a clean answer: never a 500, and every refusal a DALI error document (405 is axum's, SCS answers
/// errors under 200 as its standard says).
async fn check(
    tap: &Arc<tap::Tap>,
    mut request: Request<Body>,
) -> (StatusCode, Vec<u8>, Option<String>) {
    // Not on loopback: the admin routes must refuse it.
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [203, 0, 113, 9],
            4000,
        ))));
    let uri = request.uri().to_string();
    let response = tap::router(tap.clone())
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = tokio::time::timeout(
        Duration::from_secs(120),
        axum::body::to_bytes(response.into_body(), 512 << 20),
    )
    .await
    .unwrap_or_else(|_| panic!("{uri}: the body did not end within 120 s"))
    .unwrap_or_else(|e| panic!("{uri}: the body failed: {e}"));
    assert_ne!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{uri}: {}",
        String::from_utf8_lossy(&body)
    );
    if status.is_client_error() || status.is_server_error() {
        assert!(
            status == StatusCode::METHOD_NOT_ALLOWED || body.windows(DALI.len()).any(|w| w == DALI),
            "{uri}: {status} without a DALI error document: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    assert_eq!(
        tap::reply::panics_caught(),
        0,
        "{uri}: the catch-panic layer fired"
    );
    if let Some(canary) = CANARY.get() {
        assert!(
            !body.windows(canary.len()).any(|w| w == canary.as_bytes()),
            "{uri}: {status} holds bob's canary: {}",
            String::from_utf8_lossy(&body[..body.len().min(600)])
        );
    }
    (status, body.to_vec(), location)
}

/// An async job created with the input's parameters, then a POST to one of its sub-resources with more of them,
/// a read of each sub-resource, and its deletion (jobs are not left behind).
async fn uws(tap: &Arc<tap::Tap>, raw: &[u8]) {
    let (create, rest) = split(raw);
    let Some(req) = post("/tap/async", FORM, create.to_vec()) else {
        return;
    };
    let (status, _, location) = check(tap, req).await;
    if status != StatusCode::SEE_OTHER {
        return;
    }
    let job = location.expect("a 303 names the job");
    let path = job
        .find("/tap/async/")
        .map(|i| &job[i..])
        .expect("a job URL");
    let (which, more) = rest.split_first().unwrap_or((&0, &[]));
    let field = [
        "parameters",
        "phase",
        "destruction",
        "executionduration",
        "quote",
        "runId",
    ][*which as usize % 6];
    if let Some(req) = post(&format!("{path}/{field}"), FORM, more.to_vec()) {
        check(tap, req).await;
    }
    for field in [
        "",
        "/phase",
        "/parameters",
        "/destruction",
        "/executionduration",
        "/error",
        "/results",
    ] {
        if let Ok(req) = Request::get(format!("{path}{field}")).body(Body::empty()) {
            check(tap, req).await;
        }
    }
    let req = Request::delete(path).body(Body::empty()).expect("a DELETE");
    let (status, _, _) = check(tap, req).await;
    assert!(
        status == StatusCode::SEE_OTHER || status == StatusCode::NOT_FOUND,
        "{path}: DELETE gave {status}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, raw)) = data.split_first() else {
        return;
    };
    let s = service();
    CANARY.get_or_init(|| s.canary.clone());
    // An input that holds the canary itself could have it echoed back (an error naming the input): not a leak.
    if data.windows(s.canary.len()).any(|w| w == s.canary.as_bytes()) {
        return;
    }
    s.runtime.block_on(async {
        match kind % 11 {
            7 => uws(&s.tap, raw).await,
            9 => {
                if let Some((req, created)) = user_table(raw, &s.writer) {
                    let uri = req.uri().path().to_string();
                    let (status, ..) = check(&s.tap, req).await;
                    // A table an input created is dropped again: the state stays bounded.
                    if created && status == StatusCode::CREATED {
                        let drop = Request::delete(uri)
                            .header(header::AUTHORIZATION, format!("Bearer {}", s.writer))
                            .body(Body::empty())
                            .expect("a DELETE");
                        let (status, ..) = check(&s.tap, drop).await;
                        assert_eq!(status, StatusCode::OK, "dropping a table an input created");
                    }
                }
            }
            10 => {
                if let Some(req) = dav(raw, &s.writer) {
                    check(&s.tap, req).await;
                }
            }
            _ => {
                if let Some(mut req) = request(kind, raw, &s.token) {
                    // Half the inputs ask as ada (who may not read bob's table either), half anonymously.
                    if kind >= 128 && !req.headers().contains_key(header::AUTHORIZATION) {
                        let bearer = format!("Bearer {}", s.token);
                        if let Ok(v) = bearer.parse() {
                            req.headers_mut().insert(header::AUTHORIZATION, v);
                        }
                    }
                    check(&s.tap, req).await;
                }
            }
        }
    });
});
