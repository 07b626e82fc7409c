//! One quota model: every request counts against *shares*, the caller's own (a user, or an anonymous client's
//! address) and those of the user's groups that have limits, each with an [`Allowance`]; a share in use is counted
//! here (sync turns) or by the job store (jobs queued or executing, bytes of kept results). Past a share the
//! caller is told so (HTTP 429); past the service's own capacity, to come back later (503).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::Limits;
use crate::identity::Caller;

/// What one share may use at once: a caller's own ([`Limits::caller_sync`] and its kin, or the user's
/// `skyshard user quota`), or a group's (the sum of its members').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub sync: usize,
    pub jobs: usize,
    pub result_bytes: u64,
}

impl Allowance {
    fn default_of(limits: &Limits) -> Allowance {
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
    pub fn anonymous(limits: &Limits, address: &str) -> Client {
        Client {
            key: format!("address {address}"),
            allowance: Allowance::default_of(limits),
            groups: Vec::new(),
        }
    }

    /// The client of a caller: a user's own and their groups' shares, or an anonymous caller's `address`.
    pub fn of(limits: &Limits, caller: &Caller, address: impl FnOnce() -> String) -> Client {
        let defaults = Allowance::default_of(limits);
        let Caller::User(identity) = caller else {
            return Client::anonymous(limits, &address());
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

/// Why the service would not take a request now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    pub what: &'static str,
    pub limit: u64,
    /// The caller's own quota (429), not the service's capacity (503).
    pub mine: bool,
    /// How much of it the caller uses (for `mine`).
    pub used: u64,
    /// Whose share it is (`user NAME`, `group NAME`, `address IP`), for `mine`.
    pub whose: String,
}

impl Busy {
    /// The service's own capacity is used up (not the caller's share).
    pub fn service(what: &'static str, limit: u64) -> Busy {
        Busy {
            what,
            limit,
            mine: false,
            used: 0,
            whose: String::new(),
        }
    }
}

/// Turns of sync queries (and cone searches, and Flight SQL statements): [`Limits::concurrent_sync`] run at once,
/// [`Limits::waiting_sync`] may wait in line, and no share has more in flight than its allowance.
pub struct SyncTurns {
    slots: Arc<tokio::sync::Semaphore>,
    size: usize,
    waiting_limit: usize,
    waiting: AtomicUsize,
    shares: Arc<Mutex<HashMap<String, usize>>>,
}

impl SyncTurns {
    pub fn new(limits: &Limits) -> SyncTurns {
        let size = limits.concurrent_sync.max(1);
        SyncTurns {
            slots: Arc::new(tokio::sync::Semaphore::new(size)),
            size,
            waiting_limit: limits.waiting_sync,
            waiting: AtomicUsize::new(0),
            shares: Default::default(),
        }
    }

    /// A turn, held until the query's result is written: at once when one is free, after waiting in a bounded
    /// line otherwise; [`Busy`] when the caller's share or the line is full.
    pub async fn take(&self, client: &Client) -> Result<Turn, Busy> {
        let share = self.share(client)?;
        let permit = self.slot().await?;
        Ok(Turn {
            _permit: permit,
            _share: share,
        })
    }

    /// Sync queries (running, waiting for a turn).
    pub fn load(&self) -> (usize, usize) {
        (
            self.size - self.slots.available_permits(),
            self.waiting.load(Ordering::Relaxed),
        )
    }

    /// Sync queries in flight now that count against a share (`user NAME`, `group NAME`, `address IP`).
    pub fn of(&self, key: &str) -> usize {
        self.shares
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// The caller's share and their groups', all counted until the returned guard drops, or none when one of them
    /// is used up: checked and taken under one lock, so concurrent requests cannot both take the last one.
    fn share(&self, client: &Client) -> Result<Share, Busy> {
        let mut shares = self.shares.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, allowance) in client.shares() {
            let used = shares.get(key).copied().unwrap_or(0);
            if used >= allowance.sync {
                return Err(Busy {
                    what: "sync queries in flight",
                    limit: allowance.sync as u64,
                    mine: true,
                    used: used as u64,
                    whose: key.to_string(),
                });
            }
        }
        let keys: Vec<String> = client.shares().map(|(k, _)| k.to_string()).collect();
        for k in &keys {
            *shares.entry(k.clone()).or_insert(0) += 1;
        }
        Ok(Share {
            shares: self.shares.clone(),
            keys,
        })
    }

    async fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Busy> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let busy = Busy::service("sync queries waiting", self.waiting_limit as u64);
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.waiting_limit {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(busy);
        }
        let permit = self.slots.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        permit.map_err(|_| busy)
    }
}

/// A sync query's turn: the service's slot and the caller's share, both given back when it drops.
pub struct Turn {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _share: Share,
}

struct Share {
    shares: Arc<Mutex<HashMap<String, usize>>>,
    keys: Vec<String>,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut shares = self.shares.lock().unwrap_or_else(PoisonError::into_inner);
        for key in &self.keys {
            if let Some(n) = shares.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    shares.remove(key);
                }
            }
        }
    }
}

