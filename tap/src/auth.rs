//! Who is calling, for HTTP: the middleware that turns a request's credentials (a token as Bearer or Basic, the
//! session cookie, or a trusted proxy's identity header) into a [`Caller`] through [`platform::identity`], answers
//! 401 with the challenges of every way in, and writes the audit line; and the login, logout and `/api/v1/me`
//! endpoints. Presented credentials that are not valid are refused under every policy but `none`: a typo never
//! silently makes someone anonymous.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metastore::accounts::Identity;
pub use platform::identity::{Auth, COOKIE, Caller, Policy, Proxy, Refusal};
use platform::jobs::now_ms;
pub use platform::quota::{Allowance, Client};

use platform::identity::SessionError;
use platform::quota::LoginRefusal;

use crate::params::Params;
use crate::reply::{error, refused, unauthorized};
use crate::service::Tap;

/// The address a request comes from (the client's, through a trusted proxy), as the handlers see it.
#[derive(Debug, Clone)]
pub(crate) struct Address(pub String);

/// The address the connection comes from.
fn peer(request: &axum::extract::Request) -> Option<std::net::IpAddr> {
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Whether the client reached the service over HTTPS (as a trusted proxy says): its session cookie is then `Secure`.
#[derive(Debug, Clone, Copy)]
pub struct Https(pub bool);

/// Whether the request comes through the trusted proxy.
fn through_proxy<'a>(auth: &'a Auth, request: &axum::extract::Request) -> Option<&'a Proxy> {
    auth.proxy.as_ref().filter(|p| p.trusts(peer(request)))
}

/// The caller a trusted proxy names, if the request comes through it with its header.
fn proxied(auth: &Auth, request: &axum::extract::Request) -> Result<Option<Caller>, Response> {
    let Some(proxy) = through_proxy(auth, request) else {
        return Ok(None);
    };
    let Some(value) = request.headers().get(proxy.header.as_str()) else {
        return Ok(None);
    };
    match auth.proxied(value.to_str().unwrap_or("")) {
        Ok(caller) => Ok(Some(caller)),
        Err(Refusal::Invalid(message)) => Err(error(StatusCode::FORBIDDEN, &message)),
        Err(Refusal::Unreadable(message)) => Err(error(StatusCode::SERVICE_UNAVAILABLE, message)),
    }
}

/// The client's address: the connection's, or the last hop a trusted proxy recorded in `X-Forwarded-For`.
fn client_address(tap: &Tap, request: &axum::extract::Request) -> String {
    let trusted = tap
        .auth
        .as_ref()
        .is_some_and(|a| through_proxy(a, request).is_some());
    if trusted
        && let Some(hop) = request
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<std::net::IpAddr>().ok())
    {
        return hop.to_string();
    }
    peer(request).map_or_else(|| "unknown".to_string(), |ip| ip.to_string())
}

/// The token a request presents, if any; Err for credentials that cannot be read.
pub(crate) fn presented(headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    platform::identity::presented(
        headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
        headers
            .get_all(header::COOKIE)
            .iter()
            .map(HeaderValue::as_bytes),
    )
}

/// Paths anyone may reach under `required`: what a client needs to find out how to log in, and to log in.
fn open_path(path: &str) -> bool {
    // The portal's page and files: it shows the login form.
    path == "/"
        || path == "/portal"
        || path.starts_with("/portal/")
        || matches!(
            path,
            "/tap/capabilities"
                | "/tap/availability"
                | "/sia/capabilities"
                | "/sia/availability"
                | "/tap/login"
                | "/tap/logout"
                | "/health"
                | "/ready"
                | "/metrics"
        )
}

/// Checks a token: the caller, or the refusal to answer with.
fn check(auth: &Auth, headers: &HeaderMap, token: &str) -> Result<Caller, Response> {
    auth.identify(token).map_err(|refusal| match refusal {
        Refusal::Invalid(message) => unauthorized(headers, &message),
        Refusal::Unreadable(message) => error(StatusCode::SERVICE_UNAVAILABLE, message),
    })
}

