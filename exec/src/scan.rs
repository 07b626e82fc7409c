//! The fragment leaf: [`ChunkScanExec`] at the czar (a placeholder for the rows of a table in a set of chunks), and
//! the [`ScanFactory`] through which a worker turns a decoded [`ChunkScan`] into a scan of its own files.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};

use protocol::ChunkScan;

/// The rows of one table in a set of chunks: one output partition per chunk. Only a placeholder at the czar (the
/// fragment above it is shipped to workers, see `czar::distribute`); executing it there is an error.
#[derive(Debug, Clone)]
pub struct ChunkScanExec {
    /// The scan, with all chunks.
    pub scan: ChunkScan,
    /// Output schema (the projection of the table's visible schema).
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    /// How many rows the scan yields when that is known exactly from the table's record (a whole table, no
    /// filter, no limit): DataFusion then answers `COUNT(*)` from it without reading a chunk.
    pub rows: Option<u64>,
}

/// The properties of a scan leaf (ours at the czar and on workers): bounded, incremental, unordered partitions.
pub fn leaf_properties(schema: &SchemaRef, partitions: usize) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema.clone()),
        Partitioning::UnknownPartitioning(partitions),
        EmissionType::Incremental,
        Boundedness::Bounded,
    ))
}

impl ChunkScanExec {
    pub fn new(scan: ChunkScan, schema: SchemaRef) -> ChunkScanExec {
        let properties = leaf_properties(&schema, scan.chunks.len().max(1));
        ChunkScanExec {
            scan,
            schema,
            properties,
            rows: None,
        }
    }

    /// The scan, known to yield exactly `rows` rows.
    pub fn with_rows(mut self, rows: u64) -> ChunkScanExec {
        self.rows = Some(rows);
        self
    }
}

impl DisplayAs for ChunkScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let columns: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        write!(
            f,
            "ChunkScanExec: {} chunks of {} [{}]",
            self.scan.chunks.len(),
            self.scan.table,
            columns.join(", ")
        )?;
        if !self.scan.filters.is_empty() {
            write!(f, ", {} filters", self.scan.filters.len())?;
        }
        if !self.scan.ranges.is_empty() {
            write!(f, ", {} index ranges", self.scan.ranges.len())?;
        }
        if self.scan.overlap {
            write!(f, ", with overlap")?;
        }
        if !self.scan.parts.is_empty() {
            let read: usize = self.scan.parts.iter().map(|p| p.chunks.len()).sum();
            write!(f, ", by cell: {read} chunk reads")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for ChunkScanExec {
    fn name(&self) -> &str {
        "ChunkScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    crate::leaf_methods!();

    fn partition_statistics(
        &self,
        partition: Option<usize>,
    ) -> Result<Arc<datafusion::common::Statistics>> {
        let mut statistics = datafusion::common::Statistics::new_unknown(&self.schema);
        if let (None, Some(rows)) = (partition, self.rows) {
            statistics.num_rows = datafusion::common::stats::Precision::Exact(rows as usize);
        }
        Ok(Arc::new(statistics))
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Err(DataFusionError::Internal(
            "a chunk scan runs on a worker; the czar ships the fragment above it".into(),
        ))
    }
}

/// How a worker turns a decoded [`ChunkScan`] into a plan over its own files.
pub trait ScanFactory: fmt::Debug + Send + Sync {
    /// `schema`: the table's visible schema; `filters`: decoded, over its columns.
    fn local_scan(
        &self,
        scan: ChunkScan,
        schema: SchemaRef,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>>;
}
