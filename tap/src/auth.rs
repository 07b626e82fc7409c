//! Who is calling. Three ways in, as clients already speak them: `Authorization: Bearer TOKEN` (pyvo with a
//! session, curl, Flight SQL), HTTP Basic with any user name and the token as password (TOPCAT, rclone, cadctap with
//! `.netrc`), and the session cookie that `POST /tap/login` sets (astroquery's `TapPlus.login()`, browsers). Tokens
//! are checked against the data directory's accounts ([`metastore::accounts`]) at each request, so a revoked token
//! stops working at once.
//!
//! The policy (`--auth`): `none` (nobody is asked, every job is everyone's: a laptop), `optional` (anonymous
//! callers query the catalogs; named ones also own their jobs), `required` (every request but the capabilities,
//! availability, login and health needs a valid token). Presented credentials that are not valid are refused
//! under every policy but `none`: a typo never silently makes someone anonymous.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use metastore::accounts::{Accounts, Identity};

use crate::jobs::now_ms;
use crate::params::Params;
use crate::reply::error;
use crate::service::Tap;

/// The session cookie's name: `SESSION`, the name astroquery's `TapPlus.login()` looks for (ESA's archives set it).
pub const COOKIE: &str = "SESSION";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    None,
    Optional,
    Required,
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Policy, String> {
        match s {
            "none" => Ok(Policy::None),
            "optional" => Ok(Policy::Optional),
            "required" => Ok(Policy::Required),
            other => Err(format!("--auth {other}: use none, optional or required")),
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Policy::None => "none",
            Policy::Optional => "optional",
            Policy::Required => "required",
        })
    }
}

/// The caller of a request, put into its extensions by [`authenticate`].
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    User(Identity),
}

impl Caller {
    pub fn user(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::User(i) => Some(&i.user),
        }
    }

    pub fn may(&self, scope: &str) -> bool {
        matches!(self, Caller::User(i) if i.may(scope))
    }
}

/// Whose share a request counts against ([`crate::Limits::caller_sync`], `caller_jobs`): a user, or the address of
/// an anonymous client.
#[derive(Debug, Clone)]
pub struct Client(pub String);

impl Client {
    fn of(caller: &Caller, request: &axum::extract::Request) -> Client {
        if let Some(user) = caller.user() {
            return Client(format!("user {user}"));
        }
        let address = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
        Client(format!("address {address}"))
    }
}

/// The service's policy and the accounts it checks tokens against.
#[derive(Debug, Clone)]
pub struct Auth {
    pub policy: Policy,
    pub accounts: Accounts,
}

/// The token a request presents, if any; Err for credentials that cannot be read.
fn presented(headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| "the Authorization header is not text")?;
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        return match scheme.to_ascii_lowercase().as_str() {
            "bearer" if !rest.is_empty() => Ok(Some(rest.to_string())),
            "basic" => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(rest)
                    .map_err(|_| "the Basic credentials are not base64")?;
                let text = String::from_utf8(decoded)
                    .map_err(|_| "the Basic credentials are not UTF-8")?;
                // The user name is the client's habit (TOPCAT's x-oauth-basic, a login name): the token decides.
                let (_, password) = text
                    .split_once(':')
                    .ok_or("the Basic credentials have no password")?;
                Ok(Some(password.to_string()))
            }
            _ => Err("the Authorization header must be Bearer TOKEN or Basic (any user, the token as password)"),
        };
    }
    Ok(cookie(headers, COOKIE))
}

/// The value of a cookie.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
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
        format!("ivoa_bearer standard_id=\"ivo://ivoa.net/sso#tls-with-password\", access_url=\"{login}\""),
        format!("ivoa_cookie standard_id=\"ivo://ivoa.net/sso#tls-with-password\", access_url=\"{login}\""),
    ];
    for c in challenges {
        if let Ok(v) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::WWW_AUTHENTICATE, v);
        }
    }
    response
}

/// Paths anyone may reach under `required`: what a client needs to find out how to log in, and to log in.
fn open_path(path: &str) -> bool {
    matches!(
        path,
        "/tap/capabilities" | "/tap/availability" | "/tap/login" | "/tap/logout" | "/health"
    )
}

