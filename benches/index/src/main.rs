//! `index-bench STORE PHASE DIR IDS`: one phase of the metadata-store benchmark, in its own process so that its
//! peak memory (VmHWM) is its own.
//!
//! STORE is `files` (skyshard's store) or `rocksdb` (the RocksDB store skyshard used before, rebuilt here with the
//! same keys, options and bulk path: sort in memory, one SST file, ingest). PHASE is
//! - `build`: IDS director ids (distinct, in random order, arriving chunk by chunk as the loader reads them) into a
//!   staged load, then publish it;
//! - `query`: open the published store, then 20,000 `id =` lookups (90 % present) and 300 `IN` lists of 1,000 ids,
//!   each timed; p50/p99 in microseconds;
//! - `jobs`: 2,000 synced puts of a 1 KiB job record, then reopen and list them.
//!
//! Each phase prints one JSON line.

use std::path::Path;
use std::time::Instant;

use partitioner::ChunkId;

/// The i-th director id: a bijection of u64 (splitmix64's finalizer), so ids are distinct and unordered.
fn id_of(i: u64) -> i64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as i64
}

/// 100,000 rows a chunk, as a loader meets them.
fn chunk_of(i: u64) -> ChunkId {
    ChunkId(1024 + i / 100_000)
}

const TABLE: &str = "bench.object";
const LOAD: &str = "load1";

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            total += if meta.is_dir() {
                dir_bytes(&e.path())
            } else {
                meta.len()
            };
        }
    }
    total
}

/// A small deterministic generator for the probes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// An id: present 9 times in 10.
    fn probe(&mut self, ids: u64) -> i64 {
        let r = self.next();
        if r % 10 == 0 {
            id_of(ids + r % ids)
        } else {
            id_of(r % ids)
        }
    }
}

