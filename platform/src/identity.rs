//! Who is calling. Three ways in, as clients already speak them: `Authorization: Bearer TOKEN` (pyvo with a
//! session, curl, Flight SQL), HTTP Basic with any user name and the token as password (TOPCAT, rclone, cadctap with
//! `.netrc`), and the session cookie that a login sets (astroquery's `TapPlus.login()`, browsers); or the identity
//! header of a trusted authenticating proxy. Tokens are checked against the data directory's accounts
//! ([`metastore::accounts`]) at each request, so a revoked token stops working at once.
//!
//! The policy (`--auth`): `none` (nobody is asked, every job is everyone's: a laptop), `optional` (anonymous
//! callers query the catalogs; named ones also own their jobs), `required` (every request but the capabilities,
//! availability, login, health, readiness and metrics needs a valid token). Presented credentials that are not valid
//! are refused under every policy but `none`: a typo never silently makes someone anonymous.
//!
//! Nothing here knows HTTP: a front end hands in the text of what the client presented and answers a [`Refusal`]
//! in its own words (HTTP 401/503, gRPC `UNAUTHENTICATED`/`UNAVAILABLE`).

use base64::Engine;
use metastore::accounts::{Accounts, Identity};

use crate::error::PlatformError;
use crate::jobs::now_ms;

/// The session cookie's name: `SESSION`, the name astroquery's `TapPlus.login()` looks for (ESA's archives set it).
pub const COOKIE: &str = "SESSION";

/// The scopes of a login session and of a trusted proxy's users: everything but `admin`.
pub const USER_SCOPES: [&str; 3] = ["read:tap", "write:tables", "write:files"];

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

/// The caller of a request.
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

/// The service's policy and the accounts it checks tokens against.
#[derive(Debug, Clone)]
pub struct Auth {
    pub policy: Policy,
    pub accounts: Accounts,
    /// An authenticating proxy in front (Gafaelfawr, oauth2-proxy), trusted for who the caller is.
    pub proxy: Option<Proxy>,
}

/// A proxy trusted to say who the caller is: requests from its addresses that carry its identity header are that
/// user's (with [`USER_SCOPES`]; never admin), and their `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
/// The same headers from anywhere else are ignored.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub addresses: Vec<std::net::IpAddr>,
    /// The identity header, lower-case, e.g. `x-auth-request-user` (Gafaelfawr, oauth2-proxy).
    pub header: String,
}

impl Proxy {
    /// Whether a connection from `peer` comes through the proxy.
    pub fn trusts(&self, peer: Option<std::net::IpAddr>) -> bool {
        peer.is_some_and(|ip| self.addresses.contains(&ip))
    }
}