impl crate::Platform {
    /// Bytes the tables of a space hold now, but `except`'s.
    pub fn table_space_bytes(&self, space: &crate::access::Space, except: Option<&str>) -> u64 {
        self.czar
            .tables()
            .iter()
            .filter(|t| crate::access::Space::of(&t.record.schema).as_ref() == Some(space))
            .filter(|t| except.is_none_or(|e| !t.record.qualified_name().eq_ignore_ascii_case(e)))
            .map(|t| {
                metastore::files::size_of(&loader::ingest::load_dir(
                    self.czar.data_dir(),
                    &t.record,
                ))
            })
            .sum()
    }

    /// The table quota of a space, in bytes: a user's own (`skyshard user quota --tables-mb`) or a group's, else
    /// the service's default ([`Limits::user_tables`]).
    pub fn table_space_quota(&self, space: &crate::access::Space) -> u64 {
        let mb = self.auth.as_ref().and_then(|auth| match space {
            crate::access::Space::User(u) => auth
                .accounts
                .user(u)
                .ok()
                .flatten()
                .and_then(|u| u.quota.tables_mb),
            crate::access::Space::Group(g) => auth
                .accounts
                .group(g)
                .ok()
                .flatten()
                .and_then(|g| g.quota.tables_mb),
        });
        mb.map_or(self.limits.user_tables, |mb| mb.saturating_mul(1 << 20))
    }

    /// A file space's quota in bytes (`owner` as its URL names it: `NAME` or `group_NAME`): the user's or the
    /// group's own (`--files-mb`), else the service's default ([`Limits::user_files`]).
    pub fn file_space_quota(&self, owner: &str) -> u64 {
        let accounts = self.auth.as_ref().map(|a| &a.accounts);
        let mb = match owner.strip_prefix("group_") {
            Some(group) => accounts
                .and_then(|a| a.group(group).ok().flatten())
                .and_then(|g| g.quota.files_mb),
            None => accounts
                .and_then(|a| a.user(owner).ok().flatten())
                .and_then(|u| u.quota.files_mb),
        };
        mb.map_or(self.limits.user_files, |mb| mb.saturating_mul(1 << 20))
    }

    /// Bytes a file space holds now.
    pub fn file_space_bytes(&self, owner: &str) -> u64 {
        metastore::files::size_of(&self.space_dir(owner))
    }
}

/// Failed logins allowed per user name and per address within [`LOGIN_WINDOW`], before further attempts are
/// refused until the window has passed.
pub const LOGIN_FAILURES: u32 = 5;
/// The window failed logins are counted in.
pub const LOGIN_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
/// Passwords checked at once (Argon2 takes about 19 MiB and tens of milliseconds each): more wait their turn by
/// being refused at once.
pub const LOGIN_CHECKS: usize = 4;

/// Logins by key (`user NAME`, `address IP`): a password cannot be guessed faster than [`LOGIN_FAILURES`] per
/// [`LOGIN_WINDOW`] for one account, or from one address across accounts, and no more than [`LOGIN_CHECKS`] are
/// checked at once. An attempt counts as a failure from the moment it is taken (so attempts sent together are
/// counted together) until it succeeds.
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, (std::time::Instant, u32)>>,
    checks: tokio::sync::Semaphore,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            failures: Mutex::default(),
            checks: tokio::sync::Semaphore::new(LOGIN_CHECKS),
        }
    }
}

