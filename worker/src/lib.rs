//! A skyshard worker: an Arrow Flight server over the chunk files in its data directory.
//!
//! `DoGet` takes a [`protocol::FragmentTicket`]: a physical plan fragment whose leaves are chunk scans. The worker
//! turns each leaf into a scan of its local Parquet files (`DATA/tables/SCHEMA.TABLE/LOAD/chunks/UNIQ.parquet`, the
//! overlap file beside it when asked, `orphans.parquet` for chunk 0 of a child table, `replicated/*.parquet` for a
//! replicated table), runs the fragment with DataFusion and streams the record batches back. Row groups whose
//! `_hpx29` statistics miss the ticket's index ranges are skipped. A fragment runs as one partition, so a chunk's rows
//! always come out in the same order (the czar relies on it to resume a stream on a replica).
//!
//! `DoPut` receives a load's files from the czar (`skyshard load`): the descriptor's path is `[SCHEMA.TABLE, LOAD,
//! chunks/NAME.parquet | replicated/NAME.parquet]`, the messages' bodies are the file's bytes in order; the file is
//! written beside its final name and renamed when complete, so a scan never sees half a file.
//!
//! `DoAction`: `health` and `cancel` (aborts the streams of a query).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use datafusion::common::{Column, DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
    SendableRecordBatchStream,
};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use futures::stream::{AbortHandle, Abortable};
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use protocol::{ChunkScan, FragmentTicket, ScanFactory};
use tonic::{Request, Response, Status, Streaming};

mod local_store;

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
    let ctx = SessionContext::new_with_config(config);
    local_store::install(&ctx);
    for udf in adql::udf::all() {
        ctx.register_udf(udf);
    }
    ctx
}

/// Makes chunk scans over the files of a data directory.
pub struct LocalFiles {
    pub data_dir: PathBuf,
    ctx: SessionContext,
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
        let load = self
            .data_dir
            .join("tables")
            .join(&scan.table)
            .join(&scan.load_id);
        if !load.is_dir() {
            return Err(DataFusionError::Execution(format!(
                "{NOT_HELD} load {} of {} (was the table reloaded?)",
                scan.load_id, scan.table
            )));
        }
        let mut files = Vec::new();
        if scan.replicated {
            let dir = load.join("replicated");
            let mut parts: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|e| DataFusionError::Execution(format!("{}: {e}", dir.display())))?
                .flatten()
                .map(|e| e.path())
                .collect();
            parts.sort();
            files.extend(parts);
        }
        for &chunk in &scan.chunks {
            let dir = load.join("chunks");
            let file = if chunk == 0 {
                dir.join("orphans.parquet")
            } else {
                dir.join(format!("{chunk}.parquet"))
            };
            // A chunk the czar knows has rows must be here: a missing file is never an empty chunk.
            if !scan.optional_files && !file.exists() {
                return Err(DataFusionError::Execution(format!(
                    "{NOT_HELD} chunk {chunk} of {} (load {})",
                    scan.table, scan.load_id
                )));
            }
            files.push(file);
            if scan.overlap {
                files.push(dir.join(format!("{chunk}.overlap.parquet")));
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
        let properties = protocol::leaf_properties(&output, 1);
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

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn PhysicalExpr>,
        ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

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

/// The loads under `DATA/tables`: files and bytes of each.
fn statistics(data_dir: &Path) -> protocol::Statistics {
    let mut loads = Vec::new();
    let tables = std::fs::read_dir(data_dir.join("tables"))
        .into_iter()
        .flatten()
        .flatten();
    for table in tables {
        for load in std::fs::read_dir(table.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let (mut files, mut bytes) = (0, 0);
            for sub in ["chunks", "replicated"] {
                for f in std::fs::read_dir(load.path().join(sub))
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    files += 1;
                    bytes += f.metadata().map(|m| m.len()).unwrap_or(0);
                }
            }
            loads.push(protocol::LoadStatistics {
                table: table.file_name().to_string_lossy().into_owned(),
                load_id: load.file_name().to_string_lossy().into_owned(),
                files,
                bytes,
            });
        }
    }
    protocol::Statistics { loads }
}

/// How a worker says it lacks data it was asked for (the czar then tries a replica).
const NOT_HELD: &str = "this worker does not hold";

/// Where a put file goes: `DATA/tables/SCHEMA.TABLE/LOAD/(chunks|replicated)/NAME.parquet`, every part checked so
/// a put cannot write outside the data directory.
fn put_target(data_dir: &Path, path: &[String]) -> Result<PathBuf, String> {
    let [table, load, file] = path else {
        return Err("a put names [SCHEMA.TABLE, LOAD, FILE]".into());
    };
    let plain = |s: &str, extra: &[char]| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || extra.contains(&c))
    };
    let (dir, name) = file
        .split_once('/')
        .ok_or("the file must be chunks/NAME or replicated/NAME")?;
    if !(plain(table, &['.']) && table.matches('.').count() == 1)
        || !plain(load, &['-'])
        || !matches!(dir, "chunks" | "replicated")
        || !plain(name, &['.', '-'])
        || !name.ends_with(".parquet")
        || name.contains("..")
    {
        return Err(format!("refusing to write {table}/{load}/{file}"));
    }
    Ok(data_dir
        .join("tables")
        .join(table)
        .join(load)
        .join(dir)
        .join(name))
}

