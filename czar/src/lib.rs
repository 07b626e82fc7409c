//! The czar: the catalog of published tables, distributed planning, dispatch to workers over Arrow Flight and the
//! merge. It knows nothing of HTTP, VOTable or TAP (the `tap` crate serves it).
//!
//! One query, file by file:
//! - [`plan`]: `Czar::plan` as named passes: ADQL -> DataFusion logical plan (`adql`) -> physical plan over
//!   [`catalog::DistributedTable`]s, whose scans are chunk scans pruned by [`prune`] (cones, regions, ids) ->
//!   [`colocate`] (chunk-local joins) -> [`distribute`] (cut into fragments, by the rules of [`fragment`]) ->
//!   [`merge::restore`].
//! - [`dispatch`]: `RemoteExec` sends each fragment to the workers holding its chunks ([`cluster`]) and fails over
//!   to replicas.
//! - [`merge`]: what runs at the czar above the fragments (final aggregate, sort merge, limit).
//! - [`ship`]: a load's chunk files sent to their workers before it is published (`skyshard load`).
//! - [`error`]: [`CzarError`], each variant with its [`protocol::ErrorCode`].

pub mod catalog;
pub mod cluster;
pub mod colocate;
pub mod dispatch;
pub mod distribute;
pub mod error;
pub mod fragment;
pub mod heal;
pub mod lineage;
pub mod load;
pub mod merge;
pub mod plan;
pub mod progress;
pub mod prune;
pub mod ship;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use adql::{Catalog, CatalogTable, Engine, MemoryCatalog};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, execute_stream};
use datafusion::prelude::SessionConfig;
use metastore::MetaStore;
use partitioner::layout;
use tracing::Instrument;

use catalog::{DistributedTable, Tables};
pub use catalog::{ForeignKey, OnlyChunk, TableInfo};
use cluster::Cluster;
pub use error::CzarError;

/// Tables the service adds to the catalog at every refresh (TAP_SCHEMA), built from the published tables and their
/// foreign keys; it may add keys of its own.
pub type SystemTables =
    Arc<dyn Fn(&[Arc<CatalogTable>], &mut Vec<ForeignKey>) -> Vec<CatalogTable> + Send + Sync>;

/// Which published tables a caller may see, by lower-case `schema.table` (user tables are their owners' and
/// grantees'); None: all of them.
pub type Visible<'a> = Option<&'a (dyn Fn(&str) -> bool + Send + Sync)>;

/// What a query runs with, for every way to plan, explain and execute one: the tables its caller may see (their
/// own and shared user tables, the catalogs), the uploaded tables of its request, and where its progress is counted
/// (an async job's).
#[derive(Clone, Copy, Default)]
pub struct QueryContext<'a> {
    pub uploads: &'a [Arc<CatalogTable>],
    pub visible: Visible<'a>,
    pub progress: Option<&'a Arc<progress::Progress>>,
    /// Scans of one table read one chunk only (a HATS partition or its margin).
    pub only_chunk: Option<&'a OnlyChunk>,
}

impl<'a> QueryContext<'a> {
    /// A query that sees everything, with no uploads (the operator's, a test's).
    pub fn all() -> QueryContext<'a> {
        QueryContext::default()
    }

    /// A query of a caller who sees what `visible` lets through.
    pub fn seeing(visible: Visible<'a>) -> QueryContext<'a> {
        QueryContext {
            visible,
            ..Default::default()
        }
    }
}

/// A planned query: its physical plan (fragments cut out as `RemoteExec`s), the task context it runs in, and its id
/// (in the log lines of its planning and its failovers).
pub struct Planned {
    pub plan: Arc<dyn ExecutionPlan>,
    pub context: Arc<TaskContext>,
    pub query_id: String,
}

/// How a czar runs.
#[derive(Default, Clone)]
pub struct CzarOptions {
    /// Bytes each query's operators at the czar may hold.
    pub memory_limit: Option<usize>,
    pub system_tables: Option<SystemTables>,
}

pub struct Czar {
    data_dir: PathBuf,
    engine: RwLock<Arc<Engine>>,
    config: SessionConfig,
    options: CzarOptions,
    cpu: CpuRuntime,
    keys: RwLock<Vec<ForeignKey>>,
    tables: RwLock<Arc<Tables>>,
    cluster: RwLock<Arc<Cluster>>,
    queries: AtomicU64,
}

