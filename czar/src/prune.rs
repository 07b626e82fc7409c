//! Every pruning rule: which chunks a query can touch. A scan of a chunked table reads only the chunks its
//! filters leave (see [`prune`]); an uploaded list cross-matched with a table reads only the chunks the
//! list's cones touch ([`chunks_near`]).
//!
//! Pruning looks at the filters DataFusion pushes into the scan (after constant folding):
//! - a cone on the director's own position columns, `adql_contains_point_circle(ra, dec, a, d, r) = 1` (what the
//!   translator makes of `CONTAINS(POINT(ra, dec), CIRCLE(a, d, r)) = 1`) or `adql_distance(ra, dec, a, d) < r`
//!   (also `<=`, either argument order), recognised by [`within_radius`]: the chunks the cone touches, and
//!   depth-29 index ranges so workers skip row groups;
//! - `CONTAINS(POINT(ra, dec), BOX|POLYGON|CIRCLE) = 1` (also INTERSECTS) and ORs of such constraints;
//! - `id = v`, `id IN (v, ...)` and small id ranges on a director's id (or a child's director key): the chunks the
//!   secondary index names.
//!
//! Conditions ANDed at the top level each narrow the set; anything else keeps every chunk. Pruning only ever removes
//! chunks that cannot hold a qualifying row: the filters themselves still run on the workers.

use std::collections::BTreeSet;

use arrow::array::{Array, RecordBatch};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use metastore::{MetaStore, TableKind, TableRecord};
use partitioner::ChunkMap;
use protocol::IndexRange;

/// A literal as f64.
fn number(e: &Expr) -> Option<f64> {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::Float64(Some(x)) => Some(*x),
            ScalarValue::Float32(Some(x)) => Some(*x as f64),
            ScalarValue::Int64(Some(x)) => Some(*x as f64),
            ScalarValue::Int32(Some(x)) => Some(*x as f64),
            _ => None,
        },
        Expr::Cast(c) => number(&c.expr),
        Expr::TryCast(c) => number(&c.expr),
        _ => None,
    }
}

fn integer(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::Int64(Some(x)) => Some(*x),
            ScalarValue::Int32(Some(x)) => Some(*x as i64),
            ScalarValue::Int16(Some(x)) => Some(*x as i64),
            ScalarValue::UInt32(Some(x)) => Some(*x as i64),
            ScalarValue::UInt64(Some(x)) => i64::try_from(*x).ok(),
            _ => None,
        },
        Expr::Cast(c) => integer(&c.expr),
        _ => None,
    }
}

fn column_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        Expr::Cast(c) => column_name(&c.expr),
        _ => None,
    }
}

/// A comparison that confines two positions to within a radius of each other, over any kind of expression
/// (logical at pruning, physical at co-location): `adql_contains_point_circle(ra1, dec1, ra2, dec2, r) = 1` (what
/// the translator makes of `CONTAINS(POINT, CIRCLE) = 1`) or `adql_distance(ra1, dec1, ra2, dec2) < r` (also `<=`,
/// or the bound on the left with `>`, `>=`). Returns the four coordinate arguments and the radius in degrees.
pub(crate) fn within_radius<'a, E>(
    op: Operator,
    left: &'a E,
    right: &'a E,
    call: impl Fn(&'a E) -> Option<(&'a str, &'a [E])>,
    value: impl Fn(&E) -> Option<f64>,
) -> Option<(&'a [E], f64)> {
    match op {
        Operator::Eq => {
            let ((name, args), other) = match (call(left), call(right)) {
                (Some(f), None) => (f, right),
                (None, Some(f)) => (f, left),
                _ => return None,
            };
            (name == "adql_contains_point_circle" && args.len() == 5 && value(other) == Some(1.0))
                .then_some(())?;
            Some((&args[..4], value(&args[4])?))
        }
        Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
            let (call_side, bound) = match op {
                Operator::Lt | Operator::LtEq => (left, right),
                _ => (right, left),
            };
            let (name, args) = call(call_side)?;
            (name == "adql_distance" && args.len() == 4).then_some(())?;
            Some((args, value(bound)?))
        }
        _ => None,
    }
}

