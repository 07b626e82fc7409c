//! `skyshard ingest`: load a table into a data directory, atomically.
//!
//! Layout of a data directory: `meta/` (the `metastore`: table records and the secondary index),
//! `tables/SCHEMA.TABLE/LOAD/` (the chunk files of each load), `staging/` (loads under way). A load partitions into
//! `staging/`, writes its index file under its own load id (director ids must be unique: a repeat refuses the load),
//! moves its files under `tables/` and then publishes with one rename of the table record. Until that rename,
//! readers see the catalog exactly as before; a load that dies leaves only unreachable files, removed by the next
//! load.

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use metastore::{ColumnRecord, IndexBuilder, MetaStore, TableKind, TableRecord};
use partitioner::map::ChunkMap;
use partitioner::{ChunkId, layout};

use crate::error::{LoaderError, Result, io};
use crate::partition::{INDEX_COLUMN, PartitionOptions, integer_column, parquet_file, partition};

/// What kind of table to load, with its columns.
#[derive(Debug, Clone)]
pub enum LoadKind {
    Director {
        ra: String,
        dec: String,
        id: String,
    },
    /// Partitioned with its director (`SCHEMA.TABLE`) through the key column.
    Child {
        director: String,
        key: String,
    },
    Replicated,
}

#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// `SCHEMA.TABLE`.
    pub table: String,
    pub kind: LoadKind,
    pub overlap_arcsec: f64,
    pub chunk_rows: u64,
    pub description: Option<String>,
    /// Replace a table that exists (otherwise loading it again is refused).
    pub replace: bool,
    /// Add the inputs' rows to a table that exists: its rows and the new ones are loaded together as a new load
    /// (a director keeps its chunk map, so its child tables stay in place).
    pub append: bool,
    /// Child tables: keep rows whose key names no director object instead of refusing the load.
    pub allow_orphans: bool,
    /// Column descriptions, units and UCDs (JSON or CSV; see [`crate::columns_meta`]) over those of the inputs.
    pub columns_meta: Option<PathBuf>,
    pub memory_bytes: usize,
    /// No progress line on standard error.
    pub quiet: bool,
    /// Skip and count rows with a bad position instead of refusing the load.
    pub skip_invalid: bool,
    /// `None`: by each file's extension.
    pub format: Option<crate::input::InputFormat>,
    /// Director tables: partition with the chunk map of this director table (`SCHEMA.TABLE`), so cross-matches
    /// between the two run chunk by chunk.
    pub chunk_map_of: Option<String>,
}

