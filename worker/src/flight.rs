//! The worker's Arrow Flight service: `DoGet` runs a fragment ([`protocol::FragmentTicket`]) over local chunk files
//! ([`crate::scan`]) and streams its batches; `DoPut` and the `drop` and `statistics` actions manage what the worker
//! holds ([`crate::store`]); `health` and `cancel` (aborts the streams of a query). Every failure is a
//! [`WorkerError`], sent with the gRPC code of its [`protocol::ErrorCode`].

use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{
    ExecutionPlan, ExecutionPlanProperties, SendableRecordBatchStream,
};
use futures::stream::{AbortHandle, Abortable};
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use protocol::FragmentTicket;
use tonic::{Request, Response, Status, Streaming};

use crate::error::WorkerError;
use crate::scan::LocalFiles;
use crate::store;

/// What a fragment's operators may hold unless told ([`Worker::with_fragment_memory`]).
pub const DEFAULT_FRAGMENT_MEMORY: usize = 2 << 30;

/// The Flight service of one worker.
#[derive(Clone)]
pub struct Worker {
    files: Arc<LocalFiles>,
    running: Arc<AtomicU32>,
    served: Arc<AtomicU64>,
    /// Abort handles of running fragments, by query id.
    queries: Arc<Mutex<HashMap<String, Vec<AbortHandle>>>>,
    /// Bytes each fragment's operators may hold.
    fragment_memory: usize,
    /// The cluster secret calls must carry ([`protocol::SECRET_HEADER`]); None: any caller is served.
    secret: Option<String>,
    /// Set when the worker stops: new fragments are refused (`Unavailable`: the czar tries a replica).
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl Worker {
    pub fn new(data_dir: &Path) -> Worker {
        Worker {
            files: Arc::new(LocalFiles::new(data_dir)),
            running: Arc::default(),
            served: Arc::default(),
            queries: Arc::default(),
            fragment_memory: DEFAULT_FRAGMENT_MEMORY,
            secret: None,
            stopping: Arc::default(),
        }
    }

    /// The same worker, each fragment's operators (hash tables, sorts, aggregates) held to `bytes`: a query too
    /// large for one worker fails with a clear error instead of taking the worker's memory from every other query.
    pub fn with_fragment_memory(mut self, bytes: usize) -> Worker {
        self.fragment_memory = bytes.max(1 << 20);
        self
    }

    /// The same worker, refusing every call that does not carry `secret`.
    pub fn with_secret(mut self, secret: Option<String>) -> Worker {
        self.secret = secret.filter(|s| !s.is_empty());
        self
    }

    /// Plans a fragment and runs it as one stream.
    pub fn run_fragment(&self, ticket: &FragmentTicket) -> DfResult<SendableRecordBatchStream> {
        // Fragments are decoded in the context their scans run in, with a memory pool of their own.
        // The shared context's functions, configuration, disk and cache managers; only the pool is the fragment's
        // (building a session state per fragment cost more than a cone's reads).
        let shared = &self.files.task;
        let env = shared.runtime_env();
        let runtime = Arc::new(datafusion::execution::runtime_env::RuntimeEnv {
            memory_pool: Arc::new(datafusion::execution::memory_pool::GreedyMemoryPool::new(
                self.fragment_memory,
            )),
            disk_manager: env.disk_manager.clone(),
            cache_manager: env.cache_manager.clone(),
            object_store_registry: env.object_store_registry.clone(),
        });
        let task_ctx = Arc::new(datafusion::execution::TaskContext::new(
            None,
            shared.session_id(),
            shared.session_config().clone(),
            shared.scalar_functions().clone(),
            shared.higher_order_functions().clone(),
            shared.aggregate_functions().clone(),
            shared.window_functions().clone(),
            runtime,
        ));
        let plan = exec::decode_fragment(&ticket.plan, &task_ctx, self.files.clone())?;
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
        self.serve_with_shutdown(listener, std::future::pending())
            .await
    }

    /// Serves until `stop` resolves, then stops gracefully: new fragments are refused with `Unavailable` (the czar
    /// runs them on a replica), connections are told to go away, and fragments in flight may finish for `grace`.
    pub async fn serve_until(
        self,
        listener: tokio::net::TcpListener,
        stop: impl std::future::Future<Output = ()>,
        grace: std::time::Duration,
    ) -> Result<(), tonic::transport::Error> {
        let stopping = self.stopping.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = self.serve_with_shutdown(listener, async {
            let _ = rx.await;
        });
        let mut server = std::pin::pin!(server);
        tokio::select! {
            served = server.as_mut() => return served,
            _ = stop => {}
        }
        stopping.store(true, Ordering::Relaxed);
        let _ = tx.send(());
        match tokio::time::timeout(grace, server).await {
            Ok(served) => served,
            Err(_) => {
                tracing::warn!(
                    event = "shutdown",
                    "stopping with fragments still running after {} s",
                    grace.as_secs_f64(),
                );
                Ok(())
            }
        }
    }

    /// Plain HTTP beside the Flight port: `/metrics` (Prometheus text format), `/health`, `/ready` (503 once
    /// stopping).
    pub async fn serve_http(self, listener: tokio::net::TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let worker = self.clone();
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let worker = worker.clone();
                    async move {
                        let (status, content_type, body) = match request.uri().path() {
                            "/metrics" => (200, protocol::metrics::CONTENT_TYPE, worker.metrics()),
                            "/health" => {
                                (200, "application/json", "{\"status\":\"ok\"}\n".to_string())
                            }
                            "/ready" if worker.stopping.load(Ordering::Relaxed) => (
                                503,
                                "application/json",
                                "{\"status\":\"stopping\"}\n".to_string(),
                            ),
                            "/ready" => (
                                200,
                                "application/json",
                                "{\"status\":\"ready\"}\n".to_string(),
                            ),
                            _ => (
                                404,
                                "text/plain",
                                "not found: /metrics, /health, /ready\n".to_string(),
                            ),
                        };
                        hyper::Response::builder()
                            .status(status)
                            .header("content-type", content_type)
                            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                    }
                },
            );
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    /// The worker's `/metrics`.
    pub fn metrics(&self) -> String {
        use protocol::metrics::{describe, sample};
        let mut out = String::new();
        describe(
            &mut out,
            "skyshard_worker_fragments_total",
            "counter",
            "Plan fragments served.",
        );
        sample(
            &mut out,
            "skyshard_worker_fragments_total",
            "",
            self.served.load(Ordering::Relaxed),
        );
        describe(
            &mut out,
            "skyshard_worker_fragments_running",
            "gauge",
            "Plan fragments running now.",
        );
        sample(
            &mut out,
            "skyshard_worker_fragments_running",
            "",
            self.running.load(Ordering::Relaxed),
        );
        describe(
            &mut out,
            "skyshard_worker_read_bytes_total",
            "counter",
            "Bytes read from chunk files by fragments.",
        );
        sample(
            &mut out,
            "skyshard_worker_read_bytes_total",
            "",
            crate::scan::bytes_read(),
        );
        let census = store::census(&self.files.data_dir);
        let files: usize = census.loads.iter().map(|l| l.files.len()).sum();
        let bytes: u64 = census
            .loads
            .iter()
            .flat_map(|l| &l.files)
            .map(|f| f.bytes)
            .sum();
        describe(
            &mut out,
            "skyshard_worker_files",
            "gauge",
            "Chunk and replicated files held.",
        );
        sample(&mut out, "skyshard_worker_files", "", files);
        describe(
            &mut out,
            "skyshard_worker_bytes",
            "gauge",
            "Bytes of the files held.",
        );
        sample(&mut out, "skyshard_worker_bytes", "", bytes);
        describe(
            &mut out,
            "skyshard_worker_loads",
            "gauge",
            "Table loads held.",
        );
        sample(&mut out, "skyshard_worker_loads", "", census.loads.len());
        protocol::metrics::write_process(&mut out);
        out
    }

