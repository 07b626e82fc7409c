//! Cutting the physical plan into fragments: [`distribute`] replaces each maximal subtree that works chunk by
//! chunk ([`crate::fragment`]: a chunk scan under filters, projections, partial aggregates, per-partition sorts and
//! top-k, local limits, and the chunk-local joins [`crate::colocate`] made) with a [`RemoteExec`] that runs it on
//! the workers. Everything
//! above stays at the czar: see [`crate::merge`].

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};

use crate::catalog::TableInfo;
use crate::cluster::Cluster;
use crate::dispatch::RemoteExec;
use crate::fragment::{fragment_leaves, primary};

/// Replaces every maximal per-chunk subtree of `plan` with a [`RemoteExec`].
pub fn distribute(
    plan: Arc<dyn ExecutionPlan>,
    cluster: &Arc<Cluster>,
    query_id: &str,
    tables: &HashMap<String, Arc<TableInfo>>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    Ok(plan
        .transform_down(|node| {
            let Some(leaves) = fragment_leaves(&node) else {
                return Ok(Transformed::no(node));
            };
            // Where each partition's chunks are: the table's placement, or for aligned scans (see
            // `colocate::align`) the workers holding all of a partition's chunks.
            let leaf = &primary(&leaves).scan;
            let stored = if leaf.parts.iter().any(|p| !p.holders.is_empty()) {
                Some(Arc::new(
                    leaf.chunks
                        .iter()
                        .zip(&leaf.parts)
                        .map(|(&key, part)| (key, part.holders.clone()))
                        .collect::<HashMap<u64, Vec<String>>>(),
                ))
            } else {
                tables
                    .get(&leaf.table)
                    .map(|t| t.placement.clone())
                    .filter(|p| !p.is_empty())
            };
            // A partial aggregate over one chunked table: one call per worker.
            let grouped = leaves.len() == 1
                && !leaves[0].scan.replicated
                && leaves[0].scan.chunks.len() > cluster.workers.len()
                && node
                    .downcast_ref::<AggregateExec>()
                    .is_some_and(|a| *a.mode() == AggregateMode::Partial);
            let remote = RemoteExec::new(node, leaves, cluster, stored, query_id, grouped);
            Ok(Transformed::new(
                Arc::new(remote) as Arc<dyn ExecutionPlan>,
                true,
                TreeNodeRecursion::Jump,
            ))
        })?
        .data)
}
