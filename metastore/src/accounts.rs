//! Accounts: users (name, groups, admin) and their API tokens, in plain files under `DATA_DIR/accounts/`:
//! `users/NAME.json` and `tokens/ID.json`. A token is `sky_ID_SECRET` (ID: 8 random bytes, SECRET: 32, both hex);
//! only the SHA-256 of its secret is stored, so a copy of the data directory grants nothing, and the token is shown
//! once, when it is created. (A token carries 256 random bits: a fast hash is the right one; passwords, which
//! carry few, would need a slow one.)
//!
//! The command line writes (under the directory's `LOCK`, one writer at a time); a serving czar reads the files
//! at each check without a lock, so a user added or a token revoked counts at the next request, no restart.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::files::{self, DirLock};
use crate::{MetaError, Result};

/// What a token may be used for.
pub const SCOPES: [&str; 4] = ["read:tap", "write:tables", "write:files", "admin"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub admin: bool,
    /// Milliseconds since the Unix epoch.
    pub created: u64,
    /// The Argon2id hash (PHC string) of the user's password, for the login form; None: tokens only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// What this user may use beyond the service's defaults (`skyshard user quota`).
    #[serde(default, skip_serializing_if = "Quota::is_empty")]
    pub quota: Quota,
}

/// Limits set for a user or a group; each unset one is the service's default for a user, and no limit for a group
/// (a group's limits bound the sum of its members' use).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Sync queries in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<u64>,
    /// Async jobs queued or executing at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<u64>,
    /// Bytes of kept async results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results_mb: Option<u64>,
    /// Bytes of user tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables_mb: Option<u64>,
    /// Bytes of user files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_mb: Option<u64>,
}

impl Quota {
    pub fn is_empty(&self) -> bool {
        *self == Quota::default()
    }

    /// `self`, with each limit `change` sets replaced (0 clears it back to the default).
    pub fn updated(self, change: Quota) -> Quota {
        let pick = |old: Option<u64>, new: Option<u64>| match new {
            Some(0) => None,
            Some(v) => Some(v),
            None => old,
        };
        Quota {
            sync: pick(self.sync, change.sync),
            jobs: pick(self.jobs, change.jobs),
            results_mb: pick(self.results_mb, change.results_mb),
            tables_mb: pick(self.tables_mb, change.tables_mb),
            files_mb: pick(self.files_mb, change.files_mb),
        }
    }
}

/// A group's own record: only its limits (membership is on the users).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    #[serde(default)]
    pub quota: Quota,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub user: String,
    pub scopes: Vec<String>,
    /// Hex SHA-256 of the secret part.
    pub hash: String,
    pub created: u64,
    /// Milliseconds since the Unix epoch; none: until revoked.
    pub expires: Option<u64>,
    /// A login session's token (made by the login form, ended by logout), not one made with `token create`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub session: bool,
    /// Made by the portal for a notebook it hands a job to (short-lived; a user holds a bounded number).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub handoff: bool,
}

/// Who made a token: `skyshard token create`, the login form, or the portal for a notebook.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Made,
    Session,
    Handoff,
}

/// Who a checked token speaks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
    /// The token's id (for the audit line; never its secret).
    pub token: String,
    /// The user's own limits ([`User::quota`]).
    pub quota: Quota,
    /// The limits of those of the user's groups that have any.
    pub group_quotas: Vec<(String, Quota)>,
}

impl Identity {
    pub fn may(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Why a presented token was not accepted (what the client is told stays the same for all: "not valid").
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("the token is not a skyshard token")]
    Malformed,
    #[error("the token is not known (revoked, or never issued here)")]
    Unknown,
    #[error("the token has expired")]
    Expired,
    #[error("the token's user no longer exists")]
    NoUser,
}

/// A valid user or group name: what a schema name `user_NAME` can carry.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A hash of no one's password with the default Argon2 parameters, made once: what an unknown user's login is
/// checked against.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        use argon2::PasswordHasher;
        let salt = argon2::password_hash::SaltString::encode_b64(b"skyshard-decoy-salt")
            .expect("a valid salt");
        argon2::Argon2::default()
            .hash_password(b"no one's password", &salt)
            .expect("hashing a constant")
            .to_string()
    })
}