/// The middleware: puts the [`Caller`] into the request, or answers 401.
pub(crate) async fn authenticate(
    State(tap): State<Arc<Tap>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| path.clone(), |m| m.as_str().to_string());
    let tally = Arc::new(crate::audit::Tally::default());
    let address = client_address(&tap, &request);
    // Who the request counts as, and the response: a refusal (written to the audit log like any answer), or the
    // handler's.
    let ended = stale_session(&tap, &request);
    let (who, user, mut response) = match caller_of(&tap, &request, &route, ended) {
        Err(refusal) => (format!("address {address}"), None, refusal),
        Ok(caller) => {
            let client = Client::of(&tap.limits, &caller, || address.clone());
            let user = caller.user().map(str::to_string);
            let https = tap
                .auth
                .as_ref()
                .is_some_and(|a| through_proxy(a, &request).is_some())
                && request
                    .headers()
                    .get("x-forwarded-proto")
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
            let who = client.key.clone();
            request.extensions_mut().insert(client);
            request.extensions_mut().insert(Address(address));
            request.extensions_mut().insert(caller);
            request.extensions_mut().insert(Https(https));
            request.extensions_mut().insert(tally.clone());
            (who, user, next.run(request).await)
        }
    };
    if tap.audit.is_some() {
        let mut line = serde_json::json!({
            "time": platform::jobs::iso(now_ms()),
            "who": who,
            "method": method.as_str(),
            "path": path,
            "status": response.status().as_u16(),
        });
        let tap = tap.clone();
        response = crate::audit::when_sent(response, move |bytes| {
            tally.fill(&mut line);
            line["bytes"] = bytes.into();
            line["ms"] = (started.elapsed().as_secs_f64() * 1000.0).into();
            if let Some(audit) = &tap.audit {
                audit.write(&line);
            }
        });
    }
    if let Some(user) = user.and_then(|u| HeaderValue::from_str(&u).ok()) {
        response.headers_mut().insert("x-vo-authenticated", user);
    }
    // Said on every answer until the cookie is replaced or cleared (the portal then says why the user is anonymous
    // and clears it through /tap/logout): clearing it here, on whichever answer came first (the page's HTML),
    // would leave the portal's own check nothing to see.
    if ended {
        response
            .headers_mut()
            .insert(SESSION_HEADER, HeaderValue::from_static("ended"));
    }
    response
}

/// The `Set-Cookie` that makes a browser forget its session cookie.
const CLEAR_COOKIE: &str = "SESSION=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0";

/// Answered with `ended` when a browser's session cookie is no longer valid and the request went on without it.
const SESSION_HEADER: &str = "x-skyshard-session";

/// Whether the request is a browser's whose only credentials are a session cookie that no longer works (revoked,
/// expired, from a data directory since replaced). Such a request goes on as anonymous
/// instead of being refused: otherwise the portal's own page answers 401 and the user, who cannot see or clear an
/// HttpOnly cookie, is locked out. A program presenting a token it chose (an Authorization header), or a client
/// that is not a browser, still gets its 401: a silently anonymous answer would look like missing data.
fn stale_session(tap: &Tap, request: &axum::extract::Request) -> bool {
    let headers = request.headers();
    let Some(auth) = &tap.auth else { return false };
    if headers.contains_key(header::AUTHORIZATION) || !from_browser(headers) {
        return false;
    }
    if through_proxy(auth, request).is_some() {
        return false;
    }
    match platform::identity::cookie(
        headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes),
        COOKIE,
    ) {
        Some(token) => matches!(auth.identify(&token), Err(Refusal::Invalid(_))),
        None => false,
    }
}

/// Whether a browser sent the request (browsers send the fetch metadata headers; other clients do not).
fn from_browser(headers: &HeaderMap) -> bool {
    headers.contains_key("sec-fetch-mode") || headers.contains_key("sec-fetch-site")
}

