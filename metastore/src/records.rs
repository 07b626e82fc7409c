//! A small durable map of named records (the czar's async jobs): one file per record in its own directory,
//! each put written beside its name, synced and renamed, so a record put before a crash is there after it and a
//! record is never half written. One process writes a directory at a time (`LOCK`); it removes what a crashed
//! write left when it opens the directory (not while listing, where it would race its own puts).

use std::path::{Path, PathBuf};

use crate::files::{self, DirLock};
use crate::{MetaError, Result};

/// The suffix of record files (which sets them apart from `LOCK`).
const RECORD: &str = ".rec";

pub struct RecordStore {
    dir: PathBuf,
    _lock: DirLock,
}

impl std::fmt::Debug for RecordStore {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "RecordStore({})", self.dir.display())
    }
}

impl RecordStore {
    pub fn open(path: &Path) -> Result<RecordStore> {
        crate::refuse_rocksdb(path)?;
        let io = |e| MetaError::io(path, e);
        std::fs::create_dir_all(path).map_err(io)?;
        let lock = DirLock::acquire(path).map_err(io)?;
        // Under the lock and before any put: no write of ours is under way, so a `.tmp` file is a dead one's.
        files::remove_leftovers(path).map_err(io)?;
        Ok(RecordStore {
            dir: path.to_path_buf(),
            _lock: lock,
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{}{RECORD}", files::encode(key)))
    }

    pub fn put(&self, key: &str, value: &[u8]) -> Result<()> {
        let path = self.path(key);
        files::write_atomically(&path, value).map_err(|e| MetaError::io(&path, e))
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key);
        files::read_if_present(&path).map_err(|e| MetaError::io(&path, e))
    }

    pub fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        files::remove(&path).map_err(|e| MetaError::io(&path, e))
    }

    /// Every record, in key order.
    pub fn all(&self) -> Result<Vec<(String, Vec<u8>)>> {
        files::records(&self.dir, RECORD).map_err(|e| MetaError::io(&self.dir, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_persist_and_one_process_writes() {
        let dir = std::env::temp_dir().join(format!("skyshard-records-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = RecordStore::open(&dir).unwrap();
        store.put("job/b", b"2").unwrap();
        store.put("job/a", b"1").unwrap();
        store.put("job/a", b"one").unwrap();
        std::fs::write(dir.join(".job%2Fc.rec.9.9.tmp"), b"torn").unwrap();
        let err = RecordStore::open(&dir).unwrap_err().to_string();
        assert!(err.contains("another process"), "{err}");
        assert_eq!(store.get("job/a").unwrap(), Some(b"one".to_vec()));
        assert_eq!(store.get("job/z").unwrap(), None);
        store.delete("job/b").unwrap();
        store.delete("job/b").unwrap();
        drop(store);
        let store = RecordStore::open(&dir).unwrap();
        assert_eq!(
            store.all().unwrap(),
            vec![("job/a".to_string(), b"one".to_vec())]
        );
        assert!(!dir.join(".job%2Fc.rec.9.9.tmp").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
