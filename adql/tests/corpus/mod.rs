//! The ADQL corpus: the small deterministic tables the `tests/cases/*.adql` queries run over, the renderer of their
//! expected results, and the case-file parser. Shared by `adql/tests/cases.rs` (single node) and the root package's
//! `tests/corpus_cluster.rs` (the same cases through a cluster).
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use adql::{CatalogTable, MemoryCatalog};
use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float64Array, Int32Array, Int64Array, ListArray,
    RecordBatch, StringArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Float64Type, Schema};
use datafusion::datasource::MemTable;

/// A deterministic generator (xorshift64*), so the tables are the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545F4914F6CDD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn field(name: &str, dt: DataType, meta: &[(&str, &str)]) -> Field {
    let m: HashMap<String, String> = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Field::new(name, dt, true).with_metadata(m)
}

/// `cat.stars`: 200 stars, among them stars at both poles, at RA 0 and just below 360, and NULL magnitudes.
pub fn stars() -> RecordBatch {
    let mut rng = Rng(0x9E3779B97F4A7C15);
    let n = 200;
    let mut ra = Vec::new();
    let mut dec = Vec::new();
    for i in 0..n {
        let (r, d) = match i {
            0 => (0.0, 90.0),
            1 => (123.0, -90.0),
            2 => (0.0, 0.0),
            3 => (359.9999, 0.5),
            4 => (0.0001, -0.5),
            5 => (180.0, 45.0),
            _ => (
                rng.next() * 360.0,
                (rng.next() * 2.0 - 1.0).asin().to_degrees(),
            ),
        };
        ra.push((r * 1e6f64).round() / 1e6);
        dec.push((d * 1e6f64).round() / 1e6);
    }
    let mag: Vec<Option<f64>> = (0..n)
        .map(|i| {
            if i % 17 == 5 {
                None
            } else {
                Some(((4.0 + rng.next() * 14.0) * 1000.0).round() / 1000.0)
            }
        })
        .collect();
    let pm_ra: Vec<f64> = (0..n)
        .map(|_| ((rng.next() - 0.5) * 200.0 * 100.0).round() / 100.0)
        .collect();
    let pm_dec: Vec<f64> = (0..n)
        .map(|_| ((rng.next() - 0.5) * 200.0 * 100.0).round() / 100.0)
        .collect();
    let plx: Vec<f64> = (0..n)
        .map(|_| (rng.next() * 50.0 * 1000.0).round() / 1000.0)
        .collect();
    let flags: Vec<i32> = (0..n).map(|i| (i * 37 % 16) as i32).collect();
    let names: Vec<Option<String>> = (0..n)
        .map(|i| {
            if i % 23 == 7 {
                None
            } else {
                Some(format!("{}-{}", ["HD", "HIP", "Gaia"][i % 3], 1000 + i))
            }
        })
        .collect();
    let schema = Schema::new(vec![
        field(
            "id",
            DataType::Int64,
            &[
                ("ucd", "meta.id;meta.main"),
                ("description", "star identifier"),
            ],
        ),
        field(
            "ra",
            DataType::Float64,
            &[("unit", "deg"), ("ucd", "pos.eq.ra;meta.main")],
        ),
        field(
            "dec",
            DataType::Float64,
            &[("unit", "deg"), ("ucd", "pos.eq.dec;meta.main")],
        ),
        field("mag", DataType::Float64, &[("unit", "mag")]),
        field("pm_ra", DataType::Float64, &[("unit", "mas/yr")]),
        field("pm_dec", DataType::Float64, &[("unit", "mas/yr")]),
        field("parallax", DataType::Float64, &[("unit", "mas")]),
        field("flags", DataType::Int32, &[]),
        field("Name", DataType::Utf8, &[]),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from_iter_values(0..n as i64)),
            Arc::new(Float64Array::from(ra)),
            Arc::new(Float64Array::from(dec)),
            Arc::new(Float64Array::from(mag)),
            Arc::new(Float64Array::from(pm_ra)),
            Arc::new(Float64Array::from(pm_dec)),
            Arc::new(Float64Array::from(plx)),
            Arc::new(Int32Array::from(flags)),
            Arc::new(StringArray::from(names)),
        ],
    )
    .unwrap()
}

/// `cat.obs`: 3 observations per star for the first 60 stars, in bands g, r, i.
pub fn obs() -> RecordBatch {
    let mut rng = Rng(42);
    let mut id = Vec::new();
    let mut star = Vec::new();
    let mut band = Vec::new();
    let mut flux = Vec::new();
    let mut mjd = Vec::new();
    for s in 0..60i64 {
        for (k, b) in ["g", "r", "i"].iter().enumerate() {
            id.push(s * 10 + k as i64);
            star.push(s);
            band.push(*b);
            flux.push(if (s + k as i64) % 11 == 0 {
                None
            } else {
                Some((rng.next() * 1000.0).round() / 10.0)
            });
            mjd.push(((58000.0 + rng.next() * 1000.0) * 100.0).round() / 100.0);
        }
    }
    let schema = Schema::new(vec![
        field("obs_id", DataType::Int64, &[]),
        field("star_id", DataType::Int64, &[]),
        field("band", DataType::Utf8, &[]),
        field("flux", DataType::Float64, &[("unit", "mJy")]),
        field("mjd", DataType::Float64, &[("unit", "d")]),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from(id)),
            Arc::new(Int64Array::from(star)),
            Arc::new(StringArray::from(band)),
            Arc::new(Float64Array::from(flux)),
            Arc::new(Float64Array::from(mjd)),
        ],
    )
    .unwrap()
}

