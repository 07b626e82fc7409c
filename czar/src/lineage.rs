//! Where a column of a per-chunk subtree comes from: the chunk scan that reads it and its name in that table,
//! followed through plain column projections, filters, exchanges and chunk-local joins. [`crate::colocate`] asks it
//! when a join's side is itself a chunk-local join (three or more tables): the join key or position must be a column
//! of a known table, not a computed value and not a guess by name.

use std::sync::Arc;

use datafusion::common::JoinType;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use exec::{ChunkScanExec, ConeJoinExec};

/// The chunk scan whose column `index` of `node`'s output is, and the column's name there; None when the column is
/// computed, comes from a scan read with its overlap, or passes through an operator not followed here.
pub fn origin(node: &Arc<dyn ExecutionPlan>, index: usize) -> Option<(ChunkScanExec, String)> {
    let any = node.as_ref();
    if let Some(scan) = any.downcast_ref::<ChunkScanExec>() {
        // A scan read with its overlap holds rows of neighbouring chunks too: its columns are not of the partition's
        // chunk, and no rule that pairs chunk i with chunk i may rest on them.
        if scan.scan.overlap {
            return None;
        }
        let name = node.schema().fields().get(index)?.name().clone();
        return Some((scan.clone(), name));
    }
    if let Some(p) = any.downcast_ref::<ProjectionExec>() {
        let column = p.expr().get(index)?.expr.downcast_ref::<Column>()?;
        return origin(&node.children()[0].clone(), column.index());
    }
    if let Some(f) = any.downcast_ref::<FilterExec>() {
        let index = match f.projection() {
            Some(p) => *p.get(index)?,
            None => index,
        };
        return origin(&node.children()[0].clone(), index);
    }
    if any.is::<CooperativeExec>()
        || any.is::<RepartitionExec>()
        || any.is::<CoalescePartitionsExec>()
        || any.is::<SortExec>()
    {
        return origin(&node.children()[0].clone(), index);
    }
    // Joins: the left side's columns, then the right side's (an inner join's output), under the join's projection.
    let (left, right, index) = if let Some(j) = any.downcast_ref::<HashJoinExec>() {
        // Only joins whose output is both sides' columns (not semi or anti joins).
        if !matches!(j.join_type, JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full) {
            return None;
        }
        let index = match &j.projection {
            Some(p) => *p.get(index)?,
            None => index,
        };
        (j.left.clone(), j.right.clone(), index)
    } else if let Some(c) = any.downcast_ref::<ConeJoinExec>() {
        (c.left.clone(), c.right.clone(), index)
    } else {
        return None;
    };
    let left_len = left.schema().fields().len();
    if index < left_len {
        origin(&left, index)
    } else {
        origin(&right, index - left_len)
    }
}
