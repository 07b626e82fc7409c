//! A load through the czar, in two steps: [`Czar::prepare_load`] runs the loader into the czar's data directory
//! (partitioned, indexed, not yet visible), then [`Czar::publish_load`] ships its files to the workers the
//! placement names ([`crate::ship`]; a child's chunks follow its director's) and publishes it in one rename. Between
//! the two the caller may look at the prepared load (a user table's quota is checked on its size there) and drop
//! it: a load dropped, refused or failing anywhere before the rename leaves the catalog as it was. `skyshard load`
//! (the admin API) and user tables both load this way.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What a load asks for and what it did: the loader's own types, which the czar's callers see through here.
pub use loader::args::LoadArgs;
use loader::ingest::Prepared;
pub use loader::ingest::{IngestOptions, IngestReport, LoadKind};

use crate::Czar;
use crate::error::CzarError;

/// A load prepared in the czar's data directory and not yet published (dropped: removed).
pub struct PreparedLoad {
    prepared: Prepared,
    /// A child table's chunks go where its director's are (their joins run chunk-local): chunk -> workers.
    follow: std::collections::HashMap<u64, Vec<String>>,
}

impl PreparedLoad {
    /// The load's directory under the czar's data directory.
    pub fn dir(&self) -> &std::path::Path {
        self.prepared.dir()
    }

    /// Bytes of the load's files.
    pub fn bytes(&self) -> u64 {
        metastore::files::size_of(self.prepared.dir())
    }

    pub fn table(&self) -> String {
        self.prepared.record().qualified_name()
    }
}

/// What a published load did.
#[derive(Debug)]
pub struct LoadReport {
    pub report: IngestReport,
    /// Files put on workers (none when they read the czar's data directory).
    pub files_shipped: usize,
}

impl Czar {
    /// Runs the loader (off the async threads) into the czar's data directory: the load is in place but nobody sees
    /// it until [`Czar::publish_load`].
    pub async fn prepare_load(
        &self,
        inputs: Vec<PathBuf>,
        options: IngestOptions,
    ) -> Result<PreparedLoad, CzarError> {
        let follow = match &options.kind {
            LoadKind::Child { director, .. } => self
                .tables()
                .iter()
                .find(|t| t.record.qualified_name().eq_ignore_ascii_case(director))
                .map(|t| t.record.placement.iter().cloned().collect())
                .unwrap_or_default(),
            _ => Default::default(),
        };
        let data_dir = self.data_dir().to_path_buf();
        let prepared = tokio::task::spawn_blocking(move || {
            loader::ingest::prepare(&data_dir, &inputs, &options)
        })
        .await
        .map_err(|e| CzarError::LoadStopped {
            reason: e.to_string(),
        })??;
        Ok(PreparedLoad { prepared, follow })
    }

    /// Ships a prepared load's files to their workers, publishes it, re-reads the catalog, and after `linger`
    /// tells the workers to drop the table's older loads (queries that started on them finish first). If a worker
    /// cannot take its files, nothing is published.
    pub async fn publish_load(
        self: &Arc<Czar>,
        load: PreparedLoad,
        linger: Duration,
    ) -> Result<LoadReport, CzarError> {
        let PreparedLoad {
            mut prepared,
            follow,
        } = load;
        let cluster = self.cluster();
        let dir = prepared.dir().to_path_buf();
        let files_shipped = crate::ship::ship(
            &cluster,
            self.data_dir(),
            &dir,
            prepared.record_mut(),
            &follow,
        )
        .await?;
        let report = tokio::task::spawn_blocking(move || prepared.publish())
            .await
            .map_err(|e| CzarError::LoadStopped {
                reason: e.to_string(),
            })??;
        let (table, keep) = (
            report.record.qualified_name(),
            report.record.load_id.clone(),
        );
        tokio::spawn(async move {
            tokio::time::sleep(linger).await;
            crate::ship::drop_old_loads(&cluster, &table, &keep).await;
        });
        self.refresh().map_err(|e| CzarError::Catalog {
            table: report.record.qualified_name(),
            reason: format!("loaded, but the catalog could not be re-read: {e}"),
        })?;
        Ok(LoadReport {
            report,
            files_shipped,
        })
    }

    /// [`Czar::prepare_load`] then [`Czar::publish_load`].
    pub async fn load(
        self: &Arc<Czar>,
        inputs: Vec<PathBuf>,
        options: IngestOptions,
        linger: Duration,
    ) -> Result<LoadReport, CzarError> {
        let prepared = self.prepare_load(inputs, options).await?;
        self.publish_load(prepared, linger).await
    }
}
