//! Fragments through the codec: every node of ours (`ChunkScanExec` with its parts and index ranges,
//! `ConeJoinExec`) and ADQL's functions (by name, inside filters and projections, and inside a scan's pushed
//! filters) encoded to bytes and decoded as a worker decodes them, and bytes that are no fragment refused with an
//! error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DFSchema, Result};
use datafusion::execution::{FunctionRegistry, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{ExecutionPlan, displayable};
use datafusion::prelude::{SessionContext, col, lit};
use datafusion_proto::protobuf::PhysicalPlanNode;
use datafusion_proto::protobuf::physical_plan_node::PhysicalPlanType;
use exec::{ChunkScanExec, ConeJoinExec, ScanFactory};
use prost::Message;
use protocol::{ChunkScan, ConeJoin, IndexRange, ScanPart};

/// The table every scan here reads, with the metadata TAP gives its columns.
fn table() -> SchemaRef {
    let unit = |u: &str| HashMap::from([("unit".to_string(), u.to_string())]);
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("ra", DataType::Float64, false).with_metadata(unit("deg")),
        Field::new("dec", DataType::Float64, false).with_metadata(unit("deg")),
        Field::new("mag_g", DataType::Float32, true),
    ]))
}

/// A worker's context: ADQL's functions registered.
fn adql() -> SessionContext {
    let ctx = SessionContext::new();
    for udf in adql::udf::all() {
        ctx.register_udf(udf);
    }
    ctx
}

/// A call of ADQL function `name`.
fn call(ctx: &SessionContext, name: &str, args: Vec<Expr>) -> Expr {
    ctx.udf(name).unwrap().call(args)
}

/// The filters every scan here carries: one plain, one an ADQL function.
fn filters(ctx: &SessionContext) -> Vec<Expr> {
    vec![
        col("mag_g").lt(lit(21.5f32)),
        call(
            ctx,
            "adql_contains_point_circle",
            vec![col("ra"), col("dec"), lit(10.0), lit(-20.0), lit(0.5)],
        )
        .eq(lit(1i32)),
    ]
}

/// A factory that gives back the czar's placeholder for what it receives, and keeps what it received.
#[derive(Debug, Default)]
struct Echo(Mutex<Vec<(ChunkScan, SchemaRef, Vec<Expr>)>>);

impl ScanFactory for Echo {
    fn local_scan(
        &self,
        scan: ChunkScan,
        schema: SchemaRef,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.0
            .lock()
            .unwrap()
            .push((scan.clone(), schema.clone(), filters));
        let output = if scan.projected {
            let indices: Vec<usize> = scan.projection.iter().map(|&i| i as usize).collect();
            Arc::new(schema.project(&indices)?)
        } else {
            schema
        };
        Ok(Arc::new(ChunkScanExec::new(scan, output)))
    }
}

fn scan(ctx: &SessionContext, chunks: Vec<u64>, projection: Option<Vec<u32>>) -> ChunkScan {
    ChunkScan {
        table: "sky.object".into(),
        load_id: "20240101-abcdef".into(),
        chunks,
        overlap: false,
        schema: exec::encode_schema(&table()).unwrap(),
        projected: projection.is_some(),
        projection: projection.unwrap_or_default(),
        filters: filters(ctx)
            .iter()
            .map(|f| exec::encode_filter(f).unwrap())
            .collect(),
        ranges: vec![
            IndexRange { from: 0, to: 41 },
            IndexRange {
                from: 1 << 40,
                to: i64::MAX,
            },
        ],
        limit: Some(17),
        replicated: false,
        optional_files: false,
        parts: Vec::new(),
    }
}

/// The czar's placeholder for `scan` of [`table`].
fn leaf(scan: ChunkScan) -> Arc<dyn ExecutionPlan> {
    let output = if scan.projected {
        let indices: Vec<usize> = scan.projection.iter().map(|&i| i as usize).collect();
        Arc::new(table().project(&indices).unwrap())
    } else {
        table()
    };
    Arc::new(ChunkScanExec::new(scan, output))
}

fn show(plan: &Arc<dyn ExecutionPlan>) -> String {
    displayable(plan.as_ref()).indent(true).to_string()
}

type Seen = Vec<(ChunkScan, SchemaRef, Vec<Expr>)>;

/// Encodes and decodes `plan` as czar and worker do; the decoded plan and what the factory was given.
fn round_trip(
    plan: &Arc<dyn ExecutionPlan>,
    ctx: &TaskContext,
) -> Result<(Arc<dyn ExecutionPlan>, Seen)> {
    let bytes = exec::encode_fragment(plan.clone())?;
    let echo = Arc::new(Echo::default());
    let decoded = exec::decode_fragment(&bytes, ctx, echo.clone())?;
    let seen = std::mem::take(&mut *echo.0.lock().unwrap());
    Ok((decoded, seen))
}