/// The Flight service of one worker.
#[derive(Clone)]
pub struct Worker {
    files: Arc<LocalFiles>,
    running: Arc<AtomicU32>,
    served: Arc<AtomicU64>,
    /// Abort handles of running fragments, by query id.
    queries: Arc<Mutex<HashMap<String, Vec<AbortHandle>>>>,
}

impl Worker {
    pub fn new(data_dir: &Path) -> Worker {
        Worker {
            files: Arc::new(LocalFiles::new(data_dir)),
            running: Arc::default(),
            served: Arc::default(),
            queries: Arc::default(),
        }
    }

    /// Plans a fragment and runs it as one stream.
    pub fn run_fragment(&self, ticket: &FragmentTicket) -> DfResult<SendableRecordBatchStream> {
        // Fragments are decoded in the context their scans run in.
        let task_ctx = self.files.ctx.task_ctx();
        let plan = protocol::decode_fragment(&ticket.plan, &task_ctx, self.files.clone())?;
        let plan: Arc<dyn ExecutionPlan> = if plan.output_partitioning().partition_count() <= 1 {
            plan
        } else if let Some(ordering) = plan.output_ordering() {
            Arc::new(SortPreservingMergeExec::new(ordering.clone(), plan))
        } else {
            Arc::new(CoalescePartitionsExec::new(plan))
        };
        plan.execute(0, task_ctx)
    }

    /// Serves Flight on `listener` until the future is dropped.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
    ) -> Result<(), tonic::transport::Error> {
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let service = FlightServiceServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
    }
}

/// An error of the fragment itself (the czar does not retry it elsewhere): `InvalidArgument`.
fn status(e: DataFusionError) -> Status {
    let message = adql::engine::clean_message(&e);
    if message.contains(NOT_HELD) {
        // Data this worker should hold and does not: another replica may have it.
        return Status::not_found(message);
    }
    Status::invalid_argument(message)
}

type Stream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A running fragment: counted, and cancellable through its query id, until its stream is dropped.
struct Running {
    running: Arc<AtomicU32>,
    queries: Arc<Mutex<HashMap<String, Vec<AbortHandle>>>>,
    query_id: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::Relaxed);
        let mut q = self.queries.lock().expect("query registry");
        if let Some(handles) = q.get_mut(&self.query_id) {
            handles.retain(|h| !h.is_aborted());
            if handles.len() <= 1 {
                q.remove(&self.query_id);
            }
        }
    }
}

#[tonic::async_trait]
impl FlightService for Worker {
    type HandshakeStream = Stream<HandshakeResponse>;
    type ListFlightsStream = Stream<FlightInfo>;
    type DoGetStream = Stream<FlightData>;
    type DoPutStream = Stream<PutResult>;
    type DoActionStream = Stream<arrow_flight::Result>;
    type ListActionsStream = Stream<ActionType>;
    type DoExchangeStream = Stream<FlightData>;

