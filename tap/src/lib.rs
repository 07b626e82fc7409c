//! skyshard's HTTP face over a [`czar::Czar`]: IVOA TAP 1.1 at `/tap` with UWS 1.1 async jobs, VOSI, TAP_SCHEMA,
//! uploads and streamed result formats, Simple Cone Search at `/scs/SCHEMA.TABLE`, and the loopback-only admin
//! endpoints of `skyshard load`. Only this crate knows HTTP, TAP and the result formats.
//!
//! - `/tap/sync` (GET, POST urlencoded or multipart): `LANG` (ADQL, ADQL-2.0, ADQL-2.1), `QUERY`,
//!   `RESPONSEFORMAT` or `FORMAT` ([`output::FORMATS`]), `MAXREC` (default and hard cap in [`Limits`];
//!   `MAXREC=0` gives the result's metadata without running it; `QUERY_STATUS` = `OVERFLOW` only when rows were
//!   really cut), `RUNID`, `UPLOAD`. Parameter names are case-insensitive; unknown ones (pyvo's `REQUEST`) are
//!   ignored.
//! - `/tap/async`: UWS jobs ([`uws`]). `/tap/capabilities`, `/tap/availability`, `/tap/tables[/NAME]`,
//!   `/tap/examples`: VOSI and DALI ([`vosi`]). `/tap/explain` (skyshard's own): the distributed plan as text
//!   ([`sync`], beside `/tap/sync`).
//!
//! - `/portal` (and `/`): the portal, a web page served from the binary, with its JSON endpoints under `/api/v1`
//!   ([`portal`]).
//!
//! Every failure is a DALI error VOTable (`QUERY_STATUS` = `ERROR`) with the HTTP status of its
//! [`protocol::ErrorCode`]: 400 for the user's mistakes, 404 for unknown jobs or tables, 503 when chunks are
//! unavailable.
//!
//! Files: [`service`] (state and limits), [`query`] (a checked request), [`sync`], [`uws`], [`vosi`],
//! [`jobs`] (the job store), [`tap_schema`], [`scs`], [`upload`], [`params`] (reading parameters), [`output`] (the result writers),
//! [`format`] (the text table and DALI error document), [`reply`] (error documents, streamed bodies), [`admin`].

pub use platform::{access, jobs};

pub mod admin;
pub mod async_query;
pub mod audit;
pub mod auth;
pub mod counters;
pub mod error;
pub mod extract;
pub mod files;
pub mod flight_sql;
pub mod format;
pub mod hats;
pub mod images;
pub mod metrics;
pub mod output;
pub mod params;
pub mod portal;
pub mod query;
pub mod reply;
pub mod run;
pub mod scs;
pub mod service;
pub mod sia;
pub mod sync;
pub mod tap_schema;
pub mod upload;
pub mod usertables;
pub mod uws;
pub mod vosi;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;

pub use error::TapError;
pub use run::{Listening, ServiceConfig, run};
pub use service::{Limits, Tap};

/// The czar options that make its catalog carry TAP_SCHEMA (rebuilt at every refresh).
pub fn czar_options(memory_limit: Option<usize>) -> czar::CzarOptions {
    czar::CzarOptions {
        memory_limit,
        system_tables: Some(Arc::new(tap_schema::system_tables)),
    }
}

