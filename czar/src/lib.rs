//! The czar: the catalog of published tables, distributed planning, dispatch to workers over Arrow Flight, the
//! merge, and the HTTP service (the first slice of TAP: `/tap/sync`, `/tap/availability`).
//!
//! A query is planned by DataFusion at the czar over [`table::DistributedTable`]s, whose scans are chunk scans
//! pruned to the chunks the query can touch; [`remote::distribute`] then cuts the physical plan into per-chunk
//! fragments run by workers and the merge run here.

pub mod cluster;
pub mod colocate;
pub mod format;
pub mod load;
pub mod output;
pub mod remote;
pub mod table;
pub mod tap;
pub mod tap_schema;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use adql::{AdqlError, Catalog, CatalogTable, Engine, MemoryCatalog};
use datafusion::physical_plan::{
    ExecutionPlan, SendableRecordBatchStream, displayable, execute_stream,
};
use datafusion::prelude::SessionConfig;
use metastore::MetaStore;

use crate::cluster::Cluster;
use crate::remote::{RemoteExec, distribute};
use crate::table::{DistributedTable, TableInfo};

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Bad ADQL or a plan error: the user's to fix (positioned where possible).
    #[error("{0}")]
    Adql(#[from] AdqlError),
    /// Failed while running.
    #[error("{0}")]
    Execution(String),
}

impl QueryError {
    pub fn run(e: datafusion::error::DataFusionError) -> QueryError {
        let message = adql::engine::clean_message(&e);
        if message.to_lowercase().contains("resources exhausted") {
            return QueryError::Execution(format!(
                "the query needs more memory at the czar than one query may use ({message}); narrow it (a \
                 smaller area, fewer columns, TOP) or run it as an async job with a smaller result"
            ));
        }
        QueryError::Execution(message)
    }
}

pub struct Czar {
    data_dir: PathBuf,
    engine: RwLock<Arc<Engine>>,
    config: SessionConfig,
    memory_limit: Option<usize>,
    cpu: CpuRuntime,
    keys: RwLock<Vec<tap_schema::ForeignKey>>,
    tables: RwLock<Arc<Tables>>,
    pub cluster: Arc<Cluster>,
    queries: AtomicU64,
}

impl Czar {
    /// Opens the catalog of `data_dir` (its metadata store) for a cluster.
    pub fn open(data_dir: &Path, cluster: Cluster) -> Result<Czar, String> {
        Czar::open_with_limit(data_dir, cluster, None)
    }

    /// [`Czar::open`], each query's operators at the czar held to `memory_limit` bytes.
    pub fn open_with_limit(
        data_dir: &Path,
        cluster: Cluster,
        memory_limit: Option<usize>,
    ) -> Result<Czar, String> {
        std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
        let czar = Czar {
            data_dir: data_dir.to_path_buf(),
            engine: RwLock::new(Arc::new(Engine::new(Arc::new(MemoryCatalog::new())))),
            config: session_config(),
            memory_limit,
            cpu: CpuRuntime::new(),
            keys: RwLock::new(Vec::new()),
            tables: RwLock::new(Arc::new(Tables::default())),
            cluster: Arc::new(cluster),
            queries: AtomicU64::new(0),
        };
        czar.refresh()?;
        Ok(czar)
    }

    /// Re-reads the published tables (the metadata store is opened read-only: `skyshard ingest` may load tables
    /// into the data directory while the czar serves it; they appear at the next refresh).
    pub fn refresh(&self) -> Result<(), String> {
        let store = Arc::new(
            MetaStore::open_read_only(&self.data_dir.join("meta")).map_err(|e| e.to_string())?,
        );
        let mut catalog = MemoryCatalog::new();
        let mut infos = Vec::new();
        let mut keys = Vec::new();
        for record in store.tables().map_err(|e| e.to_string())? {
            let info = Arc::new(table::load_table(&self.data_dir, &store, &record)?);
            let provider = Arc::new(DistributedTable { info: info.clone() });
            let mut t = CatalogTable::new(&record.schema, &record.name, provider)
                .map_err(|e| e.to_string())?;
            t.description = record.description.clone();
            if let (metastore::TableKind::Child { key, .. }, Some(director)) =
                (&record.kind, &info.director)
                && let metastore::TableKind::Director { id, .. } = &director.kind
            {
                keys.push(tap_schema::ForeignKey {
                    from: t.qualified_name(),
                    target: format!("{}.{}", director.schema, director.name).to_lowercase(),
                    from_column: key.to_lowercase(),
                    target_column: id.to_lowercase(),
                });
            }
            catalog.add(t);
            infos.push(info);
        }
        keys.extend(tap_schema::own_keys());
        for t in tap_schema::build(&catalog.tables(), &keys) {
            catalog.add(t);
        }
        let engine = self.engine_over(catalog);
        *self.engine.write().expect("engine lock") = Arc::new(engine);
        let by_name = infos
            .iter()
            .map(|t| (t.record.qualified_name().to_lowercase(), t.clone()))
            .collect();
        *self.tables.write().expect("tables lock") = Arc::new(Tables {
            list: infos,
            by_name,
        });
        *self.keys.write().expect("keys lock") = keys;
        Ok(())
    }

    fn engine_over(&self, catalog: MemoryCatalog) -> Engine {
        Engine::new(Arc::new(catalog))
            .with_config(self.config.clone())
            .with_memory_limit(self.memory_limit)
    }

    /// Every queryable table (published ones and TAP_SCHEMA), with its TAP metadata.
    pub fn catalog_tables(&self) -> Vec<Arc<CatalogTable>> {
        self.engine().catalog().tables()
    }

