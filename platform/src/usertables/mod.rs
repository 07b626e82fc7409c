//! User tables, through the interface of CADC's youcat (the VOSI-tables 1.2 draft's user-managed tables): tables
//! users keep in their own schema (`user_NAME`) or their group's (`group_NAME`), written by the space's owners (the
//! `write:tables` scope), read by those they are shared with ([`crate::access`]), counted against the space's table
//! quota (`skyshard user quota --tables-mb`, the service's `--user-tables-mb` by default) on the finished load before
//! it is published. A table whose columns carry the UCDs `pos.eq.ra` and `pos.eq.dec` (doubles) and an integer
//! `meta.id` column is partitioned like a catalog, on the chunk map of the first catalog, so its joins with that
//! catalog run chunk by chunk on the workers; any other table is replicated to every worker. The declared columns
//! are kept as an empty Parquet file (`partitioner::layout::template_file`) that every load is matched against.
//!
//! Every change of a user table runs under the platform's user-tables lock and through the czar's two-step load
//! ([`czar::Czar::prepare_load`], `publish_load`), so a refusal or a crash at any point leaves the table as it was.
//! What arrives over the network (a definition document, a request body) is received by the front end before any
//! of this is asked.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use loader::input::InputFormat;
use metastore::TableKind;

use crate::Platform;
use crate::access::{Change, Grant, Space};
use crate::error::{PlatformError, Result};
use crate::identity::Caller;
use crate::jobs::{JobKind, Phase};

mod define;
mod index;
mod rows;

pub use define::{Definition, check_columns};
pub use index::run_index;
pub use rows::RowsFormat;

/// A user table a request names, checked with the caller's right to make the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `schema.table`, lower-case.
    pub qualified: String,
    pub space: Space,
}

/// A user table's name, checked: `(schema, table, space)`, lower-case.
pub fn table_name(name: &str) -> Result<(String, String, Space)> {
    let lower = name.trim().to_ascii_lowercase();
    let (schema, table) = lower.split_once('.').ok_or_else(|| {
        PlatformError::BadRequest(format!(
            "{name}: name a table as SCHEMA.TABLE, in your schema user_NAME (or a group's, group_NAME)"
        ))
    })?;
    let Some(space) = Space::of(schema) else {
        return Err(PlatformError::Forbidden(format!(
            "{schema} is a catalog schema, loaded by the operator; user tables go in user_NAME or group_NAME"
        )));
    };
    let owner = match &space {
        Space::User(n) | Space::Group(n) => n,
    };
    if !metastore::accounts::valid_name(owner) || !identifier(table) {
        return Err(PlatformError::BadRequest(format!(
            "{name}: a table name is a letter then letters, digits and _ (at most 64), in user_NAME or group_NAME"
        )));
    }
    Ok((schema.to_string(), table.to_string(), space))
}

