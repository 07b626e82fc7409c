//! `skyshard partition`: Parquet input -> one Parquet file per chunk, sorted by the depth-29 HEALPix index.
//!
//! Pass 1 reads only the position columns, checks every position (a NaN or out-of-range coordinate is an error
//! naming the file and row) and fills a histogram; the adaptive chunk map is built from it. Pass 2 reads all
//! columns, adds `_hpx29` (the nested index at depth 29), sends each row to its chunk and, as overlap, to every
//! chunk within the overlap radius. Rows wait in memory up to a byte budget (1 GiB by default), then spill to Arrow IPC files; at the end
//! each chunk is sorted and written with bounded row groups (their min/max `_hpx29` statistics let a cone search
//! skip row groups). Output: `DIR/chunks/UNIQ.parquet`, `DIR/chunks/UNIQ.overlap.parquet`, `DIR/chunks.txt` (the
//! chunk map, one NUNIQ per line) and `DIR/partition.json` (statistics).
//!
//! Why one long module: the two passes, the spill buffers and the chunk writer share their state and error mapping;
//! the child-table pass reuses them.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, sort_to_indices, take, take_record_batch};
use arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use partitioner::map::{ChunkMap, Histogram};
use partitioner::{ChunkId, OverlapFinder, layout};

use crate::error::{LoaderError, Result, io};
use crate::progress::Progress;

pub use partitioner::layout::INDEX_COLUMN;

#[derive(Debug, Clone)]
pub struct PartitionOptions {
    pub ra: String,
    pub dec: String,
    /// No chunk holds more rows than this, except where one cell of the histogram's depth is denser.
    pub chunk_rows: u64,
    pub overlap_arcsec: f64,
    /// Depth of the pass-1 histogram, which is also the deepest chunk depth.
    pub histogram_depth: u8,
    /// Bytes of rows (Arrow buffers) held in memory in pass 2 before spilling to disk.
    pub memory_bytes: usize,
    /// Rows per Parquet row group in the chunk files.
    pub row_group_rows: usize,
    /// No progress line on standard error.
    pub quiet: bool,
    /// Skip and count rows with a bad position instead of refusing the input.
    pub skip_invalid: bool,
    /// Use this chunk map instead of building one (appending to a table keeps its chunks, and so its children's).
    pub map: Option<ChunkMap>,
    /// Child tables: keep rows whose key names no director object, in the pseudo-chunk file `orphans.parquet`.
    pub allow_orphans: bool,
}

impl Default for PartitionOptions {
    fn default() -> Self {
        PartitionOptions {
            ra: "ra".into(),
            dec: "dec".into(),
            chunk_rows: 1_000_000,
            overlap_arcsec: 60.0,
            histogram_depth: 10,
            memory_bytes: 1 << 30,
            row_group_rows: 16_384,
            quiet: false,
            skip_invalid: false,
            map: None,
            allow_orphans: false,
        }
    }
}

/// What a partitioning produced.
#[derive(Debug, Clone)]
pub struct PartitionStats {
    pub rows: u64,
    /// Rows skipped for a bad position (only with `skip_invalid`).
    pub invalid_rows: u64,
    pub overlap_rows: u64,
    /// Rows per non-empty chunk.
    pub chunk_rows: BTreeMap<ChunkId, u64>,
    pub map: ChunkMap,
}

impl PartitionStats {
    pub fn summary(&self) -> String {
        let mut counts: Vec<u64> = self.chunk_rows.values().copied().collect();
        counts.sort_unstable();
        let (min, med, max) = match counts.len() {
            0 => (0, 0, 0),
            n => (counts[0], counts[n / 2], counts[n - 1]),
        };
        format!(
            "{} rows in {} chunks (of {} in the map, depths {}..{}); rows per chunk min {min}, median {med}, max {max}; overlap rows {} ({:.2} % of rows){}",
            self.rows,
            counts.len(),
            self.map.chunks().len(),
            self.map
                .chunks()
                .iter()
                .map(|c| c.depth())
                .min()
                .unwrap_or(0),
            self.map.max_depth(),
            self.overlap_rows,
            if self.rows == 0 {
                0.0
            } else {
                100.0 * self.overlap_rows as f64 / self.rows as f64
            },
            if self.invalid_rows > 0 {
                format!("; {} rows with a bad position skipped", self.invalid_rows)
            } else {
                String::new()
            }
        )
    }
}