/// Who a request comes from, or why it is refused before any handler runs: credentials that are not valid (401),
/// a request another site's page made the browser send (403), a token that may not read the catalogs on a route
/// that reads them (403), a request without identity where identity is required (401).
fn caller_of(
    tap: &Tap,
    request: &axum::extract::Request,
    route: &str,
    stale: bool,
) -> Result<Caller, Response> {
    cross_site(request)?;
    if route.starts_with("/admin/") && !loopback_host(request.headers()) {
        return Err(error(
            StatusCode::FORBIDDEN,
            "the admin API answers only requests addressed to this machine by a loopback name (localhost, \
             127.0.0.1 or [::1]): a page whose DNS name was made to point here is not the operator",
        ));
    }
    let headers = request.headers();
    let caller = match &tap.auth {
        None => Caller::Anonymous,
        Some(auth) => match proxied(auth, request)? {
            Some(caller) => caller,
            None => match presented(headers) {
                Err(problem) => return Err(unauthorized(headers, problem)),
                Ok(Some(_)) if stale => {
                    if auth.policy == Policy::Required && !open_path(route) {
                        return Err(unauthorized(
                            headers,
                            "your session has ended (logged out elsewhere, expired or revoked): log in again",
                        ));
                    }
                    Caller::Anonymous
                }
                Ok(Some(token)) => check(auth, headers, &token)?,
                Ok(None) => {
                    if auth.policy == Policy::Required && !open_path(route) {
                        return Err(unauthorized(
                            headers,
                            "this service needs identity: send a token (Authorization: Bearer TOKEN, or Basic with \
                             the token as password) or log in at /tap/login",
                        ));
                    }
                    Caller::Anonymous
                }
            },
        },
    };
    if reads_catalog(route)
        && let Err(e) = tap.may_read_catalog(&caller)
    {
        return Err(refused(headers, &e));
    }
    Ok(caller)
}

/// Routes that read the catalogs, tables or jobs (a token needs the `read:tap` scope for them): all but the file
/// spaces (their own scope), identity itself, the portal's files and the probes.
fn reads_catalog(route: &str) -> bool {
    !(route.starts_with("/files/")
        || route.starts_with("/admin/")
        || matches!(route, "/api/v1/me" | "/tap/login" | "/tap/logout")
        || open_path(route))
}

/// Whether the request's Host names this machine's loopback (`localhost`, `127.*`, `[::1]`, with any port): what the
/// operator's own tools send to the admin API, and what a DNS-rebinding page cannot (its Host is its own name).
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(n, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) { n } else { host }
        })
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A state-changing request (not GET, HEAD, OPTIONS or PROPFIND) that a page of another site made the browser
/// send is refused, whatever credentials it carries: a browser sends the session cookie or cached Basic
/// credentials with it, and an operator's browser reaches the loopback admin API. The page's origin is in
/// `Origin` (and `Sec-Fetch-Site`); clients that are not browsers send neither.
fn cross_site(request: &axum::extract::Request) -> Result<(), Response> {
    let method = request.method().as_str();
    if matches!(method, "GET" | "HEAD" | "OPTIONS" | "PROPFIND") {
        return Ok(());
    }
    if foreign_page(request.headers()) {
        return Err(from_another_site());
    }
    Ok(())
}

fn from_another_site() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "a request another site's page sent is refused: this service changes nothing on behalf of other origins",
    )
}

/// Whether a browser says the request comes from another site's page. A browser that sends Sec-Fetch-Site says
/// where the request comes from; one that does not is judged by its Origin, against the Host it reached (or the
/// host a proxy in front was asked for: a page cannot set that header without a CORS preflight, which this service
/// never grants). Clients that are not browsers send neither.
fn foreign_page(headers: &HeaderMap) -> bool {
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => !matches!(site, "same-origin" | "none"),
        None => headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|origin| {
                let authority = origin
                    .split_once("://")
                    .map_or("", |(_, rest)| rest)
                    .trim_end_matches('/');
                let forwarded = headers
                    .get("x-forwarded-host")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split(',').next())
                    .map(str::trim);
                authority.is_empty()
                    || !(authority.eq_ignore_ascii_case(crate::reply::host(headers))
                        || forwarded.is_some_and(|f| authority.eq_ignore_ascii_case(f)))
            }),
    }
}

