//! Catalog tables as the czar plans them: [`DistributedTable`] scans become [`ChunkScanExec`] leaves, pruned to the
//! chunks a query can touch.
//!
//! Pruning looks at the filters DataFusion pushes into the scan (after constant folding):
//! - a cone on the director's own position columns, `adql_contains_point_circle(ra, dec, a, d, r) = 1` (what the
//!   translator makes of `CONTAINS(POINT(ra, dec), CIRCLE(a, d, r)) = 1`) or `adql_distance(ra, dec, a, d) < r`
//!   (also `<=`, either argument order): the chunks the cone touches, and depth-29 index ranges so workers skip
//!   row groups;
//! - `id = v` or `id IN (v, ...)` on a director's id (or a child's director key): the chunks the secondary index
//!   names.
//!
//! Conditions ANDed at the top level each narrow the set; anything else keeps every chunk. Pruning only ever removes
//! chunks that cannot hold a qualifying row: the filters themselves still run on the workers.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use arrow::array::Array;
use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result as DfResult, ScalarValue};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use metastore::{MetaStore, TableKind, TableRecord};
use partitioner::{ChunkId, ChunkMap};
use protocol::{ChunkScan, ChunkScanExec, IndexRange};

/// A published table and the chunks that hold its rows.
#[derive(Debug)]
pub struct TableInfo {
    pub record: TableRecord,
    /// Visible columns: lower-case names, no `_hpx29`.
    pub schema: SchemaRef,
    /// `schema` as chunk scans carry it (encoded once, not per query).
    pub schema_proto: Vec<u8>,
    /// Chunks with a file (0: a child's orphans).
    pub chunks: Vec<u64>,
    pub map: Option<ChunkMap>,
    /// The director's record (child tables): for index lookups by the key.
    pub director: Option<TableRecord>,
    pub store: Arc<MetaStore>,
    /// Where a shipped table's chunks are (`skyshard load`): chunk -> worker addresses; empty otherwise.
    pub placement: Arc<std::collections::HashMap<u64, Vec<String>>>,
}

/// Reads a published table's schema and chunk list from its files in `data_dir`.
pub fn load_table(
    data_dir: &Path,
    store: &Arc<MetaStore>,
    record: &TableRecord,
) -> Result<TableInfo, String> {
    let files = loader::ingest::current_files(data_dir, record).map_err(|e| e.to_string())?;
    let chunks: BTreeSet<u64> = match record.kind {
        TableKind::Replicated => BTreeSet::new(),
        _ => files
            .iter()
            .filter_map(|f| {
                let name = f.file_name()?.to_str()?;
                if name == loader::partition::ORPHANS_FILE {
                    Some(0)
                } else {
                    name.trim_end_matches(".parquet").parse().ok()
                }
            })
            .collect(),
    };
    let schema = match files.first() {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let builder =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            visible_schema(builder.schema(), record)
        }
        None => Arc::new(Schema::empty()),
    };
    let map = if record.chunks.is_empty() {
        None
    } else {
        Some(
            ChunkMap::from_chunks(record.chunks.iter().map(|&c| ChunkId(c)).collect())
                .map_err(|e| e.to_string())?,
        )
    };
    let director = match &record.kind {
        TableKind::Child { director, .. } => store.table(director).map_err(|e| e.to_string())?,
        _ => None,
    };
    let schema_proto = protocol::encode_schema(&schema).map_err(|e| e.to_string())?;
    Ok(TableInfo {
        record: record.clone(),
        schema,
        schema_proto,
        chunks: chunks.into_iter().collect(),
        map,
        director,
        store: store.clone(),
        placement: Arc::new(record.placement.iter().cloned().collect()),
    })
}

