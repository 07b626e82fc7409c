//! Who may see and change which tables. The catalogs the operator loads are everyone's to read (and only an admin's
//! to change); a user's tables live in the schema `user_NAME`, a group's in `group_NAME`. A user table is read by
//! its owner (or, in a group schema, the group's members), by those it is shared with (a group, or everyone), and by
//! admins; to anyone else it does not exist: it is missing from `/tables` and TAP_SCHEMA, and a query naming it
//! is told there is no such table (404 for its VOSI resource), so private table names do not leak either.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::identity::Caller;

/// Whose space a schema is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Space {
    User(String),
    Group(String),
}

impl Space {
    /// The space of a schema name (`user_NAME`, `group_NAME`), None for the operator's catalogs.
    pub fn of(schema: &str) -> Option<Space> {
        let schema = schema.to_ascii_lowercase();
        if let Some(name) = schema.strip_prefix("user_") {
            return Some(Space::User(name.to_string()));
        }
        schema
            .strip_prefix("group_")
            .map(|name| Space::Group(name.to_string()))
    }
}

/// Who is reading: a user with their groups, or nobody in particular.
#[derive(Debug, Clone, Default)]
pub struct Reader {
    pub user: Option<String>,
    pub groups: Vec<String>,
    pub admin: bool,
}

impl Reader {
    pub fn of(caller: &Caller) -> Reader {
        match caller {
            Caller::Anonymous => Reader::default(),
            Caller::User(i) => Reader {
                user: Some(i.user.clone()),
                groups: i.groups.clone(),
                admin: i.may("admin"),
            },
        }
    }

    /// Whether the reader's own space is `space` (theirs, or a group of theirs).
    pub fn owns(&self, space: &Space) -> bool {
        match space {
            Space::User(u) => self.user.as_deref() == Some(u.as_str()),
            Space::Group(g) => self.user.is_some() && self.groups.iter().any(|x| x == g),
        }
    }
}

/// Who a user table is shared with, beyond its space.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    /// Groups whose members may read it.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Everyone may read it (anonymous callers too).
    #[serde(default)]
    pub public: bool,
    /// Groups whose members may also add rows to it and index it (and read it); dropping it and changing who
    /// may read or write it stay its owner's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write_groups: Vec<String>,
}

/// The grants of every user table, kept in `DATA_DIR/usertables/grants.json` (written whole, atomically) and in
/// memory for the per-query checks.
pub struct Grants {
    path: PathBuf,
    by_table: RwLock<HashMap<String, Grant>>,
}