/// `POST /tap/login`: `username` and `password` (a token of that user; passwords proper are not kept), or `token`.
/// Sets the session cookie and answers the SSO headers `X-VO-Authenticated` and `X-VO-Bearer`.
pub(crate) async fn login(
    State(tap): State<Arc<Tap>>,
    https: Option<axum::Extension<Https>>,
    axum::Extension(Address(address)): axum::Extension<Address>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let Some(auth) = &tap.auth else {
        return error(
            StatusCode::NOT_FOUND,
            "this service has no accounts (--auth none): there is nothing to log in to",
        );
    };
    let username = params.get("USERNAME").unwrap_or("").to_string();
    let password = params.get("PASSWORD").unwrap_or("").to_string();
    let token = match params.get("TOKEN") {
        Some(t) => t.to_string(),
        None if password.starts_with("sky_") => password,
        None if !username.is_empty() && !password.is_empty() => {
            // Password guessing is slowed per account and per address (an attempt counts as failed from the start,
            // so attempts sent together count together), and few passwords are checked at once.
            let keys = [format!("user {username}"), format!("address {address}")];
            let attempt = match tap.logins.attempt(&keys) {
                Ok(a) => a,
                Err(LoginRefusal::Wait(wait)) => return too_many_logins(wait),
                Err(LoginRefusal::Busy) => {
                    return busy_login("many logins are being checked just now; try again in a second");
                }
            };
            match session(auth, &username, password).await {
                Ok(token) => {
                    attempt.succeeded();
                    token
                }
                Err(SessionError::Credentials(message)) => return unauthorized(&headers, &message),
                Err(SessionError::Busy(message)) => {
                    attempt.succeeded();
                    return busy_login(&message);
                }
            }
        }
        None => {
            return unauthorized(
                &headers,
                "log in with username and password (the user's password or a token), or token",
            );
        }
    };
    let identity = match check(auth, &headers, &token) {
        Ok(Caller::User(identity)) => identity,
        Ok(Caller::Anonymous) => unreachable!("a checked token names a user"),
        Err(response) => return response,
    };
    if let Some(name) = params.get("USERNAME").filter(|n| !n.is_empty())
        && name != identity.user
    {
        return unauthorized(
            &headers,
            "the credentials are not valid: the token is not that user's",
        );
    }
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        format!("logged in as {}\n", identity.user),
    )
        .into_response();
    let h = response.headers_mut();
    let secure = if https.is_some_and(|h| h.0.0) {
        "; Secure"
    } else {
        ""
    };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax{secure}"
    )) {
        h.insert(header::SET_COOKIE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&identity.user) {
        h.insert("x-vo-authenticated", v);
    }
    if let Ok(v) = HeaderValue::from_str(&token) {
        h.insert("x-vo-bearer", v);
    }
    response
}

/// 429 with `Retry-After`: too many failed logins for this account or from this address just now.
fn too_many_logins(wait: std::time::Duration) -> Response {
    let seconds = wait.as_secs().max(1);
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        &format!(
            "too many failed logins for this account or from this address: try again in {seconds} s \
             ({} failures are allowed per {} s)",
            platform::quota::LOGIN_FAILURES,
            platform::quota::LOGIN_WINDOW.as_secs()
        ),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// 503 with `Retry-After: 1`: the login could not be checked now, through no fault of the caller's.
fn busy_login(message: &str) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(1u32));
    response
}

/// A login with a password, checked off the async threads (Argon2).
async fn session(auth: &Auth, username: &str, password: String) -> Result<String, SessionError> {
    let auth = auth.clone();
    let name = username.to_string();
    tokio::task::spawn_blocking(move || auth.open_session(&name, &password))
        .await
        .map_err(|e| SessionError::Busy(format!("checking the password failed: {e}")))?
}

/// `/tap/logout`: the session cookie is cleared.
pub(crate) async fn logout(
    State(tap): State<Arc<Tap>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    // Not even by a link: another site must not end the user's session (GET included).
    if foreign_page(&headers) {
        return from_another_site();
    }
    // `?forget`: the browser forgets a cookie the service no longer takes, and nothing is revoked (the cookie this
    // path receives may be another, valid one: a cookie set for a narrower path by a neighbouring site is sent
    // first to that path only).
    if query.as_deref().is_some_and(|q| q.split('&').any(|p| p == "forget" || p.starts_with("forget="))) {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain"), (header::SET_COOKIE, CLEAR_COOKIE)],
            "forgotten\n",
        )
            .into_response();
    }
    // The session ends on the service too: its token stops working, not only the browser's cookie.
    let session = platform::identity::cookie(
        headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes),
        COOKIE,
    );
    if let (Some(auth), Some(token)) = (&tap.auth, session)
        && let Err(e) = auth.close_session(&token)
    {
        tracing::warn!(event = "logout", "ending a session: {e}");
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/plain"),
            (header::SET_COOKIE, CLEAR_COOKIE),
        ],
        "logged out\n",
    )
        .into_response()
}