impl IngestOptions {
    /// Options for loading `table` with everything else at its default.
    pub fn new(table: &str, kind: LoadKind) -> IngestOptions {
        IngestOptions {
            table: table.to_string(),
            kind,
            overlap_arcsec: 60.0,
            chunk_rows: crate::partition::PartitionOptions::default().chunk_rows,
            description: None,
            replace: false,
            append: false,
            allow_orphans: false,
            columns_meta: None,
            memory_bytes: 1 << 30,
            quiet: true,
            skip_invalid: false,
            format: None,
            chunk_map_of: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct IngestReport {
    pub record: TableRecord,
    /// Rows skipped for a bad position (with `skip_invalid`), or orphans kept (with `allow_orphans`).
    pub skipped: u64,
    pub replaced: bool,
    pub chunks_with_rows: usize,
}

fn meta(e: metastore::MetaError) -> LoaderError {
    LoaderError::Meta(e)
}

/// Opens (or creates) the metadata store of a data directory.
pub fn open_store(data_dir: &Path) -> Result<MetaStore> {
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    MetaStore::open(&layout::meta_dir(data_dir)).map_err(meta)
}

/// The directory of a table's current load.
pub fn load_dir(data_dir: &Path, record: &TableRecord) -> PathBuf {
    layout::load_dir(data_dir, &record.qualified_name(), &record.load_id)
}

fn valid_table_name(name: &str) -> Option<(String, String)> {
    let (schema, table) = name.split_once('.')?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    (ok(schema) && ok(table)).then(|| (schema.to_lowercase(), table.to_lowercase()))
}

/// Removes what interrupted loads left behind: staging directories and unreachable index entries.
pub fn collect_garbage(data_dir: &Path, store: &MetaStore) -> Result<()> {
    let staging = layout::staging_dir(data_dir);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    store.collect_garbage().map_err(meta)?;
    let tables = layout::tables_dir(data_dir);
    if let Ok(entries) = std::fs::read_dir(&tables) {
        let current: Vec<PathBuf> = store
            .tables()
            .map_err(meta)?
            .iter()
            .map(|t| load_dir(data_dir, t))
            .collect();
        for table_dir in entries.flatten() {
            for load in std::fs::read_dir(table_dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if !current.contains(&load.path()) {
                    let _ = std::fs::remove_dir_all(load.path());
                }
            }
        }
    }
    Ok(())
}

fn columns_of(path: &Path, id: Option<&str>) -> Result<Vec<ColumnRecord>> {
    Ok(parquet_file(path)?
        .schema()
        .fields()
        .iter()
        .filter(|f| f.name() != INDEX_COLUMN)
        .map(|f| {
            let m = f.metadata();
            ColumnRecord {
                name: f.name().to_lowercase(),
                datatype: f.data_type().to_string(),
                description: m.get("description").cloned(),
                unit: m.get("unit").cloned(),
                ucd: m.get("ucd").cloned(),
                indexed: id.is_some_and(|id| f.name().eq_ignore_ascii_case(id)),
                principal: true,
            }
        })
        .collect())
}

/// Reads the id column of one chunk file into `entries`; returns the row count.
fn read_chunk_ids(path: &Path, chunk: ChunkId, id: &str, index: &mut IndexBuilder) -> Result<u64> {
    let builder = parquet_file(path)?;
    let idx = integer_column(path, builder.schema(), id)?;
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [idx]);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(65_536)
        .build()
        .map_err(|source| LoaderError::Parquet {
            path: path.to_path_buf(),
            source,
        })?;
    let mut rows = 0;
    for batch in reader {
        let batch = batch.map_err(|source| LoaderError::Arrow {
            path: path.to_path_buf(),
            source,
        })?;
        let ids = arrow::compute::cast(batch.column(0), &DataType::Int64).map_err(|source| {
            LoaderError::Arrow {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let ids = ids.as_primitive::<Int64Type>();
        if ids.null_count() > 0 {
            return Err(LoaderError::BadRow {
                path: path.to_path_buf(),
                row: rows,
                problem: format!("the id column {id} has NULLs"),
            });
        }
        index
            .extend(ids.values().iter().map(|&v| (v, chunk)))
            .map_err(io(path))?;
        rows += ids.len() as u64;
    }
    Ok(rows)
}

/// The data files of a published load, sorted: its chunk files (`UNIQ.parquet`, a child's `orphans.parquet`)
/// without their overlap copies, or a replicated table's parts. Appending reads them as inputs; the czar lists a
/// table's chunks from them.
pub fn current_files(data_dir: &Path, record: &TableRecord) -> Result<Vec<PathBuf>> {
    let dir = load_dir(data_dir, record);
    let sub = if record.kind == TableKind::Replicated {
        dir.join(layout::REPLICATED)
    } else {
        dir.join(layout::CHUNKS)
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&sub)
        .map_err(io(&sub))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            match record.kind {
                TableKind::Replicated => name.ends_with(".parquet"),
                _ => layout::parse_chunk_file(&name).is_some_and(|(_, overlap)| !overlap),
            }
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Child tables of `director` (they must move with it).
fn children_of(store: &MetaStore, director: &str) -> Result<Vec<String>> {
    Ok(store
        .tables()
        .map_err(meta)?
        .into_iter()
        .filter(|t| matches!(&t.kind, TableKind::Child { director: d, .. } if d == director))
        .map(|t| t.qualified_name())
        .collect())
}

/// Loads `inputs` as a table of `data_dir`: [`prepare`], then [`Prepared::publish`].
pub fn ingest(data_dir: &Path, inputs: &[PathBuf], opts: &IngestOptions) -> Result<IngestReport> {
    prepare(data_dir, inputs, opts)?.publish()
}

/// A load whose files are in place under its load directory and not yet published: nobody sees it until
/// [`Prepared::publish`]; dropped unpublished, its files are removed and the catalog stays as it was. It holds the
/// data directory's metadata store (one writer at a time) until then. Between the two steps the czar ships the
/// files to the workers and notes their placement in the record ([`Prepared::record_mut`]).
pub struct Prepared {
    store: MetaStore,
    data_dir: PathBuf,
    dir: PathBuf,
    record: TableRecord,
    skipped: u64,
    chunks_with_rows: usize,
    published: bool,
}

impl Prepared {
    /// The load directory (`DATA/tables/S.T/LOAD/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn record(&self) -> &TableRecord {
        &self.record
    }

    /// The record to publish; the czar adds the chunks' placement.
    pub fn record_mut(&mut self) -> &mut TableRecord {
        &mut self.record
    }

    /// Makes the load visible in one rename (the table record), then removes the load it replaced.
    pub fn publish(mut self) -> Result<IngestReport> {
        let previous = self.store.publish(&self.record).map_err(meta)?;
        self.published = true;
        if let Some(prev) = &previous {
            let _ = std::fs::remove_dir_all(load_dir(&self.data_dir, prev));
        }
        Ok(IngestReport {
            record: self.record.clone(),
            skipped: self.skipped,
            replaced: previous.is_some(),
            chunks_with_rows: self.chunks_with_rows,
        })
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_dir_all(&self.dir);
            let _ = self.store.collect_garbage();
        }
    }
}

/// The first step of a load: partitions `inputs` into a new load directory of the table, with its index and
/// record, without publishing it.
pub fn prepare(data_dir: &Path, inputs: &[PathBuf], opts: &IngestOptions) -> Result<Prepared> {
    let (schema, name) =
        valid_table_name(&opts.table).ok_or_else(|| LoaderError::TableName(opts.table.clone()))?;
    let qualified = format!("{schema}.{name}");
    // A HATS catalog: its partitions' files, and its partitioning as the chunk map.
    let (inputs, hats_map) = if opts.format == Some(crate::input::InputFormat::Hats) {
        let [dir] = inputs else {
            return Err(LoaderError::Hats {
                path: inputs.first().cloned().unwrap_or_default(),
                problem: "--format hats takes one --input: the catalog's directory".into(),
            });
        };
        if !matches!(opts.kind, LoadKind::Director { .. }) {
            return Err(LoaderError::Hats {
                path: dir.clone(),
                problem: "a HATS catalog loads as a director table (--id COLUMN; --ra and --dec come from its properties)"
                    .into(),
            });
        }
        let catalog = crate::hats::open(dir)?;
        let map = catalog.map()?;
        (catalog.files, Some(map))
    } else {
        (crate::input::expand(inputs)?, None)
    };
    let store = open_store(data_dir)?;
    collect_garbage(data_dir, &store)?;
    let existing = store.table(&qualified).map_err(meta)?;
    let mut opts = opts.clone();
    let mut all_inputs = Vec::new();
    if let Some(existing) = &existing {
        if !opts.replace && !opts.append {
            return Err(LoaderError::TableExists(qualified));
        }
        let same_kind = match (&existing.kind, &opts.kind) {
            (
                TableKind::Director { ra, dec, id },
                LoadKind::Director {
                    ra: r,
                    dec: d,
                    id: i,
                },
            ) => {
                ra.eq_ignore_ascii_case(r)
                    && dec.eq_ignore_ascii_case(d)
                    && id.eq_ignore_ascii_case(i)
            }
            (
                TableKind::Child { director, key },
                LoadKind::Child {
                    director: d,
                    key: k,
                },
            ) => director.eq_ignore_ascii_case(d) && key.eq_ignore_ascii_case(k),
            (TableKind::Replicated, LoadKind::Replicated) => true,
            _ => false,
        };
        if opts.append {
            if !same_kind {
                return Err(LoaderError::KindMismatch {
                    table: qualified,
                    existing: format!("{:?}", existing.kind),
                });
            }
            // The table's rows are loaded again with the new ones, in its own chunk map and overlap.
            all_inputs = current_files(data_dir, existing)?;
            opts.overlap_arcsec = existing.overlap_arcsec;
            if opts.description.is_none() {
                opts.description = existing.description.clone();
            }
        } else if matches!(existing.kind, TableKind::Director { .. }) {
            // A new director load has a new chunk map: its children would sit in the wrong chunks.
            let children = children_of(&store, &qualified)?;
            if !children.is_empty() {
                return Err(LoaderError::HasChildren {
                    table: qualified,
                    children: children.join(", "),
                });
            }
        }
    }
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let load = format!("{millis}-{}", std::process::id());
    let staging = layout::staging_dir(data_dir).join(format!("{qualified}-{load}"));
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    let result =
        crate::input::prepare(&inputs, opts.format, &staging.join("input")).and_then(|prepared| {
            all_inputs.extend(prepared);
            let same_map_as = match (&existing, opts.append, &opts.chunk_map_of) {
                (Some(e), true, _) if !e.chunks.is_empty() => Some(e.clone()),
                (_, _, Some(other)) => match store.table(other).map_err(meta)? {
                    Some(t)
                        if matches!(t.kind, TableKind::Director { .. }) && !t.chunks.is_empty() =>
                    {
                        Some(t)
                    }
                    _ => return Err(LoaderError::NoDirector(other.clone())),
                },
                _ => None,
            };
            let map = match same_map_as {
                Some(t) => Some(
                    ChunkMap::from_chunks(t.chunks.iter().map(|&c| ChunkId(c)).collect())
                        .map_err(|e| LoaderError::Corrupt(e.to_string()))?,
                ),
                None => hats_map,
            };
            let mut staged = stage(&store, &qualified, &load, &staging, &all_inputs, &opts, map)?;
            if let Some(path) = &opts.columns_meta {
                crate::columns_meta::apply(path, &mut staged.3)?;
            } else if let (Some(e), true) = (&existing, opts.append) {
                // Appending keeps the metadata the table was given.
                for c in staged.3.iter_mut() {
                    if let Some(old) = e.columns.iter().find(|o| o.name == c.name) {
                        *c = ColumnRecord {
                            datatype: c.datatype.clone(),
                            ..old.clone()
                        };
                    }
                }
            }
            Ok(staged)
        });
    let (kind, rows, chunks, columns, chunks_with_rows, skipped) = match result {
        Ok(v) => v,
        Err(e) => {
            // Nothing was published: drop what this load staged.
            let _ = std::fs::remove_dir_all(&staging);
            let _ = store.collect_garbage();
            return Err(e);
        }
    };
    let _ = std::fs::remove_dir_all(staging.join("input"));
    let final_dir = layout::load_dir(data_dir, &qualified, &load);
    std::fs::create_dir_all(final_dir.parent().expect("has a parent")).map_err(io(&final_dir))?;
    std::fs::rename(&staging, &final_dir).map_err(io(&final_dir))?;
    let orphan_rows = if matches!(kind, TableKind::Child { .. }) {
        skipped
    } else {
        0
    };
    let record = TableRecord {
        schema,
        name,
        kind,
        description: opts.description.clone(),
        load_id: load,
        rows,
        overlap_arcsec: opts.overlap_arcsec,
        chunks,
        columns,
        orphan_rows,
        placement: Vec::new(),
    };
    Ok(Prepared {
        store,
        data_dir: data_dir.to_path_buf(),
        dir: final_dir,
        record,
        skipped,
        chunks_with_rows,
        published: false,
    })
}

type Staged = (TableKind, u64, Vec<u64>, Vec<ColumnRecord>, usize, u64);

fn stage(
    store: &MetaStore,
    table: &str,
    load: &str,
    staging: &Path,
    inputs: &[PathBuf],
    opts: &IngestOptions,
    map: Option<ChunkMap>,
) -> Result<Staged> {
    match &opts.kind {
        LoadKind::Director { ra, dec, id } => {
            let popts = PartitionOptions {
                ra: ra.clone(),
                dec: dec.clone(),
                chunk_rows: opts.chunk_rows,
                overlap_arcsec: opts.overlap_arcsec,
                memory_bytes: opts.memory_bytes,
                quiet: opts.quiet,
                skip_invalid: opts.skip_invalid,
                map,
                ..Default::default()
            };
            let stats = partition(inputs, staging, &popts)?;
            let chunk_dir = staging.join(layout::CHUNKS);
            let mut files = Vec::new();
            let mut rows = 0;
            // The index of one load is sorted within the load's memory budget (16 bytes a row; larger loads spill
            // sorted runs and merge them) and written as one immutable file.
            let mut index = store
                .index_builder(table, load, opts.memory_bytes)
                .map_err(meta)?;
            for (&chunk, _) in &stats.chunk_rows {
                let path = chunk_dir.join(layout::chunk_file(chunk.0));
                rows += read_chunk_ids(&path, chunk, id, &mut index)?;
                files.push(path);
            }
            let built = index.finish().map_err(io(&chunk_dir))?;
            if built.duplicates > 0 {
                return Err(LoaderError::DuplicateIds {
                    column: id.clone(),
                    count: built.duplicates,
                    examples: built.examples,
                });
            }
            let columns = match files.first() {
                Some(f) => columns_of(f, Some(id))?,
                None => Vec::new(),
            };
            let chunks = stats.map.chunks().iter().map(|c| c.0).collect();
            let kind = TableKind::Director {
                ra: ra.clone(),
                dec: dec.clone(),
                id: id.clone(),
            };
            Ok((
                kind,
                rows,
                chunks,
                columns,
                stats.chunk_rows.len(),
                stats.invalid_rows,
            ))
        }
        LoadKind::Child { director, key } => {
            let director = director.to_lowercase();
            let record = match store.table(&director).map_err(meta)? {
                Some(r) if matches!(r.kind, TableKind::Director { .. }) => r,
                _ => return Err(LoaderError::NoDirector(director)),
            };
            let popts = PartitionOptions {
                memory_bytes: opts.memory_bytes,
                quiet: opts.quiet,
                allow_orphans: opts.allow_orphans,
                ..Default::default()
            };
            let lookup = |ids: &[i64]| {
                store
                    .lookup_many(&director, &record.load_id, ids)
                    .map_err(meta)
            };
            let stats = crate::partition::partition_child(inputs, staging, key, &lookup, &popts)?;
            let first = stats
                .chunk_rows
                .keys()
                .next()
                .map(|&c| staging.join(layout::CHUNKS).join(layout::chunk_file(c.0)));
            let columns = match first {
                Some(f) => columns_of(&f, None)?,
                None => Vec::new(),
            };
            Ok((
                TableKind::Child {
                    director: director.clone(),
                    key: key.clone(),
                },
                stats.rows,
                record.chunks.clone(),
                columns,
                stats.chunk_rows.len(),
                stats.invalid_rows,
            ))
        }
        LoadKind::Replicated => {
            let dir = staging.join(layout::REPLICATED);
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            let mut rows = 0;
            let mut columns = Vec::new();
            for (k, input) in inputs.iter().enumerate() {
                rows += parquet_file(input)?.metadata().file_metadata().num_rows() as u64;
                if k == 0 {
                    columns = columns_of(input, None)?;
                }
                let dest = dir.join(format!("part-{k}.parquet"));
                std::fs::copy(input, &dest).map_err(io(&dest))?;
            }
            Ok((TableKind::Replicated, rows, Vec::new(), columns, 0, 0))
        }
    }
}

/// Removes a table: its record and index entries in one write, then its files. A director with child tables is
/// refused (they are placed by its chunks).
pub fn drop_table(data_dir: &Path, table: &str) -> Result<()> {
    let (schema, name) =
        valid_table_name(table).ok_or_else(|| LoaderError::TableName(table.to_string()))?;
    let qualified = format!("{schema}.{name}");
    let store = open_store(data_dir)?;
    let children = children_of(&store, &qualified)?;
    if !children.is_empty() {
        return Err(LoaderError::HasChildren {
            table: qualified,
            children: children.join(", "),
        });
    }
    match store.drop_table(&qualified).map_err(meta)? {
        Some(record) => {
            let dir = layout::table_dir(data_dir, &record.qualified_name());
            let _ = std::fs::remove_dir_all(&dir);
            Ok(())
        }
        None => Err(LoaderError::NoTable(qualified)),
    }
}
