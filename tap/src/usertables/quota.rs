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
        .map(|t| {
            metastore::files::size_of(&loader::ingest::load_dir(tap.czar.data_dir(), &t.record))
        })
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

/// Loads `inputs` as `table` through the czar ([`czar::Czar::prepare_load`], then `publish_load`), refused whole
/// with 413 when the space's tables, this one's new load included, would outgrow the space's quota.
pub(super) async fn load_within_quota(
    tap: &Arc<Tap>,
    space: &Space,
    table: &str,
    inputs: Vec<PathBuf>,
    options: loader::ingest::IngestOptions,
) -> Result<czar::load::LoadReport, Refusal> {
    let others = space_bytes(tap, space, Some(table));
    let quota = space_quota(tap, space);
    let prepared = tap
        .czar
        .prepare_load(inputs, options)
        .await
        .map_err(czar_refusal)?;
    let new = prepared.bytes();
    if others + new > quota {
        let whose = match space {
            Space::User(u) => format!("user {u}"),
            Space::Group(g) => format!("group {g}"),
        };
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "over the table quota: the tables of {whose} would hold {} MiB, where the quota is {} MiB (this \
                 table {} MiB); nothing was changed. Drop tables, or ask for more (skyshard user quota --tables-mb)",
                (others + new) >> 20,
                quota >> 20,
                new >> 20
            ),
        ));
    }
    let linger = std::time::Duration::from_secs(tap.limits.replaced_load_linger);
    tap.czar
        .publish_load(prepared, linger)
        .await
        .map_err(czar_refusal)
}

/// A czar's refusal of a load: the status of its error code and its message.
fn czar_refusal(e: czar::error::CzarError) -> Refusal {
    let status = StatusCode::from_u16(e.code().http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    (status, e.to_string())
}
