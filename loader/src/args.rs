//! The flags that say what to load, shared by `skyshard ingest` (into a local data directory) and `skyshard load`
//! (through a czar, which ingests and ships the chunks to its workers).

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::ingest::{IngestOptions, LoadKind};
use crate::input::InputFormat;

/// Also the body of a load request to a czar (`skyshard load` sends these flags as JSON; `input` and
/// `columns_meta` then name files uploaded with the request).
#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct LoadArgs {
    /// SCHEMA.TABLE
    #[arg(long)]
    pub table: String,
    /// Input files, directories (their files) or quoted glob patterns ('dr1/*.fits').
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Input format; by default each file's extension decides (.parquet, .csv, .fits, .vot/.xml).
    /// `hats`: `--input` is a HATS catalog's (or collection's) directory, loaded with its own partitioning; its
    /// position columns come from its properties unless --ra and --dec are given.
    #[arg(long, value_parser = ["parquet", "csv", "fits", "votable", "hats"])]
    pub format: Option<String>,
    /// Director table: right ascension column in degrees (with --dec and --id).
    #[arg(long, requires_all = ["dec", "id"], conflicts_with = "replicated")]
    pub ra: Option<String>,
    /// Director table: declination column in degrees.
    #[arg(long)]
    pub dec: Option<String>,
    /// Director table: the unique id column, indexed.
    #[arg(long)]
    pub id: Option<String>,
    /// A small table copied to every worker.
    #[arg(long)]
    pub replicated: bool,
    /// Child table: its director table (with --director-key).
    #[arg(long, requires = "director_key", conflicts_with_all = ["ra", "replicated"])]
    pub director: Option<String>,
    /// Child table: the column holding the director's id.
    #[arg(long)]
    pub director_key: Option<String>,
    /// Director tables: rows of neighbouring chunks within this radius are copied into each chunk, so joins up to
    /// this radius run chunk-local.
    #[arg(long, default_value_t = 60.0)]
    pub overlap_arcsec: f64,
    /// Director tables: no chunk holds more rows, except where one cell at depth 10 is denser.
    #[arg(long, default_value_t = 1_000_000)]
    pub chunk_rows: u64,
    /// Director tables: use the chunk map of this loaded director table (SCHEMA.TABLE) instead of one of its own,
    /// so cross-matches between the two run chunk by chunk on the workers.
    #[arg(long, conflicts_with_all = ["replicated", "director"])]
    #[serde(default)]
    pub chunk_map_of: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// Column descriptions, units and UCDs: a JSON object {"col": {"unit": ..}} or a CSV with a name header.
    #[arg(long)]
    pub columns_meta: Option<PathBuf>,
    /// Replace the table if it exists.
    #[arg(long, conflicts_with = "append")]
    pub replace: bool,
    /// Add the rows to the table if it exists (it keeps its chunk map, overlap and column metadata).
    #[arg(long)]
    pub append: bool,
    /// Child tables: keep rows whose key names no director object (otherwise the load is refused).
    #[arg(long)]
    pub allow_orphans: bool,
    /// Director tables: skip and count rows with a NULL, NaN or out-of-range position instead of refusing the load.
    #[arg(long)]
    pub skip_invalid: bool,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

impl LoadArgs {
    /// The loader's options, or what is wrong with the flags.
    pub fn options(&self) -> Result<IngestOptions, String> {
        let kind = match (
            &self.ra,
            &self.dec,
            &self.id,
            self.replicated,
            &self.director,
            &self.director_key,
        ) {
            (Some(ra), Some(dec), Some(id), false, None, None) => LoadKind::Director {
                ra: ra.clone(),
                dec: dec.clone(),
                id: id.clone(),
            },
            // A HATS catalog names its own position columns.
            (None, None, Some(id), false, None, None) if self.format.as_deref() == Some("hats") => {
                let [input] = self.input.as_slice() else {
                    return Err("--format hats takes one --input: the HATS catalog's directory".into());
                };
                let catalog = crate::hats::open(input).map_err(|e| e.to_string())?;
                LoadKind::Director {
                    ra: catalog.ra,
                    dec: catalog.dec,
                    id: id.clone(),
                }
            }
            (None, None, None, true, None, None) => LoadKind::Replicated,
            (None, None, None, false, Some(director), Some(key)) => LoadKind::Child {
                director: director.clone(),
                key: key.clone(),
            },
            _ => {
                return Err(
                    "give one of --ra COL --dec COL --id COL (director), --director SCHEMA.TABLE --director-key COL (child), --replicated".into()
                );
            }
        };
        if self.allow_orphans && !matches!(kind, LoadKind::Child { .. }) {
            return Err("--allow-orphans is for child tables (--director)".into());
        }
        if !(self.overlap_arcsec >= 0.0 && self.overlap_arcsec <= 3600.0) {
            return Err(format!(
                "--overlap-arcsec {} must be between 0 and 3600",
                self.overlap_arcsec
            ));
        }
        if self.chunk_rows == 0 {
            return Err("--chunk-rows must be positive".into());
        }
        Ok(IngestOptions {
            overlap_arcsec: self.overlap_arcsec,
            chunk_rows: self.chunk_rows,
            description: self.description.clone(),
            replace: self.replace,
            append: self.append,
            allow_orphans: self.allow_orphans,
            columns_meta: self.columns_meta.clone(),
            quiet: self.quiet,
            skip_invalid: self.skip_invalid,
            format: self.format.as_deref().and_then(InputFormat::parse),
            chunk_map_of: self.chunk_map_of.clone(),
            ..IngestOptions::new(&self.table, kind)
        })
    }
}