    async fn serve_with_shutdown(
        self,
        listener: tokio::net::TcpListener,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let secret = self.secret.clone();
        let service = FlightServiceServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let service = tonic::service::interceptor::InterceptedService::new(
            service,
            move |request: tonic::Request<()>| {
                let Some(secret) = &secret else {
                    return Ok(request);
                };
                let given = request
                    .metadata()
                    .get(protocol::SECRET_HEADER)
                    .map(|v| v.as_bytes())
                    .unwrap_or_default();
                // Compared without an early exit.
                let same = given.len() == secret.len()
                    && given
                        .iter()
                        .zip(secret.as_bytes())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0;
                if same {
                    Ok(request)
                } else {
                    Err(tonic::Status::unauthenticated(
                        "this worker answers only its czar (the cluster secret is missing or wrong)",
                    ))
                }
            },
        );
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, stop)
            .await
    }
}

/// A fragment's failure as the czar receives it: its [`protocol::ErrorCode`] decides whether a replica is tried.
fn status(e: DataFusionError) -> Status {
    WorkerError::from_datafusion(e).into()
}

type Stream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Between a fragment's messages, at most [`protocol::KEEP_ALIVE`] passes without one: when no batch is ready
/// (a partial aggregate answers only after its last chunk) a message with only `app_metadata` says the worker is
/// still at work, so the czar can tell a slow fragment from a hung worker whatever the number of chunks.
fn with_keep_alive(
    flight: impl futures::Stream<Item = Result<FlightData, Status>> + Send + 'static,
) -> impl futures::Stream<Item = Result<FlightData, Status>> + Send + 'static {
    let start = tokio::time::Instant::now() + protocol::KEEP_ALIVE;
    let ticks = tokio::time::interval_at(start, protocol::KEEP_ALIVE);
    futures::stream::unfold(
        (Box::pin(flight), ticks),
        |(mut flight, mut ticks)| async move {
            tokio::select! {
                biased;
                item = flight.next() => {
                    ticks.reset();
                    item.map(|i| (i, (flight, ticks)))
                }
                _ = ticks.tick() => {
                    let alive = FlightData {
                        app_metadata: protocol::KEEP_ALIVE_METADATA.into(),
                        ..Default::default()
                    };
                    Some((Ok(alive), (flight, ticks)))
                }
            }
        },
    )
}