fn percentiles(mut us: Vec<f64>) -> (f64, f64) {
    us.sort_by(f64::total_cmp);
    let at = |q: f64| us[((us.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99))
}

trait Store {
    fn build(dir: &Path, ids: u64);
    fn open(dir: &Path) -> Self;
    fn get(&self, id: i64) -> Option<u64>;
    fn get_many(&self, ids: &[i64]) -> Vec<Option<u64>>;
    fn jobs(dir: &Path, n: usize, record: &[u8]) -> (f64, f64, usize);
}

fn record(rows: u64) -> metastore::TableRecord {
    metastore::TableRecord {
        schema: "bench".into(),
        name: "object".into(),
        kind: metastore::TableKind::Director {
            ra: "ra".into(),
            dec: "dec".into(),
            id: "id".into(),
        },
        description: None,
        load_id: LOAD.into(),
        rows,
        overlap_arcsec: 0.0,
        chunks: vec![],
        columns: vec![],
        orphan_rows: 0,
        placement: vec![],
    }
}

struct Files(metastore::MetaStore);

impl Store for Files {
    fn build(dir: &Path, ids: u64) {
        let store = metastore::MetaStore::open(dir).unwrap();
        // The loader's default budget: 1 GiB.
        let mut b = store.index_builder(TABLE, LOAD, 1 << 30).unwrap();
        for i in 0..ids {
            b.push(id_of(i), chunk_of(i)).unwrap();
        }
        let built = b.finish().unwrap();
        assert_eq!((built.entries, built.duplicates), (ids, 0));
        store.publish(&record(ids)).unwrap();
    }
    fn open(dir: &Path) -> Files {
        let s = metastore::MetaStore::open_read_only(dir).unwrap();
        // Opening the index (its sparse ids) is part of the first lookup; do it here, as a czar's refresh would.
        s.lookup_many(TABLE, LOAD, &[0]).unwrap();
        Files(s)
    }
    fn get(&self, id: i64) -> Option<u64> {
        self.0.lookup_many(TABLE, LOAD, &[id]).unwrap()[0].map(|c| c.0)
    }
    fn get_many(&self, ids: &[i64]) -> Vec<Option<u64>> {
        self.0
            .lookup_many(TABLE, LOAD, ids)
            .unwrap()
            .into_iter()
            .map(|c| c.map(|c| c.0))
            .collect()
    }
    fn jobs(dir: &Path, n: usize, value: &[u8]) -> (f64, f64, usize) {
        let t = Instant::now();
        let store = metastore::RecordStore::open(dir).unwrap();
        for k in 0..n {
            store.put(&format!("job/{k:08}"), value).unwrap();
        }
        let put = t.elapsed().as_secs_f64();
        drop(store);
        let t = Instant::now();
        let store = metastore::RecordStore::open(dir).unwrap();
        let all = store.all().unwrap().len();
        (put, t.elapsed().as_secs_f64(), all)
    }
}

#[cfg(feature = "rocksdb")]
mod rocks {
    use super::*;
    use rocksdb::{DB, Options};

    /// The key layout of skyshard 0.1's store: `i/TABLE/LOAD/` + the id with its sign bit flipped, big-endian.
    fn key(id: i64) -> Vec<u8> {
        let mut k = format!("i/{TABLE}/{LOAD}/").into_bytes();
        k.extend_from_slice(&((id as u64) ^ (1 << 63)).to_be_bytes());
        k
    }

    fn options() -> Options {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts
    }

    pub struct Rocks(DB);

    impl Store for Rocks {
        fn build(dir: &Path, ids: u64) {
            let db = DB::open(&options(), dir).unwrap();
            let mut entries: Vec<(i64, u64)> = (0..ids).map(|i| (id_of(i), chunk_of(i).0)).collect();
            entries.sort_unstable_by_key(|e| e.0);
            let sst = dir.join("index.sst");
            let sst_options = Options::default();
            let mut w = rocksdb::SstFileWriter::create(&sst_options);
            w.open(&sst).unwrap();
            for (id, chunk) in &entries {
                w.put(key(*id), chunk.to_be_bytes()).unwrap();
            }
            w.finish().unwrap();
            drop(entries);
            db.ingest_external_file(vec![&sst]).unwrap();
            let _ = std::fs::remove_file(&sst);
            db.put(
                format!("t/{TABLE}"),
                serde_json::to_vec(&record(ids)).unwrap(),
            )
            .unwrap();
        }
        fn open(dir: &Path) -> Rocks {
            Rocks(DB::open_for_read_only(&Options::default(), dir, false).unwrap())
        }
        fn get(&self, id: i64) -> Option<u64> {
            self.0
                .get(key(id))
                .unwrap()
                .map(|v| u64::from_be_bytes(v[..8].try_into().unwrap()))
        }
        fn get_many(&self, ids: &[i64]) -> Vec<Option<u64>> {
            self.0
                .multi_get(ids.iter().map(|&id| key(id)))
                .into_iter()
                .map(|r| r.unwrap().map(|v| u64::from_be_bytes(v[..8].try_into().unwrap())))
                .collect()
        }
        fn jobs(dir: &Path, n: usize, value: &[u8]) -> (f64, f64, usize) {
            let t = Instant::now();
            let db = DB::open(&options(), dir).unwrap();
            let mut w = rocksdb::WriteOptions::default();
            w.set_sync(true);
            for k in 0..n {
                db.put_opt(format!("job/{k:08}"), value, &w).unwrap();
            }
            let put = t.elapsed().as_secs_f64();
            drop(db);
            let t = Instant::now();
            let db = DB::open(&options(), dir).unwrap();
            let all = db.iterator(rocksdb::IteratorMode::Start).count();
            (put, t.elapsed().as_secs_f64(), all)
        }
    }
}

fn run<S: Store>(store: &str, phase: &str, dir: &Path, ids: u64) {
    match phase {
        "build" => {
            let _ = std::fs::remove_dir_all(dir);
            let t = Instant::now();
            S::build(dir, ids);
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{{\"store\":\"{store}\",\"phase\":\"build\",\"ids\":{ids},\"seconds\":{secs:.2},\"disk_mb\":{:.1},\"peak_rss_mb\":{:.0}}}",
                dir_bytes(dir) as f64 / 1e6,
                peak_rss_mb()
            );
        }
        "query" => {
            let t = Instant::now();
            let s = S::open(dir);
            let open_ms = t.elapsed().as_secs_f64() * 1e3;
            let mut rng = Rng(0x5EED);
            let mut found = 0;
            let mut single = Vec::new();
            for _ in 0..20_000 {
                let id = rng.probe(ids);
                let t = Instant::now();
                let got = s.get(id);
                single.push(t.elapsed().as_secs_f64() * 1e6);
                found += got.is_some() as usize;
            }
            // Every probe of a present id must find it, with the chunk it was given.
            for i in (0..ids).step_by((ids / 1000).max(1) as usize) {
                assert_eq!(s.get(id_of(i)), Some(chunk_of(i).0), "id {i}");
            }
            assert_eq!(s.get(id_of(ids)), None);
            let mut lists = Vec::new();
            for _ in 0..300 {
                let batch: Vec<i64> = (0..1000).map(|_| rng.probe(ids)).collect();
                let t = Instant::now();
                let got = s.get_many(&batch);
                lists.push(t.elapsed().as_secs_f64() * 1e6);
                assert_eq!(got.len(), 1000);
            }
            let (p50, p99) = percentiles(single);
            let (in50, in99) = percentiles(lists);
            println!(
                "{{\"store\":\"{store}\",\"phase\":\"query\",\"ids\":{ids},\"open_ms\":{open_ms:.1},\"eq_p50_us\":{p50:.1},\"eq_p99_us\":{p99:.1},\"in1000_p50_us\":{in50:.0},\"in1000_p99_us\":{in99:.0},\"found\":{found},\"peak_rss_mb\":{:.0}}}",
                peak_rss_mb()
            );
        }
        "jobs" => {
            let _ = std::fs::remove_dir_all(dir);
            let value = vec![b'x'; 1024];
            let (put, reopen, n) = S::jobs(dir, 2000, &value);
            assert_eq!(n, 2000);
            println!(
                "{{\"store\":\"{store}\",\"phase\":\"jobs\",\"synced_puts_per_s\":{:.0},\"reopen_and_list_ms\":{:.1}}}",
                2000.0 / put,
                reopen * 1e3
            );
        }
        other => panic!("unknown phase {other}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: index-bench files|rocksdb build|query|jobs DIR IDS");
        std::process::exit(2);
    }
    let (store, phase, dir, ids) = (
        args[1].as_str(),
        args[2].as_str(),
        Path::new(&args[3]),
        args[4].parse::<u64>().expect("IDS is a number"),
    );
    match store {
        "files" => run::<Files>(store, phase, dir, ids),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => run::<rocks::Rocks>(store, phase, dir, ids),
        other => {
            eprintln!("unknown store {other} (rocksdb needs --features rocksdb)");
            std::process::exit(2);
        }
    }
}
