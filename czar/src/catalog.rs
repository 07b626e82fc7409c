//! The catalog as the czar plans over it: the published tables ([`TableInfo`]: record, visible schema, chunks,
//! chunk map, placement), read from the metadata store at each refresh, and [`DistributedTable`], the
//! `TableProvider` whose scans are [`ChunkScanExec`] leaves pruned to the chunks a query can touch (the rules are in
//! [`crate::prune`]).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result as DfResult};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use exec::ChunkScanExec;
use metastore::{MetaStore, TableKind, TableRecord};
use partitioner::{ChunkId, ChunkMap, layout};
use protocol::{ChunkScan, IndexRange};

use crate::error::CzarError;
use crate::prune::{self, Pruning};

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
    pub placement: Arc<HashMap<u64, Vec<String>>>,
}

/// The published tables, in catalog order and by lower-case qualified name (read by every query's planning).
#[derive(Default)]
pub struct Tables {
    pub list: Vec<Arc<TableInfo>>,
    pub by_name: HashMap<String, Arc<TableInfo>>,
}

/// A foreign key between published tables: a child's key column names its director's id.
#[derive(Debug, Clone, PartialEq)]
pub struct ForeignKey {
    /// `schema.table`, lower case.
    pub from: String,
    pub target: String,
    pub from_column: String,
    pub target_column: String,
}

/// Reads a published table's schema and chunk list from its files in `data_dir`.
pub fn load_table(
    data_dir: &Path,
    store: &Arc<MetaStore>,
    record: &TableRecord,
) -> Result<TableInfo, CzarError> {
    let failed = |reason: String| CzarError::Catalog {
        table: record.qualified_name(),
        reason,
    };
    let files =
        loader::ingest::current_files(data_dir, record).map_err(|e| failed(e.to_string()))?;
    let chunks: BTreeSet<u64> = match record.kind {
        TableKind::Replicated => BTreeSet::new(),
        _ => files
            .iter()
            .filter_map(|f| {
                layout::parse_chunk_file(f.file_name()?.to_str()?).map(|(chunk, _)| chunk)
            })
            .collect(),
    };
    let schema = match files.first() {
        Some(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| failed(format!("{}: {e}", path.display())))?;
            let builder =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| failed(format!("{}: {e}", path.display())))?;
            visible_schema(builder.schema(), record)
        }
        None => Arc::new(Schema::empty()),
    };
    let map = if record.chunks.is_empty() {
        None
    } else {
        Some(
            ChunkMap::from_chunks(record.chunks.iter().map(|&c| ChunkId(c)).collect())
                .map_err(|e| failed(e.to_string()))?,
        )
    };
    let director = match &record.kind {
        TableKind::Child { director, .. } => store.table(director)?,
        _ => None,
    };
    let schema_proto = exec::encode_schema(&schema).map_err(|e| failed(e.to_string()))?;
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
        .filter(|f| f.name() != partitioner::layout::INDEX_COLUMN)
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

impl TableInfo {
    /// The chunks (and index ranges) a scan with these filters needs ([`prune::prune`]).
    pub fn prune(&self, filters: &[Expr]) -> Pruning {
        let target = prune::Target {
            record: &self.record,
            director: self.director.as_ref(),
            map: self.map.as_ref(),
            chunks: &self.chunks,
            store: &self.store,
        };
        prune::prune(&target, filters)
    }
}

/// Restricts a query's scans of one table to one chunk: its own rows, or (`margin`) only the rows its overlap file
/// holds. Set as an extension of the planning session ([`crate::QueryContext::only_chunk`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OnlyChunk {
    /// `schema.table`, lower case.
    pub table: String,
    pub chunk: u64,
    pub margin: bool,
}

/// The depth-29 index ranges outside a chunk's cell (inclusive bounds).
fn outside_cell(chunk: u64) -> Vec<IndexRange> {
    let cell = ChunkId(chunk).range_at(partitioner::chunk::MAX_DEPTH);
    let end = 12i64 << 58; // 12 * 4^29
    let mut ranges = Vec::new();
    if cell.start > 0 {
        ranges.push(IndexRange { from: 0, to: cell.start as i64 - 1 });
    }
    if (cell.end as i64) < end {
        ranges.push(IndexRange { from: cell.end as i64, to: end - 1 });
    }
    ranges
}

/// A table spread over the cluster's chunks.
#[derive(Debug)]
pub struct DistributedTable {
    pub info: Arc<TableInfo>,
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
        state: &dyn Session,
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
        // A whole table read without a filter or limit yields exactly the rows its record counts (a child's kept
        // orphans aside): COUNT(*), which reads no column, is answered from that. Scans that read columns say
        // nothing (the statistics would be the whole table's, and would reorder joins by them).
        let exact_rows = (filters.is_empty()
            && projection.is_some_and(|p| p.is_empty())
            && limit.is_none()
            && match &info.record.kind {
                TableKind::Director { .. } | TableKind::Replicated => true,
                TableKind::Child { .. } => info.record.orphan_rows == 0,
            })
        .then_some(info.record.rows);
        let replicated = info.record.kind == TableKind::Replicated;
        let mut pruning = if replicated {
            Pruning::default()
        } else {
            info.prune(&filters)
        };
        // A query about one chunk (a HATS partition or its margin): its own rows, or only the copies its overlap
        // file holds (rows of neighbouring cells; every own row lies inside the cell's index range).
        let mut overlap = false;
        if let Some(only) = state.config().get_extension::<OnlyChunk>()
            && only.table == info.record.qualified_name()
        {
            if only.margin {
                pruning.chunks = info.chunks.iter().copied().filter(|c| *c == only.chunk).collect();
                pruning.ranges = outside_cell(only.chunk);
                overlap = true;
            } else {
                pruning.chunks.retain(|c| *c == only.chunk);
            }
        }
        let scan = ChunkScan {
            table: info.record.qualified_name(),
            load_id: info.record.load_id.clone(),
            chunks: pruning.chunks,
            overlap,
            schema: info.schema_proto.clone(),
            projected: projection.is_some(),
            projection: projection
                .map(|p| p.iter().map(|&i| i as u32).collect())
                .unwrap_or_default(),
            filters: filters
                .iter()
                .map(exec::encode_filter)
                .collect::<DfResult<Vec<_>>>()?,
            ranges: pruning.ranges,
            limit: limit.map(|l| l as u64),
            replicated,
            optional_files: false,
            parts: Vec::new(),
        };
        let scan = ChunkScanExec::new(scan, output);
        Ok(Arc::new(match exact_rows {
            Some(rows) => scan.with_rows(rows),
            None => scan,
        }))
    }
}
