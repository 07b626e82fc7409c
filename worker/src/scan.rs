//! Reading chunk files: a fragment's [`exec::ChunkScanExec`] leaves become [`LocalScanExec`]s over this worker's
//! Parquet files (the layout is `partitioner::layout`), with `_hpx29` range filters so row groups outside a cone's
//! index ranges are skipped. A scan runs as one partition, so a chunk's rows always come out in the same order (the
//! czar relies on it to resume a stream on a replica). A chunk the czar asks for and this worker lacks is
//! [`WorkerError::ChunkNotHeld`], never an empty chunk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::SystemTime;

use arrow::array::{Array, BooleanArray, RecordBatch, RecordBatchOptions};
use arrow::compute::{and, cast, filter_record_batch};
use arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult};
use datafusion::execution::{SessionState, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, RecordBatchStream,
    SendableRecordBatchStream,
};
use datafusion::prelude::{SessionConfig, SessionContext};
use exec::ScanFactory;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder, RowFilter,
};
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::statistics::Statistics;
use partitioner::layout;
use protocol::ChunkScan;

use crate::error::WorkerError;

/// The DataFusion context fragments are decoded and run in: ADQL's functions, one partition per fragment. Chunk
/// files are not read through it: [`LocalScanExec`] reads them with the Parquet reader itself.
pub fn session() -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(1)
        .with_information_schema(false);
    let ctx = SessionContext::new_with_config(config);
    for udf in adql::udf::all() {
        ctx.register_udf(udf);
    }
    ctx
}

/// Makes chunk scans over the files of a data directory.
pub struct LocalFiles {
    pub data_dir: PathBuf,
    /// The context's state, made once: scans turn their filters into physical expressions with it.
    state: SessionState,
    /// A task context of that state, made once: fragments run in copies of it with pools of their own.
    pub(crate) task: Arc<TaskContext>,
    footers: Footers,
}

impl std::fmt::Debug for LocalFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "LocalFiles({})", self.data_dir.display())
    }
}

impl LocalFiles {
    pub fn new(data_dir: &Path) -> LocalFiles {
        let ctx = session();
        LocalFiles {
            data_dir: data_dir.to_path_buf(),
            task: ctx.task_ctx(),
            state: ctx.state(),
            footers: Footers::default(),
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
        let read = ReadPlan::new(&self.state, &scan, &schema, output, filters)?;
        Ok(Arc::new(LocalScanExec {
            properties: exec::leaf_properties(&read.output, 1),
            table: scan.table.clone(),
            footers: self.footers.clone(),
            files,
            read: Arc::new(read),
        }))
    }
}

/// Rows a batch of a scan holds at most.
const BATCH_ROWS: usize = 8192;

/// How many chunk files' footers [`Footers`] keeps.
const FOOTERS_KEPT: usize = 4096;

static BYTES_READ: AtomicU64 = AtomicU64::new(0);

/// Bytes read from chunk files since the process started.
pub fn bytes_read() -> u64 {
    BYTES_READ.load(Ordering::Relaxed)
}

/// The parsed footers (schema, row groups, page indexes) of the chunk files read lately, so a cone that reads a
/// page of a file does not parse its footer every time. A file is known by its path, length and modification time:
/// chunk files are written once under their load's directory and never changed in place.
#[derive(Clone, Default)]
struct Footers(Arc<Mutex<HashMap<PathBuf, (u64, SystemTime, ArrowReaderMetadata)>>>);

impl Footers {
    fn get(&self, path: &Path, file: &Pread) -> DfResult<ArrowReaderMetadata> {
        let stat = file.0.metadata().map_err(|source| io_error(path, source))?;
        let key = (
            stat.len(),
            stat.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        );
        let lock = || {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some((len, modified, footer)) = lock().get(path)
            && (*len, *modified) == key
        {
            return Ok(footer.clone());
        }
        let footer = ArrowReaderMetadata::load(
            file,
            ArrowReaderOptions::new()
                .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Optional),
        )?;
        let mut map = lock();
        if map.len() >= FOOTERS_KEPT {
            map.clear();
        }
        map.insert(path.to_path_buf(), (key.0, key.1, footer.clone()));
        Ok(footer)
    }
}

/// A failure to read a chunk file as Parquet: the file's fault ([`WorkerError::DamagedFile`], another replica may
/// have a good copy), unless it is already one of ours (a file not held, an I/O error).
fn damaged(path: &Path, e: DataFusionError) -> DataFusionError {
    if let DataFusionError::External(inner) = &e
        && inner.downcast_ref::<WorkerError>().is_some()
    {
        return e;
    }
    WorkerError::DamagedFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
    .into()
}

fn io_error(path: &Path, source: std::io::Error) -> DataFusionError {
    WorkerError::Io {
        path: path.to_path_buf(),
        source,
    }
    .into()
}

/// A chunk file read with positioned reads on the calling thread (no shared cursor, no hand-off to a thread pool:
/// chunk files are local, and a cone reads a few pages of each).
struct Pread(Arc<File>);

impl Length for Pread {
    fn len(&self) -> u64 {
        self.0.metadata().map_or(0, |m| m.len())
    }
}

impl ChunkReader for Pread {
    type T = PreadCursor;