/// Whether `name` may be a user's: a [`valid_name`] that does not start with `group_`, the prefix that names a
/// group's schema (`group_NAME`) and file space (`/files/group_NAME/`), so no user can be taken for a group.
pub fn valid_user_name(name: &str) -> bool {
    valid_name(name) && !name.starts_with(RESERVED_USER_PREFIX)
}

/// The prefix no user name may start with ([`valid_user_name`]).
pub const RESERVED_USER_PREFIX: &str = "group_";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Equal without an early exit (the compare of a hash must not time-leak a prefix).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `n` bytes from the system's random source, as hex (tokens, job ids, cluster secrets).
pub fn random_hex(n: usize) -> Result<String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| MetaError::Io {
        path: "the system's random source".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(hex(&bytes))
}

/// The accounts of a data directory, for reading (no lock; nothing is created).
#[derive(Debug, Clone)]
pub struct Accounts {
    dir: PathBuf,
}

impl Accounts {
    pub fn new(data_dir: &Path) -> Accounts {
        Accounts {
            dir: data_dir.join("accounts"),
        }
    }

    fn user_path(&self, name: &str) -> PathBuf {
        self.dir.join("users").join(format!("{name}.json"))
    }

    /// The tombstone of a removed user whose tables, files or jobs may remain (see [`AccountsWriter::remove_user`]).
    fn removed_path(&self, name: &str) -> PathBuf {
        self.dir.join("removed").join(format!("{name}.json"))
    }

    /// Whether `name` was a user's who was removed while their data may remain: the name is not free.
    pub fn removed(&self, name: &str) -> Result<bool> {
        if !valid_name(name) {
            return Ok(false);
        }
        let path = self.removed_path(name);
        Ok(files::read_if_present(&path)
            .map_err(|e| MetaError::io(&path, e))?
            .is_some())
    }

    fn group_path(&self, name: &str) -> PathBuf {
        self.dir.join("groups").join(format!("{name}.json"))
    }

    fn token_path(&self, id: &str) -> PathBuf {
        self.dir.join("tokens").join(format!("{id}.json"))
    }