/// `POST /api/v1/tokens`: a token for a notebook the portal hands a job to (`Auth::handoff_token`), as JSON with
/// its expiry. Only a user may ask, for themself; another site's page cannot (`cross_site`), and the answer is
/// never cached.
pub(crate) async fn handoff_token(
    State(tap): State<Arc<Tap>>,
    axum::Extension(caller): axum::Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let (Some(auth), Caller::User(identity)) = (&tap.auth, &caller) else {
        return error(
            StatusCode::BAD_REQUEST,
            "only a logged-in user gets a notebook token; an anonymous notebook needs none",
        );
    };
    // Only for the portal's logged-in browser: a token presented in a header (a notebook's, leaked with it) must not
    // renew itself for ever.
    if headers.contains_key(header::AUTHORIZATION) {
        return error(
            StatusCode::FORBIDDEN,
            "notebook tokens are made for a browser's login session; with a token you have one already \
             (skyshard token create makes others)",
        );
    }
    let auth = auth.clone();
    let identity = identity.clone();
    let made = tokio::task::spawn_blocking(move || auth.handoff_token(&identity)).await;
    match made {
        Ok(Ok((token, expires))) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            format!(
                "{}\n",
                serde_json::json!({ "token": token, "expires": platform::jobs::iso(expires) })
            ),
        )
            .into_response(),
        // Too many live ones is the caller's own share, as with jobs.
        Ok(Err(platform::error::PlatformError::OverQuota(message))) => {
            error(StatusCode::TOO_MANY_REQUESTS, &message)
        }
        Ok(Err(e)) => refused(&headers, &e),
        Err(e) => busy_login(&format!("making the token failed: {e}")),
    }
}

/// `GET /api/v1/me`: who the service takes the caller for, as JSON.
pub(crate) async fn me(
    State(tap): State<Arc<Tap>>,
    axum::Extension(caller): axum::Extension<Caller>,
    axum::Extension(client): axum::Extension<Client>,
) -> Response {
    let policy = tap.auth.as_ref().map_or(Policy::None, |a| a.policy);
    let limit = |v: u64| {
        if v == u64::MAX {
            serde_json::Value::Null
        } else {
            v.into()
        }
    };
    let share = |key: &str, a: &Allowance| {
        serde_json::json!({
            "counted_as": key,
            "sync_in_flight": { "used": tap.sync_of(key), "limit": limit(a.sync as u64) },
            "jobs_queued_or_executing": { "used": tap.jobs.active_of(key), "limit": limit(a.jobs as u64) },
            "result_bytes": { "used": tap.jobs.result_bytes_of(key), "limit": limit(a.result_bytes) },
        })
    };
    let shares = share(&client.key, &client.allowance);
    let group_shares: Vec<_> = client.groups.iter().map(|(k, a)| share(k, a)).collect();
    let mut body = match &caller {
        Caller::Anonymous => serde_json::json!({
            "anonymous": true,
            "auth": policy.to_string(),
            "counted_as": client.key,
            "shares": shares,
        }),
        Caller::User(i) => serde_json::json!({
            "anonymous": false,
            "user": i.user,
            "groups": i.groups,
            "scopes": i.scopes,
            "token": i.token,
            "auth": policy.to_string(),
            "counted_as": client.key,
            "jobs": tap.jobs.owned_by(&i.user),
            "shares": shares,
            "group_shares": group_shares,
            "table_space": table_space(&tap, i),
        }),
    };
    // Where Flight SQL listens (on this host, as the client reached it), so a client given the HTTP URL finds it.
    if let Some(port) = tap.flight_sql_port.get() {
        body["flight_sql_port"] = (*port).into();
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

/// Bytes the user's tables (schema `user_NAME`) and their groups' (`group_NAME`) hold, with each quota.
fn table_space(tap: &Tap, identity: &Identity) -> serde_json::Value {
    use platform::access::Space;
    let spaces = std::iter::once(Space::User(identity.user.clone()))
        .chain(identity.groups.iter().map(|g| Space::Group(g.clone())));
    spaces
        .map(|space| {
            let schema = match &space {
                Space::User(u) => format!("user_{u}"),
                Space::Group(g) => format!("group_{g}"),
            };
            serde_json::json!({
                "schema": schema,
                "used": tap.table_space_bytes(&space, None),
                "limit": tap.table_space_quota(&space),
            })
        })
        .collect::<Vec<_>>()
        .into()
}