/// `cat.fields`: survey fields with a polygon footprint and a centre point column.
pub fn fields() -> RecordBatch {
    let item = Arc::new(Field::new_list_field(DataType::Float64, true));
    let footprints: Vec<Vec<f64>> = vec![
        vec![0.0, 0.0, 20.0, 0.0, 20.0, 20.0, 0.0, 20.0],
        vec![350.0, -10.0, 10.0, -10.0, 10.0, 10.0, 350.0, 10.0],
        vec![0.0, 70.0, 90.0, 70.0, 180.0, 70.0, 270.0, 70.0],
        vec![100.0, -30.0, 140.0, -30.0, 120.0, 0.0],
    ];
    let centers = [10.0, 10.0, 0.0, 0.0, 0.0, 90.0, 120.0, -20.0];
    let lengths: Vec<usize> = footprints.iter().map(Vec::len).collect();
    let values: Vec<f64> = footprints.concat();
    let poly = ListArray::new(
        item.clone(),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(Float64Array::from(values)),
        None,
    );
    let point = FixedSizeListArray::new(
        item.clone(),
        2,
        Arc::new(Float64Array::from(centers.to_vec())),
        None,
    );
    let schema = Schema::new(vec![
        field("field_id", DataType::Int32, &[]),
        field("footprint", poly.data_type().clone(), &[]),
        field("center", point.data_type().clone(), &[]),
        field("label", DataType::Utf8, &[]),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int32Array::from(vec![1, 2, 3, 4])),
            Arc::new(poly),
            Arc::new(point),
            Arc::new(StringArray::from(vec![
                "square",
                "across RA 0",
                "north cap",
                "triangle",
            ])),
        ],
    )
    .unwrap()
}

pub fn catalog() -> MemoryCatalog {
    let mut catalog = MemoryCatalog::new();
    for (name, batch) in [("stars", stars()), ("obs", obs()), ("fields", fields())] {
        let provider = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
        catalog.add(CatalogTable::new("cat", name, Arc::new(provider)).unwrap());
    }
    catalog
}

/// A query's answer on one node, rendered as the cases record it (an error as `ERROR message`).
pub async fn answer(engine: &adql::Engine, query: &str) -> String {
    match engine.collect(query).await {
        Ok(batches) => render(&batches).trim_end().to_string(),
        Err(e) => format!("ERROR {e}"),
    }
}

/// Results as text: a header, then one line per row; floats to 9 significant digits so that results do not
/// depend on the last bit of a libm.
pub fn render(batches: &[RecordBatch]) -> String {
    let mut out = String::new();
    let Some(first) = batches.first() else {
        return "(no rows)\n".into();
    };
    let names: Vec<String> = first
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    writeln!(out, "{}", names.join(" | ")).unwrap();
    let mut rows = 0;
    for b in batches {
        for r in 0..b.num_rows() {
            let cells: Vec<String> = b.columns().iter().map(|c| cell(c, r)).collect();
            writeln!(out, "{}", cells.join(" | ")).unwrap();
            rows += 1;
        }
    }
    if rows == 0 {
        out.push_str("(no rows)\n");
    }
    out
}

fn float(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if v.is_nan() {
        return "NaN".into();
    }
    let s = format!("{:.8e}", v);
    let parsed: f64 = s.parse().unwrap();
    let plain = format!("{parsed}");
    if plain.len() <= 16 { plain } else { s }
}

fn cell(a: &ArrayRef, r: usize) -> String {
    // A NullArray (the type of a bare NULL) has no validity buffer: every value is NULL all the same.
    if a.is_null(r) || a.data_type() == &DataType::Null {
        return "NULL".into();
    }
    match a.data_type() {
        DataType::Float64 => float(a.as_primitive::<Float64Type>().value(r)),
        DataType::Float32 => {
            float(a.as_primitive::<arrow::datatypes::Float32Type>().value(r) as f64)
        }
        DataType::FixedSizeList(..) | DataType::List(_) => {
            let v = match a.data_type() {
                DataType::List(_) => a.as_list::<i32>().value(r),
                _ => a.as_fixed_size_list().value(r),
            };
            let v = v.as_primitive::<Float64Type>();
            format!(
                "({})",
                v.values()
                    .iter()
                    .map(|x| float(*x))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
        _ => arrow::util::display::ArrayFormatter::try_new(a.as_ref(), &Default::default())
            .unwrap()
            .value(r)
            .to_string(),
    }
}

pub struct Case {
    pub name: String,
    pub query: String,
    pub expected: String,
}

pub fn parse_cases(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for block in text.split("\n== ").map(|b| b.trim_start_matches("== ")) {
        if block.trim().is_empty() || block.starts_with('#') {
            continue;
        }
        let (name, rest) = block.split_once('\n').unwrap_or((block, ""));
        let (query, expected) = rest.split_once("\n--- expect\n").unwrap_or((rest, ""));
        cases.push(Case {
            name: name.trim().into(),
            query: query.trim().into(),
            expected: expected.trim_end().into(),
        });
    }
    cases
}
