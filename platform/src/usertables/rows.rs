//! Rows for a user table: a file (an upload the front end received, a file of the user's space, a job's result)
//! converted to the table's declared columns (matched by name, cast, missing ones null) as one Parquet file for the
//! loader.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::datatypes::{Field, Schema, SchemaRef};
use loader::input::InputFormat;

/// The format of rows to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsFormat {
    /// CSV, or TSV (the delimiter).
    Csv(u8),
    Fits,
    VoTable,
    Parquet,
}

impl RowsFormat {
    /// The format a file's extension names.
    pub fn of_extension(path: &Path) -> Option<RowsFormat> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        Some(match ext.as_str() {
            "csv" => RowsFormat::Csv(b','),
            "tsv" | "tab" => RowsFormat::Csv(b'\t'),
            "fits" | "fit" | "fts" => RowsFormat::Fits,
            "vot" | "votable" | "xml" => RowsFormat::VoTable,
            "parquet" | "pq" => RowsFormat::Parquet,
            _ => return None,
        })
    }

    /// The loader's input format, for a table created from such a file (TSV: none, its types are unknown).
    pub fn input(self) -> Option<InputFormat> {
        Some(match self {
            RowsFormat::Csv(b'\t') => return None,
            RowsFormat::Csv(_) => InputFormat::Csv,
            RowsFormat::Fits => InputFormat::Fits,
            RowsFormat::VoTable => InputFormat::VoTable,
            RowsFormat::Parquet => InputFormat::Parquet,
        })
    }
}

/// A file converted by the loader's input readers to Parquet in `dir`, and its columns (a table to create from it).
pub(super) fn prepare_file(
    source: &Path,
    format: InputFormat,
    dir: &Path,
) -> Result<(PathBuf, SchemaRef), String> {
    let prepared = loader::input::prepare(&[source.to_path_buf()], Some(format), dir)
        .map_err(|e| e.to_string())?;
    let file = std::fs::File::open(&prepared[0]).map_err(|e| e.to_string())?;
    let schema = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| e.to_string())?
        .schema()
        .clone();
    Ok((prepared[0].clone(), schema))
}

/// `batch` as rows of the table: columns matched by name (case aside), cast to the declared types, missing ones
/// null; a column the table lacks, or a value that does not fit its type, is refused by name.
pub(super) fn to_table(
    batch: &RecordBatch,
    target: &SchemaRef,
    source: &str,
) -> Result<RecordBatch, String> {
    let names = batch.schema();
    for f in names.fields() {
        if target
            .fields()
            .iter()
            .all(|t| !t.name().eq_ignore_ascii_case(f.name()))
        {
            let known: Vec<&str> = target.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(format!(
                "{source}: column {} is not in the table (its columns: {})",
                f.name(),
                known.join(", ")
            ));
        }
    }
    let columns: Vec<ArrayRef> = target
        .fields()
        .iter()
        .map(|t| {
            let found = names
                .fields()
                .iter()
                .position(|f| f.name().eq_ignore_ascii_case(t.name()));
            match found {
                None => Ok(new_null_array(t.data_type(), batch.num_rows())),
                Some(i) => {
                    let column = batch.column(i);
                    let options = arrow::compute::CastOptions {
                        safe: false,
                        ..Default::default()
                    };
                    arrow::compute::cast_with_options(column, t.data_type(), &options).map_err(
                        |e| {
                            format!(
                                "{source}: column {}: its values do not fit {}: {e}",
                                t.name(),
                                t.data_type()
                            )
                        },
                    )
                }
            }
        })
        .collect::<Result<_, String>>()?;
    RecordBatch::try_new(target.clone(), columns).map_err(|e| format!("{source}: {e}"))
}