/// The file schema without `_hpx29`, names lower-cased, metadata from the table record (TAP metadata).
fn visible_schema(file: &SchemaRef, record: &TableRecord) -> SchemaRef {
    let fields: Vec<_> = file
        .fields()
        .iter()
        .filter(|f| f.name() != "_hpx29")
        .map(|f| {
            let name = f.name().to_lowercase();
            let mut meta = f.metadata().clone();
            if &name != f.name() {
                // How the data spells it: a delimited identifier ("Name") must match this exactly.
                meta.insert("original_name".into(), f.name().clone());
            }
            // Position and id columns of a director, and a child's key, are indexed (HEALPix order of the chunk
            // files, the secondary index) and principal.
            let key_column = match &record.kind {
                TableKind::Director { ra, dec, id } => {
                    [ra, dec, id].iter().any(|c| c.to_lowercase() == name)
                }
                TableKind::Child { key, .. } => key.to_lowercase() == name,
                TableKind::Replicated => false,
            };
            let (mut indexed, mut principal) = (key_column, key_column);
            if let Some(c) = record.columns.iter().find(|c| c.name == name) {
                for (k, v) in [
                    ("description", &c.description),
                    ("unit", &c.unit),
                    ("ucd", &c.ucd),
                ] {
                    if let Some(v) = v {
                        meta.insert(k.to_string(), v.clone());
                    }
                }
                indexed |= c.indexed;
                principal |= c.principal;
            }
            for (k, on) in [("indexed", indexed), ("principal", principal)] {
                if on {
                    meta.insert(k.to_string(), "1".to_string());
                }
            }
            f.as_ref().clone().with_name(name).with_metadata(meta)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// A table spread over the cluster's chunks.
#[derive(Debug)]
pub struct DistributedTable {
    pub info: Arc<TableInfo>,
}

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

/// A cone (ra, dec, radius in degrees) that `e` confines the rows to.
fn cone_of(e: &Expr, ra: &str, dec: &str) -> Option<(f64, f64, f64)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return None;
    };
    let is_position =
        |args: &[Expr]| column_name(&args[0]) == Some(ra) && column_name(&args[1]) == Some(dec);
    let call = |e: &Expr| match e {
        Expr::ScalarFunction(f) => Some((f.func.name().to_string(), f.args.clone())),
        _ => None,
    };
    match op {
        Operator::Eq => {
            let (f, value) = match (call(left), call(right)) {
                (Some(f), None) => (f, right.as_ref()),
                (None, Some(f)) => (f, left.as_ref()),
                _ => return None,
            };
            if f.0 == "adql_contains_point_circle"
                && f.1.len() == 5
                && is_position(&f.1)
                && number(value) == Some(1.0)
            {
                return Some((number(&f.1[2])?, number(&f.1[3])?, number(&f.1[4])?));
            }
            None
        }
        Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
            let (f, bound) = match (op, call(left), call(right)) {
                (Operator::Lt | Operator::LtEq, Some(f), None) => (f, right.as_ref()),
                (Operator::Gt | Operator::GtEq, None, Some(f)) => (f, left.as_ref()),
                _ => return None,
            };
            if f.0 != "adql_distance" || f.1.len() != 4 {
                return None;
            }
            let r = number(bound)?;
            if column_name(&f.1[0]) == Some(ra) && column_name(&f.1[1]) == Some(dec) {
                Some((number(&f.1[2])?, number(&f.1[3])?, r))
            } else if column_name(&f.1[2]) == Some(ra) && column_name(&f.1[3]) == Some(dec) {
                Some((number(&f.1[0])?, number(&f.1[1])?, r))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A sky region a filter confines rows to.
#[derive(Debug, Clone, PartialEq)]
enum Region {
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

/// The ids `e` confines a column to (`col = v`, `col IN (...)`).
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

impl TableInfo {
    /// The chunks (and index ranges) a scan with these filters needs.
    pub fn prune(&self, filters: &[Expr]) -> Pruning {
        let mut keep: BTreeSet<u64> = self.chunks.iter().copied().collect();
        let mut ranges = Vec::new();
        let mut parts = Vec::new();
        for f in filters {
            conjuncts(f, &mut parts);
        }
        let (ra, dec, id_column, index_table) = match &self.record.kind {
            TableKind::Director { ra, dec, id } => (
                Some(ra.to_lowercase()),
                Some(dec.to_lowercase()),
                Some(id.to_lowercase()),
                Some(&self.record),
            ),
            TableKind::Child { key, .. } => {
                (None, None, Some(key.to_lowercase()), self.director.as_ref())
            }
            TableKind::Replicated => (None, None, None, None),
        };
        // Bounds on the id (or a child's key) from `>=`/`<=` conjuncts: a small range goes through the index.
        let (mut low, mut high): (Option<i64>, Option<i64>) = (None, None);
        for p in &parts {
            if let (Some(ra), Some(dec), Some(map)) = (&ra, &dec, &self.map)
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
                && let Ok(found) =
                    self.store
                        .lookup_many(&table.qualified_name(), &table.load_id, &ids)
            {
                let touched: BTreeSet<u64> = found.into_iter().flatten().map(|c| c.0).collect();
                keep.retain(|c| touched.contains(c));
            }
        }
        if let (Some(lo), Some(hi), Some(table)) = (low, high, index_table)
            && let Some(ids) = id_span(lo, hi)
            && let Ok(found) = self
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
}

/// Drops table qualifiers: workers see bare column names.
fn unqualified(e: &Expr) -> DfResult<Expr> {
    Ok(e.clone()
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) if c.relation.is_some() => {
                    Transformed::yes(Expr::Column(Column::from_name(c.name)))
                }
                other => Transformed::no(other),
            })
        })?
        .data)
}

#[async_trait]
impl TableProvider for DistributedTable {
    fn schema(&self) -> SchemaRef {
        self.info.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let info = &self.info;
        let output = match projection {
            Some(p) => Arc::new(info.schema.project(p)?),
            None => info.schema.clone(),
        };
        // Filters with subqueries stay at the czar (they are Inexact: the plan above applies every filter again).
        let filters = filters
            .iter()
            .filter(|f| {
                !f.exists(|e| {
                    Ok(matches!(
                        e,
                        Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_)
                    ))
                })
                .unwrap_or(true)
            })
            .map(unqualified)
            .collect::<DfResult<Vec<_>>>()?;
        let replicated = info.record.kind == TableKind::Replicated;
        let pruning = if replicated {
            Pruning::default()
        } else {
            info.prune(&filters)
        };
        let scan = ChunkScan {
            table: info.record.qualified_name(),
            load_id: info.record.load_id.clone(),
            chunks: pruning.chunks,
            overlap: false,
            schema: info.schema_proto.clone(),
            projected: projection.is_some(),
            projection: projection
                .map(|p| p.iter().map(|&i| i as u32).collect())
                .unwrap_or_default(),
            filters: filters
                .iter()
                .map(protocol::encode_filter)
                .collect::<DfResult<Vec<_>>>()?,
            ranges: pruning.ranges,
            limit: limit.map(|l| l as u64),
            replicated,
            optional_files: false,
        };
        Ok(Arc::new(ChunkScanExec::new(scan, output)))
    }
}