/// Why a login is not checked now.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginRefusal {
    /// Too many failures for a key: try again after this long.
    Wait(std::time::Duration),
    /// [`LOGIN_CHECKS`] passwords are being checked now.
    Busy,
}

/// A login being checked: counted as failed unless [`LoginAttempt::succeeded`] is called.
pub struct LoginAttempt<'a> {
    throttle: &'a LoginThrottle,
    keys: Vec<String>,
    _check: tokio::sync::SemaphorePermit<'a>,
}

impl LoginAttempt<'_> {
    /// The password was right: the attempt is not held against its keys.
    pub fn succeeded(self) {
        let mut failures = self
            .throttle
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for key in &self.keys {
            if let Some(entry) = failures.get_mut(key) {
                entry.1 = entry.1.saturating_sub(1);
            }
        }
    }
}

impl LoginThrottle {
    /// Takes an attempt for `keys`, or says why not.
    pub fn attempt(&self, keys: &[String]) -> Result<LoginAttempt<'_>, LoginRefusal> {
        self.attempt_at(keys, std::time::Instant::now())
    }

    fn attempt_at(&self, keys: &[String], now: std::time::Instant) -> Result<LoginAttempt<'_>, LoginRefusal> {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        // Windows that have passed are forgotten, so the map holds only recent failures.
        failures.retain(|_, (since, _)| now.duration_since(*since) < LOGIN_WINDOW);
        let wait = keys
            .iter()
            .filter_map(|k| failures.get(k))
            .filter(|(_, n)| *n >= LOGIN_FAILURES)
            .map(|(since, _)| LOGIN_WINDOW - now.duration_since(*since))
            .max();
        if let Some(wait) = wait {
            return Err(LoginRefusal::Wait(wait));
        }
        let check = self.checks.try_acquire().map_err(|_| LoginRefusal::Busy)?;
        for key in keys {
            failures.entry(key.clone()).or_insert((now, 0)).1 += 1;
        }
        Ok(LoginAttempt {
            throttle: self,
            keys: keys.to_vec(),
            _check: check,
        })
    }
}

#[cfg(test)]
mod login_tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn attempts_past_the_limit_wait_out_the_window_per_key() {
        let t = LoginThrottle::default();
        let start = Instant::now();
        let ada = vec!["user ada".to_string(), "address 10.0.0.1".to_string()];
        let bob = vec!["user bob".to_string(), "address 10.0.0.2".to_string()];
        // A right password does not count.
        t.attempt_at(&ada, start).unwrap().succeeded();
        for _ in 0..LOGIN_FAILURES {
            drop(t.attempt_at(&ada, start).expect("under the limit"));
        }
        let Err(LoginRefusal::Wait(wait)) = t.attempt_at(&ada, start + Duration::from_secs(10)) else {
            panic!("at the limit")
        };
        assert_eq!(wait, Duration::from_secs(50));
        // Another user from another address is not held up; the same address trying another name is.
        assert!(t.attempt_at(&bob, start).is_ok());
        let other_name = vec!["user bob".to_string(), "address 10.0.0.1".to_string()];
        assert!(matches!(t.attempt_at(&other_name, start), Err(LoginRefusal::Wait(_))));
        // Once the window has passed, ada may try again.
        assert!(t.attempt_at(&ada, start + LOGIN_WINDOW).is_ok());
    }

    #[test]
    fn attempts_made_together_are_counted_together_and_few_are_checked_at_once() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        let keys = vec!["user cy".to_string(), "address 10.0.0.3".to_string()];
        // LOGIN_CHECKS attempts in flight at once: the next is refused as busy, not checked.
        let held: Vec<_> = (0..LOGIN_CHECKS).map(|_| t.attempt_at(&keys, now).expect("a check")).collect();
        assert_eq!(t.attempt_at(&keys, now).err(), Some(LoginRefusal::Busy));
        drop(held);
        // Those four counted as failures already; one more reaches the limit, the next waits.
        drop(t.attempt_at(&keys, now).expect("the fifth"));
        assert!(matches!(t.attempt_at(&keys, now), Err(LoginRefusal::Wait(_))));
    }
}