#[test]
fn a_chunk_scan_round_trips_with_every_field() {
    let ctx = adql();
    let mut original = scan(&ctx, vec![1024, 1025, 4097], Some(vec![0, 2, 1]));
    original.overlap = true;
    original.optional_files = true;
    original.parts = vec![
        ScanPart {
            chunks: vec![1024, 1030],
            ranges: vec![IndexRange { from: 5, to: 9 }],
            holders: vec!["10.0.0.1:7001".into(), "10.0.0.2:7001".into()],
        },
        ScanPart {
            chunks: vec![1025],
            ranges: Vec::new(),
            holders: Vec::new(),
        },
        ScanPart::default(),
    ];
    let plan = leaf(original.clone());
    let (decoded, seen) = round_trip(&plan, &ctx.task_ctx()).unwrap();

    assert_eq!(show(&decoded), show(&plan));
    assert!(
        show(&plan).contains("3 chunks of sky.object [id, dec, ra], 2 filters, 2 index ranges"),
        "{}",
        show(&plan)
    );
    let node = decoded.downcast_ref::<ChunkScanExec>().unwrap();
    assert_eq!(node.scan, original);
    assert_eq!(decoded.schema(), plan.schema());
    // The worker was given the table's schema (metadata and all) and the filters as they were written.
    let [(scan, schema, decoded_filters)] = &seen[..] else {
        panic!("{} scans decoded", seen.len());
    };
    assert_eq!(scan, &original);
    assert_eq!(schema, &table());
    assert_eq!(decoded_filters, &filters(&ctx));
}

#[test]
fn adql_functions_in_filters_and_projections_round_trip_by_name() {
    let ctx = adql();
    let plan = leaf(scan(&ctx, vec![7, 8], None));
    let schema = DFSchema::try_from(plan.schema().as_ref().clone()).unwrap();
    let physical = |e: Expr| ctx.create_physical_expr(e, &schema).unwrap();
    let point = call(&ctx, "adql_point", vec![col("ra"), col("dec")]);
    let circle = call(&ctx, "adql_circle", vec![lit(10.0), lit(-20.0), lit(1.0)]);
    let predicate = call(&ctx, "adql_contains", vec![point.clone(), circle])
        .eq(lit(1i32))
        .and(col("mag_g").is_not_null());
    let filter = Arc::new(FilterExec::try_new(physical(predicate), plan).unwrap());
    let distance = call(
        &ctx,
        "adql_distance",
        vec![col("ra"), col("dec"), lit(10.0), lit(-20.0)],
    );
    let cell = call(
        &ctx,
        "ivo_healpix_index",
        vec![lit(8i64), col("ra"), col("dec")],
    );
    let projection: Arc<dyn ExecutionPlan> = Arc::new(
        ProjectionExec::try_new(
            vec![
                (physical(col("id")), "id".to_string()),
                (physical(distance), "dist".to_string()),
                (physical(cell), "cell".to_string()),
                (physical(point), "pos".to_string()),
            ],
            filter,
        )
        .unwrap(),
    );

    let (decoded, seen) = round_trip(&projection, &ctx.task_ctx()).unwrap();
    let text = show(&decoded);
    assert_eq!(text, show(&projection));
    for name in [
        "adql_contains(",
        "adql_point(",
        "adql_circle(",
        "adql_distance(",
        "ivo_healpix_index(",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    assert_eq!(decoded.schema(), projection.schema());
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].2, filters(&ctx));

    // A context without ADQL's functions cannot decode it: an error naming what it lacks, not a panic.
    let plain = SessionContext::new();
    let e = round_trip(&projection, &plain.task_ctx()).unwrap_err();
    assert!(e.to_string().contains("adql_"), "{e}");
}

