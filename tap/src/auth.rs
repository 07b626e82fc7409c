//! Who is calling. Three ways in, as clients already speak them: `Authorization: Bearer TOKEN` (pyvo with a
//! session, curl, Flight SQL), HTTP Basic with any user name and the token as password (TOPCAT, rclone, cadctap with
//! `.netrc`), and the session cookie that `POST /tap/login` sets (astroquery's `TapPlus.login()`, browsers). Tokens
//! are checked against the data directory's accounts ([`metastore::accounts`]) at each request, so a revoked token
//! stops working at once.
//!
//! The policy (`--auth`): `none` (nobody is asked, every job is everyone's: a laptop), `optional` (anonymous
//! callers query the catalogs; named ones also own their jobs), `required` (every request but the capabilities,
//! availability, login, health, readiness and metrics needs a valid token; `/metrics` answers only
//! loopback and private-network callers). Presented credentials that are not valid are refused
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

/// What one share may use at once: a caller's own ([`crate::Limits::caller_sync`] and its kin, or the user's
/// `skyshard user quota`), or a group's (the sum of its members').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub sync: usize,
    pub jobs: usize,
    pub result_bytes: u64,
}

impl Allowance {
    fn default_of(limits: &crate::Limits) -> Allowance {
        Allowance {
            sync: limits.caller_sync,
            jobs: limits.caller_jobs,
            result_bytes: limits.caller_storage,
        }
    }
}

/// Whose shares a request counts against: the caller's own (a user, or the address of an anonymous client) and
/// those of the user's groups that have limits.
#[derive(Debug, Clone)]
pub struct Client {
    /// `user NAME` or `address IP`.
    pub key: String,
    pub allowance: Allowance,
    /// (`group NAME`, its allowance).
    pub groups: Vec<(String, Allowance)>,
}

impl Client {
    /// An anonymous client, counted by its address.
    pub fn anonymous(limits: &crate::Limits, address: &str) -> Client {
        Client {
            key: format!("address {address}"),
            allowance: Allowance::default_of(limits),
            groups: Vec::new(),
        }
    }

    fn of(tap: &Tap, caller: &Caller, request: &axum::extract::Request) -> Client {
        Client::of_caller(tap, caller, || client_address(tap, request))
    }

    /// The client of a caller: a user's own and their groups' shares, or an anonymous caller's `address`.
    pub(crate) fn of_caller(
        tap: &Tap,
        caller: &Caller,
        address: impl FnOnce() -> String,
    ) -> Client {
        let defaults = Allowance::default_of(&tap.limits);
        let Caller::User(identity) = caller else {
            return Client::anonymous(&tap.limits, &address());
        };
        let size = |v: Option<u64>, default: usize| {
            v.map_or(default, |v| usize::try_from(v).unwrap_or(usize::MAX))
        };
        let bytes =
            |mb: Option<u64>, default: u64| mb.map_or(default, |mb| mb.saturating_mul(1 << 20));
        let q = identity.quota;
        Client {
            key: format!("user {}", identity.user),
            allowance: Allowance {
                sync: size(q.sync, defaults.sync),
                jobs: size(q.jobs, defaults.jobs),
                result_bytes: bytes(q.results_mb, defaults.result_bytes),
            },
            groups: identity
                .group_quotas
                .iter()
                .map(|(g, q)| {
                    let allowance = Allowance {
                        sync: size(q.sync, usize::MAX),
                        jobs: size(q.jobs, usize::MAX),
                        result_bytes: bytes(q.results_mb, u64::MAX),
                    };
                    (format!("group {g}"), allowance)
                })
                .collect(),
        }
    }

    /// Every share the caller's requests count against: their own first, then their groups'.
    pub fn shares(&self) -> impl Iterator<Item = (&str, &Allowance)> {
        std::iter::once((self.key.as_str(), &self.allowance))
            .chain(self.groups.iter().map(|(k, a)| (k.as_str(), a)))
    }
}

/// The service's policy and the accounts it checks tokens against.
#[derive(Debug, Clone)]
pub struct Auth {
    pub policy: Policy,
    pub accounts: Accounts,
    /// An authenticating proxy in front (Gafaelfawr, oauth2-proxy), trusted for who the caller is.
    pub proxy: Option<Proxy>,
}

