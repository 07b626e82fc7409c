//! skyshard's durable metadata, in RocksDB: the published tables (kind, chunk map, column metadata, current load)
//! and the secondary index from director ids to chunks.
//!
//! Loads are atomic. A load writes its index entries under its own load id, where nothing reads them; publishing
//! is one RocksDB write that points the table at the new load. A load that dies before that write leaves only
//! unreachable entries and files, which [`MetaStore::collect_garbage`] removes.
//!
//! Keys: `t/SCHEMA.TABLE` -> the table record (JSON); `i/SCHEMA.TABLE/LOAD/ID` -> chunk (8 bytes, big-endian), ids
//! encoded so that byte order is numeric order.

use std::path::Path;

use partitioner::ChunkId;
use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata store at {path}: {source}")]
    Open {
        path: String,
        source: rocksdb::Error,
    },
    #[error("metadata store: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("metadata record of {table} is unreadable: {source}")]
    Corrupt {
        table: String,
        source: serde_json::Error,
    },
}

pub type Result<T, E = MetaError> = std::result::Result<T, E>;

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

/// Byte order equals numeric order for signed ids.
fn id_key(id: i64) -> [u8; 8] {
    ((id as u64) ^ (1 << 63)).to_be_bytes()
}

fn index_prefix(table: &str, load: &str) -> Vec<u8> {
    format!("i/{table}/{load}/").into_bytes()
}

pub struct MetaStore {
    db: DB,
}

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "MetaStore({})", self.db.path().display())
    }
}

impl MetaStore {
    pub fn open(path: &Path) -> Result<MetaStore> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let db = DB::open(&opts, path).map_err(|source| MetaError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Ok(MetaStore { db })
    }

    /// Opens a store for reading while another process may write it (a czar serving what `ingest` loads): a
    /// snapshot as of opening; open again to see later loads. Creates an empty store if there is none.
    pub fn open_read_only(path: &Path) -> Result<MetaStore> {
        if !path.join("CURRENT").exists() {
            drop(MetaStore::open(path)?);
        }
        let opts = Options::default();
        let db = DB::open_for_read_only(&opts, path, false).map_err(|source| MetaError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Ok(MetaStore { db })
    }

    pub fn table(&self, qualified: &str) -> Result<Option<TableRecord>> {
        match self.db.get(format!("t/{qualified}"))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|source| MetaError::Corrupt {
                    table: qualified.to_string(),
                    source,
                }),
        }
    }

    pub fn tables(&self) -> Result<Vec<TableRecord>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(b"t/", Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(b"t/") {
                break;
            }
            let name = String::from_utf8_lossy(&k[2..]).to_string();
            out.push(
                serde_json::from_slice(&v).map_err(|source| MetaError::Corrupt {
                    table: name,
                    source,
                })?,
            );
        }
        Ok(out)
    }

    /// Writes index entries of a load that is not yet published (invisible to [`MetaStore::lookup`]).
    pub fn stage_index(&self, table: &str, load: &str, entries: &[(i64, ChunkId)]) -> Result<()> {
        let prefix = index_prefix(table, load);
        let mut batch = WriteBatch::default();
        let mut key = prefix.clone();
        for (id, chunk) in entries {
            key.truncate(prefix.len());
            key.extend_from_slice(&id_key(*id));
            batch.put(&key, chunk.0.to_be_bytes());
        }
        self.db.write(batch)?;
        Ok(())
    }

    /// Stages a whole load's index at once: sorts the entries, refuses duplicate ids (returning up to five of
    /// them), writes one SST file and ingests it, which is far faster than puts for bulk loads.
    pub fn stage_index_bulk(
        &self,
        table: &str,
        load: &str,
        entries: &mut [(i64, ChunkId)],
        scratch: &Path,
    ) -> Result<Vec<i64>> {
        entries.sort_unstable_by_key(|e| e.0);
        let dups: Vec<i64> = entries
            .windows(2)
            .filter(|w| w[0].0 == w[1].0)
            .map(|w| w[0].0)
            .take(5)
            .collect();
        if !dups.is_empty() || entries.is_empty() {
            return Ok(dups);
        }
        let opts = Options::default();
        let mut writer = rocksdb::SstFileWriter::create(&opts);
        writer.open(scratch)?;
        let prefix = index_prefix(table, load);
        let mut key = prefix.clone();
        for (id, chunk) in entries.iter() {
            key.truncate(prefix.len());
            key.extend_from_slice(&id_key(*id));
            writer.put(&key, chunk.0.to_be_bytes())?;
        }
        writer.finish()?;
        self.db.ingest_external_file(vec![scratch])?;
        let _ = std::fs::remove_file(scratch);
        Ok(Vec::new())
    }

    /// How many distinct ids a load staged (fewer than its rows means duplicate ids).
    pub fn count_staged(&self, table: &str, load: &str) -> Result<u64> {
        let prefix = index_prefix(table, load);
        let mut n = 0;
        for item in self
            .db
            .iterator(IteratorMode::From(&prefix, Direction::Forward))
        {
            let (k, _) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// Makes a load current, in one write; the previous load's index entries go in the same write.
    pub fn publish(&self, record: &TableRecord) -> Result<Option<TableRecord>> {
        let table = record.qualified_name();
        let previous = self.table(&table)?;
        let mut batch = WriteBatch::default();
        batch.put(
            format!("t/{table}"),
            serde_json::to_vec(record).expect("a table record serializes"),
        );
        if let Some(prev) = &previous
            && prev.load_id != record.load_id
        {
            let (from, to) = range_of(&index_prefix(&table, &prev.load_id));
            batch.delete_range(from, to);
        }
        self.db.write(batch)?;
        Ok(previous)
    }

    /// The chunk of a director id in the table's current load.
    pub fn lookup(&self, table: &str, id: i64) -> Result<Option<ChunkId>> {
        let Some(record) = self.table(table)? else {
            return Ok(None);
        };
        let mut key = index_prefix(table, &record.load_id);
        key.extend_from_slice(&id_key(id));
        Ok(self
            .db
            .get(key)?
            .map(|v| ChunkId(u64::from_be_bytes(v[..8].try_into().expect("8-byte chunk")))))
    }

    /// The chunks of many director ids at once (one RocksDB multi-get), in the table's current load.
    pub fn lookup_many(
        &self,
        table: &str,
        load: &str,
        ids: &[i64],
    ) -> Result<Vec<Option<ChunkId>>> {
        let prefix = index_prefix(table, load);
        let keys: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| {
                let mut k = prefix.clone();
                k.extend_from_slice(&id_key(*id));
                k
            })
            .collect();
        self.db
            .multi_get(keys)
            .into_iter()
            .map(|r| {
                Ok(r?
                    .map(|v| ChunkId(u64::from_be_bytes(v[..8].try_into().expect("8-byte chunk")))))
            })
            .collect()
    }

    /// Removes index entries of loads that are not current (interrupted or replaced loads).
    pub fn collect_garbage(&self) -> Result<u64> {
        let current: Vec<(String, String)> = self
            .tables()?
            .into_iter()
            .map(|t| (t.qualified_name(), t.load_id))
            .collect();
        let mut stale_prefixes = Vec::new();
        let mut last: Option<Vec<u8>> = None;
        for item in self
            .db
            .iterator(IteratorMode::From(b"i/", Direction::Forward))
        {
            let (k, _) = item?;
            if !k.starts_with(b"i/") {
                break;
            }
            // i/TABLE/LOAD/ID: the prefix is everything up to the third '/'.
            let slashes: Vec<usize> = k
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'/')
                .map(|(i, _)| i)
                .take(3)
                .collect();
            if slashes.len() < 3 {
                continue;
            }
            let prefix = k[..=slashes[2]].to_vec();
            if last.as_ref() == Some(&prefix) {
                continue;
            }
            let table = String::from_utf8_lossy(&k[slashes[0] + 1..slashes[1]]).to_string();
            let load = String::from_utf8_lossy(&k[slashes[1] + 1..slashes[2]]).to_string();
            if !current.contains(&(table, load)) {
                stale_prefixes.push(prefix.clone());
            }
            last = Some(prefix);
        }
        let mut batch = WriteBatch::default();
        for p in &stale_prefixes {
            let (from, to) = range_of(p);
            batch.delete_range(from, to);
        }
        self.db.write(batch)?;
        Ok(stale_prefixes.len() as u64)
    }

    /// Removes a table (its record and current index entries) in one write.
    pub fn drop_table(&self, table: &str) -> Result<Option<TableRecord>> {
        let previous = self.table(table)?;
        if let Some(prev) = &previous {
            let mut batch = WriteBatch::default();
            batch.delete(format!("t/{table}"));
            let (from, to) = range_of(&index_prefix(table, &prev.load_id));
            batch.delete_range(from, to);
            self.db.write(batch)?;
        }
        Ok(previous)
    }
}

