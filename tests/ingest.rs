//! `skyshard ingest` as a user runs it: real processes, a real data directory. A load is all or nothing: a second
//! load of the same table is refused without --replace, duplicate director ids are refused, and a load killed
//! half-way leaves the catalog exactly as it was.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn skyshard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_skyshard"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("skyshard-ingest-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    out
}

fn generate(dir: &Path, rows: u64) {
    let out = run(skyshard()
        .args(["gen", "--rows", &rows.to_string(), "--out"])
        .arg(dir));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ingest(data: &Path, input: &Path, extra: &[&str]) -> Output {
    run(skyshard()
        .args(["ingest", "--data-dir"])
        .arg(data)
        .args(["--table", "sky.object", "--input"])
        .arg(input)
        .args([
            "--ra",
            "ra",
            "--dec",
            "dec",
            "--id",
            "id",
            "--chunk-rows",
            "5000",
        ])
        .args(extra))
}

fn tables(data: &Path) -> String {
    let out = run(skyshard().args(["tables", "--data-dir"]).arg(data));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn loads_are_atomic_and_refuse_bad_input() {
    let dir = tmp("atomic");
    generate(&dir.join("small"), 40_000);
    let data = dir.join("data");
    let out = ingest(&data, &dir.join("small/object.parquet"), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = tables(&data);
    assert!(
        listing.starts_with("sky.object\tdirector\t40000 rows"),
        "{listing}"
    );

    // The secondary index sends every id to the chunk file that holds it.
    {
        use arrow::array::AsArray;
        let store = metastore::MetaStore::open(&data.join("meta")).unwrap();
        let record = store.table("sky.object").unwrap().unwrap();
        let chunk_dir = data
            .join("tables/sky.object")
            .join(&record.load_id)
            .join("chunks");
        let mut checked = 0;
        for entry in std::fs::read_dir(&chunk_dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.contains("overlap") {
                continue;
            }
            let chunk: u64 = name.trim_end_matches(".parquet").parse().unwrap();
            let file = std::fs::File::open(&path).unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                let ids = batch
                    .column_by_name("id")
                    .unwrap()
                    .as_primitive::<arrow::datatypes::Int64Type>();
                for id in ids.values().iter().step_by(97) {
                    assert_eq!(
                        store.lookup("sky.object", *id).unwrap().map(|c| c.0),
                        Some(chunk)
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 300);
        assert_eq!(store.lookup("sky.object", 40_000).unwrap(), None);
    }

    // A child table: every detection sits in the chunk of its object.
    let out = run(skyshard()
        .args(["ingest", "--data-dir"])
        .arg(&data)
        .args(["--table", "sky.source", "--input"])
        .arg(dir.join("small/source.parquet"))
        .args(["--director", "sky.object", "--director-key", "object_id"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    {
        use arrow::array::AsArray;
        let store = metastore::MetaStore::open(&data.join("meta")).unwrap();
        let source = store.table("sky.source").unwrap().unwrap();
        let object = store.table("sky.object").unwrap().unwrap();
        assert_eq!(
            source.chunks, object.chunks,
            "a child shares its director's chunk map"
        );
        let chunk_dir = data
            .join("tables/sky.source")
            .join(&source.load_id)
            .join("chunks");
        let mut rows = 0;
        for entry in std::fs::read_dir(&chunk_dir).unwrap() {
            let path = entry.unwrap().path();
            let chunk: u64 = path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches(".parquet")
                .parse()
                .unwrap();
            let file = std::fs::File::open(&path).unwrap();
            for batch in
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap()
            {
                let batch = batch.unwrap();
                let keys = batch
                    .column_by_name("object_id")
                    .unwrap()
                    .as_primitive::<arrow::datatypes::Int64Type>();
                rows += keys.len();
                for k in keys.values().iter().step_by(53) {
                    assert_eq!(
                        store.lookup("sky.object", *k).unwrap().map(|c| c.0),
                        Some(chunk)
                    );
                }
            }
        }
        assert_eq!(rows as u64, source.rows);
    }
    let listing = tables(&data);

    // Loading it again is refused and changes nothing.
    let out = ingest(&data, &dir.join("small/object.parquet"), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already: add --replace"));
    assert_eq!(tables(&data), listing);

    // Duplicate ids: the source table's object_id repeats; loading it as a director is refused, nothing changes.
    let out = run(skyshard()
        .args(["ingest", "--data-dir"])
        .arg(&data)
        .args(["--table", "sky.dups", "--input"])
        .arg(dir.join("small/source.parquet"))
        .args(["--ra", "ra", "--dec", "dec", "--id", "object_id"]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("repeat an id of column object_id"), "{err}");
    assert_eq!(tables(&data), listing);

    // A NaN-free, in-range check with a missing column names the column.
    let out = run(skyshard()
        .args(["ingest", "--data-dir"])
        .arg(&data)
        .args(["--table", "sky.other", "--input"])
        .arg(dir.join("small/object.parquet"))
        .args(["--ra", "raj2000", "--dec", "dec", "--id", "id"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no column named raj2000"));

    generate(&dir.join("big"), 1_500_000);
    // Detections of objects the director does not have are refused, counted, with examples.
    let out = run(skyshard()
        .args(["ingest", "--data-dir"])
        .arg(&data)
        .args(["--table", "sky.orphans", "--input"])
        .arg(dir.join("big/source.parquet"))
        .args([
            "--director",
            "sky.object",
            "--director-key",
            "object_id",
            "--quiet",
        ]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("names no object of the director table") && err.contains("source.parquet row"),
        "{err}"
    );
    assert_eq!(tables(&data), listing);

    // A director with a child table cannot be replaced (the child is placed by its chunks); dropping the child first
    // lets it.
    let out = ingest(&data, &dir.join("small/object.parquet"), &["--replace"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has child tables (sky.source)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(skyshard()
        .args(["drop", "--data-dir"])
        .arg(&data)
        .args(["--table", "sky.object"]));
    assert!(!out.status.success());
    let out = run(skyshard()
        .args(["drop", "--data-dir"])
        .arg(&data)
        .args(["--table", "sky.source"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!tables(&data).contains("sky.source"));
    let listing = tables(&data);

    // Kill a replacing load half-way: the catalog still shows the first load, and a new load then succeeds.
    let mut child = skyshard()
        .args(["ingest", "--data-dir"])
        .arg(&data)
        .args(["--table", "sky.object", "--input"])
        .arg(dir.join("big/object.parquet"))
        .args(["--ra", "ra", "--dec", "dec", "--id", "id", "--replace"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let finished_early = child.try_wait().unwrap().is_some();
    child.kill().ok();
    child.wait().unwrap();
    if !finished_early {
        assert_eq!(tables(&data), listing, "a killed load must not be visible");
    }
    let out = ingest(&data, &dir.join("big/object.parquet"), &["--replace"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        tables(&data).contains("sky.object\tdirector\t1500000 rows"),
        "{}",
        tables(&data)
    );
    assert!(
        !data.join("staging").exists()
            || std::fs::read_dir(data.join("staging")).unwrap().count() == 0
    );
    let loads = std::fs::read_dir(data.join("tables/sky.object"))
        .unwrap()
        .count();
    assert_eq!(loads, 1, "replaced and interrupted loads are removed");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Copies rows `from..to` of a Parquet file into a new one.
fn slice_parquet(src: &Path, dest: &Path, from: usize, to: usize) {
    let file = std::fs::File::open(src).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let all = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let part = all.slice(from, to - from);
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(dest).unwrap(),
        part.schema(),
        None,
    )
    .unwrap();
    w.write(&part).unwrap();
    w.close().unwrap();
}

#[test]
fn append_orphans_globs_and_column_metadata() {
    let dir = tmp("append");
    generate(&dir.join("rel"), 30_000);
    std::fs::create_dir_all(dir.join("parts")).unwrap();
    slice_parquet(
        &dir.join("rel/object.parquet"),
        &dir.join("parts/a.parquet"),
        0,
        20_000,
    );
    slice_parquet(
        &dir.join("rel/object.parquet"),
        &dir.join("parts/b.parquet"),
        20_000,
        30_000,
    );
    let data = dir.join("data");
    let meta = dir.join("columns.json");
    std::fs::write(&meta, r#"{"ra": {"unit": "deg", "ucd": "pos.eq.ra;meta.main", "description": "right ascension (ICRS)"}}"#).unwrap();
    let out = ingest(
        &data,
        &dir.join("parts/a.parquet"),
        &["--columns-meta", meta.to_str().unwrap(), "--quiet"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = || metastore::MetaStore::open(&data.join("meta")).unwrap();
    let first = store().table("sky.object").unwrap().unwrap();
    let ra = first.columns.iter().find(|c| c.name == "ra").unwrap();
    assert_eq!(
        (ra.unit.as_deref(), ra.ucd.as_deref()),
        (Some("deg"), Some("pos.eq.ra;meta.main"))
    );
    assert!(
        first.columns.iter().all(|c| c.name != "_hpx29"),
        "the index column is not table metadata"
    );
    drop(first);

    // A child loaded against the first half: the second half's objects are missing, so some sources are orphans.
    let out = run(skyshard()
        .args(["ingest", "--data-dir"])
        .arg(&data)
        .args(["--table", "sky.source", "--input"])
        .arg(dir.join("rel/source.parquet"))
        .args([
            "--director",
            "sky.object",
            "--director-key",
            "object_id",
            "--allow-orphans",
            "--quiet",
        ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        said.contains("rows whose key names no director object kept"),
        "{said}"
    );
    let source = store().table("sky.source").unwrap().unwrap();
    assert!(
        source.orphan_rows > 0 && source.orphan_rows < source.rows,
        "{} of {}",
        source.orphan_rows,
        source.rows
    );
    let orphans = data
        .join("tables/sky.source")
        .join(&source.load_id)
        .join("chunks/orphans.parquet");
    let n = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&orphans).unwrap(),
    )
    .unwrap()
    .metadata()
    .file_metadata()
    .num_rows() as u64;
    assert_eq!(n, source.orphan_rows);

    // Appending the second half (by a glob the shell did not expand) keeps the chunk map, adds every row, keeps the
    // column metadata, and indexes the new ids.
    let before = store().table("sky.object").unwrap().unwrap();
    let pattern = dir.join("parts/b*.parquet");
    let out = ingest(&data, &pattern, &["--append", "--quiet"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("appended to sky.object: 30000 rows"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let after = store().table("sky.object").unwrap().unwrap();
    assert_eq!(after.chunks, before.chunks);
    assert_eq!(after.rows, 30_000);
    assert_eq!(
        after
            .columns
            .iter()
            .find(|c| c.name == "ra")
            .unwrap()
            .unit
            .as_deref(),
        Some("deg")
    );
    assert!(store().lookup("sky.object", 25_000).unwrap().is_some());
    assert!(store().lookup("sky.object", 5).unwrap().is_some());
    // Appending the same rows again repeats ids: refused, nothing changes.
    let out = ingest(&data, &pattern, &["--append", "--quiet"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("repeat an id"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        store().table("sky.object").unwrap().unwrap().load_id,
        after.load_id
    );
    // Appending with other table-kind flags is refused.
    let out = run(skyshard()
        .args(["ingest", "--data-dir"])
        .arg(&data)
        .args(["--table", "sky.object", "--input"])
        .arg(&pattern)
        .args(["--replicated", "--append"]));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot append to sky.object"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A glob that matches nothing says so.
    let out = ingest(&data, &dir.join("parts/zzz*.parquet"), &["--replace"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no input file matches"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