/// A Parquet file's reader, its errors naming the file.
pub(crate) fn parquet_file(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).map_err(io(path))?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|source| LoaderError::Parquet {
        path: path.to_path_buf(),
        source,
    })
}

/// An input file's reader and its columns. An `_hpx29` column (the input is a chunk file, as when appending) is left
/// out: it is recomputed.
fn open(path: &Path) -> Result<(ParquetRecordBatchReaderBuilder<File>, SchemaRef)> {
    let builder = parquet_file(path)?;
    let schema = builder.schema().clone();
    // HEALPix indexes an input carries (skyshard's own chunk files, a HATS catalog's) are computed again.
    let hidden: Vec<usize> = [INDEX_COLUMN, HATS_INDEX_COLUMN]
        .iter()
        .filter_map(|c| schema.index_of(c).ok())
        .collect();
    match hidden.is_empty() {
        true => Ok((builder, schema)),
        false => {
            let keep: Vec<usize> = (0..schema.fields().len())
                .filter(|i| !hidden.contains(i))
                .collect();
            let projected =
                Arc::new(schema.project(&keep).map_err(|source| LoaderError::Arrow {
                    path: path.to_path_buf(),
                    source,
                })?);
            let mask = ProjectionMask::roots(builder.parquet_schema(), keep);
            Ok((builder.with_projection(mask), projected))
        }
    }
}

/// Refuses an input whose columns (names and types) differ from the first input's.
fn same_columns(path: &Path, schema: &Schema, first: &Path, first_schema: &Schema) -> Result<()> {
    let names = |s: &Schema| {
        s.fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
    };
    if names(schema) != names(first_schema) {
        return Err(LoaderError::SchemaMismatch {
            path: path.to_path_buf(),
            first: first.to_path_buf(),
            difference: format!("{:?} vs {:?}", names(schema), names(first_schema)),
        });
    }
    Ok(())
}

/// Rows of a file, for the progress line.
fn row_count(path: &Path) -> Result<u64> {
    Ok(open(path)?.0.metadata().file_metadata().num_rows() as u64)
}