    /// Foreign keys between published tables (child -> director).
    pub fn foreign_keys(&self) -> Vec<tap_schema::ForeignKey> {
        self.keys.read().expect("keys lock").clone()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn tables(&self) -> Vec<Arc<TableInfo>> {
        self.tables.read().expect("tables lock").list.clone()
    }

    fn engine(&self) -> Arc<Engine> {
        self.engine.read().expect("engine lock").clone()
    }

    /// ADQL -> the distributed physical plan.
    pub async fn plan(
        &self,
        adql: &str,
        uploads: &[Arc<CatalogTable>],
    ) -> Result<
        (
            Arc<dyn ExecutionPlan>,
            Arc<datafusion::execution::TaskContext>,
        ),
        QueryError,
    > {
        let mut engine = self.engine();
        if !uploads.is_empty() {
            let mut catalog = MemoryCatalog::new();
            for t in engine
                .catalog()
                .tables()
                .into_iter()
                .chain(uploads.iter().cloned())
            {
                catalog.add((*t).clone());
            }
            engine = Arc::new(self.engine_over(catalog));
        }
        let state = engine.session();
        let logical = engine.plan(adql, &state)?;
        let physical = state
            .create_physical_plan(&logical)
            .await
            .map_err(|e| QueryError::Adql(adql::engine::plan_error(e, adql)))?;
        let query_id = format!(
            "q{}-{}",
            std::process::id(),
            self.queries.fetch_add(1, Ordering::Relaxed)
        );
        let tables = self.tables.read().expect("tables lock").clone();
        let physical = colocate::colocate(physical, &tables.by_name).map_err(QueryError::run)?;
        let plan = distribute(physical, &self.cluster, &query_id, &tables.by_name)
            .map_err(QueryError::run)?;
        // Rewritten joins partition their output by chunk, not by their keys: let DataFusion bring the merge plan's
        // distribution and ordering requirements back in line (the fragments are leaves to it now), then check.
        let plan = {
            use datafusion::physical_optimizer::PhysicalOptimizerRule;
            use datafusion::physical_optimizer::ensure_requirements::EnsureRequirements;
            use datafusion::physical_optimizer::output_requirements::OutputRequirements;
            use datafusion::physical_optimizer::sanity_checker::SanityCheckPlan;
            let options = state.config_options();
            // The root's own ordering and distribution are requirements too (ORDER BY's final merge).
            let plan = OutputRequirements::new_add_mode()
                .optimize(plan, options)
                .map_err(QueryError::run)?;
            let plan = EnsureRequirements::new()
                .optimize(plan, options)
                .map_err(QueryError::run)?;
            let plan = OutputRequirements::new_remove_mode()
                .optimize(plan, options)
                .map_err(QueryError::run)?;
            SanityCheckPlan::new()
                .optimize(plan, options)
                .map_err(QueryError::run)?
        };
        let plan = colocate::yield_after_joins(plan).map_err(QueryError::run)?;
        Ok((plan, state.task_ctx()))
    }

    /// Runs a query, streaming its result.
    pub async fn execute(
        &self,
        adql: &str,
        uploads: &[Arc<CatalogTable>],
    ) -> Result<SendableRecordBatchStream, QueryError> {
        let (plan, ctx) = self.plan(adql, uploads).await?;
        let schema = plan.schema();
        // The query runs on the CPU runtime; the service's runtime only moves its batches, so HTTP, timers and
        // other clients stay responsive while DataFusion operators hold a core.
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let task = self.cpu.handle().spawn(async move {
            let mut stream = match execute_stream(plan, ctx) {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            while let Some(item) = futures::StreamExt::next(&mut stream).await {
                if tx.send(item).await.is_err() {
                    return; // the caller went away: dropping the stream cancels the workers' streams
                }
            }
        });
        let guard = AbortOnDrop(task);
        let batches = futures::stream::poll_fn(move |cx| {
            let _ = &guard;
            rx.poll_recv(cx)
        });
        Ok(Box::pin(
            datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, batches),
        ))
    }

    /// What a query would do: the chunks each fragment touches, the fragment, and the merge plan above.
    pub async fn explain(
        &self,
        adql: &str,
        uploads: &[Arc<CatalogTable>],
    ) -> Result<String, QueryError> {
        use datafusion::common::tree_node::TreeNode;
        let (plan, _) = self.plan(adql, uploads).await?;
        let mut out = String::new();
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
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })
        .map_err(QueryError::run)?;
        out.push_str(&format!(
            "merge plan at the czar:\n{}",
            displayable(plan.as_ref()).indent(true)
        ));
        Ok(out)
    }
}

/// The published tables, in catalog order and by lower-case qualified name (read by every query's planning).
#[derive(Default)]
struct Tables {
    list: Vec<Arc<TableInfo>>,
    by_name: std::collections::HashMap<String, Arc<TableInfo>>,
}

/// Aborts a task when dropped (a query whose reader went away, or timed out, stops at its next await).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The runtime queries execute on, apart from the one serving HTTP.
struct CpuRuntime(Option<tokio::runtime::Runtime>);

impl CpuRuntime {
    fn new() -> CpuRuntime {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("czar-query")
            .enable_all()
            .build()
            .expect("the query runtime starts");
        CpuRuntime(Some(rt))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("query runtime").handle()
    }
}

impl Drop for CpuRuntime {
    fn drop(&mut self) {
        // A runtime may not be dropped from async code: let its threads wind down on their own.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_information_schema(false)
        .with_target_partitions(2);
    // Chunk scans have one partition per chunk already; round-robin repartitioning would only split fragments.
    config
        .options_mut()
        .optimizer
        .enable_round_robin_repartition = false;
    config
}