/// A cone (ra, dec, radius in degrees) that `e` confines the rows' `(ra, dec)` to.
fn cone_of(e: &Expr, ra: &str, dec: &str) -> Option<(f64, f64, f64)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return None;
    };
    fn call(e: &Expr) -> Option<(&str, &[Expr])> {
        match e {
            Expr::ScalarFunction(f) => Some((f.func.name(), f.args.as_slice())),
            _ => None,
        }
    }
    let (args, r) = within_radius(*op, left.as_ref(), right.as_ref(), call, number)?;
    let is_position =
        |pair: &[Expr]| column_name(&pair[0]) == Some(ra) && column_name(&pair[1]) == Some(dec);
    if is_position(&args[..2]) {
        Some((number(&args[2])?, number(&args[3])?, r))
    } else if is_position(&args[2..]) {
        Some((number(&args[0])?, number(&args[1])?, r))
    } else {
        None
    }
}

/// A sky region a filter confines rows to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Region {
    Cone(f64, f64, f64),
    /// Vertices in degrees (BOX arrives as its four corners).
    Polygon(Vec<(f64, f64)>),
    /// Any of these (an OR of constraints).
    Union(Vec<Region>),
}

/// The numbers of a list literal (a geometry value: a circle's center and radius, a polygon's vertices).
fn numbers(e: &Expr) -> Option<Vec<f64>> {
    let Expr::Literal(v, _) = e else {
        return None;
    };
    let values = match v {
        ScalarValue::List(a) if a.len() == 1 => a.value(0),
        ScalarValue::LargeList(a) if a.len() == 1 => a.value(0),
        ScalarValue::FixedSizeList(a) if a.len() == 1 => a.value(0),
        _ => return None,
    };
    let values = arrow::compute::cast(&values, &arrow::datatypes::DataType::Float64).ok()?;
    let values = values
        .as_any()
        .downcast_ref::<arrow::array::Float64Array>()?;
    if values.null_count() > 0 {
        return None;
    }
    Some(values.values().to_vec())
}

