//! What the worker's integration tests share: a data directory ingested by the loader, and the chunk files read
//! back with the Parquet crate as the oracle.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, RecordBatchReader};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{Int64Type, Schema, SchemaRef};
use loader::ingest::{IngestOptions, LoadKind, ingest};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use partitioner::layout;
use protocol::ChunkScan;

pub const TABLE: &str = "sky.object";

/// `sky.object` ingested into a fresh data directory, removed when dropped.
pub struct Data {
    pub dir: PathBuf,
    pub load: String,
    /// The chunks that have a file of their own rows, ascending.
    pub chunks: Vec<u64>,
    /// The table's visible schema: the chunk files' columns without `_hpx29`.
    pub schema: SchemaRef,
}

impl Drop for Data {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Data {
    /// `rows` synthetic objects in chunks of at most `chunk_rows`.
    pub fn build(name: &str, rows: u64, chunk_rows: u64) -> Data {
        let dir = std::env::temp_dir().join(format!(
            "skyshard-worker-test-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let release = dir.join("release");
        loader::synth::generate(rows, &release, 29).unwrap();
        let mut opts = IngestOptions::new(
            TABLE,
            LoadKind::Director {
                ra: "ra".into(),
                dec: "dec".into(),
                id: "id".into(),
            },
        );
        opts.chunk_rows = chunk_rows;
        let report = ingest(&dir, &[release.join("object.parquet")], &opts).unwrap();
        let load = report.record.load_id.clone();
        let chunks_dir = layout::load_dir(&dir, TABLE, &load).join(layout::CHUNKS);
        let mut chunks: Vec<u64> = std::fs::read_dir(&chunks_dir)
            .unwrap()
            .flatten()
            .filter_map(|e| layout::parse_chunk_file(&e.file_name().to_string_lossy()))
            .filter(|&(_, overlap)| !overlap)
            .map(|(chunk, _)| chunk)
            .collect();
        chunks.sort_unstable();
        assert!(chunks.len() >= 3, "too few chunks: {chunks:?}");
        let file = read_file(&chunks_dir.join(layout::chunk_file(chunks[0])));
        let fields: Vec<_> = file
            .schema()
            .fields()
            .iter()
            .filter(|f| f.name() != layout::INDEX_COLUMN)
            .cloned()
            .collect();
        Data {
            dir,
            load,
            chunks,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    pub fn chunks_dir(&self) -> PathBuf {
        layout::load_dir(&self.dir, TABLE, &self.load).join(layout::CHUNKS)
    }

    pub fn chunk_path(&self, chunk: u64) -> PathBuf {
        self.chunks_dir().join(layout::chunk_file(chunk))
    }

    pub fn overlap_path(&self, chunk: u64) -> PathBuf {
        self.chunks_dir().join(layout::overlap_file(chunk))
    }

    /// A scan of every visible column of `chunks`, no filter, no range, no limit.
    pub fn scan(&self, chunks: &[u64]) -> ChunkScan {
        ChunkScan {
            table: TABLE.into(),
            load_id: self.load.clone(),
            chunks: chunks.to_vec(),
            schema: exec::encode_schema(&self.schema).unwrap(),
            ..Default::default()
        }
    }

    /// The position of a visible column.
    pub fn column(&self, name: &str) -> u32 {
        self.schema.index_of(name).unwrap() as u32
    }

    /// The schema a scan with `scan.projection` yields.
    pub fn output(&self, scan: &ChunkScan) -> SchemaRef {
        if !scan.projected {
            return self.schema.clone();
        }
        let indices: Vec<usize> = scan.projection.iter().map(|&i| i as usize).collect();
        Arc::new(self.schema.project(&indices).unwrap())
    }
}

/// A Parquet file's rows, read with the Parquet crate alone.
pub fn read_file(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    concat_batches(&schema, &batches).unwrap()
}

/// The rows of `batch` for which `keep(row)` holds.
pub fn keep(batch: &RecordBatch, keep: impl Fn(usize) -> bool) -> RecordBatch {
    let mask: BooleanArray = (0..batch.num_rows()).map(|i| Some(keep(i))).collect();
    filter_record_batch(batch, &mask).unwrap()
}

/// `batch`'s columns named as `schema`'s, in its order.
pub fn project(batch: &RecordBatch, schema: &SchemaRef) -> RecordBatch {
    let columns = schema
        .fields()
        .iter()
        .map(|f| batch.column_by_name(f.name()).unwrap().clone())
        .collect();
    RecordBatch::try_new(schema.clone(), columns).unwrap()
}

pub fn concat(batches: &[RecordBatch]) -> RecordBatch {
    concat_batches(&batches[0].schema(), batches).unwrap()
}

/// The `Int64` column `name`.
pub fn int64s(batch: &RecordBatch, name: &str) -> Vec<i64> {
    batch
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

/// Two batches with the same column names and the same values, row by row.
pub fn assert_same_rows(got: &RecordBatch, expected: &RecordBatch) {
    let names = |b: &RecordBatch| -> Vec<String> {
        b.schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    };
    assert_eq!(names(got), names(expected));
    assert_eq!(got.num_rows(), expected.num_rows(), "row counts differ");
    for (i, name) in names(expected).iter().enumerate() {
        let (g, e): (&dyn Array, &dyn Array) =
            (got.column(i).as_ref(), expected.column(i).as_ref());
        assert!(g == e, "column {name} differs");
    }
}
