//! Reading chunk files: a fragment's [`exec::ChunkScanExec`] leaves become [`LocalScanExec`]s over this worker's
//! Parquet files (the layout is `partitioner::layout`), with `_hpx29` range filters so row groups outside a cone's
//! index ranges are skipped. A scan runs as one partition, so a chunk's rows always come out in the same order (the
//! czar relies on it to resume a stream on a replica). A chunk the czar asks for and this worker lacks is
//! [`WorkerError::ChunkNotHeld`], never an empty chunk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use datafusion::common::{Column, DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use exec::ScanFactory;
use futures::{StreamExt, TryStreamExt};
use partitioner::layout;
use protocol::ChunkScan;

use crate::error::WorkerError;
use crate::pread_store;

/// The DataFusion context fragments run in: ADQL's functions, one partition per fragment.
pub fn session() -> SessionContext {
    let mut config = SessionConfig::new()
        .with_target_partitions(1)
        .with_information_schema(false);
    // Strings travel as the table schema the czar planned with says (Utf8), not as Parquet's view types.
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    // A fragment's scan plan is always the same shape (Parquet scan, index ranges, filters, projection, limit), its
    // filters already simplified at the czar: of the logical optimizer only the pushdowns into the Parquet scan
    // matter, and the full rule set cost more than reading a cone's pages (docs/benchmarks.md, issue 15).
    use datafusion::optimizer::OptimizerRule;
    let rules: Vec<Arc<dyn OptimizerRule + Send + Sync>> = vec![
        Arc::new(datafusion::optimizer::push_down_filter::PushDownFilter::new()),
        Arc::new(datafusion::optimizer::optimize_projections::OptimizeProjections::new()),
        Arc::new(datafusion::optimizer::push_down_limit::PushDownLimit::new()),
    ];
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_optimizer_rules(rules)
        .build();
    let ctx = SessionContext::new_with_state(state);
    pread_store::install(&ctx);
    for udf in adql::udf::all() {
        ctx.register_udf(udf);
    }
    ctx
}

/// Makes chunk scans over the files of a data directory.
pub struct LocalFiles {
    pub data_dir: PathBuf,
    pub(crate) ctx: SessionContext,
}

impl std::fmt::Debug for LocalFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "LocalFiles({})", self.data_dir.display())
    }
}

impl LocalFiles {
    pub fn new(data_dir: &Path) -> LocalFiles {
        LocalFiles {
            data_dir: data_dir.to_path_buf(),
            ctx: session(),
        }
    }

    /// The files holding a scan's rows, in a fixed order; those that do not exist (empty chunks) are left out.
    fn files(&self, scan: &ChunkScan) -> Result<Vec<String>, DataFusionError> {
        let load = layout::load_dir(&self.data_dir, &scan.table, &scan.load_id);
        if !load.is_dir() {
            return Err(WorkerError::LoadNotHeld {
                table: scan.table.clone(),
                load: scan.load_id.clone(),
            }
            .into());
        }
        let mut files = Vec::new();
        if scan.replicated {
            let dir = load.join(layout::REPLICATED);
            let mut parts: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|source| WorkerError::Io {
                    path: dir.clone(),
                    source,
                })?
                .flatten()
                .map(|e| e.path())
                .collect();
            parts.sort();
            files.extend(parts);
        }
        for &chunk in &scan.chunks {
            let dir = load.join(layout::CHUNKS);
            let file = dir.join(layout::chunk_file(chunk));
            // A chunk the czar knows has rows must be here: a missing file is never an empty chunk.
            if !scan.optional_files && !file.exists() {
                return Err(WorkerError::ChunkNotHeld {
                    table: scan.table.clone(),
                    chunk,
                    load: scan.load_id.clone(),
                }
                .into());
            }
            files.push(file);
            if scan.overlap {
                files.push(dir.join(layout::overlap_file(chunk)));
            }
        }
        Ok(files
            .into_iter()
            .filter(|f| f.exists())
            .map(|f| f.to_string_lossy().into_owned())
            .collect())
    }
}

