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

/// Makes the joins run at the czar yield to the scheduler between output batches, and between the batches they
/// read. A join can produce many batches from one input batch without awaiting anything, and an aggregate above
/// it then loops without ever returning Pending; a nested-loop join whose filter keeps nothing produces no batch at
/// all while it compares every pair. Either way a cancelled or timed-out query (an aborted job) would keep its cores
/// until the join ended, and other queries would starve: a task stops only where it yields. So each join's inputs
/// yield before every batch ([`YieldingExec`]), and its output is cooperative. A nested-loop join compares each
/// batch of its probe (right) side with the whole buffered left side before it reads the next, so that side comes
/// in slices of [`PROBE_ROWS`] rows: DataFusion then joins a slice with many left rows at once (8,192 pairs a
/// step, as vectorized as a full batch), and a slice against 200,000 left rows takes well under a second even in
/// a debug build, where a full 8,192-row batch took minutes (measured: an aborted job's cores were busy for over
/// ten seconds before, under 0.5 s after).
pub fn yield_after_joins(plan: Arc<dyn ExecutionPlan>) -> DfResult<Arc<dyn ExecutionPlan>> {
    use datafusion::physical_plan::coop::CooperativeExec;
    use datafusion::physical_plan::joins::CrossJoinExec;
    Ok(plan
        .transform_up(|node| {
            let join = node.is::<NestedLoopJoinExec>()
                || node.is::<HashJoinExec>()
                || node.is::<CrossJoinExec>()
                || node.is::<ConeJoinExec>();
            if !join {
                return Ok(Transformed::no(node));
            }
            let nested = node.is::<NestedLoopJoinExec>() || node.is::<CrossJoinExec>();
            let inputs = node
                .children()
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    let slice = if nested && i == 1 {
                        PROBE_ROWS
                    } else {
                        usize::MAX
                    };
                    Arc::new(YieldingExec::new(c.clone(), slice)) as Arc<dyn ExecutionPlan>
                })
                .collect();
            let node = datafusion::physical_plan::execution_plan::replace_children_if_necessary(
                node, inputs,
            )?;
            Ok(Transformed::yes(
                Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>
            ))
        })?
        .data)
}

/// The rows of a nested-loop join's probe side between yields.
pub const PROBE_ROWS: usize = 4;

/// Its input's batches, in slices of at most `slice` rows, each after a yield to the scheduler.
#[derive(Debug)]
pub struct YieldingExec {
    input: Arc<dyn ExecutionPlan>,
    slice: usize,
}

impl YieldingExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, slice: usize) -> YieldingExec {
        YieldingExec {
            input,
            slice: slice.max(1),
        }
    }
}

impl datafusion::physical_plan::DisplayAs for YieldingExec {
    fn fmt_as(
        &self,
        _t: datafusion::physical_plan::DisplayFormatType,
        f: &mut std::fmt::Formatter,
    ) -> std::fmt::Result {
        if self.slice == usize::MAX {
            write!(f, "YieldingExec")
        } else {
            write!(f, "YieldingExec: slices of {} rows", self.slice)
        }
    }
}

impl ExecutionPlan for YieldingExec {
    fn name(&self) -> &str {
        "YieldingExec"
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }

    fn properties(&self) -> &Arc<datafusion::physical_plan::PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => {
                Ok(Arc::new(YieldingExec::new(input, self.slice)))
            }
            _ => Err(datafusion::common::DataFusionError::Internal(
                "YieldingExec has one input".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<datafusion::execution::TaskContext>,
    ) -> DfResult<datafusion::physical_plan::SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        Ok(Box::pin(YieldingStream {
            schema: input.schema(),
            input,
            queued: std::collections::VecDeque::new(),
            yielded: false,
            slice: self.slice,
        }))
    }
}

struct YieldingStream {
    schema: datafusion::arrow::datatypes::SchemaRef,
    input: datafusion::physical_plan::SendableRecordBatchStream,
    queued: std::collections::VecDeque<datafusion::arrow::array::RecordBatch>,
    yielded: bool,
    slice: usize,
}

impl futures::Stream for YieldingStream {
    type Item = DfResult<datafusion::arrow::array::RecordBatch>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if !self.yielded {
            // Back to the scheduler once before each batch: an aborted task ends here.
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if let Some(b) = self.queued.pop_front() {
            self.yielded = false;
            return Poll::Ready(Some(Ok(b)));
        }
        match self.input.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(b))) if b.num_rows() > self.slice => {
                let mut at = 0;
                while at < b.num_rows() {
                    let n = self.slice.min(b.num_rows() - at);
                    self.queued.push_back(b.slice(at, n));
                    at += n;
                }
                self.yielded = false;
                Poll::Ready(self.queued.pop_front().map(Ok))
            }
            Poll::Ready(item) => {
                self.yielded = false;
                Poll::Ready(item)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl datafusion::physical_plan::RecordBatchStream for YieldingStream {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.schema.clone()
    }
}
