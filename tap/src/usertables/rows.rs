//! Rows for a user table: an upload received to disk within the space left, and converted to the table's declared
//! columns (matched by name, cast, missing ones null) as one Parquet file for the loader.

use super::*;

/// The format of a load's body, from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Upload {
    Csv(u8),
    Fits,
    VoTable,
    Parquet,
}

pub(super) fn upload_format(mime: &str) -> Option<Upload> {
    let mime = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Some(match mime.as_str() {
        "text/csv" | "application/csv" => Upload::Csv(b','),
        "text/tab-separated-values" | "text/tsv" => Upload::Csv(b'\t'),
        "application/fits" | "image/fits" | "application/x-fits-table" => Upload::Fits,
        "application/x-votable+xml" | "text/xml" | "application/xml" => Upload::VoTable,
        "application/vnd.apache.parquet" | "application/x-parquet" | "application/parquet" => {
            Upload::Parquet
        }
        _ => return None,
    })
}

/// The declared columns of a table.
pub(super) fn template_schema(tap: &Tap, table: &str) -> Result<SchemaRef, Refusal> {
    let path = template_path(tap.czar.data_dir(), table);
    let file = std::fs::File::open(&path).map_err(|_| {
        (
            StatusCode::FORBIDDEN,
            format!("{table} was not created through /tap/tables: rows cannot be added to it here"),
        )
    })?;
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map(|b| b.schema().clone())
        .map_err(unavailable)
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
    format: Upload,
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
        Upload::Csv(delimiter) => {
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
        Upload::Fits | Upload::VoTable | Upload::Parquet => {
            let (what, input) = match format {
                Upload::Fits => ("the FITS upload", loader::input::InputFormat::Fits),
                Upload::VoTable => ("the VOTable upload", loader::input::InputFormat::VoTable),
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

/// Streams a request body to `path`, refusing it past `limit` bytes.
pub(super) async fn receive(body: Body, path: &Path, limit: u64) -> Result<u64, Refusal> {
    let mut out = tokio::fs::File::create(path).await.map_err(unavailable)?;
    let mut stream = body.into_data_stream();
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| bad(format!("receiving the upload: {e}")))?;
        bytes += chunk.len() as u64;
        if bytes > limit {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "over the table quota: the upload passed the {} MiB left in the table space; nothing was changed",
                    limit >> 20
                ),
            ));
        }
        out.write_all(&chunk).await.map_err(unavailable)?;
    }
    out.flush().await.map_err(unavailable)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

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