    fn get_read(&self, start: u64) -> parquet::errors::Result<PreadCursor> {
        Ok(PreadCursor(self.0.clone(), start))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        let mut buf = vec![0u8; length];
        self.0
            .read_exact_at(&mut buf, start)
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
        BYTES_READ.fetch_add(length as u64, Ordering::Relaxed);
        Ok(buf.into())
    }
}

/// A reader of a [`Pread`] file from an offset on.
struct PreadCursor(Arc<File>, u64);

impl std::io::Read for PreadCursor {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read_at(buf, self.1)?;
        self.1 += n as u64;
        BYTES_READ.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// What a scan reads of each file and what it does with the rows, decided once per fragment: the table columns it
/// needs (its output and the columns its filters use), the filters as physical expressions over those columns, the
/// merged `_hpx29` ranges, the limit.
struct ReadPlan {
    /// The columns read, under the table's names and with its types: the output's first, then those only the
    /// filters use.
    needed: SchemaRef,
    output: SchemaRef,
    filters: Vec<Arc<dyn PhysicalExpr>>,
    /// Sorted, disjoint, inclusive.
    ranges: Arc<Vec<(i64, i64)>>,
    limit: Option<usize>,
}

impl ReadPlan {
    fn new(
        state: &SessionState,
        scan: &ChunkScan,
        table: &SchemaRef,
        output: SchemaRef,
        filters: Vec<Expr>,
    ) -> DfResult<ReadPlan> {
        // Filters are pushed down as inexact (the fragment applies them again above the scan), so here they only
        // spare rows: the needed columns are the output's and the ones they name.
        let mut names: Vec<String> = output.fields().iter().map(|f| f.name().clone()).collect();
        for f in &filters {
            for c in f.column_refs() {
                if !names.iter().any(|n| n == &c.name) {
                    names.push(c.name.clone());
                }
            }
        }
        let fields = names
            .iter()
            .map(|n| {
                table
                    .field_with_name(n)
                    .cloned()
                    .map_err(|_| DataFusionError::Plan(format!("{} has no column {n}", scan.table)))
            })
            .collect::<DfResult<Vec<_>>>()?;
        let needed = Arc::new(Schema::new(fields));
        let df_schema = DFSchema::try_from(needed.as_ref().clone())?;
        let filters = filters
            .into_iter()
            .map(|f| state.create_physical_expr(f, &df_schema))
            .collect::<DfResult<Vec<_>>>()?;
        let mut ranges: Vec<(i64, i64)> = scan.ranges.iter().map(|r| (r.from, r.to)).collect();
        ranges.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
        for (from, to) in ranges {
            match merged.last_mut() {
                Some(last) if from <= last.1.saturating_add(1) => last.1 = last.1.max(to),
                _ => merged.push((from, to)),
            }
        }
        Ok(ReadPlan {
            output,
            needed,
            filters,
            ranges: Arc::new(merged),
            limit: scan.limit.map(|l| l as usize),
        })
    }

