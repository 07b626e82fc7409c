//! The file operations every durable write here is made of: write beside the name, sync, rename over it, sync
//! the directory. A reader sees the old file or the new one, never a torn one; a crash before the rename leaves
//! only a `.tmp` file that garbage collection removes.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Suffix of files being written; nothing reads them, garbage collection removes them.
pub(crate) const TMP: &str = ".tmp";

/// A temporary name beside `dest`, unique within and across processes.
pub(crate) fn tmp_beside(dest: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(
        ".{name}.{}.{}{TMP}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Replaces `dest` with `bytes`, durably: after this returns, a crash leaves the new content.
pub fn write_atomically(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_beside(dest);
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    publish(&tmp, dest)
}

/// Renames a finished, synced file over `dest` and syncs the directory, so the rename survives a crash.
pub(crate) fn publish(tmp: &Path, dest: &Path) -> io::Result<()> {
    std::fs::rename(tmp, dest)?;
    sync_dir(dest.parent().unwrap_or(Path::new(".")))
}

/// Removes a file durably; a file already gone is not an error.
pub(crate) fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("."))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads a file, or None if there is none.
pub fn read_if_present(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The records of a directory: the key and content of every file named `encode(key) + suffix`, in key order. Files
/// being written (named `.…tmp`) are not records; a missing directory has none.
pub(crate) fn records(dir: &Path, suffix: &str) -> io::Result<Vec<(String, Vec<u8>)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let Some(key) = name.strip_suffix(suffix).and_then(decode) else {
            continue;
        };
        // A record deleted since the listing is simply not there.
        if let Some(value) = read_if_present(&dir.join(&name))? {
            out.push((key, value));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Removes what writes left behind when their process died (`.…tmp` files); only for the one writing process, at
/// a moment it has no write of its own under way.
pub(crate) fn remove_leftovers(dir: &Path) -> io::Result<u64> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(TMP) {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// A key as a file name: ASCII letters, digits, `_`, `-` and `.` (not leading) stay; every other byte is `%XX`.
pub(crate) fn encode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for (i, b) in key.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The key of a file name written by [`encode`]; None for names it did not write. (Strict percent-decoding: also
/// what the WebDAV paths of user files are read with.)
pub fn decode(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// An exclusive lock on `dir/LOCK`, held while the value lives: one writing process per store.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    pub(crate) fn acquire(dir: &Path) -> io::Result<DirLock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "another process is writing it",
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_the_trip_through_a_file_name() {
        for key in ["job/abc", "cat.obj", ".hidden", "a b%c", "ünï", "", "x.tmp"] {
            let name = encode(key);
            assert!(
                !name.contains('/') && !name.starts_with('.'),
                "{key} -> {name}"
            );
            assert_eq!(decode(&name).as_deref(), Some(key));
        }
        assert_eq!(decode("%G1"), None);
        assert_eq!(decode("%4"), None);
    }
}

/// Bytes of the files under `path` (a file's own length; symbolic links are not followed). What a load, a table or
/// a user's file space holds is measured with it, so quotas count the same bytes everywhere.
pub fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| size_of(&e.path())).sum())
        .unwrap_or(0)
}