/// Checks a token: the caller, or the refusal to answer with.
fn check(auth: &Auth, headers: &HeaderMap, token: &str) -> Result<Caller, Response> {
    match auth.accounts.check(token, now_ms()) {
        Ok(Ok(identity)) => Ok(Caller::User(identity)),
        Ok(Err(refusal)) => Err(unauthorized(
            headers,
            &format!("the credentials are not valid: {refusal}"),
        )),
        Err(e) => {
            eprintln!("error: checking a token: {e}");
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the accounts cannot be read just now; try again",
            ))
        }
    }
}

/// Someone else's job answers 403 (UWS 1.1), or 401 to an anonymous caller, who may be its owner not logged in;
/// anonymous jobs are anyone's who has the URL.
fn job_refusal(tap: &Tap, caller: &Caller, path: &str, headers: &HeaderMap) -> Option<Response> {
    // The id as the route will see it: percent-decoded, so `%6A...` cannot slip past as another name of `j...`.
    let id = percent_decoded(path.strip_prefix("/tap/async/")?.split('/').next()?);
    let id = id.as_str();
    let owner = tap.jobs.get(id)?.owner?;
    match caller.user() {
        Some(user) if user == owner => None,
        Some(_) => Some(error(
            StatusCode::FORBIDDEN,
            &format!("job {id} belongs to another user"),
        )),
        None => Some(unauthorized(
            headers,
            &format!("job {id} belongs to a named user: send their token or log in"),
        )),
    }
}

/// A path segment with its `%XX` escapes decoded (as the router decodes it before a handler sees it).
fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The middleware: puts the [`Caller`] into the request, or answers 401.
pub(crate) async fn authenticate(
    State(tap): State<Arc<Tap>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let caller = match &tap.auth {
        None => Caller::Anonymous,
        Some(auth) => match presented(request.headers()) {
            Err(problem) => return unauthorized(request.headers(), problem),
            Ok(Some(token)) => match check(auth, request.headers(), &token) {
                Ok(caller) => caller,
                Err(response) => return response,
            },
            Ok(None) => {
                if auth.policy == Policy::Required && !open_path(request.uri().path()) {
                    return unauthorized(
                        request.headers(),
                        "this service needs identity: send a token (Authorization: Bearer TOKEN, or Basic with the \
                         token as password) or log in at /tap/login",
                    );
                }
                Caller::Anonymous
            }
        },
    };
    if tap.auth.is_some()
        && let Some(refusal) = job_refusal(&tap, &caller, request.uri().path(), request.headers())
    {
        return refusal;
    }
    let user = caller.user().map(str::to_string);
    let client = Client::of(&caller, &request);
    let started = std::time::Instant::now();
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    request.extensions_mut().insert(client.clone());
    request.extensions_mut().insert(caller);
    let mut response = next.run(request).await;
    if let Some(audit) = &tap.audit {
        let line = serde_json::json!({
            "time": crate::jobs::iso(now_ms()),
            "who": client.0,
            "method": method.as_str(),
            "path": path,
            "status": response.status().as_u16(),
            "ms": started.elapsed().as_secs_f64() * 1000.0,
        });
        use std::io::Write;
        let mut file = audit.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = writeln!(file, "{line}") {
            eprintln!("warning: the audit log: {e}");
        }
    }
    if let Some(user) = user.and_then(|u| HeaderValue::from_str(&u).ok()) {
        response.headers_mut().insert("x-vo-authenticated", user);
    }
    response
}

/// `POST /tap/login`: `username` and `password` (a token of that user; passwords proper are not kept), or `token`.
/// Sets the session cookie and answers the SSO headers `X-VO-Authenticated` and `X-VO-Bearer`.
pub(crate) async fn login(State(tap): State<Arc<Tap>>, headers: HeaderMap, params: Params) -> Response {
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
            match session(auth, &username, password).await {
                Ok(token) => token,
                Err(message) => return unauthorized(&headers, &message),
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
        return unauthorized(&headers, "the credentials are not valid: the token is not that user's");
    }
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        format!("logged in as {}\n", identity.user),
    )
        .into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax")) {
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