    /// Whether a `_hpx29` value is inside the (sorted, disjoint) ranges.
    fn within(ranges: &[(i64, i64)], v: i64) -> bool {
        let i = ranges.partition_point(|r| r.1 < v);
        i < ranges.len() && ranges[i].0 <= v
    }

    /// A reader of one file: the row groups whose `_hpx29` statistics meet the ranges, the needed columns (and
    /// `_hpx29` while the ranges are checked), rows outside the ranges dropped before the other columns are decoded,
    /// pages holding none of the kept rows skipped (the page index).
    fn open(&self, path: &Path, footers: &Footers) -> DfResult<Option<ParquetRecordBatchReader>> {
        let file = Pread(Arc::new(File::open(path).map_err(|e| io_error(path, e))?));
        let footer = footers.get(path, &file)?;
        let arrow_schema = footer.schema().clone();
        let parquet_schema = footer.parquet_schema();
        let mut roots = Vec::with_capacity(self.needed.fields().len());
        for f in self.needed.fields() {
            let i = arrow_schema
                .fields()
                .iter()
                .position(|g| g.name().eq_ignore_ascii_case(f.name()))
                .ok_or_else(|| {
                    DataFusionError::Execution(format!(
                        "chunk file {} has no column {}",
                        path.display(),
                        f.name()
                    ))
                })?;
            roots.push(i);
        }
        let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, footer.clone())
            .with_batch_size(BATCH_ROWS)
            .with_projection(ProjectionMask::roots(parquet_schema, roots));
        if !self.ranges.is_empty() {
            let index = parquet_schema
                .columns()
                .iter()
                .position(|c| c.path().parts() == [layout::INDEX_COLUMN])
                .ok_or_else(|| {
                    DataFusionError::Execution(format!(
                        "chunk file {} has no {} column",
                        path.display(),
                        layout::INDEX_COLUMN
                    ))
                })?;
            let groups: Vec<usize> = (0..footer.metadata().num_row_groups())
                .filter(
                    |&g| match footer.metadata().row_group(g).column(index).statistics() {
                        Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                            (Some(&min), Some(&max)) => {
                                let i = self.ranges.partition_point(|r| r.1 < min);
                                i < self.ranges.len() && self.ranges[i].0 <= max
                            }
                            _ => true,
                        },
                        _ => true,
                    },
                )
                .collect();
            if groups.is_empty() {
                return Ok(None);
            }
            let ranges = self.ranges.clone();
            let keep = ArrowPredicateFn::new(
                ProjectionMask::leaves(parquet_schema, [index]),
                move |batch: RecordBatch| {
                    let values = arrow::array::cast::AsArray::as_primitive_opt::<
                        arrow::datatypes::Int64Type,
                    >(batch.column(0).as_ref())
                    .ok_or_else(|| {
                        arrow::error::ArrowError::InvalidArgumentError(format!(
                            "{} is not a 64-bit integer column",
                            layout::INDEX_COLUMN
                        ))
                    })?;
                    Ok(values
                        .iter()
                        .map(|v| Some(v.is_some_and(|v| ReadPlan::within(&ranges, v))))
                        .collect::<BooleanArray>())
                },
            );
            builder = builder
                .with_row_groups(groups)
                .with_row_filter(RowFilter::new(vec![Box::new(keep)]));
        }
        Ok(Some(builder.build()?))
    }

