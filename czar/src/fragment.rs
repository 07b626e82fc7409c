//! What works chunk by chunk: the rules that decide which subtrees of a physical plan can run on the workers as
//! fragments ([`fragment_leaves`]), which joins with a replicated table keep a chunk's answer complete
//! ([`keeps_chunked_side`]), and the one helper that narrows the chunk scans of a subtree ([`narrow`]). Both
//! [`crate::colocate`] (before the cut) and [`crate::distribute`] (the cut) follow them.

use std::sync::Arc;

use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{JoinSide, JoinType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec, PartitionMode};
use datafusion::physical_plan::limit::LocalLimitExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use exec::{ChunkScanExec, ConeJoinExec};
use protocol::ChunkScan;

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
        // A list broadcast to the chunks ([`crate::colocate`]): its rows travel inside the fragment, each chunk's
        // own rows meet all of them, and an inner join finds every pair once, in the chunk of its table row.
        [list, table] if broadcast_list(node, list) => {
            let leaves = fragment_leaves(table)?;
            leaves
                .iter()
                .all(|x| !x.scan.replicated && !x.scan.overlap)
                .then_some(leaves)
        }
        [left, right] => {
            let (l, r) = (fragment_leaves(left)?, fragment_leaves(right)?);
            let replicated = |leaves: &[ChunkScanExec]| leaves.iter().all(|x| x.scan.replicated);
            let chunked = |leaves: &[ChunkScanExec]| leaves.iter().all(|x| !x.scan.replicated);
            let pairwise = if any.is::<ConeJoinExec>() {
                // Each side is a fragment already (a replicated table may be joined under its chunks): it only
                // needs to be read by chunk.
                let by_chunk = |leaves: &[ChunkScanExec]| leaves.iter().any(|x| !x.scan.replicated);
                by_chunk(&l) && by_chunk(&r)
            } else if let Some(j) = any.downcast_ref::<HashJoinExec>() {
                match j.mode {
                    // Chunk i meets chunk i (co-located tables), or every chunk of the left side meets the whole
                    // replicated right side, keeping only what the left side preserves.
                    PartitionMode::Partitioned => {
                        chunked(&l)
                            && (chunked(&r)
                                || (replicated(&r)
                                    && keeps_chunked_side(j.join_type, JoinSide::Left)))
                    }
                    // A replicated build side under every chunk of the probe side.
                    PartitionMode::CollectLeft => {
                        replicated(&l)
                            && chunked(&r)
                            && keeps_chunked_side(j.join_type, JoinSide::Right)
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

/// An inner nested-loop join whose build side is rows in memory (an upload, computed at the czar).
fn broadcast_list(node: &Arc<dyn ExecutionPlan>, list: &Arc<dyn ExecutionPlan>) -> bool {
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::datasource::source::DataSourceExec;
    node.downcast_ref::<NestedLoopJoinExec>()
        .is_some_and(|j| *j.join_type() == JoinType::Inner)
        && list.downcast_ref::<DataSourceExec>().is_some_and(|d| {
            d.data_source()
                .downcast_ref::<MemorySourceConfig>()
                .is_some()
        })
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
pub fn primary(leaves: &[ChunkScanExec]) -> &ChunkScanExec {
    leaves
        .iter()
        .find(|l| !l.scan.replicated)
        .unwrap_or(&leaves[0])
}

/// Whether a join with a replicated table (on every worker) may run under every chunk of the other side, the
/// chunked one: only when it keeps what the chunked side preserves (inner, or outer/semi/anti on the chunked
/// side), so each chunk's answer is complete on its own. The one join-locality rule for replicated tables, used when
/// rewriting (`colocate`) and when cutting fragments ([`fragment_leaves`]).
pub fn keeps_chunked_side(join: JoinType, chunked: JoinSide) -> bool {
    match chunked {
        JoinSide::Left => matches!(
            join,
            JoinType::Inner | JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti
        ),
        _ => matches!(
            join,
            JoinType::Inner | JoinType::Right | JoinType::RightSemi | JoinType::RightAnti
        ),
    }
}

/// `plan` with every chunk scan changed by `change` (narrowed to fewer chunks, told to read the overlap).
pub fn narrow(
    plan: Arc<dyn ExecutionPlan>,
    mut change: impl FnMut(&mut ChunkScan),
) -> DfResult<Arc<dyn ExecutionPlan>> {
    Ok(plan
        .transform_up(|node| {
            Ok(match node.downcast_ref::<ChunkScanExec>() {
                Some(leaf) => {
                    let mut scan = leaf.scan.clone();
                    change(&mut scan);
                    Transformed::yes(
                        Arc::new(ChunkScanExec::new(scan, leaf.schema())) as Arc<dyn ExecutionPlan>
                    )
                }
                None => Transformed::no(node),
            })
        })?
        .data)
}