/// A proxy trusted to say who the caller is: requests from its addresses that carry its identity header are that
/// user's (with the scopes read:tap, write:tables and write:files; never admin), and their `X-Forwarded-For` and
/// `X-Forwarded-Proto` are believed. The same headers from anywhere else are ignored.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub addresses: Vec<std::net::IpAddr>,
    /// The identity header, e.g. `X-Auth-Request-User` (Gafaelfawr, oauth2-proxy).
    pub header: axum::http::HeaderName,
}

impl Proxy {
    fn trusts(&self, request: &axum::extract::Request) -> bool {
        peer(request).is_some_and(|ip| self.addresses.contains(&ip))
    }
}

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

/// The caller a trusted proxy names, if the request comes through it with its header.
fn proxied(auth: &Auth, request: &axum::extract::Request) -> Result<Option<Caller>, Response> {
    let Some(proxy) = auth.proxy.as_ref().filter(|p| p.trusts(request)) else {
        return Ok(None);
    };
    let Some(value) = request.headers().get(&proxy.header) else {
        return Ok(None);
    };
    let name = value.to_str().unwrap_or("").trim();
    if !metastore::accounts::valid_name(name) {
        return Err(error(
            StatusCode::FORBIDDEN,
            &format!(
                "the proxy's {} names no valid user (1-64 lower-case letters, digits and _)",
                proxy.header
            ),
        ));
    }
    let account = match auth.accounts.user(name) {
        Ok(a) => a,
        Err(e) => {
            protocol::log::error("accounts", &format!("reading the account of {name}: {e}"));
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the accounts cannot be read just now; try again",
            ));
        }
    };
    // A local account of the same name gives its groups and limits; the proxy's word never gives admin.
    let (groups, quota) = account.map_or_else(Default::default, |a| (a.groups, a.quota));
    let mut group_quotas = Vec::new();
    for g in &groups {
        if let Ok(Some(group)) = auth.accounts.group(g)
            && !group.quota.is_empty()
        {
            group_quotas.push((group.name, group.quota));
        }
    }
    Ok(Some(Caller::User(Identity {
        user: name.to_string(),
        groups,
        scopes: ["read:tap", "write:tables", "write:files"]
            .map(String::from)
            .to_vec(),
        token: format!("proxy {}", proxy.header),
        quota,
        group_quotas,
    })))
}

/// The client's address: the connection's, or the last hop a trusted proxy recorded in `X-Forwarded-For`.
fn client_address(tap: &Tap, request: &axum::extract::Request) -> String {
    let trusted = tap
        .auth
        .as_ref()
        .and_then(|a| a.proxy.as_ref())
        .is_some_and(|p| p.trusts(request));
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
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| "the Authorization header is not text")?;
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        return match scheme.to_ascii_lowercase().as_str() {
            "bearer" if !rest.is_empty() => Ok(Some(rest.to_string())),
            "basic" => {
                // Padded or not (Go's Flight clients leave the padding off).
                let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(rest.trim_end_matches('='))
                    .map_err(|_| "the Basic credentials are not base64")?;
                let text = String::from_utf8(decoded)
                    .map_err(|_| "the Basic credentials are not UTF-8")?;
                // The user name is the client's habit (TOPCAT's x-oauth-basic, a login name): the token decides.
                let (_, password) = text
                    .split_once(':')
                    .ok_or("the Basic credentials have no password")?;
                Ok(Some(password.to_string()))
            }
            _ => Err(
                "the Authorization header must be Bearer TOKEN or Basic (any user, the token as password)",
            ),
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
                | "/tap/login"
                | "/tap/logout"
                | "/health"
                | "/ready"
                | "/metrics"
        )
}

/// Checks a token: the caller, or the refusal to answer with.
fn check(auth: &Auth, headers: &HeaderMap, token: &str) -> Result<Caller, Response> {
    identify(auth, token).map_err(|refusal| match refusal {
        Refusal::Invalid(message) => unauthorized(headers, &message),
        Refusal::Unreadable(message) => error(StatusCode::SERVICE_UNAVAILABLE, message),
    })
}

