//! Shipping plan fragments to workers and streaming their results back, with failover to replicas.
//!
//! [`distribute`] rewrites the czar's physical plan: each maximal subtree that works chunk by chunk (a chunk scan
//! under filters, projections, partial aggregates, per-partition sorts and top-k, local limits) becomes a
//! [`RemoteExec`] with one partition per chunk. Everything above it (final aggregation, merge of sorted streams,
//! joins, set operations, OFFSET) runs at the czar, streaming.
//!
//! Failover: a chunk's fragment goes to the first worker of its placement; if the call fails, or the stream breaks
//! part-way, the next replica runs it again and the rows already passed on are skipped (a fragment over one chunk
//! yields its rows in the same order every time: workers run it as one partition over the same files). When no
//! replica is left the query fails with an error that names the chunk and the workers tried: never a partial result.
//! Workers report errors of the query itself (a failing cast, a missing load) as `InvalidArgument`: those end the
//! query at once; any other failure counts against the worker.

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow_flight::Ticket;
use arrow_flight::decode::FlightRecordBatchStream;
use datafusion::common::JoinType;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::limit::LocalLimitExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::{SinkExt, StreamExt, TryStreamExt};
use prost::Message;
use protocol::{ChunkScanExec, ConeJoinExec, FragmentTicket};

use crate::cluster::{Cluster, WorkerHandle};

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

impl RemoteExec {
    pub fn fragment(&self) -> &Arc<dyn ExecutionPlan> {
        &self.core.fragment
    }

    pub fn chunks(&self) -> &[u64] {
        self.core.chunks()
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

    /// The fragment with each leaf narrowed to the chunks at `indexes` (replicated leaves stay whole).
    fn fragment_for(&self, indexes: &[usize]) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut next = 0;
        Ok(self
            .fragment
            .clone()
            .transform_up(|node| {
                Ok(if node.is::<ChunkScanExec>() {
                    let leaf = &self.leaves[next];
                    next += 1;
                    let mut scan = leaf.scan.clone();
                    if !scan.chunks.is_empty() {
                        scan.chunks = indexes.iter().map(|&i| leaf.scan.chunks[i]).collect();
                    }
                    Transformed::yes(
                        Arc::new(ChunkScanExec::new(scan, leaf.schema())) as Arc<dyn ExecutionPlan>
                    )
                } else {
                    Transformed::no(node)
                })
            })?
            .data)
    }

    fn ticket(&self, indexes: &[usize]) -> DfResult<Vec<u8>> {
        let plan = protocol::encode_fragment(self.fragment_for(indexes)?)?;
        Ok(FragmentTicket {
            query_id: self.query_id.clone(),
            plan,
        }
        .encode_to_vec())
    }

    /// The workers to ask for `chunk`, in order: where it was shipped, else the cluster's placement.
    fn workers_for(&self, chunk: u64) -> Vec<Arc<WorkerHandle>> {
        match self.stored.as_ref().and_then(|p| p.get(&chunk)) {
            // Shipped chunks are only where they were shipped.
            Some(addresses) => addresses
                .iter()
                .filter_map(|a| {
                    self.cluster
                        .workers
                        .iter()
                        .find(|w| &w.address == a)
                        .cloned()
                })
                .collect(),
            None => self.cluster.placement(chunk),
        }
    }