/// The index of a column: its exact name, else matched case-insensitively as regular ADQL identifiers are.
pub(crate) fn find_column(path: &Path, schema: &Schema, name: &str) -> Result<usize> {
    let exact = schema.index_of(name).ok();
    exact
        .or_else(|| {
            schema
                .fields()
                .iter()
                .position(|f| f.name().eq_ignore_ascii_case(name))
        })
        .ok_or_else(|| LoaderError::MissingColumn {
            path: path.to_path_buf(),
            column: name.to_string(),
            available: schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The index of a position column, which must hold numbers.
fn column_index(path: &Path, schema: &Schema, name: &str) -> Result<usize> {
    let idx = find_column(path, schema, name)?;
    let dt = schema.field(idx).data_type();
    if !(dt.is_floating() || dt.is_integer()) {
        return Err(LoaderError::ColumnType {
            path: path.to_path_buf(),
            column: name.to_string(),
            expected: "a floating-point or integer number",
            found: dt.to_string(),
        });
    }
    Ok(idx)
}

/// The index of an id or key column, which must hold integers.
pub(crate) fn integer_column(path: &Path, schema: &Schema, name: &str) -> Result<usize> {
    let idx = find_column(path, schema, name)?;
    let dt = schema.field(idx).data_type();
    if !dt.is_integer() {
        return Err(LoaderError::ColumnType {
            path: path.to_path_buf(),
            column: name.to_string(),
            expected: "an integer",
            found: dt.to_string(),
        });
    }
    Ok(idx)
}

/// A position column as f64, whatever its numeric type.
fn as_f64(path: &Path, a: &ArrayRef) -> Result<ArrayRef> {
    arrow::compute::cast(a, &DataType::Float64).map_err(|source| LoaderError::Arrow {
        path: path.to_path_buf(),
        source,
    })
}

/// What is wrong with a position, if anything.
fn position_problem(
    ra: &arrow::array::Float64Array,
    dec: &arrow::array::Float64Array,
    i: usize,
) -> Option<String> {
    if ra.is_null(i) || dec.is_null(i) {
        return Some("the position is NULL".into());
    }
    let (a, d) = (ra.value(i), dec.value(i));
    if !a.is_finite() || !d.is_finite() {
        Some(format!("the position ({a}, {d}) is not a number"))
    } else if !(-90.0..=90.0).contains(&d) {
        Some(format!("declination {d} is outside [-90, 90]"))
    } else if !(-360.0..=720.0).contains(&a) {
        Some(format!("right ascension {a} is outside [0, 360]"))
    } else {
        None
    }
}

/// Checks one batch of positions: the first bad row is an error, or with `skip` every bad row is counted.
fn check_positions(
    path: &Path,
    first_row: u64,
    ra: &ArrayRef,
    dec: &ArrayRef,
    skip: bool,
    invalid: &mut u64,
) -> Result<()> {
    let (ra, dec) = (
        ra.as_primitive::<Float64Type>(),
        dec.as_primitive::<Float64Type>(),
    );
    for i in 0..ra.len() {
        if let Some(problem) = position_problem(ra, dec, i) {
            if !skip {
                return Err(LoaderError::BadRow {
                    path: path.to_path_buf(),
                    row: first_row + i as u64,
                    problem,
                });
            }
            *invalid += 1;
        }
    }
    Ok(())
}

/// Pass 1: the histogram of all positions, and the schema shared by all inputs.
fn histogram(
    inputs: &[PathBuf],
    opts: &PartitionOptions,
) -> Result<(Histogram, SchemaRef, u64, u64)> {
    let mut total = 0u64;
    let mut invalid = 0u64;
    for path in inputs {
        total += row_count(path)?;
    }
    let mut progress = Progress::new("pass 1 (positions)", total, opts.quiet);
    let mut hist = Histogram::new(opts.histogram_depth.min(12)).expect("depth checked");
    let mut first_schema: Option<(SchemaRef, PathBuf)> = None;
    for path in inputs {
        let (builder, schema) = open(path)?;
        match &first_schema {
            None => first_schema = Some((schema.clone(), path.clone())),
            Some((s, first)) => same_columns(path, &schema, first, s)?,
        }
        let (ri, di) = (
            column_index(path, &schema, &opts.ra)?,
            column_index(path, &schema, &opts.dec)?,
        );
        let ra_name = schema.field(ri).name().clone();
        let file_index = |name: &str| {
            builder
                .schema()
                .index_of(name)
                .expect("a column of the file")
        };
        let mask = ProjectionMask::roots(
            builder.parquet_schema(),
            [file_index(&ra_name), file_index(schema.field(di).name())],
        );
        let reader = builder
            .with_projection(mask)
            .with_batch_size(65_536)
            .build()
            .map_err(|source| LoaderError::Parquet {
                path: path.clone(),
                source,
            })?;
        let mut row = 0u64;
        for batch in reader {
            let batch = batch.map_err(|source| LoaderError::Arrow {
                path: path.clone(),
                source,
            })?;
            // The projection keeps file order: find the columns by name.
            let ra_pos = if batch.schema().field(0).name() == &ra_name {
                0
            } else {
                1
            };
            let ra = as_f64(path, batch.column(ra_pos))?;
            let dec = as_f64(path, batch.column(1 - ra_pos))?;
            check_positions(path, row, &ra, &dec, opts.skip_invalid, &mut invalid)?;
            let (ra, dec) = (
                ra.as_primitive::<Float64Type>(),
                dec.as_primitive::<Float64Type>(),
            );
            // With a chunk map given (an append, another table's map, a HATS catalog's partitions) there is no map to
            // build: pass 1 only checks the positions.
            if opts.map.is_some() {
                row += batch.num_rows() as u64;
                progress.add(batch.num_rows() as u64);
                continue;
            }
            // Hashing is pass 1's work: the batch's rows are hashed on every core, then counted.
            let depth = hist.depth();
            let n = ra.len();
            let threads = std::thread::available_parallelism()
                .map_or(1, |t| t.get())
                .clamp(1, 8)
                .min(n.div_ceil(4096).max(1));
            let hash_rows = |from: usize, to: usize| -> Vec<u64> {
                (from..to)
                    .filter(|&i| position_problem(ra, dec, i).is_none())
                    .map(|i| {
                        partitioner::map::hash(depth, ra.value(i), dec.value(i))
                            .expect("checked positions are on the sky")
                    })
                    .collect()
            };
            let parts: Vec<Vec<u64>> = std::thread::scope(|scope| {
                let step = n.div_ceil(threads);
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let (from, to) = ((t * step).min(n), ((t + 1) * step).min(n));
                        scope.spawn(move || hash_rows(from, to))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a hashing thread"))
                    .collect()
            });
            for h in parts.into_iter().flatten() {
                hist.add_hash(h);
            }
            row += batch.num_rows() as u64;
            progress.add(batch.num_rows() as u64);
        }
    }
    progress.finish();
    let schema = first_schema.ok_or(LoaderError::NoInput)?.0;
    Ok((hist, schema, total, invalid))
}

/// Rows waiting for their chunk file: in memory, then in spill files.
struct Buffers {
    dir: PathBuf,
    schema: SchemaRef,
    memory: BTreeMap<(ChunkId, bool), Vec<RecordBatch>>,
    spilled: BTreeMap<(ChunkId, bool), Vec<PathBuf>>,
    held: usize,
    limit: usize,
    spills: usize,
}

impl Buffers {
    fn new(dir: PathBuf, schema: SchemaRef, limit: usize) -> Buffers {
        Buffers {
            dir,
            schema,
            memory: BTreeMap::new(),
            spilled: BTreeMap::new(),
            held: 0,
            limit,
            spills: 0,
        }
    }

    fn push(&mut self, key: (ChunkId, bool), batch: RecordBatch) -> Result<()> {
        self.held += batch.get_array_memory_size();
        self.memory.entry(key).or_default().push(batch);
        if self.held > self.limit {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        for (key, batches) in std::mem::take(&mut self.memory) {
            let path = self.dir.join(format!(
                "{}.{}.{}.arrow",
                key.0,
                if key.1 { "o" } else { "c" },
                self.spills
            ));
            let file = File::create(&path).map_err(io(&path))?;
            let mut w =
                FileWriter::try_new(file, &self.schema).map_err(|source| LoaderError::Arrow {
                    path: path.clone(),
                    source,
                })?;
            for b in &batches {
                w.write(b).map_err(|source| LoaderError::Arrow {
                    path: path.clone(),
                    source,
                })?;
            }
            w.finish().map_err(|source| LoaderError::Arrow {
                path: path.clone(),
                source,
            })?;
            self.spilled.entry(key).or_default().push(path);
        }
        self.spills += 1;
        self.held = 0;
        Ok(())
    }

    /// All rows of one chunk file, from memory and spill files.
    fn take(&mut self, key: (ChunkId, bool)) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for path in self.spilled.remove(&key).unwrap_or_default() {
            let file = File::open(&path).map_err(io(&path))?;
            let reader = FileReader::try_new(file, None).map_err(|source| LoaderError::Arrow {
                path: path.clone(),
                source,
            })?;
            for b in reader {
                out.push(b.map_err(|source| LoaderError::Arrow {
                    path: path.clone(),
                    source,
                })?);
            }
            let _ = std::fs::remove_file(&path);
        }
        out.extend(self.memory.remove(&key).unwrap_or_default());
        Ok(out)
    }

    fn keys(&self) -> Vec<(ChunkId, bool)> {
        let mut k: Vec<_> = self
            .memory
            .keys()
            .chain(self.spilled.keys())
            .copied()
            .collect();
        k.sort();
        k.dedup();
        k
    }
}

/// The buffer key of orphan child rows: NUNIQ 0 is no HEALPix cell.
const ORPHAN_KEY: (ChunkId, bool) = (ChunkId(layout::ORPHANS_CHUNK), false);

/// Creates `OUT/chunks` (the result) and `OUT/spill` (rows waiting on disk).
fn output_dirs(out: &Path) -> Result<(PathBuf, PathBuf)> {
    let (chunks, spill) = (out.join(layout::CHUNKS), out.join("spill"));
    for d in [&chunks, &spill] {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    Ok((chunks, spill))
}

/// Writes every buffered chunk file, sorted by column `sort_column`, with bounded row groups.
fn write_chunks(
    buffers: &mut Buffers,
    schema: &SchemaRef,
    sort_column: usize,
    chunk_dir: &Path,
    opts: &PartitionOptions,
) -> Result<()> {
    const PAGE_ROWS: usize = 2048;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(opts.row_group_rows))
        .set_statistics_enabled(EnabledStatistics::Page)
        // Pages of 2,048 rows: rows are sorted by `_hpx29`, so a cone's index ranges select a page or two of each
        // column through the page index instead of decoding the whole row group (docs/benchmarks.md, issue 15).
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_write_batch_size(PAGE_ROWS)
        // Coordinates and fluxes do not repeat: dictionaries only cost time.
        .set_dictionary_enabled(false)
        .build();
    for key in buffers.keys() {
        let batches = buffers.take(key)?;
        let name = match key {
            ORPHAN_KEY => layout::ORPHANS_FILE.to_string(),
            (chunk, true) => layout::overlap_file(chunk.0),
            (chunk, false) => layout::chunk_file(chunk.0),
        };
        let path = chunk_dir.join(name);
        let arrow_err = |source| LoaderError::Arrow {
            path: path.clone(),
            source,
        };
        let all = concat_batches(schema, &batches).map_err(arrow_err)?;
        let order = sort_to_indices(all.column(sort_column), None, None).map_err(arrow_err)?;
        let columns = all
            .columns()
            .iter()
            .map(|c| take(c, &order, None))
            .collect::<Result<Vec<_>, _>>()
            .map_err(arrow_err)?;
        let sorted = RecordBatch::try_new(schema.clone(), columns).map_err(arrow_err)?;
        let file = File::create(&path).map_err(io(&path))?;
        let mut w =
            ArrowWriter::try_new(file, schema.clone(), Some(props.clone())).map_err(|source| {
                LoaderError::Parquet {
                    path: path.clone(),
                    source,
                }
            })?;
        w.write(&sorted).map_err(|source| LoaderError::Parquet {
            path: path.clone(),
            source,
        })?;
        w.close().map_err(|source| LoaderError::Parquet {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Where each child row goes: the chunk of its director, found through the secondary index.
pub type DirectorLookup<'a> = dyn Fn(&[i64]) -> Result<Vec<Option<ChunkId>>> + 'a;

/// Cuts a child table into the chunks of its director: each row goes to the chunk of the director object its key
/// names (files sorted by the key). Rows whose key names no director object (or is NULL) are refused, counted,
/// with examples naming file and row; with `opts.allow_orphans` they are kept in [`layout::ORPHANS_FILE`] and counted in
/// `invalid_rows`.
pub fn partition_child(
    inputs: &[PathBuf],
    out: &Path,
    key: &str,
    lookup: &DirectorLookup,
    opts: &PartitionOptions,
) -> Result<PartitionStats> {
    let first = inputs.first().ok_or(LoaderError::NoInput)?;
    let schema = open(first)?.1;
    let key_index = integer_column(first, &schema, key)?;
    let (chunk_dir, spill_dir) = output_dirs(out)?;
    let mut buffers = Buffers::new(spill_dir.clone(), schema.clone(), opts.memory_bytes);
    let mut stats = PartitionStats {
        rows: 0,
        overlap_rows: 0,
        invalid_rows: 0,
        chunk_rows: BTreeMap::new(),
        map: ChunkMap::uniform(0),
    };
    let mut orphans = 0u64;
    let mut examples = Vec::new();
    for path in inputs {
        let (builder, file_schema) = open(path)?;
        same_columns(path, &file_schema, first, &schema)?;
        let reader =
            builder
                .with_batch_size(65_536)
                .build()
                .map_err(|source| LoaderError::Parquet {
                    path: path.clone(),
                    source,
                })?;
        let mut row = 0u64;
        for batch in reader {
            let batch = batch.map_err(|source| LoaderError::Arrow {
                path: path.clone(),
                source,
            })?;
            let keys = arrow::compute::cast(batch.column(key_index), &DataType::Int64).map_err(
                |source| LoaderError::Arrow {
                    path: path.clone(),
                    source,
                },
            )?;
            let keys = keys.as_primitive::<arrow::datatypes::Int64Type>();
            let chunks = lookup(keys.values())?;
            let mut rows_of: BTreeMap<ChunkId, Vec<u32>> = BTreeMap::new();
            let mut orphan_rows = Vec::new();
            for (i, chunk) in chunks.iter().enumerate() {
                match chunk {
                    Some(c) if !keys.is_null(i) => rows_of.entry(*c).or_default().push(i as u32),
                    _ => {
                        orphans += 1;
                        orphan_rows.push(i as u32);
                        if examples.len() < 5 {
                            examples.push(format!(
                                "{} row {}: {key} = {}",
                                path.display(),
                                row + i as u64,
                                if keys.is_null(i) {
                                    "NULL".to_string()
                                } else {
                                    keys.value(i).to_string()
                                }
                            ));
                        }
                    }
                }
            }
            for (chunk, rows) in rows_of {
                let n = rows.len() as u64;
                let part =
                    take_record_batch(&batch, &UInt32Array::from(rows)).map_err(|source| {
                        LoaderError::Arrow {
                            path: path.clone(),
                            source,
                        }
                    })?;
                stats.rows += n;
                *stats.chunk_rows.entry(chunk).or_default() += n;
                buffers.push((chunk, false), part)?;
            }
            if opts.allow_orphans && !orphan_rows.is_empty() {
                let part = take_record_batch(&batch, &UInt32Array::from(orphan_rows)).map_err(
                    |source| LoaderError::Arrow {
                        path: path.clone(),
                        source,
                    },
                )?;
                stats.rows += part.num_rows() as u64;
                buffers.push(ORPHAN_KEY, part)?;
            }
            row += batch.num_rows() as u64;
        }
    }
    stats.invalid_rows = if opts.allow_orphans { orphans } else { 0 };
    if orphans > 0 && !opts.allow_orphans {
        let _ = std::fs::remove_dir_all(&spill_dir);
        return Err(LoaderError::Orphans {
            key: key.to_string(),
            count: orphans,
            examples,
        });
    }
    write_chunks(&mut buffers, &schema, key_index, &chunk_dir, opts)?;
    let _ = std::fs::remove_dir_all(&spill_dir);
    Ok(stats)
}

/// One batch of input split into the parts each chunk receives: its own rows and the overlap copies of others'.
fn split_batch(
    path: &Path,
    map: &ChunkMap,
    finder: &mut OverlapFinder,
    schema: &SchemaRef,
    ri: usize,
    di: usize,
    batch: &RecordBatch,
) -> Result<Vec<((ChunkId, bool), RecordBatch)>> {
    let arrow_err = |source| LoaderError::Arrow {
        path: path.to_path_buf(),
        source,
    };
    let ra = as_f64(path, batch.column(ri))?;
    let dec = as_f64(path, batch.column(di))?;
    let (ra, dec) = (
        ra.as_primitive::<Float64Type>(),
        dec.as_primitive::<Float64Type>(),
    );
    let mut index = Vec::with_capacity(batch.num_rows());
    let mut rows_of: BTreeMap<(ChunkId, bool), Vec<u32>> = BTreeMap::new();
    let mut others = Vec::new();
    let mut last: Option<(ChunkId, Vec<u32>)> = None;
    for i in 0..batch.num_rows() {
        if position_problem(ra, dec, i).is_some() {
            // Pass 1 refused the input unless bad rows are to be skipped.
            index.push(0);
            continue;
        }
        let (chunk, h) = map
            .assign(ra.value(i), dec.value(i))
            .expect("pass 1 checked every position");
        index.push(h as i64);
        // Runs of rows in one chunk are common: extend the current run before touching the map.
        match &mut last {
            Some((c, rows)) if *c == chunk => rows.push(i as u32),
            _ => {
                if let Some((c, rows)) = last.take() {
                    rows_of.entry((c, false)).or_default().extend(rows);
                }
                last = Some((chunk, vec![i as u32]));
            }
        }
        others.clear();
        finder.others(ra.value(i), dec.value(i), h, chunk, &mut others);
        for &o in &others {
            rows_of.entry((o, true)).or_default().push(i as u32);
        }
    }
    if let Some((c, rows)) = last {
        rows_of.entry((c, false)).or_default().extend(rows);
    }
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(Int64Array::from(index)));
    let full = RecordBatch::try_new(schema.clone(), columns).map_err(arrow_err)?;
    rows_of
        .into_iter()
        .map(|(key, rows)| {
            Ok((
                key,
                take_record_batch(&full, &UInt32Array::from(rows)).map_err(arrow_err)?,
            ))
        })
        .collect()
}

/// The depth-29 HEALPix index column of HATS catalogs.
const HATS_INDEX_COLUMN: &str = "_healpix_29";

/// Cuts the inputs into chunk files under `out`.
pub fn partition(
    inputs: &[PathBuf],
    out: &Path,
    opts: &PartitionOptions,
) -> Result<PartitionStats> {
    if inputs.is_empty() {
        return Err(LoaderError::NoInput);
    }
    let (hist, in_schema, total_rows, invalid_rows) = histogram(inputs, opts)?;
    let mut progress = Progress::new("pass 2 (chunks)", total_rows, opts.quiet);
    let map = opts
        .map
        .clone()
        .unwrap_or_else(|| ChunkMap::build(&hist, opts.chunk_rows, 1));
    let (chunk_dir, spill_dir) = output_dirs(out)?;
    let mut fields: Vec<Field> = in_schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(
        Field::new(INDEX_COLUMN, DataType::Int64, false).with_metadata(
            [(
                "description".to_string(),
                "nested HEALPix index at depth 29 (the sort key of chunk files)".to_string(),
            )]
            .into(),
        ),
    );
    let schema = Arc::new(Schema::new_with_metadata(
        fields,
        in_schema.metadata().clone(),
    ));
    let mut buffers = Buffers::new(spill_dir.clone(), schema.clone(), opts.memory_bytes);
    let mut stats = PartitionStats {
        rows: 0,
        overlap_rows: 0,
        invalid_rows,
        chunk_rows: BTreeMap::new(),
        map: map.clone(),
    };
    // Pass 2 as a pipeline: one thread decodes Parquet, two split batches into chunk parts (the per-row work), this
    // thread buffers and spills. Bounded channels keep memory bounded.
    let radius = opts.overlap_arcsec / 3600.0;
    std::thread::scope(|scope| -> Result<()> {
        let (batch_tx, batch_rx) =
            mpsc::sync_channel::<Result<(usize, usize, usize, RecordBatch)>>(4);
        let batch_rx = Arc::new(Mutex::new(batch_rx));
        let (part_tx, part_rx) =
            mpsc::sync_channel::<Result<Vec<((ChunkId, bool), RecordBatch)>>>(4);
        scope.spawn(move || {
            for (f, path) in inputs.iter().enumerate() {
                let read = || -> Result<()> {
                    let (builder, file_schema) = open(path)?;
                    let (ri, di) = (
                        column_index(path, &file_schema, &opts.ra)?,
                        column_index(path, &file_schema, &opts.dec)?,
                    );
                    let reader = builder.with_batch_size(65_536).build().map_err(|source| {
                        LoaderError::Parquet {
                            path: path.clone(),
                            source,
                        }
                    })?;
                    for batch in reader {
                        let batch = batch.map_err(|source| LoaderError::Arrow {
                            path: path.clone(),
                            source,
                        })?;
                        if batch_tx.send(Ok((f, ri, di, batch))).is_err() {
                            return Ok(());
                        }
                    }
                    Ok(())
                };
                if let Err(e) = read() {
                    let _ = batch_tx.send(Err(e));
                    return;
                }
            }
        });
        for _ in 0..2 {
            let (batch_rx, part_tx, map, schema) =
                (batch_rx.clone(), part_tx.clone(), &map, schema.clone());
            scope.spawn(move || {
                let mut finder = OverlapFinder::new(map, radius);
                loop {
                    let next = batch_rx.lock().expect("reader lock").recv();
                    let Ok(next) = next else { return };
                    let result = next.and_then(|(f, ri, di, batch)| {
                        split_batch(&inputs[f], map, &mut finder, &schema, ri, di, &batch)
                    });
                    if part_tx.send(result).is_err() {
                        return;
                    }
                }
            });
        }
        drop(part_tx);
        for parts in part_rx {
            for (key, part) in parts? {
                let n = part.num_rows() as u64;
                if key.1 {
                    stats.overlap_rows += n;
                } else {
                    progress.add(n);
                    stats.rows += n;
                    *stats.chunk_rows.entry(key.0).or_default() += n;
                }
                buffers.push(key, part)?;
            }
        }
        Ok(())
    })?;
    progress.finish();
    write_chunks(
        &mut buffers,
        &schema,
        schema.fields().len() - 1,
        &chunk_dir,
        opts,
    )?;
    let _ = std::fs::remove_dir_all(&spill_dir);
    let list: String = map.chunks().iter().map(|c| format!("{c}\n")).collect();
    let list_path = out.join("chunks.txt");
    std::fs::write(&list_path, list).map_err(io(&list_path))?;
    let json_path = out.join("partition.json");
    let per_chunk: Vec<String> = stats
        .chunk_rows
        .iter()
        .map(|(c, n)| format!("\"{c}\": {n}"))
        .collect();
    let json = format!(
        "{{\n  \"rows\": {},\n  \"overlap_rows\": {},\n  \"overlap_arcsec\": {},\n  \"chunk_rows_limit\": {},\n  \"chunks_in_map\": {},\n  \"rows_per_chunk\": {{{}}}\n}}\n",
        stats.rows,
        stats.overlap_rows,
        opts.overlap_arcsec,
        opts.chunk_rows,
        map.chunks().len(),
        per_chunk.join(", ")
    );
    std::fs::write(&json_path, json).map_err(io(&json_path))?;
    Ok(stats)
}