/// A running fragment: counted, and cancellable through its query id, until its stream is dropped.
struct Running {
    running: Arc<AtomicU32>,
    queries: Arc<Mutex<HashMap<String, Vec<AbortHandle>>>>,
    query_id: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::Relaxed);
        let mut q = self
            .queries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
        if self.stopping.load(Ordering::Relaxed) {
            return Err(Status::unavailable("this worker is stopping"));
        }
        let ticket =
            FragmentTicket::decode(request.into_inner().ticket).map_err(WorkerError::BadTicket)?;
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
        Ok(Response::new(Box::pin(with_keep_alive(flight))))
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
        let bytes = store::put(&self.files.data_dir, first, stream).await?;
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
                let cancel = protocol::Cancel::decode(action.body).map_err(|source| {
                    WorkerError::BadAction {
                        action: protocol::ACTION_CANCEL,
                        source,
                    }
                })?;
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
                let drop = protocol::DropTable::decode(action.body).map_err(|source| {
                    WorkerError::BadAction {
                        action: protocol::ACTION_DROP,
                        source,
                    }
                })?;
                store::drop_loads(&self.files.data_dir, &drop.table, &drop.keep_load)?;
                Vec::new()
            }
            protocol::ACTION_STATISTICS => store::statistics(&self.files.data_dir).encode_to_vec(),
            protocol::ACTION_CENSUS => store::census(&self.files.data_dir).encode_to_vec(),
            protocol::ACTION_DROP_CHUNKS => {
                let drop = protocol::DropChunks::decode(action.body).map_err(|source| {
                    WorkerError::BadAction {
                        action: protocol::ACTION_DROP_CHUNKS,
                        source,
                    }
                })?;
                store::drop_chunks(&self.files.data_dir, &drop)?;
                Vec::new()
            }
            protocol::ACTION_FETCH => {
                let fetch = protocol::FetchFile::decode(action.body).map_err(|source| {
                    WorkerError::BadAction {
                        action: protocol::ACTION_FETCH,
                        source,
                    }
                })?;
                let pieces = store::fetch(&self.files.data_dir, &fetch)?.map(|piece| {
                    piece
                        .map(|p| arrow_flight::Result {
                            body: p.encode_to_vec().into(),
                        })
                        .map_err(Status::from)
                });
                return Ok(Response::new(Box::pin(pieces)));
            }
            other => return Err(WorkerError::UnknownAction(other.to_string()).into()),
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
            (
                protocol::ACTION_CENSUS,
                "every file held, by table and load",
            ),
            (
                protocol::ACTION_FETCH,
                "a held file read back, with its SHA-256",
            ),
            (
                protocol::ACTION_DROP_CHUNKS,
                "remove a load's files of some chunks",
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
