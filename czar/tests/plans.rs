//! Golden plans: a query in, the chunks it touches and the fragment and merge plans out, approved by a person.
//!
//! A small synthetic release (objects cut into dozens of chunks, their sources as a child table, a second catalog
//! on the objects' chunk map, a replicated table) is ingested into a temporary data directory; a czar plans each
//! query over it (no worker is reached: planning only) and its `explain` text is compared with
//! `tests/approved/NAME.txt`. After a change that moves a plan on purpose, regenerate with
//! `UPDATE_PLANS=1 cargo test --workspace --test plans` and review the diff before committing it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use czar::cluster::Cluster;
use czar::{Czar, CzarOptions};
use datafusion::datasource::MemTable;
use loader::ingest::{IngestOptions, LoadKind, ingest};

/// (name, query). Names are the approved files' names.
const CASES: &[(&str, &str)] = &[
    // Cones, in every form the translator and DataFusion may hand the scan.
    (
        "cone_contains",
        "SELECT id, ra, dec FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(180, 10, 2)) = 1",
    ),
    (
        "cone_contains_reversed",
        "SELECT id FROM sky.object WHERE 1 = CONTAINS(POINT(ra, dec), CIRCLE(180, 10, 2))",
    ),
    (
        "cone_distance",
        "SELECT id FROM sky.object WHERE DISTANCE(POINT(ra, dec), POINT(180, 10)) < 2",
    ),
    (
        "cone_distance_swapped",
        "SELECT id FROM sky.object WHERE 2 > DISTANCE(POINT(180, 10), POINT(ra, dec))",
    ),
    (
        "cone_at_pole",
        "SELECT COUNT(*) FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(0, 90, 5)) = 1",
    ),
    (
        "cone_across_ra_zero",
        "SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(359.5, 0, 3)) = 1",
    ),
    (
        "cone_and_magnitude",
        "SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(90, -30, 3)) = 1 AND mag_r < 20",
    ),
    (
        "cone_intersects",
        "SELECT id FROM sky.object WHERE INTERSECTS(POINT(ra, dec), CIRCLE(45, 20, 2)) = 1",
    ),
    // Other regions and ORs of them.
    (
        "box",
        "SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), BOX(120, 0, 4, 2)) = 1",
    ),
    (
        "polygon",
        "SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), POLYGON(10, 10, 14, 10, 12, 14)) = 1",
    ),
    (
        "polygon_of_points",
        "SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), POLYGON(POINT(200, -5), POINT(206, -5), POINT(203, 0))) = 1",
    ),
    (
        "or_of_cones",
        "SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(10, 10, 1)) = 1 OR CONTAINS(POINT(ra, dec), CIRCLE(250, -40, 1)) = 1",
    ),
    (
        "or_with_other_condition",
        "SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(10, 10, 1)) = 1 OR mag_r < 15",
    ),
    (
        "negative_radius",
        "SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(10, 10, -1)) = 1",
    ),
    // Ids through the secondary index.
    ("id_equals", "SELECT * FROM sky.object WHERE id = 1234"),
    (
        "id_in",
        "SELECT id, ra FROM sky.object WHERE id IN (17, 4000, 8123)",
    ),
    (
        "id_between",
        "SELECT id FROM sky.object WHERE id BETWEEN 100 AND 140",
    ),
    (
        "id_range",
        "SELECT id FROM sky.object WHERE id >= 500 AND id <= 520",
    ),
    (
        "child_key_lookup",
        "SELECT source_id, flux FROM sky.source WHERE object_id = 77",
    ),
    // Aggregates, sorting, limits.
    ("count_all", "SELECT COUNT(*) FROM sky.object"),
    (
        "group_by_having_order",
        "SELECT ROUND(dec, 0) AS band, COUNT(*) AS n, AVG(mag_r) AS r FROM sky.object GROUP BY ROUND(dec, 0) HAVING COUNT(*) > 3 ORDER BY band",
    ),
    (
        "top_order",
        "SELECT TOP 10 id, mag_r FROM sky.object ORDER BY mag_r DESC",
    ),
    (
        "top_offset",
        "SELECT id FROM sky.object ORDER BY id OFFSET 20",
    ),
    (
        "distinct_top",
        "SELECT DISTINCT TOP 5 ROUND(ra, 0) FROM sky.object ORDER BY 1",
    ),
    (
        "cone_aggregate",
        "SELECT COUNT(*), MIN(mag_g), MAX(mag_g) FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(270, -20, 5)) = 1",
    ),
    (
        "scalar_subquery",
        "SELECT id FROM sky.object WHERE mag_r < (SELECT AVG(mag_r) FROM sky.object) AND id < 100",
    ),
    // Joins.
    (
        "director_child_join",
        "SELECT o.id, s.source_id FROM sky.object AS o JOIN sky.source AS s ON s.object_id = o.id WHERE CONTAINS(POINT(o.ra, o.dec), CIRCLE(180, 10, 3)) = 1",
    ),
    (
        "director_child_group_by",
        "SELECT o.id, COUNT(*) AS n FROM sky.object AS o JOIN sky.source AS s ON o.id = s.object_id GROUP BY o.id",
    ),
    (
        "near_neighbours",
        "SELECT a.id, b.id FROM sky.object AS a JOIN sky.object AS b ON CONTAINS(POINT(b.ra, b.dec), CIRCLE(a.ra, a.dec, 0.01)) = 1 WHERE a.id <> b.id",
    ),
    (
        "near_neighbours_distance",
        "SELECT a.id, b.id FROM sky.object AS a JOIN sky.object AS b ON DISTANCE(POINT(a.ra, a.dec), POINT(b.ra, b.dec)) < 0.005 WHERE a.id < b.id",
    ),
    (
        "crossmatch",
        "SELECT o.id, x.xid FROM sky.object AS o JOIN sky.xmatch AS x ON CONTAINS(POINT(x.ra, x.dec), CIRCLE(o.ra, o.dec, 0.001)) = 1",
    ),
    (
        "crossmatch_beyond_overlap",
        "SELECT o.id, x.xid FROM sky.object AS o JOIN sky.xmatch AS x ON CONTAINS(POINT(x.ra, x.dec), CIRCLE(o.ra, o.dec, 1)) = 1",
    ),
    // Three tables: a director-child join and a cross-match, chunk by chunk whichever is planned first.
    (
        "child_then_crossmatch",
        "SELECT COUNT(*) FROM sky.source AS s JOIN sky.object AS o ON s.object_id = o.id JOIN sky.xmatch AS x ON CONTAINS(POINT(x.ra, x.dec), CIRCLE(o.ra, o.dec, 0.001)) = 1",
    ),
    (
        "crossmatch_then_child",
        "SELECT COUNT(*) FROM sky.object AS o JOIN sky.xmatch AS x ON CONTAINS(POINT(x.ra, x.dec), CIRCLE(o.ra, o.dec, 0.001)) = 1 JOIN sky.source AS s ON s.object_id = o.id",
    ),
    (
        "replicated_join",
        "SELECT o.id, f.name FROM sky.object AS o JOIN sky.fields AS f ON o.field_id = f.field_id WHERE CONTAINS(POINT(o.ra, o.dec), CIRCLE(100, 0, 2)) = 1",
    ),
    (
        "replicated_left_join",
        "SELECT o.id, f.name FROM sky.object AS o LEFT JOIN sky.fields AS f ON o.field_id = f.field_id WHERE o.id < 50",
    ),
    (
        "replicated_alone",
        "SELECT name FROM sky.fields ORDER BY field_id",
    ),
    (
        "outer_join_of_directors",
        "SELECT o.id, x.xid FROM sky.object AS o LEFT JOIN sky.xmatch AS x ON o.id = x.xid WHERE o.id < 10",
    ),
    // Joins gathered at the czar that explain warns about first (the portal asks before running them): a hash
    // join over a whole table, and a nested-loop join.
    (
        "warned_whole_table_join",
        "SELECT COUNT(*) FROM sky.object AS o LEFT JOIN sky.xmatch AS x ON o.id = x.xid",
    ),
    (
        "warned_nested_loop_join",
        "SELECT COUNT(*) FROM sky.object AS a JOIN sky.object AS b ON a.mag_g > b.mag_g + 5",
    ),
    // Uploads.
    (
        "upload_crossmatch",
        "SELECT u.name, o.id FROM TAP_UPLOAD.mine AS u JOIN sky.object AS o ON CONTAINS(POINT(o.ra, o.dec), CIRCLE(u.ra, u.dec, 0.5)) = 1",
    ),
    ("upload_alone", "SELECT name FROM TAP_UPLOAD.mine"),
    // Set operations.
    (
        "union_of_cones",
        "SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(10, 10, 1)) = 1 UNION SELECT id FROM sky.object WHERE id = 3",
    ),
];

