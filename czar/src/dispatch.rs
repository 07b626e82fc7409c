//! Sending fragments to workers and streaming their results back: [`RemoteExec`], the leaf that
//! [`crate::distribute`] puts in place of each per-chunk subtree of the plan.
//!
//! Choosing workers: a chunk goes to the workers [`Cluster::holders`] names (where a shipped table's chunk was
//! put, else the cluster's placement with its replicas), healthy ones first.
//!
//! Failover: a chunk's fragment goes to the first worker of its placement; if the call fails, or the stream breaks
//! part-way, the next replica runs it again and the rows already passed on are skipped (a fragment over one chunk
//! yields its rows in the same order every time: workers run it as one partition over the same files). When no
//! replica is left the query fails with an error that names the chunk and the workers tried: never a partial result.
//! Whether a failure is the worker's (try the next replica) or the query's (stop) is decided by its
//! [`ErrorCode`] alone ([`ErrorCode::retryable`]), never by message text.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use arrow_flight::Ticket;
use arrow_flight::decode::FlightRecordBatchStream;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use exec::ChunkScanExec;
use futures::{SinkExt, StreamExt, TryStreamExt};
use prost::Message;
use protocol::{ErrorCode, FragmentTicket};

use crate::cluster::{Cluster, WorkerHandle};
use crate::error::CzarError;
use crate::fragment::{narrow, primary};
use crate::progress::Progress;

/// A fragment run on the workers: one partition per chunk, or, for a partial aggregate over a single table, one
/// partition per worker carrying all the chunks that worker holds first (a partial aggregate over many chunks is
/// as good as one per chunk, and one call per worker costs far less than one per chunk).
pub struct RemoteExec {
    core: Arc<Core>,
    /// Grouped execution: the chunk indexes of each partition.
    groups: Option<Vec<Vec<usize>>>,
    properties: Arc<PlanProperties>,
}

/// What every partition of a [`RemoteExec`] shares (cloned into the tasks that run them).
struct Core {
    fragment: Arc<dyn ExecutionPlan>,
    /// The fragment's chunk scans (two for a chunk-local join), in `transform_up` order; all over the same chunks.
    leaves: Vec<ChunkScanExec>,
    cluster: Arc<Cluster>,
    /// Where the first leaf's table was shipped (`skyshard load`): chunk -> worker addresses.
    stored: Option<Arc<std::collections::HashMap<u64, Vec<String>>>>,
    query_id: String,
}

impl fmt::Debug for RemoteExec {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "RemoteExec({})", self.core.tables())
    }
}

/// The most chunks one grouped call carries (see [`RemoteExec::new`]).
const GROUP_CHUNKS: usize = 512;

