//! Answers: DALI error documents with the status of their kind, streamed bodies, and request helpers shared by
//! the handlers.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::ErrorCode;
use tokio::sync::mpsc;

use crate::error::TapError;
use crate::format;

pub(crate) async fn server_header(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::SERVER,
        header::HeaderValue::from_static(concat!("skyshard/", env!("CARGO_PKG_VERSION"))),
    );
    response
}

/// Panics the last line of defence caught since the service started (a test suite asserts it stays 0).
static PANICS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn panics_caught() -> u64 {
    PANICS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The last line of defence: a handler that panics answers 500 with a DALI error document instead of dropping the
/// connection; the panic itself is printed by the panic hook and counted.
pub(crate) async fn catch_panic(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(panic) => {
            PANICS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(event = "panic", "a request handler panicked: {what}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the service failed on this request (an internal error, logged); nothing was changed",
            )
        }
    }
}

/// Header fields a request may carry, and the bytes of its header section (names and values), as nginx's
/// defaults allow: a browser with a large cookie stays far below both.
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 32 << 10;

/// Refuses a request whose header section is past [`MAX_HEADERS`] or [`MAX_HEADER_BYTES`] with 431 and a DALI
/// document (hyper's own, larger limits cut off anything beyond with a bare 431).
pub(crate) async fn header_cap(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!(
                "the request has {} header fields of {bytes} bytes; this service takes at most {MAX_HEADERS} \
                 fields and {MAX_HEADER_BYTES} bytes",
                headers.len()
            ),
        );
    }
    next.run(request).await
}

/// `/health`: the process answers; how many panics were caught.
pub(crate) async fn health() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(
            "{{\"status\":\"ok\",\"panics_caught\":{},\"chunks_failed_over\":{}}}\n",
            panics_caught(),
            czar::dispatch::chunks_failed_over()
        ),
    )
        .into_response()
}

pub(crate) async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such resource: the TAP service is at /tap",
    )
}

pub fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/x-votable+xml")],
        format::error_votable(message),
    )
        .into_response()
}

/// 503 with `Retry-After`: the service is at a limit now, not broken; 429 when it is the caller's own share.
pub fn busy(b: &platform::quota::Busy) -> Response {
    let mut response = if b.mine {
        error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "your share is used up: {used} {what} count against {whose}, which may have {limit}; wait for some \
                 to end (or, for results, delete finished jobs)",
                used = b.used,
                what = b.what,
                whose = b.whose,
                limit = b.limit
            ),
        )
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "the service is busy ({} at the limit of {}); try again in a few seconds",
                b.what, b.limit
            ),
        )
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    response
}

/// Where a client logs in, from the request's Host.
fn login_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost");
    format!("http://{host}/tap/login")
}

/// 401 with a DALI error document and the challenges of every way in: Bearer and Basic (RFC 6750, 7617) and the
/// IVOA SSO schemes, which point at the login form.
pub fn unauthorized(headers: &HeaderMap, message: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, message);
    let login = login_url(headers);
    let challenges = [
        "Bearer realm=\"skyshard\"".to_string(),
        "Basic realm=\"skyshard\"".to_string(),
        format!(
            "ivoa_bearer standard_id=\"ivo://ivoa.net/sso#tls-with-password\", access_url=\"{login}\""
        ),
        format!(
            "ivoa_cookie standard_id=\"ivo://ivoa.net/sso#tls-with-password\", access_url=\"{login}\""
        ),
    ];
    for c in challenges {
        if let Ok(v) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::WWW_AUTHENTICATE, v);
        }
    }
    response
}

/// The answer to what the platform refused: the status of its kind (401 with the challenges of every way in).
pub fn refused(headers: &HeaderMap, e: &platform::error::PlatformError) -> Response {
    use platform::error::PlatformError as E;
    let status = match e {
        E::BadRequest(_) => StatusCode::BAD_REQUEST,
        E::Unauthenticated(m) => return unauthorized(headers, m),
        E::Forbidden(_) => StatusCode::FORBIDDEN,
        E::NotFound(_) => StatusCode::NOT_FOUND,
        E::Conflict(_) => StatusCode::CONFLICT,
        E::OverQuota(_) => StatusCode::PAYLOAD_TOO_LARGE,
        E::UnsupportedFormat(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        E::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        E::Czar(c) => status_of(c.code()),
    };
    error(status, &e.to_string())
}

/// The error document of a failed request, with the HTTP status of its kind.
pub fn failure(e: &TapError) -> Response {
    error(status_of(e.code()), &e.to_string())
}

/// The HTTP status of a kind of failure.
pub fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A response whose body is produced by `producer` writing into the channel it is given.
pub fn streamed_response(
    status: StatusCode,
    content_type: &str,
    extra: Vec<(header::HeaderName, String)>,
    producer: impl FnOnce(mpsc::Sender<std::io::Result<Bytes>>) + Send + 'static,
) -> Response {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    producer(tx);
    let body =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let mut response = (
        status,
        [(header::CONTENT_TYPE, content_type.to_string())],
        Body::from_stream(body),
    )
        .into_response();
    for (k, v) in extra {
        if let Ok(v) = v.parse() {
            response.headers_mut().insert(k, v);
        }
    }
    response
}

/// The base URL clients reached the service at (from the Host header).
pub fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}
