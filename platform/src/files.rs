//! File spaces: a user's (`/files/NAME/`, kept under `DATA_DIR/files/NAME/`) and a group's, shared by its members
//! (`/files/group_NAME/`). Who may use a space, where a path of it lives on disk, and its quota are decided here;
//! the WebDAV methods that read and write it are the HTTP face's.

use std::path::PathBuf;

use crate::Platform;
use crate::access::Space;
use crate::error::{PlatformError, Result};
use crate::identity::Caller;

/// A path under `/files/`, checked: the space it is in, and the segments below it (decoded; no `.`, `..`, empty or
/// control-character segments).
#[derive(Debug, Clone, PartialEq)]
pub struct FilePath {
    /// The space's name as the URL spells it: `NAME` (a user's) or `group_NAME` (a group's).
    pub owner: String,
    pub segments: Vec<String>,
}

impl FilePath {
    pub fn parse(url_path: &str) -> std::result::Result<FilePath, String> {
        let rest = url_path
            .strip_prefix("/files/")
            .ok_or_else(|| format!("{url_path} is not under /files/"))?;
        let mut parts = rest.split('/');
        let owner = parts.next().unwrap_or("").to_string();
        if !metastore::accounts::valid_name(&owner) {
            return Err(format!(
                "/files/{owner}: no such space (a user's is /files/NAME/)"
            ));
        }
        let mut segments = Vec::new();
        for raw in parts {
            if raw.is_empty() {
                continue;
            }
            let s = metastore::files::decode(raw)
                .ok_or_else(|| format!("{raw}: not a valid path segment"))?;
            if s == "."
                || s == ".."
                || s.contains(['/', '\\', '\0'])
                || s.chars().any(char::is_control)
                || s.len() > 255
            {
                return Err(format!("{s:?}: not a valid name for a file"));
            }
            segments.push(s);
        }
        if segments.len() > 64 {
            return Err("paths nest at most 64 deep".into());
        }
        Ok(FilePath { owner, segments })
    }

    /// Whose space the path is in: `group_NAME` is always the group's (no user of that name can own it).
    pub fn space(&self) -> Space {
        match self.owner.strip_prefix("group_") {
            Some(group) => Space::Group(group.to_string()),
            None => Space::User(self.owner.clone()),
        }
    }

    /// The path one level up, if any.
    pub fn parent(&self) -> Option<FilePath> {
        let mut p = self.clone();
        p.segments.pop()?;
        Some(p)
    }
}

/// What a caller does in a space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Read,
    Write,
}

impl Platform {
    /// The root of a space on disk.
    pub fn space_dir(&self, owner: &str) -> PathBuf {
        partitioner::layout::files_dir(self.czar.data_dir()).join(owner)
    }

    /// Where a path of a space lives on disk.
    pub fn local_path(&self, path: &FilePath) -> PathBuf {
        let mut p = self.space_dir(&path.owner);
        for s in &path.segments {
            p.push(s);
        }
        p
    }

    /// Whether `caller` may use the space `path` is in: its user, or a member of its group; writing also needs the
    /// `write:files` scope.
    pub fn may_use_space(&self, caller: &Caller, path: &FilePath, what: Use) -> Result<()> {
        if self.auth.is_none() {
            return Err(PlatformError::NotFound(
                "this service has no accounts (--auth none), so no user files".into(),
            ));
        }
        let Caller::User(identity) = caller else {
            return Err(PlatformError::Unauthenticated(
                "user files need identity: send a token (Basic or Bearer)".into(),
            ));
        };
        let ours = match path.space() {
            Space::User(u) => u == identity.user,
            Space::Group(g) => identity.groups.contains(&g),
        };
        if !ours {
            return Err(PlatformError::Forbidden(format!(
                "/files/{}/ is not your space (yours is /files/{}/, and each group's of yours /files/group_NAME/)",
                path.owner, identity.user
            )));
        }
        if what == Use::Write && !identity.may("write:files") {
            return Err(PlatformError::Forbidden(
                "your token lacks the write:files scope".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_prefix_names_the_group_space() {
        let p = FilePath::parse("/files/group_optics/a.txt").unwrap();
        assert_eq!(p.space(), Space::Group("optics".into()));
        assert_eq!(
            FilePath::parse("/files/ada/x").unwrap().space(),
            Space::User("ada".into())
        );
        for bad in [
            "/files/ada/..",
            "/files/ada/%2e%2e",
            "/files/ADA!/x",
            "/other/ada",
        ] {
            assert!(FilePath::parse(bad).is_err(), "{bad}");
        }
    }
}