impl Grants {
    pub fn open(data_dir: &Path) -> Result<Grants, String> {
        let path = partitioner::layout::grants_file(data_dir);
        let by_table = match metastore::files::read_if_present(&path) {
            Ok(None) => HashMap::new(),
            Ok(Some(bytes)) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Ok(Grants {
            path,
            by_table: RwLock::new(by_table),
        })
    }

    pub fn get(&self, table: &str) -> Grant {
        self.by_table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&table.to_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    /// Sets (or, with the default grant, removes) a table's grant, on disk first.
    pub fn set(&self, table: &str, grant: Grant) -> Result<(), String> {
        let mut all = self
            .by_table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = all.clone();
        if grant == Grant::default() {
            next.remove(&table.to_lowercase());
        } else {
            next.insert(table.to_lowercase(), grant);
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let bytes = serde_json::to_vec_pretty(&next).expect("grants serialize");
        metastore::files::write_atomically(&self.path, &bytes)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        *all = next;
        Ok(())
    }

    /// Whether `reader` may read `table` (`schema.table`).
    pub fn may_read(&self, reader: &Reader, table: &str) -> bool {
        let schema = table.split('.').next().unwrap_or("");
        let Some(space) = Space::of(schema) else {
            return true;
        };
        if reader.admin || reader.owns(&space) {
            return true;
        }
        let grant = self.get(table);
        grant.public
            || (reader.user.is_some()
                && grant
                    .groups
                    .iter()
                    .chain(&grant.write_groups)
                    .any(|g| reader.groups.contains(g)))
    }

    /// Whether `reader` (a named user) is in a group that may add rows to `table`.
    pub fn may_add_rows(&self, reader: &Reader, table: &str) -> bool {
        reader.user.is_some()
            && self
                .get(table)
                .write_groups
                .iter()
                .any(|g| reader.groups.contains(g))
    }

    /// What `reader` sees, for [`czar::Czar::plan_for`]: None when nothing is hidden from them.
    pub fn visible(
        self: &Arc<Grants>,
        reader: Reader,
    ) -> Option<Arc<dyn Fn(&str) -> bool + Send + Sync>> {
        if reader.admin {
            return None;
        }
        let grants = self.clone();
        Some(Arc::new(move |table: &str| grants.may_read(&reader, table)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_reads_a_user_table() {
        let dir = std::env::temp_dir().join(format!("skyshard-grants-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let grants = Grants::open(&dir).unwrap();
        let ada = Reader {
            user: Some("ada".into()),
            groups: vec!["optics".into()],
            admin: false,
        };
        let bob = Reader {
            user: Some("bob".into()),
            groups: vec!["radio".into()],
            admin: false,
        };
        let anonymous = Reader::default();
        assert!(grants.may_read(&anonymous, "sky.object"));
        assert!(grants.may_read(&ada, "user_ada.t") && !grants.may_read(&bob, "user_ada.t"));
        assert!(
            grants.may_read(&ada, "group_optics.t") && !grants.may_read(&bob, "group_optics.t")
        );
        assert!(!grants.may_read(&anonymous, "user_ada.t"));
        grants
            .set(
                "user_ada.t",
                Grant {
                    groups: vec!["radio".into()],
                    ..Grant::default()
                },
            )
            .unwrap();
        assert!(grants.may_read(&bob, "user_ada.t") && !grants.may_read(&anonymous, "user_ada.t"));
        // Grants survive a restart.
        let again = Grants::open(&dir).unwrap();
        assert!(again.may_read(&bob, "user_ada.t"));
        again
            .set(
                "user_ada.t",
                Grant {
                    public: true,
                    ..Grant::default()
                },
            )
            .unwrap();
        assert!(again.may_read(&anonymous, "user_ada.t"));
        again.set("user_ada.t", Grant::default()).unwrap();
        assert!(!Grants::open(&dir).unwrap().may_read(&bob, "user_ada.t"));
        // An anonymous caller is in no group, whatever a grant names.
        assert!(!Reader::default().owns(&Space::Group("optics".into())));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// What a request changes of a user table: the table itself (create, drop, share), or only its rows (load, index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Table,
    Rows,
}

/// Whose a job is to the caller ([`crate::Platform::job_access`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobAccess {
    /// The caller's own, or an anonymous job (anyone who has its unguessable URL), or the service has no accounts.
    Allowed,
    /// Another user's job.
    Forbidden,
    /// A named user's job and an anonymous caller, who may be its owner not logged in.
    Unauthenticated,
}

impl crate::Platform {
    /// Whether `caller` may read the catalogs, tables and jobs: anyone the policy lets in, but a token without the
    /// `read:tap` scope (one made for a file client, say).
    pub fn may_read_catalog(&self, caller: &Caller) -> crate::error::Result<()> {
        match caller {
            Caller::User(identity) if !identity.may("read:tap") => {
                Err(crate::error::PlatformError::Forbidden(
                    "your token lacks the read:tap scope".into(),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Whether `caller` may see or change the job owned by `owner` (UWS 1.1: someone else's job answers 403).
    pub fn job_access(&self, caller: &Caller, owner: Option<&str>) -> JobAccess {
        let Some(owner) = owner.filter(|_| self.auth.is_some()) else {
            return JobAccess::Allowed;
        };
        match caller.user() {
            Some(user) if user == owner => JobAccess::Allowed,
            Some(_) => JobAccess::Forbidden,
            None => JobAccess::Unauthenticated,
        }
    }

    /// The caller may change tables of `space` (create, drop, share): a named user with the `write:tables` scope
    /// whose space it is.
    pub fn may_write_tables(&self, caller: &Caller, space: &Space) -> crate::error::Result<()> {
        use crate::error::PlatformError;
        if self.auth.is_none() {
            return Err(PlatformError::Forbidden(
                "this service has no accounts (--auth none): user tables need a named user".into(),
            ));
        }
        let Caller::User(identity) = caller else {
            return Err(PlatformError::Unauthenticated(
                "user tables belong to named users: send a token or log in".into(),
            ));
        };
        if !identity.may("write:tables") {
            return Err(PlatformError::Forbidden(
                "your token lacks the write:tables scope".into(),
            ));
        }
        if !Reader::of(caller).owns(space) {
            let whose = match space {
                Space::User(u) => format!("user {u}'s"),
                Space::Group(g) => format!("group {g}'s (you are not a member)"),
            };
            return Err(PlatformError::Forbidden(format!(
                "that schema is {whose}: you may write only in user_{} and your groups' schemas",
                identity.user
            )));
        }
        Ok(())
    }

    /// The caller may add rows to `table` (and index it): [`crate::Platform::may_write_tables`] in its space, or a
    /// member of a group it is shared with for writing (`rw-group`).
    pub fn may_add_rows(
        &self,
        caller: &Caller,
        space: &Space,
        table: &str,
    ) -> crate::error::Result<()> {
        let refused = match self.may_write_tables(caller, space) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if caller.may("write:tables") && self.grants.may_add_rows(&Reader::of(caller), table) {
            return Ok(());
        }
        Err(refused)
    }

    /// The published table `table`, if the caller may read it (others get the same answer as for no table).
    pub fn readable_table(&self, caller: &Caller, table: &str) -> Option<Arc<czar::TableInfo>> {
        let reader = Reader::of(caller);
        self.czar
            .tables()
            .into_iter()
            .find(|t| t.record.qualified_name().eq_ignore_ascii_case(table))
            .filter(|_| self.grants.may_read(&reader, table))
    }
}