    async fn handshake(
        &self,
        _r: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented(
            "no handshake: workers trust their czar's network",
        ))
    }

    async fn list_flights(
        &self,
        _r: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented("list_flights"))
    }

    async fn get_flight_info(
        &self,
        _r: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented("get_flight_info"))
    }

    async fn poll_flight_info(
        &self,
        _r: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("poll_flight_info"))
    }

    async fn get_schema(
        &self,
        _r: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("get_schema"))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let ticket = FragmentTicket::decode(request.into_inner().ticket)
            .map_err(|e| Status::invalid_argument(format!("bad ticket: {e}")))?;
        let stream = self.run_fragment(&ticket).map_err(status)?;
        self.served.fetch_add(1, Ordering::Relaxed);
        self.running.fetch_add(1, Ordering::Relaxed);
        let (handle, registration) = AbortHandle::new_pair();
        self.queries
            .lock()
            .expect("query registry")
            .entry(ticket.query_id.clone())
            .or_default()
            .push(handle.clone());
        let guard = Running {
            running: self.running.clone(),
            queries: self.queries.clone(),
            query_id: ticket.query_id,
        };
        let schema = stream.schema();
        // A cancelled fragment ends with an error, never as a stream that merely stops early.
        let cancelled = handle.clone();
        let batches = Abortable::new(stream, registration)
            .map_err(|e| FlightError::ExternalError(Box::new(e)))
            .chain(
                futures::stream::once(async move { cancelled.is_aborted() }).filter_map(
                    |aborted| async move {
                        aborted.then(|| {
                            Err(FlightError::ProtocolError("the query was cancelled".into()))
                        })
                    },
                ),
            );
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map(move |item| {
                let _running = &guard;
                item.map_err(|e| match e {
                    FlightError::ExternalError(e) => match e.downcast::<DataFusionError>() {
                        Ok(e) => status(*e),
                        Err(e) => Status::internal(e.to_string()),
                    },
                    other => Status::internal(other.to_string()),
                })
            });
        Ok(Response::new(Box::pin(flight)))
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an empty put"))?;
        let path = first
            .flight_descriptor
            .as_ref()
            .map(|d| d.path.clone())
            .unwrap_or_default();
        let target = put_target(&self.files.data_dir, &path).map_err(Status::invalid_argument)?;
        let partial = target.with_extension("parquet.part");
        let write = async {
            use tokio::io::AsyncWriteExt;
            if let Some(dir) = target.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            let mut file = tokio::fs::File::create(&partial).await?;
            let mut bytes = first.data_body.len() as u64;
            file.write_all(&first.data_body).await?;
            while let Some(message) = stream
                .message()
                .await
                .map_err(|s| std::io::Error::other(s.message().to_string()))?
            {
                bytes += message.data_body.len() as u64;
                file.write_all(&message.data_body).await?;
            }
            file.sync_all().await?;
            tokio::fs::rename(&partial, &target).await?;
            Ok::<u64, std::io::Error>(bytes)
        };
        let bytes = match write.await {
            Ok(b) => b,
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(Status::internal(format!("{}: {e}", target.display())));
            }
        };
        let result = PutResult {
            app_metadata: bytes.to_string().into_bytes().into(),
        };
        Ok(Response::new(Box::pin(futures::stream::once(async {
            Ok(result)
        }))))
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let action = request.into_inner();
        let body = match action.r#type.as_str() {
            protocol::ACTION_HEALTH => protocol::Health {
                running_fragments: self.running.load(Ordering::Relaxed),
                fragments_served: self.served.load(Ordering::Relaxed),
                data_dir: self.files.data_dir.display().to_string(),
            }
            .encode_to_vec(),
            protocol::ACTION_CANCEL => {
                let cancel = protocol::Cancel::decode(action.body)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                if let Some(handles) = self
                    .queries
                    .lock()
                    .expect("query registry")
                    .remove(&cancel.query_id)
                {
                    handles.iter().for_each(AbortHandle::abort);
                }
                Vec::new()
            }
            protocol::ACTION_DROP => {
                let drop = protocol::DropTable::decode(action.body)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                if put_target(
                    &self.files.data_dir,
                    &[drop.table.clone(), "0".into(), "chunks/x.parquet".into()],
                )
                .is_err()
                {
                    return Err(Status::invalid_argument(format!(
                        "bad table name {}",
                        drop.table
                    )));
                }
                let dir = self.files.data_dir.join("tables").join(&drop.table);
                if let Ok(entries) = std::fs::read_dir(&dir) {
                    for e in entries.flatten() {
                        if e.file_name().to_string_lossy() != drop.keep_load {
                            std::fs::remove_dir_all(e.path()).map_err(|err| {
                                Status::internal(format!("{}: {err}", e.path().display()))
                            })?;
                        }
                    }
                }
                Vec::new()
            }
            protocol::ACTION_STATISTICS => statistics(&self.files.data_dir).encode_to_vec(),
            other => return Err(Status::invalid_argument(format!("unknown action {other}"))),
        };
        let result = arrow_flight::Result { body: body.into() };
        Ok(Response::new(Box::pin(futures::stream::once(async {
            Ok(result)
        }))))
    }

    async fn list_actions(
        &self,
        _r: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let actions = [
            (protocol::ACTION_HEALTH, "running fragments and counters"),
            (protocol::ACTION_CANCEL, "abort a query's fragments"),
            (protocol::ACTION_DROP, "remove a table's loads but one"),
            (
                protocol::ACTION_STATISTICS,
                "the loads held: files and bytes",
            ),
        ]
        .map(|(t, d)| {
            Ok(ActionType {
                r#type: t.into(),
                description: d.into(),
            })
        });
        Ok(Response::new(Box::pin(futures::stream::iter(actions))))
    }

    async fn do_exchange(
        &self,
        _r: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange"))
    }
}
