//! skyshard's durable metadata, in plain files: the published tables (kind, chunk map, column metadata, current
//! load), the secondary index from director ids to chunks, and small record maps (the async jobs).
//!
//! ```text
//! META/LOCK                          held by the one process that writes (a loader, or a czar loading)
//! META/tables/SCHEMA.TABLE.json      the table record: which load is current
//! META/index/SCHEMA.TABLE/LOAD.idx   one load's secondary index (immutable; see [`index`])
//! META/**/.NAME.PID.N.tmp            files being written; nothing reads them, garbage collection removes them
//! ```
//!
//! Loads are atomic. A load writes its index file under its own load id, where nothing reads it; publishing is one
//! rename of the table record, which points the table at the new load. A load that dies before that rename leaves
//! only unreachable files, which [`MetaStore::collect_garbage`] removes. Every write is synced before its rename and
//! the directory after it, so a record that was published, or a job that was put, is there after `kill -9` or a
//! power cut. Readers take no lock: any number of processes (czars) read while one writes.

pub mod accounts;
pub mod files;
pub mod index;
mod records;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use partitioner::ChunkId;
use serde::{Deserialize, Serialize};

use files::DirLock;
pub use index::{Built, IndexBuilder, IndexFile};
pub use records::RecordStore;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata store at {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("metadata record of {table} is unreadable: {source}")]
    Corrupt {
        table: String,
        source: serde_json::Error,
    },
    #[error(
        "the index of load {load} of {table} is gone (the table was replaced or dropped since it was read); read the catalog again"
    )]
    LoadGone { table: String, load: String },
    #[error("metadata store at {path} was opened read-only")]
    ReadOnly { path: String },
    #[error(
        "{path} holds a metadata store written by an older skyshard (RocksDB), which this version cannot read; load the tables again into a new data directory"
    )]
    OldFormat { path: String },
}

impl MetaError {
    /// Another process holds the store for writing (a load): try again later.
    pub fn is_locked(&self) -> bool {
        matches!(self, MetaError::Io { source, .. } if source.kind() == std::io::ErrorKind::WouldBlock)
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> MetaError {
        MetaError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

pub type Result<T, E = MetaError> = std::result::Result<T, E>;

/// A directory RocksDB wrote (skyshard before 0.2 kept its metadata there) is refused by name, not misread.
pub(crate) fn refuse_rocksdb(path: &Path) -> Result<()> {
    if path.join("CURRENT").exists() && path.join("IDENTITY").exists() {
        return Err(MetaError::OldFormat {
            path: path.display().to_string(),
        });
    }
    Ok(())
}

/// How a table is spread over chunks (the data model of `../shared/DESIGN.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TableKind {
    /// Partitioned by its own position; `id` is unique and indexed.
    Director { ra: String, dec: String, id: String },
    /// Partitioned with its director through a key column.
    Child { director: String, key: String },
    /// Small; a full copy on every worker.
    Replicated,
}

/// TAP metadata of one column.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ColumnRecord {
    pub name: String,
    pub datatype: String,
    pub description: Option<String>,
    pub unit: Option<String>,
    pub ucd: Option<String>,
    pub indexed: bool,
    pub principal: bool,
}

/// A published table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableRecord {
    pub schema: String,
    pub name: String,
    pub kind: TableKind,
    pub description: Option<String>,
    /// The load whose files and index entries are current.
    pub load_id: String,
    pub rows: u64,
    pub overlap_arcsec: f64,
    /// The chunk map (NUNIQ numbers); empty for replicated tables.
    pub chunks: Vec<u64>,
    pub columns: Vec<ColumnRecord>,
    /// Child tables: rows kept with `--allow-orphans` whose key names no director object (in `orphans.parquet`).
    #[serde(default)]
    pub orphan_rows: u64,
    /// Which workers hold each chunk, for loads shipped to workers' own disks (`skyshard load`): chunk -> worker
    /// addresses. Empty when workers read the czar's data directory.
    #[serde(default)]
    pub placement: Vec<(u64, Vec<String>)>,
}

impl TableRecord {
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// The metadata store of a data directory.
pub struct MetaStore {
    dir: PathBuf,
    /// Held by a store opened for writing; None when read-only.
    lock: Option<DirLock>,
    /// Index files opened so far, by (table, load); they never change once written.
    open_indexes: Mutex<HashMap<(String, String), Arc<IndexFile>>>,
}

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "MetaStore({})", self.dir.display())
    }
}

/// Where a store keeps its table records (`META/tables/SCHEMA.TABLE.json`): a reader that watches for new loads
/// (the czar) looks here.
pub fn records_dir(meta_dir: &Path) -> PathBuf {
    meta_dir.join(RECORDS)
}