/// The region `e` confines the rows' (ra, dec) to: a cone ([`cone_of`]), `CONTAINS(POINT, BOX|POLYGON|CIRCLE) = 1`
/// (also INTERSECTS, which is the same for a point), or an OR of such constraints.
#[recursive::recursive]
fn region_of(e: &Expr, ra: &str, dec: &str) -> Option<Region> {
    if let Some((a, d, r)) = cone_of(e, ra, dec) {
        return Some(Region::Cone(a, d, r));
    }
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return None;
    };
    match op {
        Operator::Or => {
            let (l, r) = (region_of(left, ra, dec)?, region_of(right, ra, dec)?);
            let mut parts = Vec::new();
            for part in [l, r] {
                match part {
                    Region::Union(p) => parts.extend(p),
                    other => parts.push(other),
                }
            }
            Some(Region::Union(parts))
        }
        Operator::Eq => {
            let (f, value) = match (left.as_ref(), right.as_ref()) {
                (Expr::ScalarFunction(f), v) | (v, Expr::ScalarFunction(f))
                    if number(v) == Some(1.0) =>
                {
                    (f, v)
                }
                _ => return None,
            };
            let _ = value;
            if !matches!(f.func.name(), "adql_contains" | "adql_intersects") || f.args.len() != 2 {
                return None;
            }
            let Expr::ScalarFunction(point) = &f.args[0] else {
                return None;
            };
            if point.func.name() != "adql_point"
                || point.args.len() != 2
                || column_name(&point.args[0]) != Some(ra)
                || column_name(&point.args[1]) != Some(dec)
            {
                return None;
            }
            let v = numbers(&f.args[1])?;
            if !v.iter().all(|x| x.is_finite()) {
                return None;
            }
            match v.len() {
                3 => Some(Region::Cone(v[0], v[1], v[2])),
                n if n >= 6 && n % 2 == 0 => {
                    Some(Region::Polygon(v.chunks(2).map(|p| (p[0], p[1])).collect()))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

impl Region {
    fn chunks(&self, map: &ChunkMap) -> BTreeSet<u64> {
        match self {
            Region::Cone(a, d, r) => map.cone(*a, *d, *r).iter().map(|c| c.0).collect(),
            Region::Polygon(v) => map.polygon(v).iter().map(|c| c.0).collect(),
            Region::Union(parts) => parts.iter().flat_map(|p| p.chunks(map)).collect(),
        }
    }

    fn index_ranges(&self) -> Vec<IndexRange> {
        let cone = |a: f64, d: f64, r: f64| {
            partitioner::map::cone_index_ranges(a, d, r)
                .into_iter()
                .map(|(from, to)| IndexRange {
                    from: from as i64,
                    to: to as i64,
                })
                .collect::<Vec<_>>()
        };
        match self {
            Region::Cone(a, d, r) => cone(*a, *d, *r),
            Region::Polygon(v) => {
                let (a, d, r) = partitioner::map::bounding_cone(v);
                cone(a, d, r)
            }
            Region::Union(parts) => parts.iter().flat_map(|p| p.index_ranges()).collect(),
        }
    }

    fn valid(&self) -> bool {
        match self {
            Region::Cone(a, d, r) => a.is_finite() && d.is_finite() && r.is_finite() && *r >= 0.0,
            Region::Polygon(v) => v.len() >= 3,
            Region::Union(parts) => parts.iter().all(Region::valid),
        }
    }
}

/// The ids `e` confines a column to (`col = v`, `col IN (...)`, ORs of those, a short `BETWEEN`).
fn ids_of(e: &Expr, column: &str) -> Option<Vec<i64>> {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            if column_name(left) == Some(column) {
                Some(vec![integer(right)?])
            } else if column_name(right) == Some(column) {
                Some(vec![integer(left)?])
            } else {
                None
            }
        }
        // DataFusion writes a short `IN` list as an OR of equalities; walked without recursion (a query may OR
        // thousands of terms).
        Expr::BinaryExpr(BinaryExpr {
            op: Operator::Or, ..
        }) => {
            let mut ids = Vec::new();
            let mut pending = vec![e];
            while let Some(term) = pending.pop() {
                match term {
                    Expr::BinaryExpr(BinaryExpr {
                        left,
                        op: Operator::Or,
                        right,
                    }) => {
                        pending.push(right);
                        pending.push(left);
                    }
                    other => ids.extend(ids_of(other, column)?),
                }
                if ids.len() > MAX_ID_LOOKUPS {
                    return None;
                }
            }
            Some(ids)
        }
        Expr::InList(list) if !list.negated && column_name(&list.expr) == Some(column) => {
            list.list.iter().map(integer).collect()
        }
        Expr::Between(b) if !b.negated && column_name(&b.expr) == Some(column) => {
            id_span(integer(&b.low)?, integer(&b.high)?)
        }
        _ => None,
    }
}

/// The ids from `low` to `high` when there are few enough to look up one by one.
fn id_span(low: i64, high: i64) -> Option<Vec<i64>> {
    if high < low {
        return Some(Vec::new());
    }
    (high.checked_sub(low)? < MAX_ID_LOOKUPS as i64).then(|| (low..=high).collect())
}

/// More ids than this are not looked up in the secondary index (the scan prunes nothing then).
const MAX_ID_LOOKUPS: usize = 10_000;

/// A bound `e` puts on an integer column: (lower, upper), inclusive.
fn id_bound(e: &Expr, column: &str) -> Option<(Option<i64>, Option<i64>)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return None;
    };
    let (op, value) = if column_name(left) == Some(column) {
        (*op, integer(right)?)
    } else if column_name(right) == Some(column) {
        (op.swap()?, integer(left)?)
    } else {
        return None;
    };
    match op {
        Operator::GtEq => Some((Some(value), None)),
        Operator::Gt => Some((value.checked_add(1), None)),
        Operator::LtEq => Some((None, Some(value))),
        Operator::Lt => Some((None, value.checked_sub(1))),
        _ => None,
    }
}

/// Splits top-level ANDs.
#[recursive::recursive]
fn conjuncts(e: &Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        other => out.push(other.clone()),
    }
}

/// What pruning decided for one scan.
#[derive(Debug, Default)]
pub struct Pruning {
    pub chunks: Vec<u64>,
    pub ranges: Vec<IndexRange>,
}

