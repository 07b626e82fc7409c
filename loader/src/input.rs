//! Input formats. Parquet is read in place; CSV (with a header line, types inferred from the first 10,000 rows) is
//! first converted to Parquet in the load's staging directory, so the partitioner reads one format. A malformed CSV
//! value is an error naming the file and the line.

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
}

impl InputFormat {
    pub fn parse(s: &str) -> Option<InputFormat> {
        match s.to_ascii_lowercase().as_str() {
            "parquet" => Some(InputFormat::Parquet),
            "csv" => Some(InputFormat::Csv),
            _ => None,
        }
    }
}

/// Parquet paths for the inputs: the inputs themselves, or their conversions under `scratch`.
pub fn prepare(inputs: &[PathBuf], format: InputFormat, scratch: &Path) -> Result<Vec<PathBuf>> {
    match format {
        InputFormat::Parquet => Ok(inputs.to_vec()),
        InputFormat::Csv => {
            std::fs::create_dir_all(scratch).map_err(io(scratch))?;
            inputs.iter().enumerate().map(|(k, p)| csv_to_parquet(p, &scratch.join(format!("input-{k}.parquet")))).collect()
        }
    }
}

fn csv_to_parquet(path: &Path, dest: &Path) -> Result<PathBuf> {
    let mut file = File::open(path).map_err(io(path))?;
    let format = Format::default().with_header(true);
    let (schema, _) = format.infer_schema(&mut file, Some(10_000)).map_err(|source| LoaderError::Arrow { path: path.to_path_buf(), source })?;
    file.rewind().map_err(io(path))?;
    let schema = Arc::new(schema);
    let reader = ReaderBuilder::new(schema.clone())
        .with_format(format)
        .with_batch_size(65_536)
        .build(file)
        .map_err(|source| LoaderError::Arrow { path: path.to_path_buf(), source })?;
    let out = File::create(dest).map_err(io(dest))?;
    let mut writer = ArrowWriter::try_new(out, schema, None).map_err(|source| LoaderError::Parquet { path: dest.to_path_buf(), source })?;
    for batch in reader {
        // Arrow names the line of a value it cannot parse; the error carries this file's name.
        let batch = batch.map_err(|source| LoaderError::Arrow { path: path.to_path_buf(), source })?;
        writer.write(&batch).map_err(|source| LoaderError::Parquet { path: dest.to_path_buf(), source })?;
    }
    writer.close().map_err(|source| LoaderError::Parquet { path: dest.to_path_buf(), source })?;
    Ok(dest.to_path_buf())
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
        let out = prepare(&[good], InputFormat::Csv, &dir.join("scratch")).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(File::open(&out[0]).unwrap()).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 2);
        let bad = dir.join("bad.csv");
        let mut text = String::from("id,ra,dec\n");
        // Past the rows used to infer the types, a value that does not parse is an error naming its line.
        for i in 0..10_050 {
            text.push_str(&format!("{i},1.0,2.0\n"));
        }
        text.push_str("10051,oops,2.0\n");
        std::fs::write(&bad, text).unwrap();
        let err = prepare(&[bad], InputFormat::Csv, &dir.join("scratch")).unwrap_err().to_string();
        assert!(err.contains("bad.csv") && err.contains("line"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