/// The routes.
pub fn router(tap: Arc<Tap>) -> Router {
    let body_limit = tap.limits.max_body_bytes();
    Router::new()
        .route("/tap", get(vosi::root))
        .route("/tap/", get(vosi::root))
        .route("/tap/sync", get(sync::sync).post(sync::sync))
        .route("/tap/explain", get(sync::explain).post(sync::explain))
        .route("/tap/availability", get(vosi::availability))
        .route("/tap/capabilities", get(vosi::capabilities))
        .route("/tap/tables", get(vosi::tables))
        .route(
            "/tap/tables/{name}",
            get(vosi::table)
                .put(usertables::create)
                .delete(usertables::remove),
        )
        .route(
            "/tap/load/{name}",
            axum::routing::post(usertables::load).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/tap/table-update",
            axum::routing::post(usertables::table_update),
        )
        .route("/tap/Upload", axum::routing::post(usertables::upload))
        .route(
            "/files/{*path}",
            axum::routing::any(files::dav).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/tap/permissions/{name}",
            get(usertables::permissions).post(usertables::set_permissions),
        )
        .route("/tap/examples", get(vosi::examples))
        .route("/tap/login", axum::routing::post(auth::login))
        .route("/tap/logout", get(auth::logout).post(auth::logout))
        .route("/api/v1/me", get(auth::me))
        .route("/api/v1/tokens", axum::routing::post(auth::handoff_token))
        .route(
            "/api/v1/users/{name}",
            axum::routing::delete(usertables::delete_user),
        )
        .merge(uws::routes())
        .merge(portal::routes())
        .merge(admin::routes())
        .route("/scs/{table}", get(scs::cone).post(scs::cone))
        .route("/sia/query", get(sia::query).post(sia::query))
        .route("/sia/capabilities", get(sia::capabilities))
        .route("/sia/availability", get(vosi::availability))
        .route("/soda/sync", get(images::soda_sync).post(images::soda_sync))
        .route("/datalink/links", get(images::links).post(images::links))
        .route("/images/{collection}/{file}", get(images::download))
        .route("/hats/{table}/{*path}", get(hats::get))
        .route("/health", get(reply::health))
        .route("/ready", get(metrics::ready))
        .route("/metrics", get(metrics::metrics))
        // Route layers run once the router has matched a route: who is calling, then (outside it) the route's
        // template noted for the metrics. What a route names (a job) is checked by its extractor (`extract`).
        .route_layer(axum::middleware::from_fn_with_state(
            tap.clone(),
            auth::authenticate,
        ))
        .route_layer(axum::middleware::from_fn(counters::matched))
        .fallback(reply::not_found)
        .layer(axum::middleware::from_fn_with_state(
            tap.clone(),
            metrics::observe,
        ))
        .layer(axum::middleware::from_fn(reply::catch_panic))
        .layer(axum::middleware::from_fn(reply::header_cap))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(reply::close_unread))
        .layer(axum::middleware::map_response(reply::server_header))
        .with_state(tap)
}

/// Serves the TAP service on `listener` until the process ends: HTTP/1.1 connections whose request heads must
/// arrive within [`Limits::header_timeout`] seconds (a client that trickles its headers is cut off, not waited
/// for) and may not outgrow hyper's buffer; the head's size and header count past [`reply::MAX_HEADERS`] are
/// refused by [`reply::header_cap`] with a DALI document.
pub async fn serve(listener: tokio::net::TcpListener, tap: Arc<Tap>) -> Result<(), String> {
    serve_until(
        listener,
        tap,
        std::future::pending(),
        std::time::Duration::ZERO,
    )
    .await
}

/// [`serve`] until `stop` resolves, then a graceful shutdown: new requests are answered 503 with Retry-After
/// ([`Tap::stop`]), each connection finishes the request it is serving and closes, and this returns when all have
/// closed or after `grace`, whichever is first.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    tap: Arc<Tap>,
    stop: impl std::future::Future<Output = ()>,
    grace: std::time::Duration,
) -> Result<(), String> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let header_timeout = std::time::Duration::from_secs(tap.limits.header_timeout.max(1));
    let app = router(tap.clone());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // Room for the refusal of reply::header_cap to be the one a client sees.
        .max_headers(4 * reply::MAX_HEADERS)
        .max_buf_size(8 * reply::MAX_HEADER_BYTES);
    // Every connection holds a receiver (and nothing else does): the sender's `closed()` says when the last
    // connection has ended, so a stop with nothing in flight ends at once.
    let (stopping, _) = tokio::sync::watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    let mut deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stop, if deadline.is_none() => {
                tap.stop();
                // Kept even with no receiver now: connections accepted later read it.
                stopping.send_replace(true);
                tracing::info!(
                    event = "shutdown",
                    grace_seconds = grace.as_secs_f64(),
                    "stopping: new requests get 503, those in flight finish"
                );
                deadline = Some(Box::pin(tokio::time::sleep(grace)));
                continue;
            }
            _ = stopping.closed(), if deadline.is_some() => return Ok(()),
            _ = async { deadline.as_mut().expect("set").await }, if deadline.is_some() => {
                tracing::warn!(event = "shutdown", "stopping with requests still in flight after {} s", grace.as_secs_f64(),
                );
                return Ok(());
            }
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it was accepted: the listener itself
                // is fine; wait a moment rather than spin.
                tracing::warn!(event = "accept", "accepting a connection: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        // Without it a kept-alive connection (pyvo's session, TOPCAT's HttpURLConnection) waits for the client's
        // delayed ACK before each answer after the first: ~40 ms a query (issue 31).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(event = "accept", "TCP_NODELAY: {e}");
        }
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let mut request = request.map(axum::body::Body::new);
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                app.clone().oneshot(request)
            });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let mut stopped = stopping.subscribe();
        tokio::spawn(async move {
            // A connection that ends badly (reset, a head too slow or too large) concerns that client only.
            let mut connection = std::pin::pin!(connection);
            if *stopped.borrow() {
                // Opened while stopping: its requests are answered 503 with `Connection: close`.
                let _ = connection.await;
                return;
            }
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = stopped.changed() => {}
            }
            // Stopping: finish the request in flight (its body whole), then close.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
            drop(stopped);
        });
    }
}