    /// Partition `partition` of the per-chunk execution: chunk `partition` from its workers, with failover.
    fn chunk_stream(&self, partition: usize) -> DfResult<SendableRecordBatchStream> {
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
        let (mut tx, rx) = futures::channel::mpsc::channel::<DfResult<RecordBatch>>(2);
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
                let stream = match client
                    .do_get(Ticket {
                        ticket: ticket.clone().into(),
                    })
                    .await
                {
                    Ok(response) => response.into_inner(),
                    Err(status) => {
                        if status.code() == tonic::Code::InvalidArgument {
                            // The worker answered and refused: a query error, not a dead worker.
                            let _ = tx
                                .send(Err(DataFusionError::Execution(
                                    status.message().to_string(),
                                )))
                                .await;
                            return;
                        }
                        worker.mark(false);
                        last_error = status.message().to_string();
                        continue;
                    }
                };
                let mut batches = FlightRecordBatchStream::new_from_flight_data(
                    stream.map_err(|s| arrow_flight::error::FlightError::Tonic(Box::new(s))),
                );
                // Rows this attempt has produced, to skip those an earlier attempt already passed on.
                let mut seen = 0usize;
                let mut failed = None;
                while let Some(item) = batches.next().await {
                    match item {
                        Ok(batch) => {
                            let n = batch.num_rows();
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
                match failed {
                    None => {
                        worker.mark(true);
                        return;
                    }
                    Some(arrow_flight::error::FlightError::Tonic(status))
                        if status.code() == tonic::Code::InvalidArgument =>
                    {
                        let _ = tx
                            .send(Err(DataFusionError::Execution(
                                status.message().to_string(),
                            )))
                            .await;
                        return;
                    }
                    Some(e) => {
                        worker.mark(false);
                        last_error = e.to_string();
                    }
                }
            }
            let _ = tx
                .send(Err(DataFusionError::Execution(format!(
                    "chunk {chunk} of {table} is unavailable: no replica answered (tried {}; last error: {last_error})",
                    tried.join(", ")
                ))))
                .await;
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, rx)))
    }

    /// A group of chunks in one call to their first worker. The (small) partial-aggregate answer is buffered, so
    /// if that worker fails the group runs again chunk by chunk with the usual failover, and nothing was passed on
    /// twice.
    fn group_stream(self: Arc<Self>, members: Vec<usize>) -> DfResult<SendableRecordBatchStream> {
        let schema = self.fragment.schema();
        let ticket = self.ticket(&members)?;
        let chunk = self.chunks()[members[0]];
        let worker = self.workers_for(chunk).into_iter().next();
        let (mut tx, rx) = futures::channel::mpsc::channel::<DfResult<RecordBatch>>(2);
        tokio::spawn(async move {
            let attempt = async {
                let worker = worker.ok_or(None)?;
                let _slot = worker
                    .slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| None)?;
                let response = worker
                    .client()
                    .do_get(Ticket {
                        ticket: ticket.into(),
                    })
                    .await
                    .map_err(|s| Some((worker.clone(), s)))?;
                let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(
                    response
                        .into_inner()
                        .map_err(|s| arrow_flight::error::FlightError::Tonic(Box::new(s))),
                )
                .try_collect()
                .await
                .map_err(|e| match e {
                    arrow_flight::error::FlightError::Tonic(s) => Some((worker.clone(), *s)),
                    other => Some((
                        worker.clone(),
                        tonic::Status::unavailable(other.to_string()),
                    )),
                })?;
                worker.mark(true);
                Ok::<_, Option<(Arc<WorkerHandle>, tonic::Status)>>(batches)
            };
            match attempt.await {
                Ok(batches) => {
                    for b in batches {
                        if tx.send(Ok(b)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(Some((_, status))) if status.code() == tonic::Code::InvalidArgument => {
                    let _ = tx
                        .send(Err(DataFusionError::Execution(
                            status.message().to_string(),
                        )))
                        .await;
                }
                Err(failure) => {
                    if let Some((worker, _)) = failure {
                        worker.mark(false);
                    }
                    for m in members {
                        let mut stream = match self.chunk_stream(m) {
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

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        match &self.groups {
            Some(groups) => self.core.clone().group_stream(groups[partition].clone()),
            None => self.core.chunk_stream(partition),
        }
    }
}

/// The chunk scans under `node` when everything between works partition by partition (one chunk each): filters,
/// projections, partial aggregates, per-partition sorts and limits over one scan, or a chunk-local join of two
/// (see [`crate::colocate`]) whose scans read the same chunks.
pub fn fragment_leaves(node: &Arc<dyn ExecutionPlan>) -> Option<Vec<ChunkScanExec>> {
    let any = node.as_ref();
    if let Some(scan) = any.downcast_ref::<ChunkScanExec>() {
        return Some(vec![scan.clone()]);
    }
    let per_partition = any.is::<FilterExec>()
        || any.is::<ProjectionExec>()
        || any.is::<CooperativeExec>()
        || any.is::<LocalLimitExec>()
        || any
            .downcast_ref::<AggregateExec>()
            .is_some_and(|a| *a.mode() == AggregateMode::Partial)
        || any
            .downcast_ref::<SortExec>()
            .is_some_and(|s| s.preserve_partitioning());
    if has_subquery(node) {
        // A scalar subquery's value is computed at the czar (`ScalarSubqueryExec`): it cannot travel in a fragment.
        return None;
    }
    match node.children().as_slice() {
        [child] if per_partition => fragment_leaves(child),
        [left, right] => {
            let (l, r) = (fragment_leaves(left)?, fragment_leaves(right)?);
            let replicated = |leaves: &[ChunkScanExec]| leaves.iter().all(|x| x.scan.replicated);
            let chunked = |leaves: &[ChunkScanExec]| leaves.iter().all(|x| !x.scan.replicated);
            let pairwise = if any.is::<ConeJoinExec>() {
                chunked(&l) && chunked(&r)
            } else if let Some(j) = any.downcast_ref::<HashJoinExec>() {
                match j.mode {
                    // Chunk i meets chunk i (co-located tables), or every chunk of the left side meets the whole
                    // replicated right side, keeping only what the left side preserves.
                    PartitionMode::Partitioned => {
                        chunked(&l)
                            && (chunked(&r)
                                || (replicated(&r)
                                    && matches!(
                                        j.join_type,
                                        JoinType::Inner
                                            | JoinType::Left
                                            | JoinType::LeftSemi
                                            | JoinType::LeftAnti
                                    )))
                    }
                    // A replicated build side under every chunk of the probe side.
                    PartitionMode::CollectLeft => {
                        replicated(&l)
                            && chunked(&r)
                            && matches!(
                                j.join_type,
                                JoinType::Inner
                                    | JoinType::Right
                                    | JoinType::RightSemi
                                    | JoinType::RightAnti
                            )
                    }
                    _ => false,
                }
            } else {
                false
            };
            if !pairwise {
                return None;
            }
            let leaves: Vec<ChunkScanExec> = l.into_iter().chain(r).collect();
            let chunks = &primary(&leaves).scan.chunks;
            leaves
                .iter()
                .all(|x| x.scan.replicated || &x.scan.chunks == chunks)
                .then_some(leaves)
        }
        _ => None,
    }
}

/// Whether one of the node's own expressions holds a scalar subquery.
fn has_subquery(node: &Arc<dyn ExecutionPlan>) -> bool {
    use datafusion::physical_expr::scalar_subquery::ScalarSubqueryExpr;
    let mut found = false;
    let _ = node.apply_expressions(&mut |e| {
        let _ = e.apply(|x| {
            found |= x.is::<ScalarSubqueryExpr>();
            Ok(TreeNodeRecursion::Continue)
        });
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// The leaf whose chunks a fragment runs over (the first that is not a replicated table).
fn primary(leaves: &[ChunkScanExec]) -> &ChunkScanExec {
    leaves
        .iter()
        .find(|l| !l.scan.replicated)
        .unwrap_or(&leaves[0])
}

/// Replaces every maximal per-chunk subtree of `plan` with a [`RemoteExec`].
pub fn distribute(
    plan: Arc<dyn ExecutionPlan>,
    cluster: &Arc<Cluster>,
    query_id: &str,
    tables: &std::collections::HashMap<String, Arc<crate::table::TableInfo>>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    Ok(plan
        .transform_down(|node| {
            let Some(leaves) = fragment_leaves(&node) else {
                return Ok(Transformed::no(node));
            };
            let stored = tables
                .get(&primary(&leaves).scan.table)
                .map(|t| t.placement.clone())
                .filter(|p| !p.is_empty());
            let core = Arc::new(Core {
                fragment: node.clone(),
                leaves,
                cluster: cluster.clone(),
                stored,
                query_id: query_id.to_string(),
            });
            // A partial aggregate over one chunked table: one call per worker.
            let groupable = core.leaves.len() == 1
                && !core.leaves[0].scan.replicated
                && core.chunks().len() > cluster.workers.len()
                && node
                    .downcast_ref::<AggregateExec>()
                    .is_some_and(|a| *a.mode() == AggregateMode::Partial);
            let groups = groupable.then(|| {
                let mut by_worker: std::collections::BTreeMap<String, Vec<usize>> =
                    Default::default();
                for (i, &chunk) in core.chunks().iter().enumerate() {
                    let first = core
                        .workers_for(chunk)
                        .first()
                        .map(|w| w.address.clone())
                        .unwrap_or_default();
                    by_worker.entry(first).or_default().push(i);
                }
                by_worker.into_values().collect::<Vec<_>>()
            });
            let partitions = match &groups {
                Some(g) => g.len(),
                None => core.chunks().len().max(1),
            };
            // One output partition per chunk (or group), whatever the fragment's root says (a join with a
            // replicated table reports the partitioning of one side); its ordering and equivalences hold per
            // partition.
            let properties = Arc::new(node.properties().as_ref().clone().with_partitioning(
                datafusion::physical_plan::Partitioning::UnknownPartitioning(partitions),
            ));
            let remote = RemoteExec {
                core,
                groups,
                properties,
            };
            Ok(Transformed::new(
                Arc::new(remote) as Arc<dyn ExecutionPlan>,
                true,
                TreeNodeRecursion::Jump,
            ))
        })?
        .data)
}