    fn read<T: serde::de::DeserializeOwned>(&self, path: &Path) -> Result<Option<T>> {
        let Some(bytes) = files::read_if_present(path).map_err(|e| MetaError::io(path, e))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| MetaError::Corrupt {
                table: path.display().to_string(),
                source,
            })
    }

    fn all<T: serde::de::DeserializeOwned>(&self, sub: &str) -> Result<Vec<T>> {
        let dir = self.dir.join(sub);
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        files::records(&dir, ".json")
            .map_err(|e| MetaError::io(&dir, e))?
            .into_iter()
            .map(|(name, bytes)| {
                serde_json::from_slice(&bytes).map_err(|source| MetaError::Corrupt {
                    table: dir.join(name).display().to_string(),
                    source,
                })
            })
            .collect()
    }

    pub fn user(&self, name: &str) -> Result<Option<User>> {
        if !valid_name(name) {
            return Ok(None);
        }
        self.read(&self.user_path(name))
    }

    /// Every user, by name.
    /// A group's record (None: the group has no limits of its own).
    pub fn group(&self, name: &str) -> Result<Option<Group>> {
        if !valid_name(name) {
            return Ok(None);
        }
        self.read(&self.group_path(name))
    }

    pub fn groups(&self) -> Result<Vec<Group>> {
        self.all("groups")
    }

    pub fn users(&self) -> Result<Vec<User>> {
        self.all("users")
    }

    /// Every token record (hashes only), by id.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>> {
        self.all("tokens")
    }

    /// The user whose password this is (Argon2id, slow on purpose: for the login form, never per request).
    /// An unknown user, or one without a password, costs the same Argon2 verification as a wrong password, so the
    /// time of the answer does not say which names exist.
    pub fn check_password(&self, name: &str, password: &str) -> Result<Option<User>> {
        use argon2::PasswordVerifier;
        let user = self.user(name)?;
        let stored = user
            .as_ref()
            .and_then(|u| u.password.as_deref())
            .and_then(|h| argon2::PasswordHash::new(h).ok());
        let decoy;
        let hash = match &stored {
            Some(h) => h,
            None => {
                decoy = decoy_hash();
                &argon2::PasswordHash::new(decoy).expect("the decoy hash parses")
            }
        };
        let verified = argon2::Argon2::default()
            .verify_password(password.as_bytes(), hash)
            .is_ok()
            && stored.is_some();
        drop(stored);
        Ok(user.filter(|_| verified))
    }

    /// Whether any user exists (a service with no accounts cannot require them).
    pub fn any(&self) -> bool {
        self.users().is_ok_and(|u| !u.is_empty())
    }

    /// The identity a token speaks for at `now` (ms since the epoch), or why it does not.
    pub fn check(&self, token: &str, now: u64) -> Result<std::result::Result<Identity, Refusal>> {
        let Some((id, secret)) = token
            .strip_prefix("sky_")
            .and_then(|rest| rest.split_once('_'))
            .filter(|(id, secret)| {
                id.len() == 16
                    && secret.len() == 64
                    && id
                        .bytes()
                        .chain(secret.bytes())
                        .all(|b| b.is_ascii_hexdigit())
            })
        else {
            return Ok(Err(Refusal::Malformed));
        };
        let Some(record) = self.read::<TokenRecord>(&self.token_path(id))? else {
            return Ok(Err(Refusal::Unknown));
        };
        if !same(&record.hash, &digest(secret)) {
            return Ok(Err(Refusal::Unknown));
        }
        if record.expires.is_some_and(|e| e <= now) {
            return Ok(Err(Refusal::Expired));
        }
        let Some(user) = self.user(&record.user)? else {
            return Ok(Err(Refusal::NoUser));
        };
        let scopes = record
            .scopes
            .into_iter()
            // The admin scope counts only while the user is an admin.
            .filter(|s| s != "admin" || user.admin)
            .collect();
        let mut group_quotas = Vec::new();
        for g in &user.groups {
            if let Some(group) = self.group(g)?.filter(|g| !g.quota.is_empty()) {
                group_quotas.push((group.name, group.quota));
            }
        }
        Ok(Ok(Identity {
            user: user.name,
            groups: user.groups,
            scopes,
            token: record.id,
            quota: user.quota,
            group_quotas,
        }))
    }

    /// The id of a login session's token, if `token` is one and is valid (its secret included).
    pub fn session_of(&self, token: &str) -> Result<Option<String>> {
        let Some((id, secret)) = token
            .strip_prefix("sky_")
            .and_then(|rest| rest.split_once('_'))
            .filter(|(id, _)| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        else {
            return Ok(None);
        };
        let Some(record) = self.read::<TokenRecord>(&self.token_path(id))? else {
            return Ok(None);
        };
        Ok((record.session && same(&record.hash, &digest(secret))).then(|| record.id))
    }

    /// The writer (one process at a time: the directory's `LOCK`).
    pub fn writer(&self) -> Result<AccountsWriter> {
        let io = |e| MetaError::io(&self.dir, e);
        std::fs::create_dir_all(self.dir.join("users")).map_err(io)?;
        std::fs::create_dir_all(self.dir.join("tokens")).map_err(io)?;
        std::fs::create_dir_all(self.dir.join("removed")).map_err(io)?;
        let lock = DirLock::acquire(&self.dir).map_err(io)?;
        Ok(AccountsWriter {
            accounts: self.clone(),
            _lock: lock,
        })
    }
}

pub struct AccountsWriter {
    accounts: Accounts,
    _lock: DirLock,
}