/// Why a token names nobody: HTTP answers 401 or 503, Flight SQL `UNAUTHENTICATED` or `UNAVAILABLE`.
pub(crate) enum Refusal {
    /// Unknown, revoked or expired; the message says which.
    Invalid(String),
    /// The accounts could not be read (logged); the caller may try again.
    Unreadable(&'static str),
}

/// The caller a token names, for every way in (HTTP, Flight SQL).
pub(crate) fn identify(auth: &Auth, token: &str) -> Result<Caller, Refusal> {
    match auth.accounts.check(token, now_ms()) {
        Ok(Ok(identity)) => Ok(Caller::User(identity)),
        Ok(Err(refusal)) => Err(Refusal::Invalid(format!(
            "the credentials are not valid: {refusal}"
        ))),
        Err(e) => {
            protocol::log::error("accounts", &format!("checking a token: {e}"));
            Err(Refusal::Unreadable(
                "the accounts cannot be read just now; try again",
            ))
        }
    }
}

/// Someone else's job (at `/tap/async/ID` or the portal's `/api/v1/jobs/ID`) answers 403 (UWS 1.1), or 401 to an anonymous caller, who may be its owner not logged in;
/// anonymous jobs are anyone's who has the URL.
fn job_refusal(tap: &Tap, caller: &Caller, path: &str, headers: &HeaderMap) -> Option<Response> {
    // The id as the route will see it: percent-decoded, so `%6A...` cannot slip past as another name of `j...`.
    let rest = path
        .strip_prefix("/tap/async/")
        .or_else(|| path.strip_prefix("/api/v1/jobs/"))?;
    let id = percent_decoded(rest.split('/').next()?);
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
        Some(auth) => match proxied(auth, &request) {
            Err(response) => return response,
            Ok(Some(caller)) => caller,
            Ok(None) => match presented(request.headers()) {
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
        },
    };
    if tap.auth.is_some()
        && let Some(refusal) = job_refusal(&tap, &caller, request.uri().path(), request.headers())
    {
        return refusal;
    }
    let user = caller.user().map(str::to_string);
    let client = Client::of(&tap, &caller, &request);
    let started = std::time::Instant::now();
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let https = tap
        .auth
        .as_ref()
        .and_then(|a| a.proxy.as_ref())
        .is_some_and(|p| p.trusts(&request))
        && request
            .headers()
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    request.extensions_mut().insert(client.clone());
    request.extensions_mut().insert(caller);
    request.extensions_mut().insert(Https(https));
    let tally = Arc::new(crate::audit::Tally::default());
    request.extensions_mut().insert(tally.clone());
    let mut response = next.run(request).await;
    if tap.audit.is_some() {
        let mut line = serde_json::json!({
            "time": crate::jobs::iso(now_ms()),
            "who": client.key,
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
    response
}

/// `POST /tap/login`: `username` and `password` (a token of that user; passwords proper are not kept), or `token`.
/// Sets the session cookie and answers the SSO headers `X-VO-Authenticated` and `X-VO-Bearer`.
pub(crate) async fn login(
    State(tap): State<Arc<Tap>>,
    https: Option<axum::Extension<Https>>,
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
        .create_token(
            &user.name,
            &scopes,
            Some(now + SESSION_HOURS * 3_600_000),
            now,
        )
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
    let body = match &caller {
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
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

/// Bytes the user's tables (schema `user_NAME`) and their groups' (`group_NAME`) hold, with each quota.
fn table_space(tap: &Tap, identity: &Identity) -> serde_json::Value {
    use crate::access::Space;
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
                "used": crate::usertables::space_bytes(tap, &space, None),
                "limit": crate::usertables::space_quota(tap, &space),
            })
        })
        .collect::<Vec<_>>()
        .into()
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
        h.insert(
            header::AUTHORIZATION,
            format!("Basic {basic}").parse().unwrap(),
        );
        assert_eq!(presented(&h), Ok(Some("sky_z".into())));
        for bad in ["Basic !!!", "Digest x", "Bearer", "Basic eA=="] {
            h.insert(header::AUTHORIZATION, bad.parse().unwrap());
            assert!(presented(&h).is_err(), "{bad}");
        }
    }
}
