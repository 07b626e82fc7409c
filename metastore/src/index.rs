//! The director-id secondary index of one load: an immutable file of fixed-width entries sorted by id, written
//! once by [`IndexBuilder`] and read by [`IndexFile`] with positioned reads.
//!
//! ```text
//! header   32 bytes   magic "SKYIDX01", entries: u64, block: u64, reserved: u64   (little-endian)
//! entries  16 bytes each, ids strictly increasing: id: i64, chunk: u64
//! sparse   8 bytes per block of `block` entries: the block's first id
//! ```
//!
//! A reader keeps only the sparse ids in memory (8 bytes per `block` entries: 0.8 MB for 100 million ids at the
//! default 1,024) and answers a lookup with one read of one block (16 KiB). The builder sorts in bounded memory:
//! it spills sorted runs to scratch files and merges them, so an index of any size is built in the memory given.

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use partitioner::ChunkId;

use crate::files;

const MAGIC: &[u8; 8] = b"SKYIDX01";
const HEADER: u64 = 32;
const ENTRY: u64 = 16;
/// Entries per block: one block is one read of a lookup, and one sparse id in memory.
pub const DEFAULT_BLOCK: u64 = 1024;

/// What [`IndexBuilder::finish`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    /// Distinct ids written.
    pub entries: u64,
    /// Entries whose id repeats an earlier one; nothing is written when there are any.
    pub duplicates: u64,
    /// Up to five repeated ids.
    pub examples: Vec<i64>,
}

/// Builds an index file from entries in any order, in bounded memory.
pub struct IndexBuilder {
    dest: PathBuf,
    /// The index file as it is written, beside `dest` (renamed onto it when done); the runs are named after it.
    staged: PathBuf,
    run: Vec<(i64, u64)>,
    run_limit: usize,
    runs: Vec<PathBuf>,
    block: u64,
}

impl IndexBuilder {
    /// A builder that writes `dest` and spills sorted runs of at most `memory_bytes` (16 bytes an entry) beside it.
    pub(crate) fn new(dest: PathBuf, memory_bytes: usize) -> IndexBuilder {
        let staged = files::tmp_beside(&dest).with_extension("idx");
        IndexBuilder {
            dest,
            staged,
            run: Vec::new(),
            run_limit: (memory_bytes / ENTRY as usize).max(1024),
            runs: Vec::new(),
            block: DEFAULT_BLOCK,
        }
    }

    /// Entries per block of the file written (tests use small blocks to cross block edges).
    pub fn with_block(mut self, block: u64) -> IndexBuilder {
        self.block = block.max(1);
        self
    }

    pub fn push(&mut self, id: i64, chunk: ChunkId) -> io::Result<()> {
        self.run.push((id, chunk.0));
        if self.run.len() >= self.run_limit {
            self.spill()?;
        }
        Ok(())
    }

    pub fn extend(&mut self, entries: impl IntoIterator<Item = (i64, ChunkId)>) -> io::Result<()> {
        for (id, chunk) in entries {
            self.push(id, chunk)?;
        }
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        self.run.sort_unstable_by_key(|e| e.0);
        let path = self
            .staged
            .with_extension(format!("run{}", self.runs.len()));
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        self.runs.push(path);
        for (id, chunk) in self.run.drain(..) {
            w.write_all(&id.to_le_bytes())?;
            w.write_all(&chunk.to_le_bytes())?;
        }
        w.flush()
    }

    /// Merges the runs into the index file, synced and renamed into place, unless an id repeats: then nothing is
    /// written and [`Built::duplicates`] says how many repeats there were.
    pub fn finish(mut self) -> io::Result<Built> {
        let outcome = self.write();
        for run in &self.runs {
            let _ = std::fs::remove_file(run);
        }
        let built = outcome?;
        if built.duplicates == 0 {
            files::publish(&self.staged, &self.dest)?;
        } else {
            let _ = std::fs::remove_file(&self.staged);
        }
        Ok(built)
    }