fn write_parquet(path: &Path, batch: &RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// The release: 20,000 objects in chunks of at most 600 rows, their sources, a second catalog on their chunk map,
/// and a replicated table of fields; `sky.object` gains a `field_id` column to join the fields on.
fn catalog(data: &Path) {
    let release = data.join("release");
    loader::synth::generate(20_000, &release, 7).unwrap();
    // Objects with a field id (id % 8) for the replicated join.
    let objects = release.join("object.parquet");
    let file = std::fs::File::open(&objects).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let with_field = release.join("object_fields.parquet");
    {
        let schema = batches[0].schema();
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("field_id", DataType::Int64, false));
        let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
        let file = std::fs::File::create(&with_field).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).unwrap();
        for b in &batches {
            let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let field: Int64Array = ids.iter().map(|v| v.map(|v| v % 8)).collect();
            let mut columns = b.columns().to_vec();
            columns.push(Arc::new(field));
            w.write(&RecordBatch::try_new(schema.clone(), columns).unwrap())
                .unwrap();
        }
        w.close().unwrap();
    }
    let fields = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("field_id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ])),
        vec![
            Arc::new(Int64Array::from((0..8).collect::<Vec<i64>>())),
            Arc::new(StringArray::from(
                (0..8).map(|i| format!("field {i}")).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    write_parquet(&release.join("fields.parquet"), &fields);

    let director = |id: &str| LoadKind::Director {
        ra: "ra".into(),
        dec: "dec".into(),
        id: id.into(),
    };
    let load = |table: &str, file: &str, kind: LoadKind, chunk_map_of: Option<&str>| {
        let mut opts = IngestOptions::new(table, kind);
        opts.chunk_rows = 600;
        opts.chunk_map_of = chunk_map_of.map(String::from);
        ingest(data, &[release.join(file)], &opts).unwrap_or_else(|e| panic!("{table}: {e}"));
    };
    load("sky.object", "object_fields.parquet", director("id"), None);
    load(
        "sky.source",
        "source.parquet",
        LoadKind::Child {
            director: "sky.object".into(),
            key: "object_id".into(),
        },
        None,
    );
    load(
        "sky.xmatch",
        "xmatch.parquet",
        director("xid"),
        Some("sky.object"),
    );
    load("sky.fields", "fields.parquet", LoadKind::Replicated, None);
}

/// An uploaded list of three positions, as `TAP_UPLOAD.mine`.
fn upload() -> Arc<adql::CatalogTable> {
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("ra", DataType::Float64, false),
            Field::new("dec", DataType::Float64, false),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
            Arc::new(Float64Array::from(vec![10.0, 180.0, 300.0])),
            Arc::new(Float64Array::from(vec![10.0, -20.0, 60.0])),
        ],
    )
    .unwrap();
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
    Arc::new(adql::CatalogTable::new("tap_upload", "mine", Arc::new(table)).unwrap())
}

/// The chunks the distributed plan of `query` reads (every fragment's, in full).
async fn pruned_chunks(czar: &Czar, query: &str) -> BTreeSet<u64> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let plan = czar
        .plan(query, &czar::QueryContext::all())
        .await
        .unwrap()
        .plan;
    let mut chunks = BTreeSet::new();
    plan.apply(|node| {
        if let Some(remote) = node.downcast_ref::<czar::dispatch::RemoteExec>() {
            chunks.extend(remote.chunks().iter().copied());
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .unwrap();
    chunks
}

/// The oracle: the rows of `sky.object` that satisfy `condition`, computed on one node over the release file, and
/// the chunk each lies in by the table's chunk map.
async fn chunks_of_qualifying_rows(
    release: &Path,
    map: &partitioner::ChunkMap,
    condition: &str,
) -> BTreeSet<u64> {
    let mut catalog = adql::MemoryCatalog::new();
    let ctx = datafusion::prelude::SessionContext::new();
    let path = release.join("object_fields.parquet");
    ctx.register_parquet("o", path.to_str().unwrap(), Default::default())
        .await
        .unwrap();
    let provider = ctx.table_provider("o").await.unwrap();
    catalog.add(adql::CatalogTable::new("sky", "object", provider).unwrap());
    let engine = adql::Engine::new(Arc::new(catalog));
    let batches = engine
        .collect(&format!("SELECT ra, dec FROM sky.object WHERE {condition}"))
        .await
        .unwrap();
    let mut chunks = BTreeSet::new();
    for b in &batches {
        let ra = b.column(0).as_any().downcast_ref::<Float64Array>().unwrap();
        let dec = b.column(1).as_any().downcast_ref::<Float64Array>().unwrap();
        for i in 0..b.num_rows() {
            chunks.insert(map.assign(ra.value(i), dec.value(i)).unwrap().0.0);
        }
    }
    chunks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_never_drops_a_chunk_with_a_qualifying_row() {
    let dir = std::env::temp_dir().join(format!("skyshard-prune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    catalog(&dir);
    let workers = ["127.0.0.1:1".to_string()];
    let czar = Czar::open(
        &dir,
        Cluster::new(&workers, 1, 4).unwrap(),
        CzarOptions::default(),
    )
    .unwrap();
    let object = czar
        .tables()
        .into_iter()
        .find(|t| t.record.qualified_name() == "sky.object")
        .unwrap();
    let map = object.map.as_ref().unwrap();
    let conditions = [
        "CONTAINS(POINT(ra, dec), CIRCLE(180, 10, 5)) = 1",
        "DISTANCE(POINT(ra, dec), POINT(30, -15)) < 4",
        "CONTAINS(POINT(ra, dec), CIRCLE(0, 90, 8)) = 1",
        "CONTAINS(POINT(ra, dec), CIRCLE(0, -90, 8)) = 1",
        "CONTAINS(POINT(ra, dec), CIRCLE(359.5, 0, 6)) = 1",
        "CONTAINS(POINT(ra, dec), BOX(120, 0, 10, 6)) = 1",
        "CONTAINS(POINT(ra, dec), POLYGON(10, 10, 24, 10, 17, 24)) = 1",
        "CONTAINS(POINT(ra, dec), CIRCLE(10, 10, 3)) = 1 OR CONTAINS(POINT(ra, dec), CIRCLE(250, -40, 3)) = 1",
        "id = 1234",
        "id IN (17, 4000, 8123, 19999)",
        "id BETWEEN 100 AND 140",
        "id >= 500 AND id <= 520",
        "CONTAINS(POINT(ra, dec), CIRCLE(90, -30, 6)) = 1 AND mag_r < 21",
    ];
    for condition in conditions {
        let expected = chunks_of_qualifying_rows(&dir.join("release"), map, condition).await;
        assert!(
            !expected.is_empty(),
            "{condition}: the oracle found no row; pick a condition that selects some"
        );
        let pruned = pruned_chunks(
            &czar,
            &format!("SELECT id FROM sky.object WHERE {condition}"),
        )
        .await;
        let missing: Vec<_> = expected.difference(&pruned).collect();
        assert!(
            missing.is_empty(),
            "{condition}: pruning dropped chunks {missing:?} that hold qualifying rows"
        );
        assert!(
            pruned.len() < object.chunks.len(),
            "{condition}: pruned nothing ({} of {} chunks)",
            pruned.len(),
            object.chunks.len()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn approved_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/approved")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_match_the_approved_files() {
    let dir = std::env::temp_dir().join(format!("skyshard-plans-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    catalog(&dir);
    // Two workers that are never dialled: planning names them, nothing runs.
    let workers = ["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()];
    let cluster = Cluster::new(&workers, 2, 4).unwrap();
    let czar = Czar::open(&dir, cluster, CzarOptions::default()).unwrap();
    let object = czar
        .tables()
        .into_iter()
        .find(|t| t.record.qualified_name() == "sky.object")
        .unwrap();
    assert!(
        object.chunks.len() >= 24,
        "objects in {} chunks only",
        object.chunks.len()
    );
    let uploads = [upload()];
    let update = std::env::var_os("UPDATE_PLANS").is_some();
    std::fs::create_dir_all(approved_dir()).unwrap();
    let mut failures = Vec::new();
    for (name, query) in CASES {
        let uses_upload = query.contains("TAP_UPLOAD");
        let explained = czar
            .explain(
                query,
                &czar::QueryContext {
                    uploads: if uses_upload { &uploads } else { &[] },
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| format!("error: {e}\n"));
        let text = format!("-- {query}\n{explained}");
        let path = approved_dir().join(format!("{name}.txt"));
        if update {
            // Said by name: the reviewer sees which approved plans the regeneration changed.
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                println!("UPDATE_PLANS: {} changed", path.display());
                std::fs::write(&path, &text).unwrap();
            }
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(approved) if approved == text => {}
            Ok(approved) => failures.push(format!(
                "{name}: the plan changed\n--- approved\n{approved}\n--- now\n{text}"
            )),
            Err(_) => failures.push(format!("{name}: no approved file {}", path.display())),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "{} of {} plans differ (UPDATE_PLANS=1 regenerates them; review the diff):\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}