/// What a change to the accounts refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(
        "{0:?} is not a valid user or group name (1-64 characters: lower-case letters, digits and _, starting with a \
         letter; a user's may not start with group_, which names a group's schema and file space)"
    )]
    BadName(String),
    #[error("user {0} already exists")]
    Exists(String),
    #[error("no user {0}")]
    NoUser(String),
    #[error(
        "the name {0} belonged to a removed user whose tables, files or jobs may remain, and a new account of that \
         name would inherit them: delete them first (skyshard user delete --url URL {0}, against the running \
         service)"
    )]
    Removed(String),
    #[error("unknown scope {0:?}; scopes are {scopes}", scopes = SCOPES.join(", "))]
    BadScope(String),
    #[error("user {0} is not an admin, so a token of theirs cannot carry the admin scope")]
    NotAdmin(String),
    #[error("no token {0}")]
    NoToken(String),
    #[error("a password needs at least 8 characters")]
    WeakPassword,
    #[error("hashing the password: {0}")]
    Hash(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

impl AccountsWriter {
    fn write<T: Serialize>(&self, path: &Path, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).expect("account records serialize");
        files::write_atomically(path, &bytes).map_err(|e| MetaError::io(path, e))
    }

    pub fn add_user(
        &self,
        name: &str,
        groups: &[String],
        admin: bool,
        now: u64,
    ) -> std::result::Result<User, AccountError> {
        if !valid_user_name(name) {
            return Err(AccountError::BadName(name.to_string()));
        }
        for n in groups {
            if !valid_name(n) {
                return Err(AccountError::BadName(n.to_string()));
            }
        }
        if self.accounts.user(name)?.is_some() {
            return Err(AccountError::Exists(name.to_string()));
        }
        if self.accounts.removed(name)? {
            return Err(AccountError::Removed(name.to_string()));
        }
        let mut groups = groups.to_vec();
        groups.sort();
        groups.dedup();
        let user = User {
            name: name.to_string(),
            groups,
            admin,
            created: now,
            password: None,
            quota: Quota::default(),
        };
        self.write(&self.accounts.user_path(name), &user)?;
        Ok(user)
    }

    /// Sets (or replaces) a user's password for the login form.
    pub fn set_password(
        &self,
        name: &str,
        password: &str,
    ) -> std::result::Result<(), AccountError> {
        use argon2::PasswordHasher;
        let Some(mut user) = self.accounts.user(name)? else {
            return Err(AccountError::NoUser(name.to_string()));
        };
        if password.chars().count() < 8 {
            return Err(AccountError::WeakPassword);
        }
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| MetaError::Io {
            path: "the system's random source".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let salt = argon2::password_hash::SaltString::encode_b64(&salt)
            .map_err(|e| AccountError::Hash(e.to_string()))?;
        let hash = argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| AccountError::Hash(e.to_string()))?;
        user.password = Some(hash.to_string());
        self.write(&self.accounts.user_path(name), &user)?;
        Ok(())
    }

    /// Changes a user's limits; returns them as they are now.
    pub fn set_user_quota(
        &self,
        name: &str,
        change: Quota,
    ) -> std::result::Result<Quota, AccountError> {
        let Some(mut user) = self.accounts.user(name)? else {
            return Err(AccountError::NoUser(name.to_string()));
        };
        user.quota = user.quota.updated(change);
        self.write(&self.accounts.user_path(name), &user)?;
        Ok(user.quota)
    }

    /// Changes a group's limits (the sum of its members' use); returns them as they are now.
    pub fn set_group_quota(
        &self,
        name: &str,
        change: Quota,
    ) -> std::result::Result<Quota, AccountError> {
        if !valid_name(name) {
            return Err(AccountError::BadName(name.to_string()));
        }
        std::fs::create_dir_all(self.accounts.dir.join("groups"))
            .map_err(|e| MetaError::io(&self.accounts.dir, e))?;
        let mut group = self.accounts.group(name)?.unwrap_or(Group {
            name: name.to_string(),
            quota: Quota::default(),
        });
        group.quota = group.quota.updated(change);
        self.write(&self.accounts.group_path(name), &group)?;
        Ok(group.quota)
    }

    /// Removes a user's account and revokes every token of theirs. Their tables, files and jobs are not touched
    /// here (they live in the service), so the account is kept as a tombstone: the name cannot be given to a new user
    /// until [`AccountsWriter::forget_user`] is called once their data is gone.
    pub fn remove_user(&self, name: &str) -> std::result::Result<(), AccountError> {
        let Some(user) = self.accounts.user(name)? else {
            return Err(AccountError::NoUser(name.to_string()));
        };
        for t in self.accounts.tokens()? {
            if t.user == name {
                self.revoke(&t.id)?;
            }
        }
        self.write(&self.accounts.removed_path(name), &user)?;
        let path = self.accounts.user_path(name);
        files::remove(&path).map_err(|e| MetaError::io(&path, e))?;
        Ok(())
    }

    /// Forgets a user whose data has been deleted: their account (tokens revoked) or tombstone; the name is free.
    pub fn forget_user(&self, name: &str) -> std::result::Result<(), AccountError> {
        if self.accounts.user(name)?.is_some() {
            self.remove_user(name)?;
        } else if !self.accounts.removed(name)? {
            return Err(AccountError::NoUser(name.to_string()));
        }
        let path = self.accounts.removed_path(name);
        files::remove(&path).map_err(|e| MetaError::io(&path, e))?;
        Ok(())
    }

    /// A new token for `user`; the returned text is the only copy of it.
    pub fn create_token(
        &self,
        user: &str,
        scopes: &[String],
        expires: Option<u64>,
        now: u64,
    ) -> std::result::Result<(TokenRecord, String), AccountError> {
        self.new_token(user, scopes, expires, now, Kind::Made)
    }

    /// A token the portal made for a notebook hand-off (see [`TokenRecord::handoff`]).
    pub fn create_handoff(
        &self,
        user: &str,
        scopes: &[String],
        expires: u64,
        now: u64,
    ) -> std::result::Result<(TokenRecord, String), AccountError> {
        self.new_token(user, scopes, Some(expires), now, Kind::Handoff)
    }

    /// A new login session's token for `user` (see [`TokenRecord::session`]).
    pub fn create_session(
        &self,
        user: &str,
        scopes: &[String],
        expires: u64,
        now: u64,
    ) -> std::result::Result<(TokenRecord, String), AccountError> {
        self.new_token(user, scopes, Some(expires), now, Kind::Session)
    }

    fn new_token(
        &self,
        user: &str,
        scopes: &[String],
        expires: Option<u64>,
        now: u64,
        kind: Kind,
    ) -> std::result::Result<(TokenRecord, String), AccountError> {
        let Some(account) = self.accounts.user(user)? else {
            return Err(AccountError::NoUser(user.to_string()));
        };
        for s in scopes {
            if !SCOPES.contains(&s.as_str()) {
                return Err(AccountError::BadScope(s.clone()));
            }
            if s == "admin" && !account.admin {
                return Err(AccountError::NotAdmin(user.to_string()));
            }
        }
        let id = random_hex(8)?;
        let secret = random_hex(32)?;
        let record = TokenRecord {
            id: id.clone(),
            user: user.to_string(),
            scopes: scopes.to_vec(),
            hash: digest(&secret),
            created: now,
            expires,
            session: kind == Kind::Session,
            handoff: kind == Kind::Handoff,
        };
        self.write(&self.accounts.token_path(&id), &record)?;
        Ok((record, format!("sky_{id}_{secret}")))
    }

    /// Removes the tokens that expired before `now` (sessions of the login form pile up otherwise); returns how
    /// many.
    pub fn sweep_expired(&self, now: u64) -> std::result::Result<usize, AccountError> {
        let mut n = 0;
        for t in self.accounts.tokens()? {
            if t.expires.is_some_and(|e| e <= now) {
                self.revoke(&t.id)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Revokes a token by its id (the 16 hex digits after `sky_`), or by the whole token.
    pub fn revoke(&self, id_or_token: &str) -> std::result::Result<(), AccountError> {
        let id = id_or_token
            .strip_prefix("sky_")
            .and_then(|rest| rest.split('_').next())
            .unwrap_or(id_or_token);
        let valid = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
        let path = self.accounts.token_path(id);
        if !valid || !path.exists() {
            return Err(AccountError::NoToken(id.to_string()));
        }
        files::remove(&path).map_err(|e| MetaError::io(&path, e))?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "accounts_tests.rs"]
mod tests;