impl Czar {
    /// Opens the catalog of `data_dir` (its metadata store) for a cluster.
    pub fn open(
        data_dir: &Path,
        cluster: Cluster,
        options: CzarOptions,
    ) -> Result<Czar, CzarError> {
        std::fs::create_dir_all(data_dir).map_err(|e| CzarError::Catalog {
            table: String::new(),
            reason: format!("{}: {e}", data_dir.display()),
        })?;
        let czar = Czar {
            data_dir: data_dir.to_path_buf(),
            engine: RwLock::new(Arc::new(Engine::new(Arc::new(MemoryCatalog::new())))),
            config: session_config(),
            options,
            cpu: CpuRuntime::new(),
            keys: RwLock::new(Vec::new()),
            tables: RwLock::new(Arc::new(Tables::default())),
            cluster: RwLock::new(Arc::new(cluster)),
            queries: AtomicU64::new(0),
        };
        czar.refresh()?;
        Ok(czar)
    }

    /// Re-reads the published tables (the metadata store is opened read-only: `skyshard ingest` may load tables
    /// into the data directory while the czar serves it; they appear at the next refresh).
    pub fn refresh(&self) -> Result<(), CzarError> {
        let store = Arc::new(MetaStore::open_read_only(&layout::meta_dir(
            &self.data_dir,
        ))?);
        let mut catalog = MemoryCatalog::new();
        let mut infos = Vec::new();
        let mut keys = Vec::new();
        for record in store.tables()? {
            let info = Arc::new(catalog::load_table(&self.data_dir, &store, &record)?);
            let provider = Arc::new(DistributedTable { info: info.clone() });
            let mut t = CatalogTable::new(&record.schema, &record.name, provider).map_err(|e| {
                CzarError::Catalog {
                    table: record.qualified_name(),
                    reason: e.to_string(),
                }
            })?;
            t.description = record.description.clone();
            if let (metastore::TableKind::Child { key, .. }, Some(director)) =
                (&record.kind, &info.director)
                && let metastore::TableKind::Director { id, .. } = &director.kind
            {
                keys.push(ForeignKey {
                    from: t.qualified_name(),
                    target: format!("{}.{}", director.schema, director.name).to_lowercase(),
                    from_column: key.to_lowercase(),
                    target_column: id.to_lowercase(),
                });
            }
            catalog.add(t);
            infos.push(info);
        }
        if let Some(system) = &self.options.system_tables {
            for t in system(&catalog.tables(), &mut keys) {
                catalog.add(t);
            }
        }
        let engine = self.engine_over(catalog);
        *self
            .engine
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(engine);
        let by_name = infos
            .iter()
            .map(|t| (t.record.qualified_name().to_lowercase(), t.clone()))
            .collect();
        *self
            .tables
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(Tables {
            list: infos,
            by_name,
        });
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        Ok(())
    }

    fn engine_over(&self, catalog: MemoryCatalog) -> Engine {
        Engine::new(Arc::new(catalog))
            .with_config(self.config.clone())
            .with_memory_limit(self.options.memory_limit)
    }

    /// Every queryable table (published ones and the service's system tables), with its TAP metadata.
    pub fn catalog_tables(&self) -> Vec<Arc<CatalogTable>> {
        self.engine().catalog().tables()
    }

    /// The queryable tables a caller sees: the published ones `visible` lets through, and system tables
    /// (TAP_SCHEMA) that describe only those.
    pub fn catalog_tables_for(&self, visible: Visible<'_>) -> Vec<Arc<CatalogTable>> {
        let Some(visible) = visible else {
            return self.catalog_tables();
        };
        let published: std::collections::HashSet<String> = self
            .tables()
            .iter()
            .map(|t| t.record.qualified_name().to_lowercase())
            .collect();
        let all = self.catalog_tables();
        let shown: Vec<Arc<CatalogTable>> = all
            .iter()
            .filter(|t| {
                let name = t.qualified_name().to_lowercase();
                published.contains(&name) && visible(&name)
            })
            .cloned()
            .collect();
        if shown.len() == published.len() {
            return all;
        }
        let mut catalog = MemoryCatalog::new();
        for t in &shown {
            catalog.add((**t).clone());
        }
        let mut keys: Vec<ForeignKey> = self
            .foreign_keys()
            .into_iter()
            .filter(|k| {
                shown
                    .iter()
                    .any(|t| t.qualified_name().eq_ignore_ascii_case(&k.from))
            })
            .collect();
        if let Some(system) = &self.options.system_tables {
            keys.retain(|k| published.contains(&k.from.to_lowercase()));
            for t in system(&catalog.tables(), &mut keys) {
                catalog.add(t);
            }
        }
        catalog.tables()
    }

