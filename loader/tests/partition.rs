//! The partitioner on real files: every input row lands in exactly one chunk file (the one the map assigns), files
//! are sorted by `_hpx29` with bounded row groups, overlap files hold exactly the rows the overlap finder names,
//! and bad input is refused with the file and row.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{AsArray, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use loader::partition::{INDEX_COLUMN, PartitionOptions, partition};
use loader::{LoaderError, synth};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use partitioner::{ChunkId, OverlapFinder};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("skyshard-loader-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read(path: &Path) -> (Vec<RecordBatch>, usize) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let groups = builder.metadata().num_row_groups();
    (
        builder.build().unwrap().map(|b| b.unwrap()).collect(),
        groups,
    )
}

#[test]
fn every_row_lands_once_in_its_chunk_sorted() {
    let dir = tmp("once");
    synth::generate(30_000, &dir.join("in"), 3).unwrap();
    let opts = PartitionOptions {
        chunk_rows: 800,
        memory_bytes: 400_000,
        row_group_rows: 1_000,
        ..Default::default()
    };
    let stats = partition(&[dir.join("in/object.parquet")], &dir.join("out"), &opts).unwrap();
    assert_eq!(stats.rows, 30_000);
    assert!(stats.map.max_depth() > 1, "dense regions were split");
    let mut seen = HashSet::new();
    let mut positions: BTreeMap<i64, (f64, f64, ChunkId)> = BTreeMap::new();
    for entry in std::fs::read_dir(dir.join("out/chunks")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.contains("overlap") {
            continue;
        }
        let chunk = ChunkId(name.trim_end_matches(".parquet").parse().unwrap());
        let (batches, groups) = read(&path);
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert!(groups >= rows.div_ceil(1_000), "row groups are bounded");
        let mut last = i64::MIN;
        for b in &batches {
            let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
            let ra = b
                .column_by_name("ra")
                .unwrap()
                .as_primitive::<Float64Type>();
            let dec = b
                .column_by_name("dec")
                .unwrap()
                .as_primitive::<Float64Type>();
            let idx = b
                .column_by_name(INDEX_COLUMN)
                .unwrap()
                .as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                assert!(
                    seen.insert(ids.value(i)),
                    "id {} appears twice",
                    ids.value(i)
                );
                assert!(
                    idx.value(i) >= last,
                    "{name} is not sorted by {INDEX_COLUMN}"
                );
                last = idx.value(i);
                assert_eq!(
                    stats.map.assign(ra.value(i), dec.value(i)).unwrap().0,
                    chunk
                );
                positions.insert(ids.value(i), (ra.value(i), dec.value(i), chunk));
            }
        }
        // Column metadata survives for TAP_SCHEMA.
        let schema = batches[0].schema();
        assert_eq!(
            schema
                .field_with_name("ra")
                .unwrap()
                .metadata()
                .get("unit")
                .map(String::as_str),
            Some("deg")
        );
    }
    assert_eq!(seen.len(), 30_000);
    // Overlap files hold exactly the rows the finder names for that chunk.
    let mut finder = OverlapFinder::new(&stats.map, 60.0 / 3600.0);
    let mut expected: BTreeMap<ChunkId, HashSet<i64>> = BTreeMap::new();
    let mut others = Vec::new();
    for (id, (ra, dec, own)) in &positions {
        others.clear();
        let index = stats.map.assign(*ra, *dec).unwrap().1;
        finder.others(*ra, *dec, index, *own, &mut others);
        for o in &others {
            expected.entry(*o).or_default().insert(*id);
        }
    }
    for (chunk, ids) in &expected {
        let (batches, _) = read(&dir.join(format!("out/chunks/{chunk}.overlap.parquet")));
        let found: HashSet<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column_by_name("id")
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(&found, ids, "overlap of chunk {chunk}");
    }
    assert_eq!(
        expected.values().map(|s| s.len() as u64).sum::<u64>(),
        stats.overlap_rows
    );
}

fn write_positions(path: &Path, ra: Vec<f64>, dec: Vec<f64>) {
    let n = ra.len() as i64;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("ra", DataType::Float64, true),
        Field::new("dec", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..n)),
            Arc::new(Float64Array::from(ra)),
            Arc::new(Float64Array::from(dec)),
        ],
    )
    .unwrap();
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn bad_input_names_the_file_and_row() {
    let dir = tmp("bad");
    let opts = PartitionOptions::default();
    let nan = dir.join("nan.parquet");
    write_positions(&nan, vec![1.0, 2.0, 3.0], vec![0.0, f64::NAN, 0.0]);
    match partition(&[nan.clone()], &dir.join("out"), &opts) {
        Err(LoaderError::BadRow { path, row, .. }) => assert_eq!((path, row), (nan.clone(), 1)),
        other => panic!("expected a bad row, got {other:?}"),
    }
    // With skip_invalid the bad row is counted and the rest is partitioned.
    let skipping = PartitionOptions {
        skip_invalid: true,
        ..Default::default()
    };
    let stats = partition(&[nan.clone()], &dir.join("out-skip"), &skipping).unwrap();
    assert_eq!((stats.rows, stats.invalid_rows), (2, 1));
    let range = dir.join("range.parquet");
    write_positions(&range, vec![1.0, 2.0, 3.0], vec![0.0, 0.0, 91.0]);
    let err = partition(&[range], &dir.join("out"), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("row 2") && err.contains("declination 91"),
        "{err}"
    );
    let missing = PartitionOptions {
        ra: "raj2000".into(),
        ..Default::default()
    };
    let ok = dir.join("ok.parquet");
    write_positions(&ok, vec![1.0], vec![2.0]);
    let err = partition(&[ok.clone()], &dir.join("out"), &missing)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no column named raj2000") && err.contains("id, ra, dec"),
        "{err}"
    );
    let not_parquet = dir.join("x.parquet");
    std::fs::write(&not_parquet, b"hello").unwrap();
    let err = partition(&[ok, not_parquet], &dir.join("out"), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("x.parquet") && err.contains("not a readable Parquet file"),
        "{err}"
    );
}