/// Why presented credentials name nobody.
/// Why a password login opened no session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// A wrong user name or password.
    Credentials(String),
    /// The accounts could not be read or written just now (not the caller's fault: try again).
    Busy(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown, revoked, expired or unreadable credentials; the message says which.
    Invalid(String),
    /// The accounts could not be read (logged); the caller may try again.
    Unreadable(&'static str),
}

impl Auth {
    /// The caller a token names, for every way in (HTTP, Flight SQL).
    pub fn identify(&self, token: &str) -> Result<Caller, Refusal> {
        match self.accounts.check(token, now_ms()) {
            Ok(Ok(identity)) => Ok(Caller::User(identity)),
            Ok(Err(refusal)) => Err(Refusal::Invalid(format!(
                "the credentials are not valid: {refusal}"
            ))),
            Err(e) => {
                tracing::error!(event = "accounts", "checking a token: {e}");
                Err(Refusal::Unreadable(
                    "the accounts cannot be read just now; try again",
                ))
            }
        }
    }

    /// The user a trusted proxy names (`name`, the value of its identity header): a local account of the same
    /// name gives its groups and limits; the proxy's word never gives admin.
    pub fn proxied(&self, name: &str) -> Result<Caller, Refusal> {
        let name = name.trim();
        let header = self.proxy.as_ref().map_or("", |p| p.header.as_str());
        if !metastore::accounts::valid_user_name(name) {
            return Err(Refusal::Invalid(format!(
                "the proxy's {header} names no valid user (1-64 lower-case letters, digits and _, not starting \
                 with group_)"
            )));
        }
        let account = self.accounts.user(name).map_err(|e| {
            tracing::error!(event = "accounts", "reading the account of {name}: {e}");
            Refusal::Unreadable("the accounts cannot be read just now; try again")
        })?;
        // A name whose account was removed while its data remained is nobody's until that data is deleted.
        if account.is_none() && self.accounts.removed(name).unwrap_or(true) {
            return Err(Refusal::Invalid(format!(
                "the proxy names {name}, a removed user whose data is still held; an administrator must delete \
                 it first (skyshard user delete)"
            )));
        }
        let (groups, quota) = account.map_or_else(Default::default, |a| (a.groups, a.quota));
        let mut group_quotas = Vec::new();
        for g in &groups {
            if let Ok(Some(group)) = self.accounts.group(g)
                && !group.quota.is_empty()
            {
                group_quotas.push((group.name, group.quota));
            }
        }
        Ok(Caller::User(Identity {
            user: name.to_string(),
            groups,
            scopes: USER_SCOPES.map(String::from).to_vec(),
            token: format!("proxy {header}"),
            quota,
            group_quotas,
        }))
    }

    /// A login with a password: checked (Argon2: call it off the async threads), then a token for the session,
    /// which expires after [`SESSION_HOURS`] and cannot carry the admin scope.
    pub fn open_session(&self, username: &str, password: &str) -> Result<String, SessionError> {
        let user = self
            .accounts
            .check_password(username, password)
            .map_err(|e| {
                tracing::error!(event = "accounts", "checking a password: {e}");
                SessionError::Busy("the accounts cannot be read just now; try again".into())
            })?
            .ok_or_else(|| {
                SessionError::Credentials("the credentials are not valid: wrong user name or password".into())
            })?;
        let now = now_ms();
        let writer = self.writer_waiting()?;
        let token = writer
            .create_session(
                &user.name,
                &USER_SCOPES.map(String::from),
                now + SESSION_HOURS * 3_600_000,
                now,
            )
            .map(|(_, token)| token)
            .map_err(|e| {
                tracing::error!(event = "accounts", "opening a session: {e}");
                SessionError::Busy("cannot open a session just now; try again".into())
            })?;
        // Sessions that ended by themselves are swept now and then: at a login, at most once a minute.
        static LAST_SWEEP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let last = LAST_SWEEP.load(std::sync::atomic::Ordering::Relaxed);
        if now.saturating_sub(last) > 60_000
            && LAST_SWEEP
                .compare_exchange(last, now, std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed)
                .is_ok()
        {
            let _ = writer.sweep_expired(now);
        }
        Ok(token)
    }

    /// A token for a notebook the portal hands a job to: the caller's own scopes but never admin, expiring after
    /// [`HANDOFF_HOURS`], listed and revocable like any token (`skyshard token list|revoke`). A user holds at most
    /// [`HANDOFF_TOKENS`] live ones: a page that asks again and again cannot fill the accounts directory.
    pub fn handoff_token(&self, caller: &Identity) -> Result<(String, u64), PlatformError> {
        let now = now_ms();
        // Counted while holding the writer: requests sent together cannot all see room for one more.
        let writer = self.writer_waiting().map_err(|e| match e {
            SessionError::Busy(m) | SessionError::Credentials(m) => PlatformError::Unavailable(m),
        })?;
        let live = self
            .accounts
            .tokens()
            .map_err(|e| PlatformError::Unavailable(format!("the accounts cannot be read just now; try again ({e})")))?
            .into_iter()
            .filter(|t| t.user == caller.user && t.handoff && t.expires.is_some_and(|e| e > now))
            .count();
        if live >= HANDOFF_TOKENS {
            return Err(PlatformError::OverQuota(format!(
                "you already hold {live} notebook tokens, the most one user may: revoke some (skyshard token revoke) \
                 or wait for them to expire ({HANDOFF_HOURS} h after they were made)"
            )));
        }
        let scopes: Vec<String> = caller.scopes.iter().filter(|s| *s != "admin").cloned().collect();
        let expires = now + HANDOFF_HOURS * 3_600_000;
        let (_, token) = writer
            .create_handoff(&caller.user, &scopes, expires, now)
            .map_err(|e| PlatformError::Forbidden(format!("cannot make a notebook token for {}: {e}", caller.user)))?;
        Ok((token, expires))
    }

    /// The accounts' writer, waiting up to two seconds for another login (or `skyshard user`) to finish with it.
    fn writer_waiting(&self) -> Result<metastore::accounts::AccountsWriter, SessionError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match self.accounts.writer() {
                Ok(w) => return Ok(w),
                Err(e) if std::time::Instant::now() >= deadline => {
                    tracing::warn!(event = "accounts", "the accounts' lock: {e}");
                    return Err(SessionError::Busy(
                        "the accounts are being changed just now; try again".into(),
                    ));
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
    }

    /// Ends a login session: its token (the one the login form set as the session cookie) stops working at once.
    /// Only a valid session token is revoked (secret included): an id alone, or a token made with `token create`
    /// that the user logged in with, is not.
    pub fn close_session(&self, token: &str) -> Result<(), String> {
        let Some(id) = self.accounts.session_of(token).map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let writer = self
            .accounts
            .writer()
            .map_err(|e| format!("the accounts are being changed just now; try again ({e})"))?;
        writer.revoke(&id).map_err(|e| e.to_string())
    }
}

/// How long a login with a password lasts.
pub const SESSION_HOURS: u64 = 24;

/// How long a token made for a notebook hand-off lasts.
pub const HANDOFF_HOURS: u64 = 24;

/// The most notebook hand-off tokens a user holds at once.
pub const HANDOFF_TOKENS: usize = 20;

/// The token a client presents: its `Authorization` value (Bearer, or Basic with any user name and the token as
/// password, padded or not), else the [`COOKIE`] among its `Cookie` values; Err for credentials that cannot be read.
pub fn presented<'a>(
    authorization: Option<&[u8]>,
    cookies: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Option<String>, &'static str> {
    if let Some(value) = authorization {
        let value = std::str::from_utf8(value)
            .ok()
            .filter(|v| v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
            .ok_or("the Authorization header is not text")?;
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
    Ok(cookie(cookies, COOKIE))
}

/// The value of a cookie among `Cookie` header values.
pub fn cookie<'a>(values: impl IntoIterator<Item = &'a [u8]>, name: &str) -> Option<String> {
    values
        .into_iter()
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(
        authorization: Option<&str>,
        cookie: Option<&str>,
    ) -> Result<Option<String>, &'static str> {
        presented(authorization.map(str::as_bytes), cookie.map(str::as_bytes))
    }

    #[test]
    fn credentials_are_read_from_each_way_in() {
        assert_eq!(read(None, None), Ok(None));
        assert_eq!(
            read(None, Some("a=b; SESSION=sky_x; c=d")),
            Ok(Some("sky_x".into()))
        );
        assert_eq!(
            read(Some("Bearer  sky_y "), Some("SESSION=sky_x")),
            Ok(Some("sky_y".into()))
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("x-oauth-basic:sky_z");
        assert_eq!(
            read(Some(&format!("Basic {basic}")), None),
            Ok(Some("sky_z".into()))
        );
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode("u:sky_w");
        assert_eq!(
            read(Some(&format!("Basic {unpadded}")), None),
            Ok(Some("sky_w".into()))
        );
        for bad in ["Basic !!!", "Digest x", "Bearer", "Basic eA=="] {
            assert!(read(Some(bad), None).is_err(), "{bad}");
        }
        assert!(presented(Some(b"Bearer \xff".as_slice()), None::<&[u8]>).is_err());
    }
}
