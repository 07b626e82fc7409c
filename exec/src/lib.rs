//! Execution nodes that czar and workers share, and how fragments built from them travel.
//!
//! The czar plans an ADQL query with DataFusion; the part of the physical plan that runs chunk by chunk (scan,
//! filters, projections, partial aggregates, per-chunk top-k, chunk-local joins) is a *fragment*. Its leaves are
//! [`ChunkScanExec`]s; a chunk-local cross-match is a [`ConeJoinExec`]. A fragment travels as a DataFusion physical
//! plan encoded with `datafusion-proto` ([`encode_fragment`]), our nodes written by [`Codec`] as their `protocol`
//! messages; a worker decodes it with [`decode_fragment`] and a [`ScanFactory`] that turns each chunk scan into a scan
//! of its own files. ADQL's functions travel by name: both sides register the same UDFs.

mod codec;
mod cone_join;
mod scan;

pub use codec::{Codec, decode_fragment, encode_filter, encode_fragment, encode_schema};
pub use cone_join::ConeJoinExec;
pub use scan::{ChunkScanExec, ScanFactory, leaf_properties};

/// The `ExecutionPlan` methods every leaf node of ours writes alike (no children, no expressions of its own to
/// visit, nothing to replace): `leaf_methods!();` inside the `impl ExecutionPlan` of `ChunkScanExec`, the worker's
/// `LocalScanExec` and the czar's `RemoteExec`.
#[macro_export]
macro_rules! leaf_methods {
    () => {
        fn children(&self) -> Vec<&std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
            vec![]
        }

        fn apply_expressions(
            &self,
            _f: &mut dyn FnMut(
                &std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>,
            ) -> datafusion::common::Result<datafusion::common::tree_node::TreeNodeRecursion>,
        ) -> datafusion::common::Result<datafusion::common::tree_node::TreeNodeRecursion> {
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        }

        fn with_new_children(
            self: std::sync::Arc<Self>,
            _children: Vec<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>,
        ) -> datafusion::common::Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
            Ok(self)
        }
    };
}