    /// The foreign keys among the tables a caller sees.
    pub fn foreign_keys_for(&self, visible: Visible<'_>) -> Vec<ForeignKey> {
        let keys = self.foreign_keys();
        let Some(v) = visible else {
            return keys;
        };
        // Published tables by lower-case name, read once (not per key).
        let published: std::collections::HashSet<String> = self
            .tables()
            .iter()
            .map(|t| t.record.qualified_name().to_lowercase())
            .collect();
        let shown = |name: &str| {
            let name = name.to_lowercase();
            !published.contains(&name) || v(&name)
        };
        keys.into_iter()
            .filter(|k| shown(&k.from) && shown(&k.target))
            .collect()
    }

    /// Foreign keys between tables (child -> director, and the system tables' own).
    pub fn foreign_keys(&self) -> Vec<ForeignKey> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Watches the data directory's published tables: a load, drop or `skyshard ingest` by another process is
    /// served within `every` of its publishing rename, without a restart (each publish is one atomic rename, so a
    /// refresh sees a table's old record or its new one). Queries already running keep the catalog they started
    /// with.
    pub fn watch(self: &Arc<Czar>, every: std::time::Duration) {
        let czar = Arc::downgrade(self);
        let tables = metastore::records_dir(&layout::meta_dir(&self.data_dir));
        let signature = move || -> Vec<(std::ffi::OsString, u64, std::time::SystemTime)> {
            let mut s: Vec<_> = std::fs::read_dir(&tables)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let m = e.metadata().ok()?;
                    Some((e.file_name(), m.len(), m.modified().ok()?))
                })
                .collect();
            s.sort();
            s
        };
        tokio::spawn(async move {
            let mut seen = signature();
            loop {
                tokio::time::sleep(every).await;
                let Some(czar) = czar.upgrade() else {
                    return;
                };
                let now = signature();
                if now != seen {
                    match czar.refresh() {
                        Ok(()) => seen = now,
                        Err(e) => tracing::warn!(event = "catalog", "re-reading the catalog: {e}"),
                    }
                }
            }
        });
    }

    /// Queries planned since the czar opened.
    pub fn queries_planned(&self) -> u64 {
        self.queries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The workers queries go to now (a query keeps the cluster it started with).
    pub fn cluster(&self) -> Arc<Cluster> {
        self.cluster
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Workers added or removed: queries from now on use `cluster`.
    pub fn set_cluster(&self, cluster: Cluster) {
        *self
            .cluster
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(cluster);
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn tables(&self) -> Vec<Arc<TableInfo>> {
        self.tables
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .list
            .clone()
    }

    fn engine(&self) -> Arc<Engine> {
        self.engine
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Runs a query as `query` says (who it runs for, its uploads, its progress), streaming its result. Its events
    /// are logged inside the span `query` with its `query_id`.
    pub async fn execute(
        &self,
        adql: &str,
        query: &QueryContext<'_>,
    ) -> Result<SendableRecordBatchStream, CzarError> {
        let Planned {
            plan,
            context: mut ctx,
            query_id,
        } = self.plan(adql, query).await?;
        if let Some(progress) = query.progress {
            progress.expect(dispatch::chunk_runs(&plan));
            let config = ctx
                .session_config()
                .clone()
                .with_extension(progress.clone());
            ctx = Arc::new(datafusion::execution::TaskContext::new(
                ctx.task_id(),
                ctx.session_id(),
                config,
                ctx.scalar_functions().clone(),
                ctx.higher_order_functions().clone(),
                ctx.aggregate_functions().clone(),
                ctx.window_functions().clone(),
                ctx.runtime_env(),
            ));
        }
        let span = tracing::info_span!("query", query_id = %query_id);
        let schema = plan.schema();
        // The query runs on the CPU runtime; the service's runtime only moves its batches, so HTTP, timers and
        // other clients stay responsive while DataFusion operators hold a core.
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let task = self.cpu.handle().spawn(
            async move {
                let work = async {
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
                };
                // A panic inside an operator must end the stream with an error: a stream that merely stops would pass
                // for a complete result.
                if futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(work))
                    .await
                    .is_err()
                {
                    tracing::error!(event = "panic", "a query panicked while running");
                    let _ = tx
                        .send(Err(datafusion::error::DataFusionError::Internal(
                            "the query failed inside the engine (an internal error, logged)".into(),
                        )))
                        .await;
                }
            }
            .instrument(span),
        );
        let guard = AbortOnDrop(task);
        let batches = futures::stream::poll_fn(move |cx| {
            let _ = &guard;
            rx.poll_recv(cx)
        });
        Ok(Box::pin(
            datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, batches),
        ))
    }
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