/// The key range of everything under a prefix.
fn range_of(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut end = prefix.to_vec();
    *end.last_mut().expect("non-empty prefix") += 1;
    (prefix.to_vec(), end)
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
        // The bulk path: duplicates are named, unique ids are ingested in one SST file.
        let mut dup = vec![(3, ChunkId(16)), (1, ChunkId(17)), (3, ChunkId(17))];
        assert_eq!(
            store
                .stage_index_bulk("cat.obj", "d", &mut dup, &dir.join("x.sst"))
                .unwrap(),
            vec![3]
        );
        let mut bulk: Vec<(i64, ChunkId)> = (0..1000)
            .rev()
            .map(|i| (i * 7 - 3000, ChunkId(16 + (i as u64 % 3))))
            .collect();
        assert!(
            store
                .stage_index_bulk("cat.obj", "d", &mut bulk, &dir.join("x.sst"))
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.count_staged("cat.obj", "d").unwrap(), 1000);
        store.publish(&record("d")).unwrap();
        assert_eq!(
            store.lookup("cat.obj", 7 * 999 - 3000).unwrap(),
            Some(ChunkId(16 + 999 % 3))
        );
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
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A small durable map of named records (the czar's async jobs): one RocksDB under its own directory, values
/// written with a synced WAL so a record put before a crash is there after it.
pub struct RecordStore {
    db: DB,
}

impl RecordStore {
    pub fn open(path: &Path) -> Result<RecordStore> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        let db = DB::open(&opts, path).map_err(|source| MetaError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Ok(RecordStore { db })
    }

    pub fn put(&self, key: &str, value: &[u8]) -> Result<()> {
        let mut w = rocksdb::WriteOptions::default();
        w.set_sync(true);
        self.db.put_opt(key, value, &w)?;
        Ok(())
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(key)?)
    }

    pub fn delete(&self, key: &str) -> Result<()> {
        self.db.delete(key)?;
        Ok(())
    }

    /// Every record, in key order.
    pub fn all(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self.db.iterator(IteratorMode::Start) {
            let (k, v) = item?;
            out.push((String::from_utf8_lossy(&k).into_owned(), v.to_vec()));
        }
        Ok(out)
    }
}