    /// A batch of a file as the scan yields it: the table's names and types, the filters applied, the output's
    /// columns.
    fn finish(&self, batch: RecordBatch) -> DfResult<RecordBatch> {
        let rows = batch.num_rows();
        let columns = self
            .needed
            .fields()
            .iter()
            .map(|f| {
                let column = batch
                    .schema()
                    .fields()
                    .iter()
                    .position(|g| g.name().eq_ignore_ascii_case(f.name()))
                    .map(|i| batch.column(i).clone())
                    .ok_or_else(|| {
                        DataFusionError::Internal(format!("column {} not read", f.name()))
                    })?;
                Ok(if column.data_type() == f.data_type() {
                    column
                } else {
                    cast(&column, f.data_type())?
                })
            })
            .collect::<DfResult<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let mut batch = RecordBatch::try_new_with_options(self.needed.clone(), columns, &options)?;
        if !self.filters.is_empty() {
            let mut keep: Option<BooleanArray> = None;
            for f in &self.filters {
                let mask = f.evaluate(&batch)?.into_array(rows)?;
                let mask = arrow::array::cast::AsArray::as_boolean_opt(mask.as_ref())
                    .ok_or_else(|| DataFusionError::Internal("a filter is not boolean".into()))?
                    .clone();
                keep = Some(match keep {
                    Some(k) => and(&k, &mask)?,
                    None => mask,
                });
            }
            if let Some(keep) = keep {
                batch = filter_record_batch(&batch, &keep)?;
            }
        }
        let columns = batch.columns()[..self.output.fields().len()].to_vec();
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(RecordBatch::try_new_with_options(
            self.output.clone(),
            columns,
            &options,
        )?)
    }
}

/// A chunk scan on the worker: its files read one after another (so a chunk's rows always come out in the same
/// order), batch by batch on the thread that polls it.
struct LocalScanExec {
    table: String,
    files: Vec<String>,
    footers: Footers,
    read: Arc<ReadPlan>,
    properties: Arc<PlanProperties>,
}

impl std::fmt::Debug for LocalScanExec {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "LocalScanExec({:?})", self.files)
    }
}

impl DisplayAs for LocalScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "LocalScanExec: {} files of {}",
            self.files.len(),
            self.table
        )
    }
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
        // Each batch costs a unit of the task's budget, so a long scan under an aggregate still yields (and an
        // aborted query stops) between batches.
        Ok(Box::pin(datafusion::physical_plan::coop::cooperative(
            FilesStream {
                files: self.files.iter().map(PathBuf::from).collect(),
                reader: None,
                current: None,
                footers: self.footers.clone(),
                read: self.read.clone(),
                left: self.read.limit,
            },
        )))
    }
}

/// The batches of a [`LocalScanExec`].
struct FilesStream {
    files: VecDeque<PathBuf>,
    reader: Option<ParquetRecordBatchReader>,
    /// The file `reader` reads.
    current: Option<PathBuf>,
    footers: Footers,
    read: Arc<ReadPlan>,
    /// Rows the limit still lets through.
    left: Option<usize>,
}

impl FilesStream {
    fn next_batch(&mut self) -> DfResult<Option<RecordBatch>> {
        loop {
            if self.left == Some(0) {
                return Ok(None);
            }
            let Some(reader) = self.reader.as_mut() else {
                let Some(path) = self.files.pop_front() else {
                    return Ok(None);
                };
                self.reader = self
                    .read
                    .open(&path, &self.footers)
                    .map_err(|e| damaged(&path, e))?;
                self.current = Some(path);
                continue;
            };
            let batch = reader.next().transpose().map_err(|e| {
                let path = self.current.clone().unwrap_or_default();
                damaged(&path, e.into())
            })?;
            let Some(batch) = batch else {
                self.reader = None;
                continue;
            };
            let mut batch = self.read.finish(batch)?;
            if batch.num_rows() == 0 {
                continue;
            }
            if let Some(left) = self.left.as_mut() {
                if batch.num_rows() > *left {
                    batch = batch.slice(0, *left);
                }
                *left -= batch.num_rows();
            }
            return Ok(Some(batch));
        }
    }
}

impl futures::Stream for FilesStream {
    type Item = DfResult<RecordBatch>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        let next = self.next_batch();
        if next.is_err() {
            // An error ends the scan.
            self.files.clear();
            self.reader = None;
            self.left = Some(0);
        }
        Poll::Ready(next.transpose())
    }
}

impl RecordBatchStream for FilesStream {
    fn schema(&self) -> SchemaRef {
        self.read.output.clone()
    }
}