/// What pruning needs to know of a table.
pub struct Target<'a> {
    pub record: &'a TableRecord,
    /// A child's director (its key is looked up in the director's secondary index).
    pub director: Option<&'a TableRecord>,
    pub map: Option<&'a ChunkMap>,
    /// The chunks that hold rows.
    pub chunks: &'a [u64],
    pub store: &'a MetaStore,
}

/// The chunks (and index ranges) a scan of `t` with these filters needs.
pub fn prune(t: &Target, filters: &[Expr]) -> Pruning {
    let mut keep: BTreeSet<u64> = t.chunks.iter().copied().collect();
    let mut ranges = Vec::new();
    let mut parts = Vec::new();
    for f in filters {
        conjuncts(f, &mut parts);
    }
    let (ra, dec, id_column, index_table) = match &t.record.kind {
        TableKind::Director { ra, dec, id } => (
            Some(ra.to_lowercase()),
            Some(dec.to_lowercase()),
            Some(id.to_lowercase()),
            Some(t.record),
        ),
        TableKind::Child { key, .. } => (None, None, Some(key.to_lowercase()), t.director),
        TableKind::Replicated => (None, None, None, None),
    };
    // Bounds on the id (or a child's key) from `>=`/`<=` conjuncts: a small range goes through the index.
    let (mut low, mut high): (Option<i64>, Option<i64>) = (None, None);
    for p in &parts {
        if let (Some(ra), Some(dec), Some(map)) = (&ra, &dec, t.map)
            && let Some(region) = region_of(p, ra, dec)
        {
            if !region.valid() {
                keep.clear();
                continue;
            }
            let touched = region.chunks(map);
            keep.retain(|c| touched.contains(c));
            if ranges.is_empty() {
                ranges = region.index_ranges();
            }
        }
        if let Some(column) = &id_column
            && let Some((lo, hi)) = id_bound(p, column)
        {
            low = low.max(lo);
            high = match (high, hi) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        if let (Some(column), Some(table)) = (&id_column, index_table)
            && let Some(ids) = ids_of(p, column)
            && ids.len() <= MAX_ID_LOOKUPS
            && let Ok(found) = t
                .store
                .lookup_many(&table.qualified_name(), &table.load_id, &ids)
        {
            let touched: BTreeSet<u64> = found.into_iter().flatten().map(|c| c.0).collect();
            keep.retain(|c| touched.contains(c));
        }
    }
    if let (Some(lo), Some(hi), Some(table)) = (low, high, index_table)
        && let Some(ids) = id_span(lo, hi)
        && let Ok(found) = t
            .store
            .lookup_many(&table.qualified_name(), &table.load_id, &ids)
    {
        let touched: BTreeSet<u64> = found.into_iter().flatten().map(|c| c.0).collect();
        keep.retain(|c| touched.contains(c));
    }
    Pruning {
        chunks: keep.into_iter().collect(),
        ranges,
    }
}

/// The chunks of `map` within `radius` degrees of the positions in columns `ra` and `dec` of `rows` (an uploaded
/// list); None if a column is not numeric. Rows without a finite position match nothing and touch no chunk.
pub fn chunks_near(
    map: &ChunkMap,
    rows: &[RecordBatch],
    ra: usize,
    dec: usize,
    radius: f64,
) -> Option<BTreeSet<u64>> {
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Float64Type};
    let mut touched = BTreeSet::new();
    for b in rows {
        let ras = arrow::compute::cast(b.column(ra), &DataType::Float64).ok()?;
        let decs = arrow::compute::cast(b.column(dec), &DataType::Float64).ok()?;
        let (ras, decs) = (
            ras.as_primitive::<Float64Type>(),
            decs.as_primitive::<Float64Type>(),
        );
        for i in 0..b.num_rows() {
            if ras.is_null(i) || decs.is_null(i) {
                continue;
            }
            let (a, d) = (ras.value(i), decs.value(i));
            if !a.is_finite() || !d.is_finite() {
                continue;
            }
            touched.extend(map.cone(a, d, radius).into_iter().map(|c| c.0));
        }
    }
    Some(touched)
}