/// The store's folder of table records (inside the metadata store, whose layout is this crate's).
const RECORDS: &str = "tables";

impl MetaStore {
    /// Opens (creating if need be) a store for writing; one process writes a store at a time.
    pub fn open(path: &Path) -> Result<MetaStore> {
        refuse_rocksdb(path)?;
        let io = |e| MetaError::io(path, e);
        std::fs::create_dir_all(records_dir(path)).map_err(io)?;
        std::fs::create_dir_all(path.join("index")).map_err(io)?;
        let lock = DirLock::acquire(path).map_err(io)?;
        Ok(MetaStore {
            dir: path.to_path_buf(),
            lock: Some(lock),
            open_indexes: Mutex::new(HashMap::new()),
        })
    }

    /// Opens a store for reading while another process may write it (a czar serving what `ingest` loads). Each
    /// call reads the records as they are then; a missing store reads as empty.
    pub fn open_read_only(path: &Path) -> Result<MetaStore> {
        refuse_rocksdb(path)?;
        Ok(MetaStore {
            dir: path.to_path_buf(),
            lock: None,
            open_indexes: Mutex::new(HashMap::new()),
        })
    }

    fn writable(&self) -> Result<()> {
        match self.lock {
            Some(_) => Ok(()),
            None => Err(MetaError::ReadOnly {
                path: self.dir.display().to_string(),
            }),
        }
    }

    fn record_path(&self, table: &str) -> PathBuf {
        records_dir(&self.dir).join(format!("{}.json", files::encode(table)))
    }

    fn index_dir(&self, table: &str) -> PathBuf {
        self.dir.join("index").join(files::encode(table))
    }

    fn index_path(&self, table: &str, load: &str) -> PathBuf {
        self.index_dir(table)
            .join(format!("{}.idx", files::encode(load)))
    }

    fn parse(table: &str, bytes: &[u8]) -> Result<TableRecord> {
        serde_json::from_slice(bytes).map_err(|source| MetaError::Corrupt {
            table: table.to_string(),
            source,
        })
    }

    pub fn table(&self, qualified: &str) -> Result<Option<TableRecord>> {
        let path = self.record_path(qualified);
        match files::read_if_present(&path).map_err(|e| MetaError::io(&path, e))? {
            None => Ok(None),
            Some(bytes) => Self::parse(qualified, &bytes).map(Some),
        }
    }

    /// Every published table, by qualified name.
    pub fn tables(&self) -> Result<Vec<TableRecord>> {
        let dir = records_dir(&self.dir);
        files::records(&dir, ".json")
            .map_err(|e| MetaError::io(&dir, e))?
            .into_iter()
            .map(|(table, bytes)| Self::parse(&table, &bytes))
            .collect()
    }

    /// A builder of a load's index, which is invisible to [`MetaStore::lookup`] until the load is published. It
    /// sorts in at most `memory_bytes` (16 bytes an entry), spilling sorted runs beside the index.
    pub fn index_builder(
        &self,
        table: &str,
        load: &str,
        memory_bytes: usize,
    ) -> Result<IndexBuilder> {
        self.writable()?;
        let dir = self.index_dir(table);
        std::fs::create_dir_all(&dir).map_err(|e| MetaError::io(&dir, e))?;
        Ok(IndexBuilder::new(
            self.index_path(table, load),
            memory_bytes,
        ))
    }

    /// Writes a whole load's index from entries in memory (refused with no file written if an id repeats).
    pub fn stage_index(
        &self,
        table: &str,
        load: &str,
        entries: &[(i64, ChunkId)],
    ) -> Result<Built> {
        let mut b = self.index_builder(table, load, entries.len().saturating_mul(16))?;
        let path = self.index_path(table, load);
        b.extend(entries.iter().copied())
            .map_err(|e| MetaError::io(&path, e))?;
        b.finish().map_err(|e| MetaError::io(&path, e))
    }

    /// How many distinct ids a load staged (0 if it staged none).
    pub fn count_staged(&self, table: &str, load: &str) -> Result<u64> {
        let path = self.index_path(table, load);
        match IndexFile::open(&path) {
            Ok(i) => Ok(i.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(MetaError::io(&path, e)),
        }
    }

    /// Makes a load current with one rename of the table record; then the previous load's index goes.
    pub fn publish(&self, record: &TableRecord) -> Result<Option<TableRecord>> {
        self.writable()?;
        let table = record.qualified_name();
        let previous = self.table(&table)?;
        let path = self.record_path(&table);
        let bytes = serde_json::to_vec(record).expect("a table record serializes");
        files::write_atomically(&path, &bytes).map_err(|e| MetaError::io(&path, e))?;
        if let Some(prev) = &previous
            && prev.load_id != record.load_id
        {
            let old = self.index_path(&table, &prev.load_id);
            files::remove(&old).map_err(|e| MetaError::io(&old, e))?;
            self.open_indexes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(table.clone(), prev.load_id.clone()));
        }
        Ok(previous)
    }

