//! Input formats. Parquet is read in place; CSV (with a header line, types inferred from the first 10,000 rows), FITS
//! binary tables and VOTables are first converted to Parquet in the load's staging directory, streaming, so the
//! partitioner reads one format. FITS `TUNIT`/`TUCD`/`TCOMM` and VOTable FIELD `unit`/`ucd`/DESCRIPTION travel as
//! Parquet field metadata. A malformed value is an error naming the file and the line or row.

use std::fs::File;
use std::io::Seek;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::csv::ReaderBuilder;
use arrow::csv::reader::Format;
use parquet::arrow::ArrowWriter;

use crate::error::{LoaderError, Result, io};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Parquet,
    Csv,
    Fits,
    VoTable,
    /// A HATS catalog's directory ([`crate::hats`]): read as the Parquet files of its partitions.
    Hats,
}

impl InputFormat {
    pub fn parse(s: &str) -> Option<InputFormat> {
        match s.to_ascii_lowercase().as_str() {
            "parquet" => Some(InputFormat::Parquet),
            "csv" => Some(InputFormat::Csv),
            "fits" | "fit" => Some(InputFormat::Fits),
            "votable" | "vot" | "xml" => Some(InputFormat::VoTable),
            "hats" => Some(InputFormat::Hats),
            _ => None,
        }
    }
}

impl InputFormat {
    /// The format a file's name says (`.parquet`, `.csv`, `.fits`/`.fit`/`.fts`, `.vot`/`.votable`/`.xml`).
    pub fn of_path(path: &Path) -> Option<InputFormat> {
        let name = path.file_name()?.to_string_lossy().to_lowercase();
        let ext = name.rsplit('.').next()?;
        match ext {
            "parquet" | "pq" => Some(InputFormat::Parquet),
            "fts" => Some(InputFormat::Fits),
            "hats" => None,
            _ => InputFormat::parse(ext),
        }
    }
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The files the `--input` arguments name: files as they are, the files of a directory (sorted, those with a known
/// extension), and glob patterns (`data/*.parquet`, `dr1/**/*.fits`) for when there are too many files for a shell.
/// A pattern that matches nothing, or a path that does not exist, is an error.
pub fn expand(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        let text = input.to_string_lossy();
        if input.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(io(input))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && InputFormat::of_path(p).is_some())
                .collect();
            if files.is_empty() {
                return Err(LoaderError::NoMatch(text.into_owned()));
            }
            files.sort();
            out.extend(files);
        } else if !input.exists() && has_glob(&text) {
            let paths = glob::glob(&text).map_err(|e| LoaderError::BadPattern {
                pattern: text.to_string(),
                problem: e.to_string(),
            })?;
            let mut files: Vec<PathBuf> = paths.flatten().filter(|p| p.is_file()).collect();
            if files.is_empty() {
                return Err(LoaderError::NoMatch(text.into_owned()));
            }
            files.sort();
            out.extend(files);
        } else if input.is_file() {
            out.push(input.clone());
        } else {
            return Err(LoaderError::Io {
                path: input.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
    }
    if out.is_empty() {
        return Err(LoaderError::NoInput);
    }
    Ok(out)
}

/// Parquet paths for the inputs: Parquet inputs themselves, others converted under `scratch`. `format` applies to
/// every input; without it each file's extension decides (unknown extensions are read as Parquet).
pub fn prepare(
    inputs: &[PathBuf],
    format: Option<InputFormat>,
    scratch: &Path,
) -> Result<Vec<PathBuf>> {
    inputs
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let dest = scratch.join(format!("input-{k}.parquet"));
            let format = format
                .or_else(|| InputFormat::of_path(p))
                .unwrap_or(InputFormat::Parquet);
            if format != InputFormat::Parquet {
                std::fs::create_dir_all(scratch).map_err(io(scratch))?;
            }
            match format {
                // A HATS catalog is its partitions' Parquet files by now (`ingest::prepare`).
                InputFormat::Parquet | InputFormat::Hats => Ok(p.clone()),
                InputFormat::Csv => csv_to_parquet(p, &dest),
                InputFormat::Fits => fits_to_parquet(p, &dest),
                InputFormat::VoTable => votable_to_parquet(p, &dest),
            }
        })
        .collect()
}

/// Writes batches to a Parquet file, keeping the schema's field metadata.
fn write_parquet(
    dest: &Path,
    schema: arrow::datatypes::SchemaRef,
    mut next: impl FnMut() -> Result<Option<arrow::array::RecordBatch>>,
) -> Result<PathBuf> {
    let out = File::create(dest).map_err(io(dest))?;
    let parquet_err = |source| LoaderError::Parquet {
        path: dest.to_path_buf(),
        source,
    };
    let mut writer = ArrowWriter::try_new(out, schema, None).map_err(parquet_err)?;
    while let Some(batch) = next()? {
        writer.write(&batch).map_err(parquet_err)?;
    }
    writer.close().map_err(parquet_err)?;
    Ok(dest.to_path_buf())
}

fn fits_to_parquet(path: &Path, dest: &Path) -> Result<PathBuf> {
    let mut table = crate::fits::FitsTable::open(path)?;
    write_parquet(dest, table.schema(), || table.next_batch(65_536))
}

fn votable_to_parquet(path: &Path, dest: &Path) -> Result<PathBuf> {
    let file = File::open(path).map_err(io(path))?;
    let vo_err = |source| LoaderError::VoTable {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = votable::VoTableReader::new(std::io::BufReader::with_capacity(1 << 20, file))
        .map_err(vo_err)?;
    write_parquet(dest, reader.schema(), || {
        reader.next_batch(65_536).map_err(vo_err)
    })
}

fn csv_to_parquet(path: &Path, dest: &Path) -> Result<PathBuf> {
    let mut file = File::open(path).map_err(io(path))?;
    let format = Format::default().with_header(true);
    let (schema, _) = format
        .infer_schema(&mut file, Some(10_000))
        .map_err(|source| LoaderError::Arrow {
            path: path.to_path_buf(),
            source,
        })?;
    file.rewind().map_err(io(path))?;
    let schema = Arc::new(schema);
    let reader = ReaderBuilder::new(schema.clone())
        .with_format(format)
        .with_batch_size(65_536)
        .build(file)
        .map_err(|source| LoaderError::Arrow {
            path: path.to_path_buf(),
            source,
        })?;
    let mut reader = reader;
    // Arrow names the line of a value it cannot parse; the error carries this file's name.
    write_parquet(dest, schema, || {
        reader
            .next()
            .transpose()
            .map_err(|source| LoaderError::Arrow {
                path: path.to_path_buf(),
                source,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_converts_and_bad_values_name_the_line() {
        let dir = std::env::temp_dir().join(format!("skyshard-csv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.csv");
        std::fs::write(&good, "id,ra,dec\n1,10.5,-3.25\n2,359.9,89.5\n").unwrap();
        let out = prepare(&[good], Some(InputFormat::Csv), &dir.join("scratch")).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            File::open(&out[0]).unwrap(),
        )
        .unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 2);
        let bad = dir.join("bad.csv");
        let mut text = String::from("id,ra,dec\n");
        // Past the rows used to infer the types, a value that does not parse is an error naming its line.
        for i in 0..10_050 {
            text.push_str(&format!("{i},1.0,2.0\n"));
        }
        text.push_str("10051,oops,2.0\n");
        std::fs::write(&bad, text).unwrap();
        let err = prepare(&[bad], Some(InputFormat::Csv), &dir.join("scratch"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.csv") && err.contains("line"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
