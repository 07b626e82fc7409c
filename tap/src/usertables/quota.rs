//! The table quota of a space (a user's `user_NAME`, a group's `group_NAME`): what its tables hold, what it may
//! hold, and the check a load passes before it is published.

use super::*;

/// Bytes the tables of a space hold now, but `except`.
pub(crate) fn space_bytes(tap: &Tap, space: &Space, except: Option<&str>) -> u64 {
    tap.czar
        .tables()
        .iter()
        .filter(|t| Space::of(&t.record.schema).as_ref() == Some(space))
        .filter(|t| except.is_none_or(|e| !t.record.qualified_name().eq_ignore_ascii_case(e)))
        .map(|t| crate::files::size_of(&loader::ingest::load_dir(tap.czar.data_dir(), &t.record)))
        .sum()
}

/// The table quota of a space, in bytes: a user's own (or the service's default); a group's (or the default).
pub(crate) fn space_quota(tap: &Tap, space: &Space) -> u64 {
    let default = tap.limits.user_tables;
    let Some(auth) = &tap.auth else {
        return default;
    };
    let mb = match space {
        Space::User(u) => auth
            .accounts
            .user(u)
            .ok()
            .flatten()
            .and_then(|u| u.quota.tables_mb),
        Space::Group(g) => auth
            .accounts
            .group(g)
            .ok()
            .flatten()
            .and_then(|g| g.quota.tables_mb),
    };
    mb.map_or(default, |mb| mb.saturating_mul(1 << 20))
}

/// The marker of a load refused for its space's quota (the loader carries the check's message).
pub(super) const OVER_QUOTA: &str = "over the table quota";

/// The check a load of `table` passes before it is published: the space's tables, this one's new load included,
/// fit the space's quota.
pub(super) fn quota_check(
    tap: &Arc<Tap>,
    _client: &Client,
    space: &Space,
    table: &str,
) -> crate::admin::LoadCheck {
    let others = space_bytes(tap, space, Some(table));
    let quota = space_quota(tap, space);
    let whose = match space {
        Space::User(u) => format!("user {u}"),
        Space::Group(g) => format!("group {g}"),
    };
    Box::new(move |load_dir: &Path| {
        let new = crate::files::size_of(load_dir);
        if others + new > quota {
            return Err(format!(
                "{OVER_QUOTA}: the tables of {whose} would hold {} MiB, where the quota is {} MiB (this table \
                 {} MiB); nothing was changed. Drop tables, or ask for more (skyshard user quota --tables-mb)",
                (others + new) >> 20,
                quota >> 20,
                new >> 20
            ));
        }
        Ok(())
    })
}

/// The answer to a failed load: 413 for a quota, else what the loader said.
pub(super) fn load_refusal((status, message): Refusal) -> Response {
    if message.contains(OVER_QUOTA) {
        return error(StatusCode::PAYLOAD_TOO_LARGE, &message);
    }
    error(status, &message)
}
