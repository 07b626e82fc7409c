//! The worker's read path without a network: `LocalFiles` (the `ScanFactory` fragments are decoded with) turns a
//! `ChunkScan` into a scan of the chunk files the loader wrote, and its rows must be exactly those an independent
//! read of the same files with the Parquet crate selects.

mod common;

use std::sync::{Mutex, MutexGuard};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Float32Type;
use common::{Data, assert_same_rows, concat, int64s, keep, project, read_file};
use datafusion::common::DataFusionError;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlanProperties;
use datafusion::prelude::{col, lit};
use exec::ScanFactory;
use partitioner::layout;
use protocol::{ChunkScan, ErrorCode, IndexRange};
use worker::{LocalFiles, WorkerError};

/// Every test here reads chunk files, and one of them counts the bytes all reads of this process take
/// (`worker::scan::bytes_read`): they run one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs a scan as a worker would and returns its rows.
fn run(
    files: &LocalFiles,
    data: &Data,
    scan: ChunkScan,
    filters: Vec<Expr>,
) -> Result<RecordBatch, DataFusionError> {
    let plan = files.local_scan(scan, data.schema.clone(), filters)?;
    assert_eq!(plan.output_partitioning().partition_count(), 1);
    let schema = plan.schema();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let batches = runtime.block_on(datafusion::physical_plan::collect(
        plan,
        worker::session().task_ctx(),
    ))?;
    Ok(arrow::compute::concat_batches(&schema, &batches)?)
}

#[test]
fn index_ranges_select_exactly_the_rows_inside_them() {
    let _serial = serial();
    let data = Data::build("ranges", 4_000, 500);
    let files = LocalFiles::new(&data.dir);
    let (chunk, file) = data
        .chunks
        .iter()
        .map(|&c| (c, read_file(&data.chunk_path(c))))
        .max_by_key(|(_, b)| b.num_rows())
        .unwrap();
    let hpx = int64s(&file, layout::INDEX_COLUMN);
    let n = hpx.len();
    assert!(n >= 100, "chunk {chunk} has only {n} rows");
    let (lo, hi) = (*hpx.iter().min().unwrap(), *hpx.iter().max().unwrap());
    // Unsorted, two of them overlapping, one a single value, two outside the chunk's rows.
    let ranges = vec![
        (hpx[n / 2 + n / 20], hpx[3 * n / 4]),
        (hpx[n / 10], hpx[n / 5]),
        (hpx[n / 2] + 1, hpx[n / 2 + n / 10]),
        (hpx[n - 3], hpx[n - 3]),
        (hi + 1, i64::MAX),
        (i64::MIN, lo - 1),
    ];
    let inside = |v: i64| ranges.iter().any(|&(a, b)| a <= v && v <= b);
    let expected = project(&keep(&file, |i| inside(hpx[i])), &data.schema);
    assert!(expected.num_rows() > 0 && expected.num_rows() < n);

    let mut scan = data.scan(&[chunk]);
    scan.ranges = ranges
        .iter()
        .map(|&(from, to)| IndexRange { from, to })
        .collect();
    let got = run(&files, &data, scan.clone(), vec![]).unwrap();
    assert_same_rows(&got, &expected);

    // Ranges that meet no row: past the chunk's last index (no row group qualifies), and inside the gap between
    // two neighbouring rows (the row groups qualify, no row does).
    let gap = (0..n - 1)
        .find(|&i| hpx[i] + 1 < hpx[i + 1])
        .expect("two rows with a gap between their indexes");
    for (from, to) in [(hi + 1, hi + 1_000_000), (hpx[gap] + 1, hpx[gap + 1] - 1)] {
        scan.ranges = vec![IndexRange { from, to }];
        let got = run(&files, &data, scan.clone(), vec![]).unwrap();
        assert_eq!(got.num_rows(), 0, "range {from}..={to}");
    }
}