    fn write(&mut self) -> io::Result<Built> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&self.staged)?);
        out.write_all(&[0; HEADER as usize])?;
        let mut sparse = Vec::new();
        let mut built = Built {
            entries: 0,
            duplicates: 0,
            examples: Vec::new(),
        };
        let mut last: Option<i64> = None;
        let block = self.block;
        let mut emit = |id: i64, chunk: u64| -> io::Result<()> {
            if last == Some(id) {
                built.duplicates += 1;
                if built.examples.len() < 5 && built.examples.last() != Some(&id) {
                    built.examples.push(id);
                }
                return Ok(());
            }
            last = Some(id);
            if built.duplicates == 0 {
                if built.entries.is_multiple_of(block) {
                    sparse.push(id);
                }
                out.write_all(&id.to_le_bytes())?;
                out.write_all(&chunk.to_le_bytes())?;
            }
            built.entries += 1;
            Ok(())
        };
        if self.runs.is_empty() {
            self.run.sort_unstable_by_key(|e| e.0);
            for &(id, chunk) in &self.run {
                emit(id, chunk)?;
            }
        } else {
            if !self.run.is_empty() {
                self.spill()?;
            }
            self.run = Vec::new();
            let mut readers = self
                .runs
                .iter()
                .map(|p| Ok(BufReader::with_capacity(1 << 20, File::open(p)?)))
                .collect::<io::Result<Vec<_>>>()?;
            let mut heap = BinaryHeap::new();
            for (k, r) in readers.iter_mut().enumerate() {
                if let Some((id, chunk)) = read_entry(r)? {
                    heap.push(std::cmp::Reverse((id, k, chunk)));
                }
            }
            while let Some(std::cmp::Reverse((id, k, chunk))) = heap.pop() {
                emit(id, chunk)?;
                if let Some((id, chunk)) = read_entry(&mut readers[k])? {
                    heap.push(std::cmp::Reverse((id, k, chunk)));
                }
            }
        }
        if built.duplicates > 0 {
            return Ok(built);
        }
        for id in &sparse {
            out.write_all(&id.to_le_bytes())?;
        }
        let mut file = out.into_inner().map_err(|e| e.into_error())?;
        let mut header = Vec::with_capacity(HEADER as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&built.entries.to_le_bytes());
        header.extend_from_slice(&self.block.to_le_bytes());
        header.extend_from_slice(&0u64.to_le_bytes());
        file.write_all_at(&header, 0)?;
        file.flush()?;
        file.sync_all()?;
        Ok(built)
    }
}

/// An entry's id and chunk.
fn decode(entry: &[u8; ENTRY as usize]) -> (i64, u64) {
    let (id, chunk) = entry.split_at(8);
    (
        i64::from_le_bytes(id.try_into().expect("8 bytes")),
        u64::from_le_bytes(chunk.try_into().expect("8 bytes")),
    )
}