impl RemoteExec {
    /// `fragment` run over the chunks of its `leaves` (in plan order); `grouped`: one call per worker carrying all
    /// the chunks that worker holds first (for a partial aggregate over one table), else one call per chunk.
    pub fn new(
        fragment: Arc<dyn ExecutionPlan>,
        leaves: Vec<ChunkScanExec>,
        cluster: &Arc<Cluster>,
        stored: Option<Arc<std::collections::HashMap<u64, Vec<String>>>>,
        query_id: &str,
        grouped: bool,
    ) -> RemoteExec {
        let core = Arc::new(Core {
            fragment: fragment.clone(),
            leaves,
            cluster: cluster.clone(),
            stored,
            query_id: query_id.to_string(),
        });
        let groups = grouped.then(|| {
            let mut by_worker: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
            for (i, &chunk) in core.chunks().iter().enumerate() {
                let first = core
                    .workers_for(chunk)
                    .first()
                    .map(|w| w.address.clone())
                    .unwrap_or_default();
                by_worker.entry(first).or_default().push(i);
            }
            // At most GROUP_CHUNKS chunks a call: a worker reads a call's chunk files as one scan, and a table of
            // tens of thousands of chunks would have it hold that many files open at once.
            by_worker
                .into_values()
                .flat_map(|members| {
                    members
                        .chunks(GROUP_CHUNKS)
                        .map(<[usize]>::to_vec)
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        });
        let partitions = match &groups {
            Some(g) => g.len(),
            None => core.chunks().len().max(1),
        };
        // One output partition per chunk (or group), whatever the fragment's root says (a join with a replicated
        // table reports the partitioning of one side); its ordering and equivalences hold per partition.
        let properties = Arc::new(fragment.properties().as_ref().clone().with_partitioning(
            datafusion::physical_plan::Partitioning::UnknownPartitioning(partitions),
        ));
        RemoteExec {
            core,
            groups,
            properties,
        }
    }

    pub fn fragment(&self) -> &Arc<dyn ExecutionPlan> {
        &self.core.fragment
    }

    pub fn chunks(&self) -> &[u64] {
        self.core.chunks()
    }

    /// The tables its fragment reads, as `a + b`.
    pub fn tables(&self) -> String {
        self.core.tables()
    }
}

impl Core {
    fn chunks(&self) -> &[u64] {
        &primary(&self.leaves).scan.chunks
    }

    fn tables(&self) -> String {
        let names: Vec<&str> = self.leaves.iter().map(|l| l.scan.table.as_str()).collect();
        names.join(" + ")
    }

    /// The fragment with each leaf narrowed to the chunks at `indexes` (replicated leaves stay whole; all chunked
    /// leaves of a fragment read the same chunks).
    fn fragment_for(&self, indexes: &[usize]) -> DfResult<Arc<dyn ExecutionPlan>> {
        narrow(self.fragment.clone(), |scan| {
            if !scan.parts.is_empty() {
                // A scan with parts reads each partition's own chunks and cell (see `colocate`).
                let parts = std::mem::take(&mut scan.parts);
                scan.chunks = Vec::new();
                let mut ranges = Vec::new();
                for &i in indexes {
                    scan.chunks.extend(&parts[i].chunks);
                    ranges.extend(&parts[i].ranges);
                }
                scan.chunks.sort_unstable();
                scan.chunks.dedup();
                if !ranges.is_empty() {
                    scan.ranges = ranges;
                }
            } else if !scan.chunks.is_empty() {
                scan.chunks = indexes.iter().map(|&i| scan.chunks[i]).collect();
            }
        })
    }

    fn ticket(&self, indexes: &[usize]) -> DfResult<Vec<u8>> {
        let plan = exec::encode_fragment(self.fragment_for(indexes)?)?;
        Ok(FragmentTicket {
            query_id: self.query_id.clone(),
            plan,
        }
        .encode_to_vec())
    }

    /// The workers to ask for `chunk`, in order.
    fn workers_for(&self, chunk: u64) -> Vec<Arc<WorkerHandle>> {
        self.cluster.holders(chunk, self.stored.as_deref())
    }

    /// Partition `partition` of the per-chunk execution: chunk `partition` from its workers, with failover; reported
    /// to `progress` when watched.
    fn chunk_stream(
        &self,
        partition: usize,
        progress: Option<Arc<Progress>>,
    ) -> DfResult<SendableRecordBatchStream> {
        let schema = self.fragment.schema();
        let scan = &primary(&self.leaves).scan;
        if scan.chunks.is_empty() && !scan.replicated {
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::empty(),
            )));
        }
        let chunk = scan.chunks.get(partition).copied().unwrap_or(0);
        let ticket = self.ticket(&[partition])?;
        let workers = if scan.replicated {
            // Every worker holds a replicated table: start with one picked by partition, then the others.
            let mut w = self.cluster.workers.clone();
            let n = w.len();
            w.rotate_left(partition % n);
            w
        } else {
            self.workers_for(chunk)
        };
        let table = self.tables();
        let primary = if scan.replicated {
            None
        } else {
            self.cluster.primary(chunk, self.stored.as_deref())
        };
        let (mut tx, rx) = futures::channel::mpsc::channel::<DfResult<RecordBatch>>(2);
        let silence = self.cluster.silence;
        CHUNK_RUNS.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let mut passed = 0usize;
            let mut tried = Vec::new();
            let mut last_error = String::new();
            for worker in workers {
                tried.push(worker.address.clone());
                let Ok(_slot) = worker.slots.clone().acquire_owned().await else {
                    break;
                };
                let mut client = worker.client();
                let call = client.do_get(Ticket {
                    ticket: ticket.clone().into(),
                });
                let stream = match tokio::time::timeout(silence, call).await {
                    Err(_) => {
                        // A worker that hangs is treated like a dead one.
                        worker.mark(false);
                        last_error = format!("no answer within {} s", silence.as_secs_f64());
                        continue;
                    }
                    Ok(Ok(response)) => response.into_inner(),
                    Ok(Err(status)) => {
                        if let Some(refusal) = refused(&worker, &status) {
                            // The worker answered and refused: a query error, not a dead worker.
                            let _ = tx.send(Err(refusal)).await;
                            return;
                        }
                        worker.mark(false);
                        last_error = status.message().to_string();
                        continue;
                    }
                };
                let (mut batches, heard) = decode(stream);
                // Rows this attempt has produced, to skip those an earlier attempt already passed on.
                let mut seen = 0usize;
                let mut failed = None;
                loop {
                    let item = match next_within(&mut batches, &heard, silence).await {
                        Ok(Some(item)) => item,
                        Ok(None) => break,
                        Err(()) => {
                            failed = Some(arrow_flight::error::FlightError::ProtocolError(
                                format!("no data within {} s", silence.as_secs_f64()),
                            ));
                            break;
                        }
                    };
                    match item {
                        Ok(batch) => {
                            let n = batch.num_rows();
                            ROWS_RECEIVED.fetch_add(n as u64, Ordering::Relaxed);
                            if let Some(p) = &progress {
                                p.rows(&worker.address, n as u64);
                            }
                            let skip = passed.saturating_sub(seen).min(n);
                            seen += n;
                            if skip < n {
                                passed += n - skip;
                                if tx.send(Ok(batch.slice(skip, n - skip))).await.is_err() {
                                    return; // the query was dropped
                                }
                            }
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                if let Some(arrow_flight::error::FlightError::Tonic(status)) = &failed
                    && let Some(refusal) = refused(&worker, status)
                {
                    let _ = tx.send(Err(refusal)).await;
                    return;
                }
                match failed {
                    None => {
                        worker.mark(true);
                        if let Some(p) = &progress {
                            p.done(&worker.address, 1);
                        }
                        if let Some(primary) = primary.filter(|p| *p != worker.address) {
                            let why = if last_error.is_empty() {
                                "it was known to be down"
                            } else {
                                &last_error
                            };
                            moved(&table, chunk, &primary, &worker.address, why);
                        }
                        return;
                    }
                    Some(e) => {
                        worker.mark(false);
                        last_error = e.to_string();
                    }
                }
            }
            let unavailable = CzarError::ChunkUnavailable {
                table,
                chunk,
                tried,
                last_error,
            };
            let _ = tx.send(Err(unavailable.into())).await;
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, rx)))
    }

    /// A group of chunks in one call to their first worker. The (small) partial-aggregate answer is buffered, so
    /// if that worker fails the group runs again chunk by chunk with the usual failover, and nothing was passed on
    /// twice.
    fn group_stream(
        self: Arc<Self>,
        members: Vec<usize>,
        progress: Option<Arc<Progress>>,
    ) -> DfResult<SendableRecordBatchStream> {
        let schema = self.fragment.schema();
        let ticket = self.ticket(&members)?;
        CHUNK_RUNS.fetch_add(members.len() as u64, Ordering::Relaxed);
        let chunk = self.chunks()[members[0]];
        let worker = self.workers_for(chunk).into_iter().next();
        let (mut tx, rx) = futures::channel::mpsc::channel::<DfResult<RecordBatch>>(2);
        // Silence is allowed per message: a worker busy with a partial aggregate (which answers only after its last
        // chunk) sends keep-alives (`protocol::KEEP_ALIVE`), so a hung one is found as fast as for one chunk.
        let silence = self.cluster.silence;
        tokio::spawn(async move {
            let attempt = async {
                let worker = worker.ok_or(None)?;
                let _slot = worker
                    .slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| None)?;
                let hung = || {
                    Some((
                        worker.clone(),
                        tonic::Status::deadline_exceeded(format!(
                            "no answer within {} s",
                            silence.as_secs_f64()
                        )),
                    ))
                };
                let mut client = worker.client();
                let call = client.do_get(Ticket {
                    ticket: ticket.into(),
                });
                let response = tokio::time::timeout(silence, call)
                    .await
                    .map_err(|_| hung())?
                    .map_err(|s| Some((worker.clone(), s)))?;
                let (mut stream, heard) = decode(response.into_inner());
                let mut batches = Vec::new();
                loop {
                    match next_within(&mut stream, &heard, silence).await {
                        Err(()) => return Err(hung()),
                        Ok(None) => break,
                        Ok(Some(Ok(b))) => batches.push(b),
                        Ok(Some(Err(arrow_flight::error::FlightError::Tonic(s)))) => {
                            return Err(Some((worker.clone(), *s)));
                        }
                        Ok(Some(Err(other))) => {
                            return Err(Some((
                                worker.clone(),
                                tonic::Status::unavailable(other.to_string()),
                            )));
                        }
                    }
                }
                worker.mark(true);
                if let Some(p) = &progress {
                    let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
                    p.rows(&worker.address, rows);
                    p.done(&worker.address, members.len() as u64);
                }
                Ok::<_, Option<(Arc<WorkerHandle>, tonic::Status)>>(batches)
            };
            let outcome = attempt.await;
            if let Err(Some((worker, status))) = &outcome
                && let Some(refusal) = refused(worker, status)
            {
                let _ = tx.send(Err(refusal)).await;
                return;
            }
            match outcome {
                Ok(batches) => {
                    for b in batches {
                        if tx.send(Ok(b)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(failure) => {
                    if let Some((worker, status)) = failure {
                        worker.mark(false);
                        tracing::warn!(
                            event = "failover",
                            worker = %worker.address,
                            chunks = members.len(),
                            "failover: a grouped call to {} failed ({}); its {} chunks run one by one on their \
                             replicas",
                            worker.address,
                            status.message(),
                            members.len()
                        );
                    }
                    for m in members {
                        let mut stream = match self.chunk_stream(m, progress.clone()) {
                            Ok(s) => s,
                            Err(e) => {
                                let _ = tx.send(Err(e)).await;
                                return;
                            }
                        };
                        while let Some(item) = stream.next().await {
                            if tx.send(item).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, rx)))
    }
}

/// Chunk runs served by another worker than the chunk's first holder (which failed, hung or was known down), since
/// the process started.
static FAILED_OVER: AtomicU64 = AtomicU64::new(0);

/// How many chunks have failed over to a replica since the process started (`/health` shows it).
pub fn chunks_failed_over() -> u64 {
    FAILED_OVER.load(Ordering::Relaxed)
}

/// Chunk runs asked of workers, and rows received from them, since the process started (`/metrics`).
static CHUNK_RUNS: AtomicU64 = AtomicU64::new(0);
static ROWS_RECEIVED: AtomicU64 = AtomicU64::new(0);

/// (chunk runs asked of workers, rows received from them) since the process started.
pub fn chunk_counters() -> (u64, u64) {
    (
        CHUNK_RUNS.load(Ordering::Relaxed),
        ROWS_RECEIVED.load(Ordering::Relaxed),
    )
}

/// Says which chunk ran off its first holder, where, and why: an operator reads it in the czar's log.
fn moved(table: &str, chunk: u64, from: &str, to: &str, why: &str) {
    FAILED_OVER.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        event = "failover",
        table,
        chunk,
        from,
        to,
        why,
        "failover: {table} chunk {chunk} moved from {from} to {to}: {why}"
    );
}

/// The error to end the query with when a worker's failure is final (the query's own, not the worker's); None
/// when the next replica should be tried.
/// When the last message of a worker's answer arrived: a batch or a keep-alive.
#[derive(Clone)]
struct Heard(Arc<std::sync::Mutex<tokio::time::Instant>>);

impl Heard {
    fn at(&self) -> tokio::time::Instant {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The record batches of a DoGet answer, and when its last message arrived. The worker's keep-alives
/// (`protocol::KEEP_ALIVE_METADATA` with no IPC message) count as signs of life and are taken out before decoding.
fn decode(stream: tonic::Streaming<arrow_flight::FlightData>) -> (FlightRecordBatchStream, Heard) {
    let heard = Heard(Arc::new(std::sync::Mutex::new(tokio::time::Instant::now())));
    let mark = heard.clone();
    let raw = stream
        .inspect(move |_| {
            *mark
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = tokio::time::Instant::now();
        })
        .try_filter(|d| {
            futures::future::ready(
                !(d.data_header.is_empty() && d.app_metadata == protocol::KEEP_ALIVE_METADATA),
            )
        })
        .map_err(|s| arrow_flight::error::FlightError::Tonic(Box::new(s)));
    (FlightRecordBatchStream::new_from_flight_data(raw), heard)
}

/// The next batch of an answer, waiting as long as messages keep coming; `Err` after `silence` without any (a hung
/// worker, whatever the number of chunks it works on).
async fn next_within(
    batches: &mut FlightRecordBatchStream,
    heard: &Heard,
    silence: std::time::Duration,
) -> Result<Option<Result<RecordBatch, arrow_flight::error::FlightError>>, ()> {
    loop {
        match tokio::time::timeout_at(heard.at() + silence, batches.next()).await {
            Ok(item) => return Ok(item),
            // A keep-alive came in meanwhile: wait again from it.
            Err(_) if heard.at() + silence > tokio::time::Instant::now() => continue,
            Err(_) => return Err(()),
        }
    }
}

fn refused(worker: &WorkerHandle, status: &tonic::Status) -> Option<DataFusionError> {
    let code = ErrorCode::from_grpc(status.code());
    (!code.retryable()).then(|| {
        CzarError::Worker {
            worker: worker.address.clone(),
            code,
            message: status.message().to_string(),
        }
        .into()
    })
}

impl DisplayAs for RemoteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "RemoteExec: {} chunks of {} on {} workers{}",
            self.core.chunks().len(),
            self.core.tables(),
            self.core.cluster.workers.len(),
            match &self.groups {
                Some(g) => format!(", {} calls", g.len()),
                None => String::new(),
            }
        )
    }
}

impl ExecutionPlan for RemoteExec {
    fn name(&self) -> &str {
        "RemoteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    exec::leaf_methods!();

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let progress = crate::progress::of(&context);
        match &self.groups {
            Some(groups) => self
                .core
                .clone()
                .group_stream(groups[partition].clone(), progress),
            None => self.core.chunk_stream(partition, progress),
        }
    }
}

/// The chunk runs of every fragment in `plan` (a fragment over a replicated table counts one), for a job's progress.
pub(crate) fn chunk_runs(plan: &Arc<dyn ExecutionPlan>) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![plan.clone()];
    while let Some(node) = stack.pop() {
        if let Some(remote) = node.downcast_ref::<RemoteExec>() {
            total += remote.chunks().len().max(1) as u64;
            continue;
        }
        stack.extend(node.children().into_iter().cloned());
    }
    total
}
