//! The merge at the czar: everything above the fragments. [`crate::distribute`] leaves DataFusion's own merge plan
//! in place: the final aggregate (`AggregateExec` in `Final`/`FinalPartitioned` mode) combines the workers' partial
//! aggregates, `SortPreservingMergeExec` merges their sorted (top-k) streams and applies the global limit (TOP,
//! OFFSET), joins that could not run chunk-local and set operations run here. After the cut, [`restore`] lets
//! DataFusion bring that plan's distribution and ordering requirements back in line (a rewritten join's output is
//! partitioned by chunk, not by its keys) and checks it; [`yield_after_joins`] keeps joins at the czar cooperative.

use std::sync::Arc;

use datafusion::common::Result as DfResult;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::ensure_requirements::EnsureRequirements;
use datafusion::physical_optimizer::output_requirements::OutputRequirements;
use datafusion::physical_optimizer::sanity_checker::SanityCheckPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec};
use exec::ConeJoinExec;

/// Re-establishes the distribution and ordering the merge plan needs above the fragments (the fragments are leaves
/// to DataFusion now), the root's own ones too (ORDER BY's final merge), then runs DataFusion's sanity check.
pub fn restore(
    plan: Arc<dyn ExecutionPlan>,
    options: &ConfigOptions,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let plan = OutputRequirements::new_add_mode().optimize(plan, options)?;
    let plan = EnsureRequirements::new().optimize(plan, options)?;
    let plan = OutputRequirements::new_remove_mode().optimize(plan, options)?;
    SanityCheckPlan::new().optimize(plan, options)
}

/// Makes the joins run at the czar yield to the scheduler between output batches. A join can produce many
/// batches from one input batch without awaiting anything, and an aggregate above it then loops without ever
/// returning Pending: a cancelled or timed-out query would keep its cores, and other queries would starve.
pub fn yield_after_joins(plan: Arc<dyn ExecutionPlan>) -> DfResult<Arc<dyn ExecutionPlan>> {
    use datafusion::physical_plan::coop::CooperativeExec;
    use datafusion::physical_plan::joins::CrossJoinExec;
    Ok(plan
        .transform_up(|node| {
            let join = node.is::<NestedLoopJoinExec>()
                || node.is::<HashJoinExec>()
                || node.is::<CrossJoinExec>()
                || node.is::<ConeJoinExec>();
            Ok(if join {
                Transformed::yes(Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>)
            } else {
                Transformed::no(node)
            })
        })?
        .data)
}
