//! The HTTP handlers without sockets: the service's `Router` answers requests with `oneshot` (axum's testing
//! pattern). The czar plans over a small ingested table; its workers are addresses nobody listens on, so queries
//! that need chunks fail the way a cluster with every replica down does, and everything answered at the czar
//! (TAP_SCHEMA, VOSI, errors, UWS) is exercised for real.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use czar::Czar;
use czar::cluster::Cluster;
use loader::ingest::{IngestOptions, LoadKind, ingest};
use tap::auth::Client;
use tap::{Limits, Tap};
use tower::ServiceExt;

/// A data directory with `sky.object` (3,000 rows in chunks of at most 400).
fn catalog(data: &Path) {
    let release = data.join("release");
    loader::synth::generate(3_000, &release, 11).unwrap();
    let mut opts = IngestOptions::new(
        "sky.object",
        LoadKind::Director {
            ra: "ra".into(),
            dec: "dec".into(),
            id: "id".into(),
        },
    );
    opts.chunk_rows = 400;
    ingest(data, &[release.join("object.parquet")], &opts).unwrap();
}

/// Loopback addresses with nothing listening (bound, then closed).
fn dead_workers(n: usize) -> Vec<String> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}

struct Service {
    tap: Arc<Tap>,
    dir: std::path::PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn service(name: &str) -> Service {
    service_with(name, Limits::default())
}

fn service_with(name: &str, limits: Limits) -> Service {
    let dir = std::env::temp_dir().join(format!("skyshard-handlers-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    catalog(&dir);
    let cluster = Cluster::new(&dead_workers(2), 2, 4).unwrap();
    let czar = Czar::open(&dir, cluster, tap::czar_options(None)).unwrap();
    let tap = Tap::open(Arc::new(czar), limits, None).unwrap();
    Service { tap, dir }
}

async fn call(
    tap: &Arc<Tap>,
    request: Request<Body>,
) -> (StatusCode, String, axum::http::HeaderMap) {
    let response = tap::router(tap.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned(), headers)
}

fn sync_form(form: &str) -> Request<Body> {
    Request::post("/tap/sync")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn is_error_document(body: &str) -> bool {
    body.contains(r#"<INFO name="QUERY_STATUS" value="ERROR">"#)
}

#[tokio::test]
async fn errors_are_dali_documents_with_the_status_of_their_kind() {
    let s = service("errors");
    // The user's mistakes: 400.
    for form in [
        "QUERY=SELECT+1",
        "LANG=SQL&QUERY=SELECT+1",
        "LANG=ADQL",
        "LANG=ADQL&QUERY=SELECT+id+FROM+sky.object+LIMIT+5",
        "LANG=ADQL&QUERY=SELECT+nosuch+FROM+sky.object",
        "LANG=ADQL&QUERY=SELECT+1&MAXREC=-3",
        "LANG=ADQL&QUERY=SELECT+1&RESPONSEFORMAT=image/png",
    ] {
        let (status, body, headers) = call(&s.tap, sync_form(form)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form}: {body}");
        assert!(is_error_document(&body), "{form}: {body}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/x-votable+xml");
    }
    // Bad ADQL says where.
    let (_, body, _) = call(
        &s.tap,
        sync_form("LANG=ADQL&QUERY=SELECT+TOP+5+DISTINCT+id+FROM+sky.object"),
    )
    .await;
    assert!(body.contains("1:"), "{body}");
    // Unknown paths and jobs: 404.
    let (status, body, _) = call(&s.tap, get("/no/such/thing")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(is_error_document(&body), "{body}");
    let (status, _, _) = call(&s.tap, get("/tap/async/nosuchjob")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn chunks_with_no_live_replica_are_a_503_naming_the_chunk() {
    let s = service("unavailable");
    // (A bare COUNT(*) is answered from the table's record: this one reads the chunks.)
    let (status, body, _) = call(
        &s.tap,
        sync_form("LANG=ADQL&QUERY=SELECT+COUNT(*)+FROM+sky.object+WHERE+ra+>=+0"),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(is_error_document(&body), "{body}");
    assert!(body.contains("of sky.object is unavailable"), "{body}");
    assert!(body.contains("tried 127.0.0.1:"), "{body}");
}

#[tokio::test]
async fn what_the_czar_answers_alone_works_without_workers() {
    let s = service("czar");
    // TAP_SCHEMA is answered at the czar.
    let (status, body, _) = call(
        &s.tap,
        sync_form("LANG=ADQL&RESPONSEFORMAT=csv&QUERY=SELECT+table_name+FROM+TAP_SCHEMA.tables+ORDER+BY+table_name"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<&str> = body.lines().skip(1).collect();
    assert!(names.contains(&"sky.object"), "{body}");
    assert!(names.contains(&"tap_schema.columns"), "{body}");
    // MAXREC=0: the columns of the result, planned but not run (no worker is asked).
    let (status, body, _) = call(
        &s.tap,
        sync_form("LANG=ADQL&MAXREC=0&QUERY=SELECT+id,+ra+FROM+sky.object"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains(r#"<FIELD name="id""#) && body.contains(r#"<FIELD name="ra""#),
        "{body}"
    );
    assert!(!body.contains("<TR>"), "{body}");
    // VOSI.
    let (status, body, _) = call(&s.tap, get("/tap/capabilities")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("ivo://ivoa.net/std/TAP"), "{body}");
    let (status, body, _) = call(&s.tap, get("/tap/tables")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("<name>sky.object</name>"), "{body}");
    // The distributed plan of a cone: one fragment over the chunks the cone touches.
    let (status, body, _) = call(
        &s.tap,
        get("/tap/explain?QUERY=SELECT+id+FROM+sky.object+WHERE+CONTAINS(POINT(ra,dec),CIRCLE(180,0,1))=1"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.starts_with("fragment over "), "{body}");
    assert!(body.contains("merge plan at the czar"), "{body}");
}

#[tokio::test]
async fn an_async_job_is_created_and_listed() {
    let s = service("uws");
    let request = Request::post("/tap/async")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::HOST, "example.org")
        .body(Body::from("LANG=ADQL&QUERY=SELECT+1+AS+one"))
        .unwrap();
    let (status, _, headers) = call(&s.tap, request).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = headers[header::LOCATION].to_str().unwrap().to_string();
    let path = location.trim_start_matches("http://example.org");
    assert!(path.starts_with("/tap/async/"), "{location}");
    let (status, body, _) = call(&s.tap, get(&format!("{path}/phase"))).await;
    assert_eq!((status, body.trim()), (StatusCode::OK, "PENDING"));
    let (status, body, _) = call(&s.tap, get("/tap/async")).await;
    assert_eq!(status, StatusCode::OK);
    let id = path.trim_start_matches("/tap/async/");
    assert!(body.contains(id), "{body}");
}

#[tokio::test]
async fn one_caller_cannot_take_every_turn() {
    let limits = Limits {
        caller_sync: 1,
        ..Limits::default()
    };
    let s = service_with("share", limits);
    let query = "LANG=ADQL&QUERY=SELECT+TOP+1+table_name+FROM+TAP_SCHEMA.tables";
    let from = |ip: [u8; 4]| {
        let mut r = sync_form(query);
        r.extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                ip, 4000,
            ))));
        r
    };
    // 192.0.2.1 has its one sync query in flight: its next is refused with 429, naming the share.
    let held = s
        .tap
        .sync_turn(&Client::anonymous(&s.tap.limits, "192.0.2.1"))
        .await
        .unwrap();
    let (status, body, headers) = call(&s.tap, from([192, 0, 2, 1])).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        is_error_document(&body)
            && body.contains(
                "your share is used up: 1 sync queries in flight count against address 192.0.2.1"
            ),
        "{body}"
    );
    assert_eq!(headers[header::RETRY_AFTER], "5");
    // Another address is served meanwhile, and the first again once its query ends.
    assert_eq!(call(&s.tap, from([192, 0, 2, 2])).await.0, StatusCode::OK);
    drop(held);
    assert_eq!(call(&s.tap, from([192, 0, 2, 1])).await.0, StatusCode::OK);
}

#[tokio::test]
async fn kept_results_count_against_their_callers_share() {
    let s = service_with(
        "storage",
        Limits {
            caller_storage: 1,
            ..Limits::default()
        },
    );
    let run = || {
        Request::post("/tap/async")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(
                "LANG=ADQL&QUERY=SELECT+TOP+3+table_name+FROM+TAP_SCHEMA.tables&PHASE=RUN",
            ))
            .unwrap()
    };
    let (status, body, headers) = call(&s.tap, run()).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let job = headers[header::LOCATION].to_str().unwrap().to_string();
    let path = &job[job.find("/tap/async/").unwrap()..];
    let mut phase = String::new();
    for _ in 0..300 {
        phase = call(&s.tap, get(&format!("{path}/phase"))).await.1;
        if !phase.contains("QUEUED") && !phase.contains("EXECUTING") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(phase.contains("COMPLETED"), "{phase}");
    // Its result now holds more than the 1 byte this caller may keep: the next job is refused, naming the use.
    let (status, body, _) = call(&s.tap, run()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body.contains("bytes of kept results"), "{body}");
    // Deleting the finished job makes room.
    let delete = Request::delete(path).body(Body::empty()).unwrap();
    assert_eq!(call(&s.tap, delete).await.0, StatusCode::SEE_OTHER);
    assert_eq!(call(&s.tap, run()).await.0, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn past_the_queues_the_service_answers_503_with_retry_after() {
    let limits = Limits {
        concurrent_sync: 1,
        waiting_sync: 0,
        queued_jobs: 0,
        ..Limits::default()
    };
    let s = service_with("busy", limits);
    // Every turn taken: the next sync query is refused at once, not left waiting.
    let held = s
        .tap
        .sync_turn(&Client::anonymous(&s.tap.limits, "192.0.2.7"))
        .await
        .unwrap();
    let (status, body, headers) = call(&s.tap, sync_form("LANG=ADQL&QUERY=SELECT+1+AS+one")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(is_error_document(&body) && body.contains("busy"), "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "5");
    drop(held);
    let (status, body, _) = call(
        &s.tap,
        sync_form("LANG=ADQL&QUERY=SELECT+TOP+1+table_name+FROM+TAP_SCHEMA.tables"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // No room for async work: the job is created but not run.
    let request = Request::post("/tap/async")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("LANG=ADQL&QUERY=SELECT+1+AS+one&PHASE=RUN"))
        .unwrap();
    let (status, body, headers) = call(&s.tap, request).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "5");
}