    /// The open index of a load (opened once per store).
    fn index(&self, table: &str, load: &str) -> Result<Arc<IndexFile>> {
        let key = (table.to_string(), load.to_string());
        let mut open = self.open_indexes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = open.get(&key) {
            return Ok(i.clone());
        }
        let path = self.index_path(table, load);
        let index = match IndexFile::open(&path) {
            Ok(i) => Arc::new(i),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(MetaError::LoadGone {
                    table: table.to_string(),
                    load: load.to_string(),
                });
            }
            Err(e) => return Err(MetaError::io(&path, e)),
        };
        open.insert(key, index.clone());
        Ok(index)
    }

    /// The chunk of a director id in the table's current load.
    pub fn lookup(&self, table: &str, id: i64) -> Result<Option<ChunkId>> {
        let Some(record) = self.table(table)? else {
            return Ok(None);
        };
        Ok(self
            .lookup_many(table, &record.load_id, &[id])?
            .pop()
            .flatten())
    }

    /// The chunks of many director ids at once, in a given load of the table (each index block read once).
    pub fn lookup_many(
        &self,
        table: &str,
        load: &str,
        ids: &[i64],
    ) -> Result<Vec<Option<ChunkId>>> {
        let index = self.index(table, load)?;
        index
            .lookup_many(ids)
            .map_err(|e| MetaError::io(&self.index_path(table, load), e))
    }

    /// Removes what no published table points at: index files of interrupted or replaced loads, index folders of
    /// dropped tables, and files a crash left half written. Returns how many it removed.
    pub fn collect_garbage(&self) -> Result<u64> {
        self.writable()?;
        let current: Vec<(String, String)> = self
            .tables()?
            .into_iter()
            .map(|t| (t.qualified_name(), t.load_id))
            .collect();
        let tables = records_dir(&self.dir);
        let mut removed =
            files::remove_leftovers(&tables).map_err(|e| MetaError::io(&tables, e))?;
        let index = self.dir.join("index");
        for table_dir in std::fs::read_dir(&index)
            .map_err(|e| MetaError::io(&index, e))?
            .flatten()
        {
            let Some(table) = files::decode(&table_dir.file_name().to_string_lossy()) else {
                continue;
            };
            let Ok(loads) = std::fs::read_dir(table_dir.path()) else {
                continue;
            };
            for file in loads.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                let load = name.strip_suffix(".idx").and_then(files::decode);
                let keep = !name.starts_with('.')
                    && load.is_some_and(|l| current.contains(&(table.clone(), l)));
                if !keep {
                    std::fs::remove_file(file.path())
                        .map_err(|e| MetaError::io(&file.path(), e))?;
                    removed += 1;
                }
            }
            // Empty once its table is dropped; a folder in use keeps its file.
            let _ = std::fs::remove_dir(table_dir.path());
        }
        files::sync_dir(&index).map_err(|e| MetaError::io(&index, e))?;
        Ok(removed)
    }

    /// Removes a table: its record (one durable unlink, after which nothing reads the table), then its index.
    pub fn drop_table(&self, table: &str) -> Result<Option<TableRecord>> {
        self.writable()?;
        let previous = self.table(table)?;
        if previous.is_some() {
            let path = self.record_path(table);
            files::remove(&path).map_err(|e| MetaError::io(&path, e))?;
            let dir = self.index_dir(table);
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(load: &str) -> TableRecord {
        TableRecord {
            schema: "cat".into(),
            name: "obj".into(),
            kind: TableKind::Director {
                ra: "ra".into(),
                dec: "dec".into(),
                id: "id".into(),
            },
            description: None,
            load_id: load.into(),
            rows: 3,
            overlap_arcsec: 60.0,
            chunks: vec![16, 17],
            columns: vec![],
            orphan_rows: 0,
            placement: vec![],
        }
    }

    #[test]
    fn a_load_is_invisible_until_published_and_replaced_loads_vanish() {
        let dir = std::env::temp_dir().join(format!("skyshard-meta-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = MetaStore::open(&dir).unwrap();
        store
            .stage_index(
                "cat.obj",
                "a",
                &[(-5, ChunkId(16)), (7, ChunkId(17)), (i64::MAX, ChunkId(16))],
            )
            .unwrap();
        assert_eq!(
            store.lookup("cat.obj", 7).unwrap(),
            None,
            "nothing is visible before publishing"
        );
        assert_eq!(store.count_staged("cat.obj", "a").unwrap(), 3);
        store.publish(&record("a")).unwrap();
        assert_eq!(store.lookup("cat.obj", 7).unwrap(), Some(ChunkId(17)));
        assert_eq!(store.lookup("cat.obj", -5).unwrap(), Some(ChunkId(16)));
        assert_eq!(store.lookup("cat.obj", 8).unwrap(), None);
        assert_eq!(
            store.lookup_many("cat.obj", "a", &[7, 8, -5]).unwrap(),
            vec![Some(ChunkId(17)), None, Some(ChunkId(16))]
        );
        // An interrupted load leaves staged entries that nothing reads, and garbage collection removes them.
        store
            .stage_index("cat.obj", "b", &[(7, ChunkId(16))])
            .unwrap();
        assert_eq!(store.lookup("cat.obj", 7).unwrap(), Some(ChunkId(17)));
        assert_eq!(store.collect_garbage().unwrap(), 1);
        assert_eq!(store.count_staged("cat.obj", "b").unwrap(), 0);
        // Replacing switches in one write and drops the old entries.
        store
            .stage_index("cat.obj", "c", &[(7, ChunkId(16))])
            .unwrap();
        let previous = store.publish(&record("c")).unwrap();
        assert_eq!(previous.map(|p| p.load_id), Some("a".into()));
        assert_eq!(store.lookup("cat.obj", 7).unwrap(), Some(ChunkId(16)));
        assert_eq!(store.count_staged("cat.obj", "a").unwrap(), 0);
        // Duplicates are counted and named, and nothing is written for them.
        let dup = [(3, ChunkId(16)), (1, ChunkId(17)), (3, ChunkId(17))];
        let built = store.stage_index("cat.obj", "d", &dup).unwrap();
        assert_eq!((built.duplicates, built.examples), (1, vec![3]));
        assert_eq!(store.count_staged("cat.obj", "d").unwrap(), 0);
        let bulk: Vec<(i64, ChunkId)> = (0..1000)
            .rev()
            .map(|i| (i * 7 - 3000, ChunkId(16 + (i as u64 % 3))))
            .collect();
        assert_eq!(
            store.stage_index("cat.obj", "d", &bulk).unwrap().duplicates,
            0
        );
        assert_eq!(store.count_staged("cat.obj", "d").unwrap(), 1000);
        // A reader opened before a publish sees it at its next read; the load it had is gone, loudly.
        let reader = MetaStore::open_read_only(&dir).unwrap();
        assert_eq!(
            reader.lookup_many("cat.obj", "c", &[7]).unwrap(),
            vec![Some(ChunkId(16))]
        );
        store.publish(&record("d")).unwrap();
        assert_eq!(
            store.lookup("cat.obj", 7 * 999 - 3000).unwrap(),
            Some(ChunkId(16 + 999 % 3))
        );
        assert_eq!(reader.table("cat.obj").unwrap().unwrap().load_id, "d");
        assert!(matches!(
            MetaStore::open_read_only(&dir)
                .unwrap()
                .lookup_many("cat.obj", "c", &[7]),
            Err(MetaError::LoadGone { .. })
        ));
        assert!(matches!(
            reader.publish(&record("c")),
            Err(MetaError::ReadOnly { .. })
        ));
        let second = MetaStore::open(&dir).unwrap_err().to_string();
        assert!(second.contains("another process is writing"), "{second}");
        store
            .stage_index("cat.obj", "c", &[(7, ChunkId(16))])
            .unwrap();
        store.publish(&record("c")).unwrap();
        drop(store);
        let store = MetaStore::open(&dir).unwrap();
        assert_eq!(
            store.tables().unwrap(),
            vec![record("c")],
            "metadata survives reopening"
        );
        store.drop_table("cat.obj").unwrap();
        assert!(store.tables().unwrap().is_empty());
        assert_eq!(store.collect_garbage().unwrap(), 0);
        assert_eq!(std::fs::read_dir(dir.join("index")).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_rocksdb_store_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("skyshard-meta-old-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("CURRENT"), "MANIFEST-000005\n").unwrap();
        std::fs::write(dir.join("IDENTITY"), "x").unwrap();
        for err in [
            MetaStore::open(&dir).unwrap_err(),
            MetaStore::open_read_only(&dir).unwrap_err(),
            RecordStore::open(&dir).unwrap_err(),
        ] {
            assert!(err.to_string().contains("older skyshard"), "{err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