/// How long a login with a password lasts.
const SESSION_HOURS: u64 = 24;

/// A login with a password: checked (Argon2, off the async threads), then a token for the session, which expires
/// after [`SESSION_HOURS`] and cannot carry the admin scope.
async fn session(auth: &Auth, username: &str, password: String) -> Result<String, String> {
    let accounts = auth.accounts.clone();
    let name = username.to_string();
    let user = tokio::task::spawn_blocking(move || accounts.check_password(&name, &password))
        .await
        .map_err(|e| format!("checking the password failed: {e}"))?
        .map_err(|e| format!("the accounts cannot be read just now: {e}"))?
        .ok_or("the credentials are not valid: wrong user name or password")?;
    let now = now_ms();
    let scopes = ["read:tap", "write:tables", "write:files"].map(String::from);
    let writer = auth
        .accounts
        .writer()
        .map_err(|e| format!("the accounts are being changed just now; try again ({e})"))?;
    writer
        .create_token(&user.name, &scopes, Some(now + SESSION_HOURS * 3_600_000), now)
        .map(|(_, token)| token)
        .map_err(|e| format!("cannot open a session: {e}"))
}

/// `/tap/logout`: the session cookie is cleared.
pub(crate) async fn logout() -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/plain"),
            (
                header::SET_COOKIE,
                "SESSION=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0",
            ),
        ],
        "logged out\n",
    )
        .into_response()
}

/// `GET /api/v1/me`: who the service takes the caller for, as JSON.
pub(crate) async fn me(
    State(tap): State<Arc<Tap>>,
    axum::Extension(caller): axum::Extension<Caller>,
    axum::Extension(client): axum::Extension<Client>,
) -> Response {
    let policy = tap.auth.as_ref().map_or(Policy::None, |a| a.policy);
    let shares = serde_json::json!({
        "sync_in_flight": { "used": tap.sync_of(&client.0), "limit": tap.limits.caller_sync },
        "jobs_queued_or_executing": { "used": tap.jobs.active_of(&client.0), "limit": tap.limits.caller_jobs },
        "result_bytes": { "used": tap.jobs.result_bytes_of(&client.0), "limit": tap.limits.caller_storage },
    });
    let body = match &caller {
        Caller::Anonymous => serde_json::json!({
            "anonymous": true,
            "auth": policy.to_string(),
            "counted_as": client.0,
            "shares": shares,
        }),
        Caller::User(i) => serde_json::json!({
            "anonymous": false,
            "user": i.user,
            "groups": i.groups,
            "scopes": i.scopes,
            "token": i.token,
            "auth": policy.to_string(),
            "counted_as": client.0,
            "jobs": tap.jobs.owned_by(&i.user),
            "shares": shares,
        }),
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_compared_as_the_router_decodes_them() {
        assert_eq!(percent_decoded("%6Aab%63"), "jabc");
        assert_eq!(percent_decoded("j%zz%4"), "j%zz%4");
        assert_eq!(percent_decoded("plain"), "plain");
    }

    #[test]
    fn credentials_are_read_from_each_way_in() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), Ok(None));
        h.insert(header::COOKIE, "a=b; SESSION=sky_x; c=d".parse().unwrap());
        assert_eq!(presented(&h), Ok(Some("sky_x".into())));
        h.insert(header::AUTHORIZATION, "Bearer  sky_y ".parse().unwrap());
        assert_eq!(presented(&h), Ok(Some("sky_y".into())));
        let basic = base64::engine::general_purpose::STANDARD.encode("x-oauth-basic:sky_z");
        h.insert(header::AUTHORIZATION, format!("Basic {basic}").parse().unwrap());
        assert_eq!(presented(&h), Ok(Some("sky_z".into())));
        for bad in ["Basic !!!", "Digest x", "Bearer", "Basic eA=="] {
            h.insert(header::AUTHORIZATION, bad.parse().unwrap());
            assert!(presented(&h).is_err(), "{bad}");
        }
    }
}