impl ScanFactory for LocalFiles {
    fn local_scan(
        &self,
        scan: ChunkScan,
        schema: SchemaRef,
        filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if !scan.parts.is_empty() {
            return Err(DataFusionError::Plan(
                "a chunk scan arrived with its parts unresolved (the czar resolves them per partition)".into(),
            ));
        }
        let output = if scan.projected {
            Arc::new(
                schema.project(
                    &scan
                        .projection
                        .iter()
                        .map(|&i| i as usize)
                        .collect::<Vec<_>>(),
                )?,
            )
        } else {
            schema.clone()
        };
        let files = self.files(&scan)?;
        Ok(Arc::new(LocalScanExec::new(
            self.ctx.clone(),
            scan,
            files,
            schema,
            output,
            filters,
        )))
    }
}

/// A chunk scan on the worker: plans a DataFusion scan of its files when executed (planning reads Parquet footers,
/// which is async).
struct LocalScanExec {
    ctx: SessionContext,
    scan: ChunkScan,
    files: Vec<String>,
    table_schema: SchemaRef,
    output: SchemaRef,
    filters: Vec<Expr>,
    properties: Arc<PlanProperties>,
}

impl std::fmt::Debug for LocalScanExec {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "LocalScanExec({:?})", self.files)
    }
}

impl LocalScanExec {
    fn new(
        ctx: SessionContext,
        scan: ChunkScan,
        files: Vec<String>,
        table_schema: SchemaRef,
        output: SchemaRef,
        filters: Vec<Expr>,
    ) -> Self {
        let properties = exec::leaf_properties(&output, 1);
        LocalScanExec {
            ctx,
            scan,
            files,
            table_schema,
            output,
            filters,
            properties,
        }
    }
}

impl DisplayAs for LocalScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "LocalScanExec: {} files of {}",
            self.files.len(),
            self.scan.table
        )
    }
}

/// The DataFusion plan of a chunk scan: index ranges, then visible columns under their lower-case names, filters,
/// projection, limit.
async fn scan_stream(
    ctx: SessionContext,
    scan: ChunkScan,
    files: Vec<String>,
    table_schema: SchemaRef,
    output: SchemaRef,
    filters: Vec<Expr>,
) -> DfResult<SendableRecordBatchStream> {
    if files.is_empty() {
        return Ok(Box::pin(RecordBatchStreamAdapter::new(
            output,
            futures::stream::empty(),
        )));
    }
    let mut df = ctx
        .read_parquet(files, ParquetReadOptions::default())
        .await?;
    if !scan.ranges.is_empty() {
        let index = || col(Column::from_name("_hpx29"));
        let within = scan
            .ranges
            .iter()
            .map(|r| index().between(lit(r.from), lit(r.to)))
            .reduce(Expr::or)
            .expect("ranges");
        df = df.filter(within)?;
    }
    let file_names: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let visible = table_schema
        .fields()
        .iter()
        .map(|f| {
            let file_name = file_names
                .iter()
                .find(|n| n.eq_ignore_ascii_case(f.name()))
                .ok_or_else(|| {
                    DataFusionError::Execution(format!(
                        "chunk files of {} have no column {}",
                        scan.table,
                        f.name()
                    ))
                })?;
            Ok(col(Column::from_name(file_name)).alias(f.name()))
        })
        .collect::<DfResult<Vec<_>>>()?;
    df = df.select(visible)?;
    for f in filters {
        df = df.filter(f)?;
    }
    df = df.select(
        output
            .fields()
            .iter()
            .map(|f| col(Column::from_name(f.name())))
            .collect::<Vec<Expr>>(),
    )?;
    if let Some(limit) = scan.limit {
        df = df.limit(0, Some(limit as usize))?;
    }
    let stream = df.execute_stream().await?;
    // The fragment above was planned with the czar's schema: label the batches with it.
    let labelled = output.clone();
    let batches = stream.map(move |b| {
        b.and_then(|b| {
            // Keep the row count of batches without columns (COUNT(*) needs only how many rows qualify).
            let options = RecordBatchOptions::new().with_row_count(Some(b.num_rows()));
            Ok(RecordBatch::try_new_with_options(
                labelled.clone(),
                b.columns().to_vec(),
                &options,
            )?)
        })
    });
    Ok(Box::pin(RecordBatchStreamAdapter::new(output, batches)))
}

impl ExecutionPlan for LocalScanExec {
    fn name(&self) -> &str {
        "LocalScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    exec::leaf_methods!();

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let fut = scan_stream(
            self.ctx.clone(),
            self.scan.clone(),
            self.files.clone(),
            self.table_schema.clone(),
            self.output.clone(),
            self.filters.clone(),
        );
        let stream = futures::stream::once(fut).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.output.clone(),
            stream,
        )))
    }
}