#[test]
fn pushed_down_filters_projection_and_limit_keep_exactly_the_oracle_rows() {
    let _serial = serial();
    let data = Data::build("filters", 4_000, 500);
    let files = LocalFiles::new(&data.dir);
    let chunks = &data.chunks[..3];
    let all = concat(
        &chunks
            .iter()
            .map(|&c| read_file(&data.chunk_path(c)))
            .collect::<Vec<_>>(),
    );
    let mags = all
        .column_by_name("mag_g")
        .unwrap()
        .as_primitive::<Float32Type>();
    let decs = all
        .column_by_name("dec")
        .unwrap()
        .as_primitive::<arrow::datatypes::Float64Type>();
    let mut sorted: Vec<f32> = mags.values().to_vec();
    sorted.sort_by(f32::total_cmp);
    let cut = sorted[sorted.len() / 2];

    // The filters name columns the projection leaves out.
    let mut scan = data.scan(chunks);
    scan.projected = true;
    scan.projection = vec![data.column("id"), data.column("ra")];
    let filters = vec![col("mag_g").lt(lit(cut)), col("dec").gt(lit(-30.0f64))];
    let expected = project(
        &keep(&all, |i| mags.value(i) < cut && decs.value(i) > -30.0),
        &data.output(&scan),
    );
    assert!(expected.num_rows() > 10 && expected.num_rows() < all.num_rows() / 2 + 1);
    let got = run(&files, &data, scan.clone(), filters.clone()).unwrap();
    assert_same_rows(&got, &expected);

    // A limit keeps the first rows that pass, in the files' order.
    let limit = expected.num_rows() / 3;
    scan.limit = Some(limit as u64);
    let got = run(&files, &data, scan, filters).unwrap();
    assert_same_rows(&got, &expected.slice(0, limit));
}

#[test]
fn a_scan_with_overlap_reads_the_chunk_then_its_overlap_file() {
    let _serial = serial();
    let data = Data::build("overlap", 4_000, 500);
    let files = LocalFiles::new(&data.dir);
    let chunk = *data
        .chunks
        .iter()
        .find(|&&c| data.overlap_path(c).exists())
        .expect("a chunk with an overlap file");
    let own = read_file(&data.chunk_path(chunk));
    let overlap = read_file(&data.overlap_path(chunk));
    assert!(overlap.num_rows() > 0);
    let mut scan = data.scan(&[chunk]);
    scan.overlap = true;
    let got = run(&files, &data, scan, vec![]).unwrap();
    let expected = concat(&[project(&own, &data.schema), project(&overlap, &data.schema)]);
    assert_same_rows(&got, &expected);
}

/// The footer of a Parquet file is its last 8 bytes' length field plus those 8 bytes.
fn footer_bytes(path: &std::path::Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let tail = &bytes[bytes.len() - 8..];
    assert_eq!(&tail[4..], b"PAR1");
    u32::from_le_bytes(tail[..4].try_into().unwrap()) as u64 + 8
}

#[test]
fn a_second_read_of_a_file_reuses_its_parsed_footer() {
    let _serial = serial();
    let data = Data::build("footers", 4_000, 500);
    let chunk = data.chunks[1];
    let expected = project(&read_file(&data.chunk_path(chunk)), &data.schema);
    let read = |files: &LocalFiles| {
        let before = worker::scan::bytes_read();
        let got = run(files, &data, data.scan(&[chunk]), vec![]).unwrap();
        assert_same_rows(&got, &expected);
        worker::scan::bytes_read() - before
    };
    let files = LocalFiles::new(&data.dir);
    let first = read(&files);
    let second = read(&files);
    // A worker that has not seen the file yet reads its footer again.
    let fresh = read(&LocalFiles::new(&data.dir));
    let footer = footer_bytes(&data.chunk_path(chunk));
    assert!(
        first >= second + footer,
        "first read {first} bytes, second {second}: the footer ({footer} bytes) was read again"
    );
    assert_eq!(fresh, first);
}