#[test]
fn a_cone_join_round_trips_with_both_inputs() {
    let ctx = adql();
    let left = scan(&ctx, vec![1024, 1025], Some(vec![0, 1, 2]));
    let mut right = scan(&ctx, vec![1024, 1025], Some(vec![1, 2, 3]));
    right.overlap = true;
    right.optional_files = true;
    right.limit = None;
    let spec = ConeJoin {
        left_ra: 1,
        left_dec: 2,
        right_ra: 0,
        right_dec: 1,
        radius: 1.0 / 3600.0 + 1e-13,
    };
    let join: Arc<dyn ExecutionPlan> = Arc::new(
        ConeJoinExec::try_new(leaf(left.clone()), leaf(right.clone()), spec.clone()).unwrap(),
    );
    let (decoded, seen) = round_trip(&join, &ctx.task_ctx()).unwrap();
    assert_eq!(show(&decoded), show(&join));
    assert_eq!(decoded.schema(), join.schema());
    let node = decoded.downcast_ref::<ConeJoinExec>().unwrap();
    assert_eq!(node.spec, spec);
    assert_eq!(node.spec.radius.to_bits(), spec.radius.to_bits());
    let input =
        |p: &Arc<dyn ExecutionPlan>| p.downcast_ref::<ChunkScanExec>().unwrap().scan.clone();
    assert_eq!(input(&node.left), left);
    assert_eq!(input(&node.right), right);
    let scans: Vec<ChunkScan> = seen.into_iter().map(|(s, _, _)| s).collect();
    assert_eq!(scans.len(), 2);
    assert!(scans.contains(&left) && scans.contains(&right));
}

/// `plan` encoded, its root extension node's bytes changed by `change`.
fn tampered(plan: &Arc<dyn ExecutionPlan>, change: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let bytes = exec::encode_fragment(plan.clone()).unwrap();
    let mut node = PhysicalPlanNode::decode(&bytes[..]).unwrap();
    let Some(PhysicalPlanType::Extension(extension)) = node.physical_plan_type.as_mut() else {
        panic!("the root is not one of our nodes");
    };
    change(&mut extension.node);
    node.encode_to_vec()
}

/// Decodes as a worker does.
fn decode(bytes: &[u8]) -> Result<Arc<dyn ExecutionPlan>> {
    exec::decode_fragment(bytes, &adql().task_ctx(), Arc::new(Echo::default()))
}

#[test]
fn bytes_that_are_no_fragment_are_an_error() {
    let ctx = adql();
    let plan = leaf(scan(&ctx, vec![3], None));
    let bytes = exec::encode_fragment(plan.clone()).unwrap();
    assert!(decode(&bytes).is_ok());

    assert!(decode(b"\xff\xfe\x00 not a plan at all").is_err());
    assert!(decode(&[]).is_err());
    assert!(decode(&bytes[..bytes.len() / 2]).is_err());
    // Our node without even its kind byte.
    assert!(decode(&tampered(&plan, |b| b.clear())).is_err());
    // A chunk scan whose message is no protobuf.
    assert!(decode(&tampered(&plan, |b| b.extend([0xff; 3]))).is_err());

    // A cone join whose position columns are not there, or are not doubles.
    let spec = |left_ra, left_dec| ConeJoin {
        left_ra,
        left_dec,
        right_ra: 1,
        right_dec: 2,
        radius: 0.01,
    };
    let join: Arc<dyn ExecutionPlan> = Arc::new(
        ConeJoinExec::try_new(
            leaf(scan(&ctx, vec![3], None)),
            leaf(scan(&ctx, vec![3], None)),
            spec(1, 2),
        )
        .unwrap(),
    );
    assert!(decode(&exec::encode_fragment(join.clone()).unwrap()).is_ok());
    for (ra, dec) in [(0, 2), (1, 3), (1, 99)] {
        let bytes = tampered(&join, |b| {
            *b = [&b[..1], &spec(ra, dec).encode_to_vec()[..]].concat()
        });
        let e = decode(&bytes).unwrap_err().to_string();
        assert!(e.contains("cone join"), "{e}");
    }

    // A chunk scan where no factory can make it (the czar's own codec).
    let e = datafusion_proto::bytes::physical_plan_from_bytes_with_extension_codec(
        &bytes,
        &adql().task_ctx(),
        &exec::Codec::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("cannot run chunk scans"), "{e}");
}

/// The first byte of an extension node says which of our nodes follows: one that names no node of ours must be
/// refused, not read as a chunk scan.
#[test]
fn an_unknown_node_kind_is_an_error() {
    let ctx = adql();
    let plan = leaf(scan(&ctx, vec![3], None));
    for kind in [0u8, 3, 9, 255] {
        let bytes = tampered(&plan, |b| b[0] = kind);
        let e = decode(&bytes).expect_err("an unknown kind is refused");
        assert!(e.to_string().contains("unknown node kind"), "{e}");
    }
    // A chunk scan's kind byte with no body would be a scan of nothing: an empty result instead of an error.
    let bytes = tampered(&plan, |b| b.truncate(1));
    let e = decode(&bytes).expect_err("a scan cut short is refused");
    assert!(e.to_string().contains("cut short"), "{e}");
}