fn read_entry(r: &mut impl Read) -> io::Result<Option<(i64, u64)>> {
    let mut buf = [0u8; ENTRY as usize];
    match r.read_exact(&mut buf) {
        Ok(()) => Ok(Some(decode(&buf))),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// An open index file: its sparse ids in memory, its entries read on demand.
#[derive(Debug)]
pub struct IndexFile {
    file: File,
    entries: u64,
    block: u64,
    sparse: Vec<i64>,
}

impl IndexFile {
    pub fn open(path: &Path) -> io::Result<IndexFile> {
        let file = File::open(path)?;
        let bad = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not an index file ({why})", path.display()),
            )
        };
        let mut header = [0u8; HEADER as usize];
        file.read_exact_at(&mut header, 0)
            .map_err(|_| bad("short header"))?;
        if &header[..8] != MAGIC {
            return Err(bad("bad magic"));
        }
        let word = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().expect("8 bytes"));
        let (entries, block) = (word(8), word(16));
        if block == 0 {
            return Err(bad("zero block size"));
        }
        let blocks = entries.div_ceil(block);
        let expected = entries
            .checked_mul(ENTRY)
            .and_then(|e| e.checked_add(HEADER))
            .and_then(|e| e.checked_add(blocks.checked_mul(8)?))
            .ok_or_else(|| bad("sizes overflow"))?;
        if file.metadata()?.len() != expected {
            return Err(bad("length does not match its header"));
        }
        let mut raw = vec![0u8; (blocks * 8) as usize];
        file.read_exact_at(&mut raw, HEADER + entries * ENTRY)?;
        let sparse = raw
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        Ok(IndexFile {
            file,
            entries,
            block,
            sparse,
        })
    }

    pub fn len(&self) -> u64 {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Bytes held in memory for lookups.
    pub fn memory_bytes(&self) -> usize {
        self.sparse.len() * 8
    }

    /// The block that would hold `id`, if any.
    fn block_of(&self, id: i64) -> Option<u64> {
        self.sparse
            .partition_point(|&first| first <= id)
            .checked_sub(1)
            .map(|b| b as u64)
    }

    fn read_block(&self, b: u64, buf: &mut Vec<u8>) -> io::Result<()> {
        let start = b * self.block;
        let n = self.block.min(self.entries - start);
        buf.resize((n * ENTRY) as usize, 0);
        self.file.read_exact_at(buf, HEADER + start * ENTRY)
    }

    pub fn lookup(&self, id: i64) -> io::Result<Option<ChunkId>> {
        Ok(self.lookup_many(&[id])?.pop().flatten())
    }

    /// The chunks of `ids`, in their order; each block is read once however many ids fall in it.
    pub fn lookup_many(&self, ids: &[i64]) -> io::Result<Vec<Option<ChunkId>>> {
        let mut out = vec![None; ids.len()];
        let mut order: Vec<(u64, usize)> = ids
            .iter()
            .enumerate()
            .filter_map(|(i, &id)| Some((self.block_of(id)?, i)))
            .collect();
        order.sort_unstable();
        let mut buf = Vec::new();
        let mut loaded = None;
        for (b, i) in order {
            if loaded != Some(b) {
                self.read_block(b, &mut buf)?;
                loaded = Some(b);
            }
            let (entries, _) = buf.as_chunks::<{ ENTRY as usize }>();
            if let Ok(k) = entries.binary_search_by_key(&ids[i], |e| decode(e).0) {
                out[i] = Some(ChunkId(decode(&entries[k]).1));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("skyshard-idx-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Spilled runs, small blocks and ids at the ends of the i64 range, checked against a sorted map.
    #[test]
    fn lookups_agree_with_a_map_across_runs_and_blocks() {
        let dir = scratch("agree");
        let dest = dir.join("a.idx");
        // 1,024-entry runs (the builder's floor) and 7-entry blocks: many of both.
        let mut b = IndexBuilder::new(dest.clone(), 0).with_block(7);
        let mut oracle = std::collections::BTreeMap::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = x as i64;
            if oracle.insert(id, x % 1000).is_none() {
                b.push(id, ChunkId(x % 1000)).unwrap();
            }
        }
        for id in [i64::MIN, i64::MAX, 0] {
            if oracle.insert(id, 5).is_none() {
                b.push(id, ChunkId(5)).unwrap();
            }
        }
        let built = b.finish().unwrap();
        assert_eq!(built.duplicates, 0);
        assert_eq!(built.entries, oracle.len() as u64);
        let idx = IndexFile::open(&dest).unwrap();
        assert_eq!(idx.len(), oracle.len() as u64);
        let mut probes: Vec<i64> = oracle.keys().copied().step_by(3).collect();
        probes.extend(oracle.keys().map(|k| k.wrapping_add(1)).take(500));
        probes.push(i64::MIN + 1);
        let found = idx.lookup_many(&probes).unwrap();
        for (id, got) in probes.iter().zip(found) {
            assert_eq!(got.map(|c| c.0), oracle.get(id).copied(), "id {id}");
        }
        assert_eq!(
            idx.lookup(i64::MAX).unwrap(),
            Some(ChunkId(oracle[&i64::MAX]))
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "runs and scratch files are gone"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn duplicates_are_counted_and_nothing_is_written() {
        let dir = scratch("dups");
        let dest = dir.join("a.idx");
        let mut b = IndexBuilder::new(dest.clone(), 0);
        for i in 0..3000i64 {
            b.push(i % 2500, ChunkId(1)).unwrap();
        }
        let built = b.finish().unwrap();
        assert_eq!(built.duplicates, 500);
        assert_eq!(built.examples, vec![0, 1, 2, 3, 4]);
        assert!(!dest.exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_empty_index_and_damaged_files() {
        let dir = scratch("empty");
        let dest = dir.join("a.idx");
        IndexBuilder::new(dest.clone(), 1 << 20).finish().unwrap();
        let idx = IndexFile::open(&dest).unwrap();
        assert!(idx.is_empty());
        assert_eq!(idx.lookup(3).unwrap(), None);
        let mut b = IndexBuilder::new(dest.clone(), 1 << 20);
        b.extend((0..100).map(|i| (i, ChunkId(2)))).unwrap();
        b.finish().unwrap();
        let bytes = std::fs::read(&dest).unwrap();
        std::fs::write(&dest, &bytes[..bytes.len() - 1]).unwrap();
        assert!(
            IndexFile::open(&dest)
                .unwrap_err()
                .to_string()
                .contains("length")
        );
        std::fs::write(&dest, b"not an index").unwrap();
        assert!(IndexFile::open(&dest).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
