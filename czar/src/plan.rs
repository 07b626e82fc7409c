//! `Czar::plan`: one ADQL query to the distributed physical plan, as named passes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use adql::{CatalogTable, MemoryCatalog};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::physical_plan::displayable;

use crate::dispatch::RemoteExec;
use crate::{Czar, CzarError, Planned, QueryContext, Visible, colocate, distribute, merge};

/// Runs CPU-bound planning (parsing, translating, logical planning: long for a long query) without holding one of
/// the runtime's few worker threads hostage: on a multi-threaded runtime the thread hands its other tasks over first
/// (`block_in_place`), so other requests, health probes included, go on. On a current-thread runtime (tests) it just
/// runs.
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl Czar {
    /// ADQL -> the distributed physical plan and the context to run it in:
    /// 1. parse, validate and translate (`adql`), with any uploads as extra tables;
    /// 2. DataFusion's logical and physical planning; scans of chunked tables are pruned here
    ///    ([`crate::prune`], through [`crate::catalog::DistributedTable::scan`]);
    /// 3. [`colocate::colocate`]: joins whose rows meet inside one chunk run chunk by chunk;
    /// 4. [`distribute::distribute`]: per-chunk subtrees become fragments ([`RemoteExec`]);
    /// 5. [`merge::restore`]: the merge plan above them gets its distribution and ordering back;
    /// 6. [`merge::yield_after_joins`].
    pub async fn plan(&self, adql: &str, query: &QueryContext<'_>) -> Result<Planned, CzarError> {
        let (uploads, visible) = (query.uploads, query.visible);
        let engine = self.engine_for(uploads, visible);
        let mut state = engine.planning_session();
        if let Some(only) = query.only_chunk {
            state.config_mut().set_extension(Arc::new(only.clone()));
        }
        let logical = off_the_runtime(|| engine.plan(adql, &state))?;
        let physical = state
            .create_physical_plan(&logical)
            .await
            .map_err(|e| CzarError::Adql(adql::engine::plan_error(e, adql)))?;
        let query_id = format!(
            "q{}-{}",
            std::process::id(),
            self.queries.fetch_add(1, Ordering::Relaxed)
        );
        tracing::info!(event = "query", query_id = %query_id, "a query planned");
        let tables = self
            .tables
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let cluster = self.cluster();
        let small = colocate::small_sides(&physical).await;
        let plan = colocate::colocate(physical, &tables.by_name, &cluster, &small)
            .map_err(CzarError::from_datafusion)?;
        let plan = distribute::distribute(plan, &cluster, &query_id, &tables.by_name)
            .map_err(CzarError::from_datafusion)?;
        let plan =
            merge::restore(plan, state.config_options()).map_err(CzarError::from_datafusion)?;
        let plan = merge::yield_after_joins(plan).map_err(CzarError::from_datafusion)?;
        Ok(Planned {
            plan,
            context: engine.task_ctx(&state),
            query_id,
        })
    }

    /// The engine over what a caller sees: the catalog without the tables `visible` hides, with `uploads`.
    fn engine_for(&self, uploads: &[Arc<CatalogTable>], visible: Visible<'_>) -> Arc<adql::Engine> {
        let engine = self.engine();
        let hides = visible.is_some_and(|v| {
            self.tables()
                .iter()
                .any(|t| !v(&t.record.qualified_name().to_lowercase()))
        });
        if !hides && uploads.is_empty() {
            return engine;
        }
        let mut catalog = MemoryCatalog::new();
        let tables = if hides {
            self.catalog_tables_for(visible)
        } else {
            engine.catalog().tables()
        };
        for t in tables.into_iter().chain(uploads.iter().cloned()) {
            catalog.add((*t).clone());
        }
        Arc::new(self.engine_over(catalog))
    }

    /// Checks a query without running it or choosing chunks: its syntax, its names against what the caller sees,
    /// and its types (the logical plan). Cheap enough to call while someone types.
    pub fn check(&self, adql: &str, visible: Visible<'_>) -> Result<(), CzarError> {
        let engine = self.engine_for(&[], visible);
        let state = engine.planning_session();
        off_the_runtime(|| engine.plan(adql, &state))?;
        Ok(())
    }

    /// What a query would do: first any warnings ([`warnings`]), then the chunks each fragment touches, the
    /// fragment, and the merge plan above.
    pub async fn explain(&self, adql: &str, query: &QueryContext<'_>) -> Result<String, CzarError> {
        let plan = self.plan(adql, query).await?.plan;
        let mut out = String::new();
        for w in warnings(&plan) {
            out.push_str(&format!("{WARNING}{w}\n"));
        }
        plan.apply(|node| {
            if let Some(remote) = node.downcast_ref::<RemoteExec>() {
                let chunks = remote.chunks();
                let shown: Vec<String> = chunks.iter().take(20).map(|c| c.to_string()).collect();
                out.push_str(&format!(
                    "fragment over {} chunks: {}{}\n{}\n",
                    chunks.len(),
                    shown.join(" "),
                    if chunks.len() > 20 { " ..." } else { "" },
                    displayable(remote.fragment().as_ref()).indent(true)
                ));
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map_err(CzarError::from_datafusion)?;
        out.push_str(&format!(
            "merge plan at the czar:\n{}",
            displayable(plan.as_ref()).indent(true)
        ));
        Ok(out)
    }
}

/// How a warning line of [`Czar::explain`] begins.
pub const WARNING: &str = "warning: ";

/// What a user should know about a plan before running it: each join done at the czar between tables read from
/// the workers, where a side spans several chunks: a nested-loop join (every pair of rows compared) always, a hash
/// join when a side reads its table whole (no condition narrows it). Every row each side selects travels to the czar
/// first: on large tables that can run for a very long time. (Joins the planner made chunk-local run inside
/// fragments on the workers and are not seen here.)
pub fn warnings(plan: &Arc<dyn datafusion::physical_plan::ExecutionPlan>) -> Vec<String> {
    use datafusion::physical_plan::ExecutionPlan;
    use datafusion::physical_plan::filter::FilterExec;
    use datafusion::physical_plan::joins::{
        CrossJoinExec, HashJoinExec, NestedLoopJoinExec, SortMergeJoinExec, SymmetricHashJoinExec,
    };
    use exec::ChunkScanExec;

    /// What one side of a join reads from the workers at most: chunks, tables, and whether nothing narrows it.
    struct Side {
        chunks: usize,
        tables: String,
        whole: bool,
    }
    fn side(node: &Arc<dyn ExecutionPlan>) -> Option<Side> {
        let mut widest: Option<Side> = None;
        let _ = node.apply(|n| {
            if let Some(r) = n.downcast_ref::<RemoteExec>()
                && widest.as_ref().is_none_or(|w| r.chunks().len() > w.chunks)
            {
                let narrowed = r
                    .fragment()
                    .exists(|f| {
                        Ok(f.is::<FilterExec>()
                            || f.downcast_ref::<ChunkScanExec>().is_some_and(|c| {
                                !c.scan.filters.is_empty() || c.scan.limit.is_some()
                            }))
                    })
                    .unwrap_or(false);
                widest = Some(Side {
                    chunks: r.chunks().len(),
                    tables: r.tables(),
                    whole: !narrowed,
                });
            }
            Ok(TreeNodeRecursion::Continue)
        });
        widest
    }
    let mut out = Vec::new();
    let _ = plan.apply(|node| {
        let nested = node.is::<NestedLoopJoinExec>() || node.is::<CrossJoinExec>();
        let hashed = node.is::<HashJoinExec>()
            || node.is::<SortMergeJoinExec>()
            || node.is::<SymmetricHashJoinExec>();
        if !(nested || hashed) {
            return Ok(TreeNodeRecursion::Continue);
        }
        let children = node.children();
        let [left, right] = children.as_slice() else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let (Some(l), Some(r)) = (side(left), side(right)) else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let wide = |s: &Side| s.chunks > 1 && (nested || s.whole);
        if wide(&l) || wide(&r) {
            let how = if nested {
                "a nested-loop join (every pair of rows compared)"
            } else {
                "a hash join over a whole table"
            };
            out.push(format!(
                "{} ({} chunks) and {} ({} chunks) are joined at the czar by {how}: every row each side \
                 selects is gathered there first, which on large tables can take very long. A join on the tables' \
                 keys, or a cross-match by DISTANCE or CONTAINS with a constant radius, runs chunk by chunk on the \
                 workers; narrowing either side (a region, a TOP in a subquery) helps too.",
                l.tables, l.chunks, r.tables, r.chunks
            ));
            // One warning per join: the joins below it feed it.
            return Ok(TreeNodeRecursion::Jump);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}