/// An ADQL regular identifier.
pub fn identifier(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A scratch directory for one request under `DATA_DIR/incoming` (removed when dropped).
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a load of rows did.
#[derive(Debug)]
pub struct Loaded {
    /// Rows the request added.
    pub added: u64,
    /// The table as published.
    pub report: loader::ingest::IngestReport,
    /// Whether the request created the table (from a file of the caller's space).
    pub created: bool,
}

/// What deleting a user removed.
#[derive(Debug)]
pub struct DeletedUser {
    pub tables: Vec<String>,
    pub file_bytes: u64,
    pub jobs: usize,
}

impl Platform {
    /// The user table `name` names, if the caller may make `change` to it.
    pub fn user_table(&self, caller: &Caller, name: &str, change: Change) -> Result<Target> {
        let (schema, table, space) = table_name(name)?;
        let qualified = format!("{schema}.{table}");
        match change {
            Change::Table => self.may_write_tables(caller, &space)?,
            Change::Rows => self.may_add_rows(caller, &space, &qualified)?,
        }
        Ok(Target { qualified, space })
    }

    /// Whether a table of that name is published (whoever may see it).
    pub fn published(&self, qualified: &str) -> bool {
        self.czar
            .tables()
            .iter()
            .any(|t| t.record.qualified_name().eq_ignore_ascii_case(qualified))
    }

    /// A scratch directory for one request's files.
    pub fn scratch(&self) -> Result<Scratch> {
        let id = metastore::accounts::random_hex(8).map_err(PlatformError::unavailable)?;
        let dir =
            partitioner::layout::incoming_dir(self.czar.data_dir()).join(format!("user-{id}"));
        std::fs::create_dir_all(&dir).map_err(PlatformError::unavailable)?;
        Ok(Scratch(dir))
    }

    /// Creates a table of declared columns (and any rows that came with them): its template kept, laid out by its
    /// UCDs, loaded within the space's quota.
    pub async fn create_user_table(
        self: &Arc<Self>,
        target: &Target,
        definition: Definition,
    ) -> Result<loader::ingest::IngestReport> {
        check_columns(&definition.schema).map_err(PlatformError::BadRequest)?;
        let scratch = self.scratch()?;
        let input = scratch.path().join("rows.parquet");
        define::write_parquet(&input, definition.schema.clone(), &definition.rows)
            .map_err(PlatformError::unavailable)?;
        let _turn = self.user_tables_lock.lock().await;
        if self.published(&target.qualified) {
            return Err(PlatformError::Conflict(format!(
                "{0} exists: DELETE it first, or POST rows to /tap/load/{0}",
                target.qualified
            )));
        }
        self.create_locked(target, definition.schema, definition.description, input)
            .await
    }

    /// Creates a table from a file (its columns and rows): a job's result, an uploaded file, a file of the
    /// caller's space.
    pub async fn create_user_table_from_file(
        self: &Arc<Self>,
        target: &Target,
        source: PathBuf,
        format: RowsFormat,
        description: Option<String>,
    ) -> Result<loader::ingest::IngestReport> {
        let format = format.input().ok_or_else(|| {
            PlatformError::BadRequest(
                "a table is created from a .parquet, .csv, .fits or .vot file; load TSV into a table created \
                 first"
                    .into(),
            )
        })?;
        let scratch = self.scratch()?;
        let dir = scratch.path().join("convert");
        let (input, schema) =
            tokio::task::spawn_blocking(move || rows::prepare_file(&source, format, &dir))
                .await
                .map_err(PlatformError::unavailable)?
                .map_err(|m| PlatformError::BadRequest(format!("the rows cannot be read: {m}")))?;
        check_columns(&schema).map_err(PlatformError::BadRequest)?;
        let _turn = self.user_tables_lock.lock().await;
        if self.published(&target.qualified) {
            return Err(PlatformError::Conflict(format!(
                "{} exists: delete it first",
                target.qualified
            )));
        }
        self.create_locked(target, schema, description, input).await
    }

    /// Creates the table (the user-tables lock held): the template, then the load; the template goes again if the
    /// load is refused.
    async fn create_locked(
        self: &Arc<Self>,
        target: &Target,
        schema: SchemaRef,
        description: Option<String>,
        input: PathBuf,
    ) -> Result<loader::ingest::IngestReport> {
        let template = partitioner::layout::template_file(self.czar.data_dir(), &target.qualified);
        template
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(|e| e.to_string())
            .and_then(|_| define::write_parquet(&template, schema.clone(), &[]))
            .map_err(PlatformError::unavailable)?;
        let (kind, chunk_map_of) = define::kind_of(&schema, self);
        let mut options = loader::ingest::IngestOptions::new(&target.qualified, kind);
        options.description = description;
        options.chunk_map_of = chunk_map_of;
        options.format = Some(InputFormat::Parquet);
        match self.load_within_quota(target, vec![input], options).await {
            Ok(report) => Ok(report),
            Err(e) => {
                let _ = std::fs::remove_file(&template);
                Err(e)
            }
        }
    }

    /// Adds the rows of `upload` (received by the front end, or a file of the caller's space) to the table, as one
    /// new load of its rows and these; or, for a file of the caller's space and a table that does not exist yet,
    /// creates the table from the file's columns (`registered`: where the file came from).
    pub async fn load_rows(
        self: &Arc<Self>,
        caller: &Caller,
        target: &Target,
        upload: &Path,
        format: RowsFormat,
        registered: Option<&str>,
    ) -> Result<Loaded> {
        let scratch = self.scratch()?;
        let _turn = self.user_tables_lock.lock().await;
        let Some(info) = self.readable_table(caller, &target.qualified) else {
            drop(_turn);
            let Some(source) = registered else {
                return Err(PlatformError::NotFound(format!(
                    "no table {0}: create it first (PUT /tap/tables/{0})",
                    target.qualified
                )));
            };
            if self.published(&target.qualified) {
                return Err(PlatformError::Conflict(format!(
                    "{} exists and is not yours to load",
                    target.qualified
                )));
            }
            let now = crate::jobs::iso(crate::jobs::now_ms());
            let description = Some(format!("registered from {source} on {now}"));
            let report = self
                .create_user_table_from_file(target, upload.to_path_buf(), format, description)
                .await?;
            return Ok(Loaded {
                added: report.record.rows,
                report,
                created: true,
            });
        };
        let template = self.template_schema(&target.qualified)?;
        let rows_path = scratch.path().join("rows.parquet");
        let (up, t, rp, sc) = (
            upload.to_path_buf(),
            template.clone(),
            rows_path.clone(),
            scratch.path().join("convert"),
        );
        let added = tokio::task::spawn_blocking(move || rows::convert(&up, format, &t, &rp, &sc))
            .await
            .map_err(PlatformError::unavailable)?
            .map_err(|m| PlatformError::BadRequest(format!("{m}; nothing was loaded")))?;
        let kind = match &info.record.kind {
            TableKind::Director { ra, dec, id } => loader::ingest::LoadKind::Director {
                ra: ra.clone(),
                dec: dec.clone(),
                id: id.clone(),
            },
            _ => loader::ingest::LoadKind::Replicated,
        };
        let mut options = loader::ingest::IngestOptions::new(&target.qualified, kind);
        options.append = true;
        options.format = Some(InputFormat::Parquet);
        options.chunk_map_of = define::kind_of(&template, self).1;
        let report = self
            .load_within_quota(target, vec![rows_path], options)
            .await
            .map_err(upload_error)?;
        Ok(Loaded {
            added,
            report,
            created: false,
        })
    }

    /// Bytes an upload to the space may still take (its quota less what its tables hold): a front end stops
    /// receiving a body past it.
    pub fn table_space_left(&self, space: &Space) -> u64 {
        self.table_space_quota(space)
            .saturating_sub(self.table_space_bytes(space, None))
    }

    /// The declared columns of a user table.
    fn template_schema(&self, table: &str) -> Result<SchemaRef> {
        let path = partitioner::layout::template_file(self.czar.data_dir(), table);
        let file = std::fs::File::open(&path).map_err(|_| {
            PlatformError::Forbidden(format!(
                "{table} was not created through /tap/tables: rows cannot be added to it here"
            ))
        })?;
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .map(|b| b.schema().clone())
            .map_err(PlatformError::unavailable)
    }

    /// Loads `inputs` as the table through the czar, refused whole when the space's tables, this one's new load
    /// included, would outgrow the space's quota.
    async fn load_within_quota(
        self: &Arc<Self>,
        target: &Target,
        inputs: Vec<PathBuf>,
        options: loader::ingest::IngestOptions,
    ) -> Result<loader::ingest::IngestReport> {
        let others = self.table_space_bytes(&target.space, Some(&target.qualified));
        let quota = self.table_space_quota(&target.space);
        let prepared = self.czar.prepare_load(inputs, options).await?;
        let new = prepared.bytes();
        if others + new > quota {
            let whose = match &target.space {
                Space::User(u) => format!("user {u}"),
                Space::Group(g) => format!("group {g}"),
            };
            return Err(PlatformError::OverQuota(format!(
                "over the table quota: the tables of {whose} would hold {} MiB, where the quota is {} MiB (this \
                 table {} MiB); nothing was changed. Drop tables, or ask for more (skyshard user quota --tables-mb)",
                (others + new) >> 20,
                quota >> 20,
                new >> 20
            )));
        }
        let linger = std::time::Duration::from_secs(self.limits.replaced_load_linger);
        Ok(self.czar.publish_load(prepared, linger).await?.report)
    }

    /// Drops a user table the caller may change.
    pub async fn drop_user_table(self: &Arc<Self>, caller: &Caller, target: &Target) -> Result<()> {
        let _turn = self.user_tables_lock.lock().await;
        if self.readable_table(caller, &target.qualified).is_none() {
            return Err(PlatformError::NotFound(format!(
                "no table {}",
                target.qualified
            )));
        }
        self.drop_locked(&target.qualified).await
    }

    /// Drops a user table (the user-tables lock held): its record and files, its chunks on every worker, its
    /// template and grant.
    async fn drop_locked(&self, qualified: &str) -> Result<()> {
        let data_dir = self.czar.data_dir().to_path_buf();
        let name = qualified.to_string();
        tokio::task::spawn_blocking(move || loader::ingest::drop_table(&data_dir, &name))
            .await
            .map_err(PlatformError::unavailable)?
            .map_err(|e| PlatformError::BadRequest(e.to_string()))?;
        // No load is kept: every worker drops every load of the table.
        czar::ship::drop_old_loads(&self.czar.cluster(), qualified, "").await;
        let _ = std::fs::remove_file(partitioner::layout::template_file(
            self.czar.data_dir(),
            qualified,
        ));
        let _ = self.grants.set(qualified, Grant::default());
        self.czar.refresh().map_err(PlatformError::unavailable)
    }

    /// Who may read a user table the caller can see (None: no such user table for them).
    pub fn grant_of(&self, caller: &Caller, table: &str) -> Option<Grant> {
        let qualified = table.to_ascii_lowercase();
        Space::of(qualified.split('.').next().unwrap_or(""))?;
        self.readable_table(caller, &qualified)?;
        Some(self.grants.get(&qualified))
    }

    /// Shares a table the caller may change (`change` edits its current grant): the owner only.
    pub fn share(
        &self,
        caller: &Caller,
        target: &Target,
        change: impl FnOnce(&mut Grant),
    ) -> Result<Grant> {
        if self.readable_table(caller, &target.qualified).is_none() {
            return Err(PlatformError::NotFound(format!(
                "no table {}",
                target.qualified
            )));
        }
        let mut grant = self.grants.get(&target.qualified);
        change(&mut grant);
        self.grants
            .set(&target.qualified, grant.clone())
            .map_err(PlatformError::unavailable)?;
        Ok(grant)
    }

    /// The result file of a finished job of the caller's, to save as a table: its path, format and provenance.
    pub fn job_result_source(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(PathBuf, RowsFormat, String)> {
        let job = self
            .jobs
            .get(id)
            .ok_or_else(|| PlatformError::NotFound(format!("no job {id}")))?;
        if job.owner.is_none() || job.owner.as_deref() != caller.user() {
            return Err(PlatformError::Forbidden(format!("job {id} is not yours")));
        }
        let Some(result) = job
            .result
            .as_ref()
            .filter(|_| job.phase == Phase::Completed && job.work == JobKind::Query)
        else {
            return Err(PlatformError::BadRequest(format!(
                "job {id} is {}: only a COMPLETED job's result can be saved",
                job.phase.name()
            )));
        };
        let format = match result.file.rsplit('.').next() {
            Some("vot") => RowsFormat::VoTable,
            Some("csv") => RowsFormat::Csv(b','),
            Some("parquet") => RowsFormat::Parquet,
            _ => {
                return Err(PlatformError::BadRequest(
                    "a result in TSV cannot be saved: run the job with RESPONSEFORMAT votable, csv or parquet"
                        .into(),
                ));
            }
        };
        let query = job
            .params
            .iter()
            .find(|(k, _)| k == "query")
            .map_or("", |(_, q)| q.as_str());
        let now = crate::jobs::iso(crate::jobs::now_ms());
        let provenance = format!("saved from job {id} on {now}; query: {query}");
        Ok((self.jobs.job_dir(id).join(&result.file), format, provenance))
    }

    /// A file of the caller's space named by `source=/files/NAME/PATH`, and its format by its extension.
    pub fn file_source(&self, caller: &Caller, source: &str) -> Result<(PathBuf, RowsFormat)> {
        let path = crate::files::FilePath::parse(source)
            .map_err(|m| PlatformError::BadRequest(format!("source: {m}")))?;
        self.may_use_space(caller, &path, crate::files::Use::Read)
            .map_err(|e| match e {
                PlatformError::Forbidden(_) => {
                    PlatformError::Forbidden(format!("source {source}: not your file space"))
                }
                other => other,
            })?;
        let local = self.local_path(&path);
        if !local.is_file() {
            return Err(PlatformError::NotFound(format!(
                "source {source}: no such file"
            )));
        }
        let format = RowsFormat::of_extension(&local).ok_or_else(|| {
            PlatformError::UnsupportedFormat(format!(
                "source {source}: name a .parquet, .csv, .tsv, .fits or .vot file"
            ))
        })?;
        Ok((local, format))
    }

    /// Makes an index job (PENDING) for a column of a table the caller may add rows to; its id.
    pub fn create_index_job(
        &self,
        caller: &Caller,
        client: &crate::quota::Client,
        target: &Target,
        column: &str,
        unique: bool,
    ) -> Result<String> {
        let info = self
            .readable_table(caller, &target.qualified)
            .ok_or_else(|| PlatformError::NotFound(format!("no table {}", target.qualified)))?;
        let column = info
            .record
            .columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(column))
            .map(|c| c.name.clone())
            .ok_or_else(|| {
                PlatformError::BadRequest(format!("{} has no column {column}", target.qualified))
            })?;
        self.create_job(
            caller,
            client,
            JobKind::Index {
                table: target.qualified.clone(),
                column,
                unique,
            },
        )
        .map_err(PlatformError::unavailable)
    }

    /// Deletes a user and everything of theirs (the admin scope): their tables (on every worker too), their file
    /// space, their jobs and results, their account and tokens.
    pub async fn delete_user(self: &Arc<Self>, caller: &Caller, name: &str) -> Result<DeletedUser> {
        let Some(auth) = &self.auth else {
            return Err(PlatformError::NotFound(
                "this service has no accounts (--auth none)".into(),
            ));
        };
        if !caller.may("admin") {
            return Err(PlatformError::Forbidden(
                "deleting a user needs a token with the admin scope".into(),
            ));
        }
        // A live account, or the tombstone of one removed offline (`skyshard user remove`) whose data remained.
        if !metastore::accounts::valid_name(name)
            || (auth.accounts.user(name).ok().flatten().is_none()
                && !auth.accounts.removed(name).unwrap_or(false))
        {
            return Err(PlatformError::NotFound(format!("no user {name}")));
        }
        let _turn = self.user_tables_lock.lock().await;
        let space = Space::User(name.to_string());
        let mut tables = Vec::new();
        for t in self.czar.tables() {
            if Space::of(&t.record.schema).as_ref() == Some(&space) {
                let qualified = t.record.qualified_name();
                self.drop_locked(&qualified).await?;
                tables.push(qualified);
            }
        }
        let files = self.space_dir(name);
        let file_bytes = metastore::files::size_of(&files);
        {
            let _space = self.space_lock(name).lock_owned().await;
            if let Err(e) = tokio::fs::remove_dir_all(&files).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(PlatformError::unavailable(e));
            }
        }
        let jobs: Vec<String> = self
            .jobs
            .list()
            .into_iter()
            .filter(|j| j.owner.as_deref() == Some(name))
            .map(|j| j.id)
            .collect();
        for id in &jobs {
            self.jobs.delete(id);
        }
        auth.accounts
            .writer()
            .map_err(|e| e.to_string())
            .and_then(|w| w.forget_user(name).map_err(|e| e.to_string()))
            .map_err(PlatformError::unavailable)?;
        Ok(DeletedUser {
            tables,
            file_bytes,
            jobs: jobs.len(),
        })
    }
}

/// A refused row of an upload said in the upload's terms (its row, counted from 1), not the service's scratch file's.
fn upload_error(e: PlatformError) -> PlatformError {
    match e {
        PlatformError::Czar(czar::error::CzarError::Load(loader::LoaderError::BadRow { row, problem, .. })) => {
            PlatformError::BadRequest(format!(
                "row {} of the upload (line {} of a CSV with its header): {problem}; nothing was loaded",
                row + 1,
                row + 2
            ))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_whose_a_table_is() {
        assert_eq!(
            table_name("user_ada.T1").unwrap().2,
            Space::User("ada".into())
        );
        assert_eq!(
            table_name("group_optics.t").unwrap().2,
            Space::Group("optics".into())
        );
        assert!(matches!(
            table_name("sky.object"),
            Err(PlatformError::Forbidden(_))
        ));
        for bad in [
            "user_ada",
            "user_ada.1t",
            "user_.t",
            "user_ada.t-x",
            "user_Ada!.t",
        ] {
            assert!(table_name(bad).is_err(), "{bad}");
        }
    }
}
