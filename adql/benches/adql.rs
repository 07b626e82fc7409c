//! Criterion benchmarks: parse + validate + plan of a typical query, and the DISTANCE and cone (CONTAINS(POINT,
//! CIRCLE)) kernels over 10 million rows. Run with `cargo bench -p adql --profile dev` (the dev profile builds this
//! crate at opt-level 3) or with the release profile.

use std::sync::Arc;

use adql::{CatalogTable, Engine, MemoryCatalog};
use arrow::array::{Float64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::datasource::MemTable;

const QUERY: &str = "SELECT TOP 100 o.id, o.ra, o.dec, o.mag, DISTANCE(POINT(o.ra, o.dec), POINT(10.68, 41.27)) AS d
FROM cat.obj AS o
WHERE CONTAINS(POINT('ICRS', o.ra, o.dec), CIRCLE('ICRS', 10.68, 41.27, 0.5)) = 1
  AND o.mag BETWEEN 12 AND 18
ORDER BY d";

fn positions(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut s = 0x9E3779B97F4A7C15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| (next() * 360.0, (next() * 2.0 - 1.0).asin().to_degrees()))
        .unzip()
}

fn plan(c: &mut Criterion) {
    let schema = Arc::new(Schema::new(
        ["id", "ra", "dec", "mag"]
            .iter()
            .map(|n| Field::new(*n, DataType::Float64, true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        (0..4)
            .map(|_| Arc::new(Float64Array::from(vec![1.0])) as _)
            .collect(),
    )
    .unwrap();
    let mut catalog = MemoryCatalog::new();
    let provider = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
    catalog.add(CatalogTable::new("cat", "obj", Arc::new(provider)).unwrap());
    let engine = Engine::new(Arc::new(catalog));
    let state = engine.session();
    c.bench_function("parse_validate_plan_5_line_query", |b| {
        b.iter(|| engine.plan(QUERY, &state).unwrap())
    });
    c.bench_function("parse_validate_only", |b| {
        b.iter(|| adql::check(QUERY).unwrap())
    });
}

fn kernels(c: &mut Criterion) {
    let n = 10_000_000;
    let (ra, dec) = positions(n);
    let mut group = c.benchmark_group("kernels_10M_rows");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));
    let mut out_f = Vec::with_capacity(n);
    group.bench_function("distance", |b| {
        b.iter(|| {
            out_f.clear();
            adql::udf::distance_kernel(&ra, &dec, 10.68, 41.27, &mut out_f);
        })
    });
    let mut out_i = Vec::with_capacity(n);
    group.bench_function("contains_point_circle_r0.5", |b| {
        b.iter(|| {
            out_i.clear();
            adql::udf::cone_kernel(&ra, &dec, 10.68, 41.27, 0.5, &mut out_i);
        })
    });
    group.bench_function("contains_point_circle_r30", |b| {
        b.iter(|| {
            out_i.clear();
            adql::udf::cone_kernel(&ra, &dec, 10.68, 41.27, 30.0, &mut out_i);
        })
    });
    group.finish();
}

criterion_group!(benches, plan, kernels);
criterion_main!(benches);
