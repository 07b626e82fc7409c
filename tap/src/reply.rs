//! Answers: DALI error documents with the status of their kind, streamed bodies, and request helpers shared by
//! the handlers.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::ErrorCode;
use tokio::sync::mpsc;

use crate::error::TapError;
use crate::format;

/// Headers on every response: the server's name, and `X-Content-Type-Options: nosniff` (a browser takes each
/// document for the type it is sent as, never for what its bytes look like).
pub(crate) async fn server_header(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::SERVER,
        header::HeaderValue::from_static(concat!("skyshard/", env!("CARGO_PKG_VERSION"))),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    response
}

/// A request body the handler left unread closes the connection after the answer, and says so
/// (`Connection: close`): hyper cannot reuse a connection with unread bytes on it, and a client that kept it alive (as
/// requests, pyvo and TOPCAT do) would otherwise send its next request into a socket the server is closing, and see
/// "connection closed without response" instead of an answer. Requests without a body pass untouched.
pub(crate) async fn close_unread(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    if !has_body {
        return next.run(request).await;
    }
    let read = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (parts, body) = request.into_parts();
    let watched = Watched {
        inner: body,
        read: read.clone(),
    };
    let mut response = next
        .run(axum::extract::Request::from_parts(parts, Body::new(watched)))
        .await;
    if !read.load(std::sync::atomic::Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body that notes when it has been read to its end.
struct Watched {
    inner: Body,
    read: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        let ended = match &polled {
            std::task::Poll::Ready(None) => true,
            std::task::Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            _ => false,
        };
        if ended {
            self.read.store(true, std::sync::atomic::Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A name the client chose: letters, digits, `_`, `-`, `.`, not starting with a dot.
pub(crate) fn plain(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
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
    format!("{}/tap/login", base_url(headers))
}

/// 401 with a DALI error document and the challenges of every way in: Bearer and Basic (RFC 6750, 7617) and the
/// IVOA SSO schemes, which point at the login form. Not Basic to a browser's script (a `fetch` from the portal, its
/// login form): the browser would answer it with its own password dialog, or, headless, hold the request.
pub fn unauthorized(headers: &HeaderMap, message: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, message);
    let login = login_url(headers);
    let scripted = headers
        .get("sec-fetch-mode")
        .is_some_and(|m| m.as_bytes() != b"navigate");
    let challenges = [
        Some("Bearer realm=\"skyshard\"".to_string()),
        (!scripted).then(|| "Basic realm=\"skyshard\"".to_string()),
        Some(format!(
            "ivoa_bearer standard_id=\"ivo://ivoa.net/sso#tls-with-password\", access_url=\"{login}\""
        )),
        Some(format!(
            "ivoa_cookie standard_id=\"ivo://ivoa.net/sso#tls-with-password\", access_url=\"{login}\""
        )),
    ];
    for c in challenges.into_iter().flatten() {
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

/// The base URL clients reached the service at (from the Host header), as written into documents (HTML, XML,
/// Location headers): a Host that is not a plain `host[:port]` (a name, an IPv4 or a bracketed IPv6 address, and
/// a port) is not reflected but replaced by `localhost`, so no header can put markup into a page.
pub fn base_url(headers: &HeaderMap) -> String {
    format!("http://{}", host(headers))
}

/// The request's Host if it is a plain `host[:port]`, else `localhost`.
pub fn host(headers: &HeaderMap) -> &str {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| plain_host(h))
        .unwrap_or("localhost")
}

/// `host[:port]`: letters, digits, `.`, `-`, `_`, `:` and the brackets of an IPv6 address, at most 255 bytes.
fn plain_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_that_is_not_plain_is_not_reflected() {
        let mut h = HeaderMap::new();
        for (host, want) in [
            ("sky.example.org:8080", "http://sky.example.org:8080"),
            ("[::1]:80", "http://[::1]:80"),
            ("10.0.0.1", "http://10.0.0.1"),
            ("x\"><script>alert(1)</script>", "http://localhost"),
            ("a b", "http://localhost"),
            ("evil/path", "http://localhost"),
        ] {
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            assert_eq!(base_url(&h), want, "{host}");
        }
        h.remove(header::HOST);
        assert_eq!(base_url(&h), "http://localhost");
    }
}