#[test]
fn a_file_replaced_in_place_is_read_anew_not_from_the_cached_footer() {
    let _serial = serial();
    let data = Data::build("replaced", 4_000, 500);
    let files = LocalFiles::new(&data.dir);
    let len = |c: u64| std::fs::metadata(data.chunk_path(c)).unwrap().len();
    let a = data.chunks[0];
    let b = *data.chunks[1..]
        .iter()
        .find(|&&c| len(c) != len(a))
        .expect("two chunk files of different sizes");
    let rows_of = |c: u64| project(&read_file(&data.chunk_path(c)), &data.schema);
    let (old, new) = (rows_of(a), rows_of(b));
    assert_same_rows(&run(&files, &data, data.scan(&[a]), vec![]).unwrap(), &old);

    // The same path, other bytes (written over the same inode).
    std::fs::write(
        data.chunk_path(a),
        std::fs::read(data.chunk_path(b)).unwrap(),
    )
    .unwrap();
    let got = run(&files, &data, data.scan(&[a]), vec![]).unwrap();
    assert_same_rows(&got, &new);
    assert_ne!(int64s(&got, "id"), int64s(&old, "id"));
}

fn not_held(files: &LocalFiles, data: &Data, scan: ChunkScan) -> WorkerError {
    match files.local_scan(scan, data.schema.clone(), vec![]) {
        Ok(plan) => panic!("a scan of a missing file was planned: {plan:?}"),
        Err(e) => WorkerError::from_datafusion(e),
    }
}

#[test]
fn a_missing_chunk_file_is_an_error_never_an_empty_chunk() {
    let _serial = serial();
    let data = Data::build("missing", 4_000, 500);
    let files = LocalFiles::new(&data.dir);
    let absent = data.chunks.last().unwrap() + 1_000_003;
    assert!(!data.chunk_path(absent).exists());

    // A chunk this worker never held, beside one it holds.
    let e = not_held(&files, &data, data.scan(&[data.chunks[0], absent]));
    assert!(
        matches!(&e, WorkerError::ChunkNotHeld { chunk, load, .. } if *chunk == absent && *load == data.load),
        "{e:?}"
    );
    assert_eq!(e.code(), ErrorCode::NotFound);

    // A chunk whose own file is gone though its overlap file is still there.
    let gone = *data
        .chunks
        .iter()
        .find(|&&c| data.overlap_path(c).exists())
        .expect("a chunk with an overlap file");
    std::fs::remove_file(data.chunk_path(gone)).unwrap();
    let mut scan = data.scan(&[gone]);
    scan.overlap = true;
    let e = not_held(&files, &data, scan);
    assert!(
        matches!(&e, WorkerError::ChunkNotHeld { chunk, .. } if *chunk == gone),
        "{e:?}"
    );

    // A load this worker does not hold.
    let mut scan = data.scan(&[data.chunks[0]]);
    scan.load_id = "no-such-load".into();
    let e = not_held(&files, &data, scan);
    assert!(
        matches!(&e, WorkerError::LoadNotHeld { load, .. } if load == "no-such-load"),
        "{e:?}"
    );
    assert_eq!(e.code(), ErrorCode::NotFound);

    // Only a scan that says its files are optional (the overlap side of a cone join) reads nothing for them.
    let mut scan = data.scan(&[absent, data.chunks[0]]);
    scan.optional_files = true;
    let got = run(&files, &data, scan, vec![]).unwrap();
    assert_same_rows(
        &got,
        &project(&read_file(&data.chunk_path(data.chunks[0])), &data.schema),
    );
}

/// A chunk file this worker cannot read as Parquet (cut short on disk) is the worker's fault, not the query's: a
/// retryable `Unavailable`, so the czar asks a replica that may hold a good copy.
#[test]
fn a_damaged_chunk_file_fails_over_to_a_replica() {
    let _serial = serial();
    let data = Data::build("damaged", 4_000, 500);
    let files = LocalFiles::new(&data.dir);
    let chunk = data.chunks[0];
    let path = data.chunk_path(chunk);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = WorkerError::from_datafusion(
        run(&files, &data, data.scan(&[chunk]), vec![]).expect_err("a damaged file is an error"),
    );
    assert!(
        matches!(&e, WorkerError::DamagedFile { path: p, .. } if *p == path),
        "{e:?}"
    );
    assert_eq!(e.code(), ErrorCode::Unavailable);
    assert!(e.code().retryable());
}