/// Converts an upload to a Parquet file of the table's columns; returns its rows.
pub(super) fn convert(
    upload: &Path,
    format: RowsFormat,
    target: &SchemaRef,
    dest: &Path,
    scratch: &Path,
) -> Result<u64, String> {
    let file = std::fs::File::create(dest).map_err(|e| e.to_string())?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, target.clone(), None)
        .map_err(|e| e.to_string())?;
    let mut rows = 0u64;
    let mut put = |b: RecordBatch| -> Result<(), String> {
        rows += b.num_rows() as u64;
        writer.write(&b).map_err(|e| e.to_string())
    };
    match format {
        RowsFormat::Csv(delimiter) => {
            let what = if delimiter == b'\t' {
                "the TSV upload"
            } else {
                "the CSV upload"
            };
            // The header names the columns (a subset, in any order); their types are the table's.
            // At most 1 MiB of it: a file with no line break is not read whole into memory.
            let mut head = String::new();
            let file = std::fs::File::open(upload).map_err(|e| e.to_string())?;
            std::io::BufRead::read_line(
                &mut std::io::BufReader::new(std::io::Read::take(file, 1 << 20)),
                &mut head,
            )
            .map_err(|e| format!("{what}: {e}"))?;
            if !head.ends_with('\n') && head.len() >= 1 << 20 {
                return Err(format!("{what}: its header line is longer than 1 MiB"));
            }
            let header: Vec<String> = head
                .trim_end_matches(['\r', '\n'])
                .split(delimiter as char)
                .map(|h| h.trim().trim_matches('"').to_string())
                .collect();
            if header.iter().all(|h| h.is_empty()) {
                return Err(format!(
                    "{what} is empty: its first line must name the columns"
                ));
            }
            let fields: Vec<Field> = header
                .iter()
                .map(|h| {
                    target
                        .fields()
                        .iter()
                        .find(|t| t.name().eq_ignore_ascii_case(h))
                        .map(|t| Field::new(t.name(), t.data_type().clone(), true))
                        .ok_or_else(|| {
                            let known: Vec<&str> = target.fields().iter().map(|f| f.name().as_str()).collect();
                            format!("{what}: column {h:?} of its header is not in the table (its columns: {})", known.join(", "))
                        })
                })
                .collect::<Result<_, String>>()?;
            let reader = arrow::csv::ReaderBuilder::new(Arc::new(Schema::new(fields)))
                .with_header(true)
                .with_delimiter(delimiter)
                .with_batch_size(65_536)
                .build(std::fs::File::open(upload).map_err(|e| e.to_string())?)
                .map_err(|e| format!("{what}: {e}"))?;
            for batch in reader {
                let batch = batch.map_err(|e| format!("{what}: {e}"))?;
                put(to_table(&batch, target, what)?)?;
            }
        }
        RowsFormat::Fits | RowsFormat::VoTable | RowsFormat::Parquet => {
            let (what, input) = match format {
                RowsFormat::Fits => ("the FITS upload", loader::input::InputFormat::Fits),
                RowsFormat::VoTable => ("the VOTable upload", loader::input::InputFormat::VoTable),
                _ => ("the Parquet upload", loader::input::InputFormat::Parquet),
            };
            let prepared = loader::input::prepare(&[upload.to_path_buf()], Some(input), scratch)
                .map_err(|e| format!("{what}: {e}"))?;
            let file = std::fs::File::open(&prepared[0]).map_err(|e| e.to_string())?;
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .and_then(|b| b.with_batch_size(65_536).build())
                    .map_err(|e| format!("{what}: {e}"))?;
            for batch in reader {
                let batch = batch.map_err(|e| format!("{what}: {e}"))?;
                put(to_table(&batch, target, what)?)?;
            }
        }
    }
    writer.close().map_err(|e| e.to_string())?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::DataType;

    #[test]
    fn rows_are_matched_to_the_table_by_name() {
        let target: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("mag", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_from_iter(vec![(
            "MAG",
            Arc::new(arrow::array::Int32Array::from(vec![1, 2])) as ArrayRef,
        )])
        .unwrap();
        let out = to_table(&batch, &target, "x").unwrap();
        assert_eq!(out.column(0).null_count(), 2);
        assert_eq!(out.column(1).data_type(), &DataType::Float64);
        let extra = RecordBatch::try_from_iter(vec![(
            "color",
            Arc::new(arrow::array::Int32Array::from(vec![1])) as ArrayRef,
        )])
        .unwrap();
        assert!(
            to_table(&extra, &target, "x")
                .unwrap_err()
                .contains("color is not in the table")
        );
        let text = RecordBatch::try_from_iter(vec![(
            "id",
            Arc::new(arrow::array::StringArray::from(vec!["12", "x"])) as ArrayRef,
        )])
        .unwrap();
        assert!(
            to_table(&text, &target, "x")
                .unwrap_err()
                .contains("column id")
        );
    }
}
