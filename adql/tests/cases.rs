//! Data-driven tests: every `tests/cases/*.adql` file holds queries and their expected results (or errors) over
//! the small deterministic tables of [`corpus`]. An expectation is written by hand, checked against an oracle
//! (`tests/python/test_adql_cases_vs_duckdb.py`, `test_geometry_cases_oracle.py`): `UPDATE_EXPECT=1 cargo test
//! --workspace cases` fills in only the expectations of new cases (left empty), never one that is there, so the
//! engine's own output cannot quietly become the reference for a case it now answers differently.

mod corpus;

use std::fmt::Write as _;
use std::sync::Arc;

use adql::Engine;
use corpus::{answer, catalog, parse_cases};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cases() {
    let engine = Engine::new(Arc::new(catalog()));
    let update = std::env::var("UPDATE_EXPECT").is_ok();
    // Read at run time: a test binary reused from a checkout at another path must read this checkout's cases.
    let manifest =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let dir = std::path::Path::new(&manifest).join("tests/cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut failures = Vec::new();
    let mut total = 0;
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "adql"))
    {
        let text = std::fs::read_to_string(path).unwrap();
        let cases = parse_cases(&text);
        let mut rewritten = String::new();
        for case in &cases {
            total += 1;
            let actual = answer(&engine, &case.query).await;
            let new = case.expected.trim().is_empty();
            if update {
                let expected = if new { &actual } else { &case.expected };
                write!(
                    rewritten,
                    "== {}\n{}\n--- expect\n{}\n\n",
                    case.name, case.query, expected
                )
                .unwrap();
                if new {
                    println!("{}: {}: expectation written", path.display(), case.name);
                }
            }
            if !(update && new) && actual != case.expected {
                failures.push(format!(
                    "{}: {}\n  query: {}\n  expected:\n{}\n  actual:\n{}",
                    path.file_name().unwrap().to_string_lossy(),
                    case.name,
                    case.query,
                    case.expected,
                    actual
                ));
            }
        }
        if update {
            std::fs::write(path, rewritten).unwrap();
        }
    }
    assert!(total >= 300, "expected at least 300 cases, found {total}");
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    println!("{total} ADQL cases passed");
}

/// The corpus tables as Parquet files beside their code (`tests/corpus/*.parquet`), for the second, independent
/// check of these cases: `tests/python/test_adql_cases_vs_duckdb.py` runs every case DuckDB can express over them.
/// The files must hold exactly the tables the cases run on; `UPDATE_EXPECT=1` rewrites them.
#[test]
fn corpus_files_hold_the_corpus_tables() {
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let manifest =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let dir = std::path::Path::new(&manifest).join("tests/corpus");
    for (name, batch) in [
        ("stars", corpus::stars()),
        ("obs", corpus::obs()),
        ("fields", corpus::fields()),
    ] {
        let path = dir.join(format!("{name}.parquet"));
        if std::env::var("UPDATE_EXPECT").is_ok() {
            let mut w =
                ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None)
                    .unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
        }
        let file = std::fs::File::open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; UPDATE_EXPECT=1 writes it", path.display()));
        let read: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        let read = arrow::compute::concat_batches(&read[0].schema(), &read).unwrap();
        assert!(batch.num_rows() > 0);
        assert_eq!(read.num_rows(), batch.num_rows(), "{name}");
        for (c, (ours, theirs)) in batch.columns().iter().zip(read.columns()).enumerate() {
            assert_eq!(
                ours.to_data(),
                theirs.to_data(),
                "{name}: column {c} differs from the file; UPDATE_EXPECT=1 rewrites it"
            );
        }
    }
}
