use std::path::PathBuf;

/// What can go wrong turning input files into chunks. Every variant names the file; row-level ones name the row.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a readable Parquet file: {source}")]
    Parquet { path: PathBuf, source: parquet::errors::ParquetError },
    #[error("{path}: {source}")]
    Arrow { path: PathBuf, source: arrow::error::ArrowError },
    #[error("{path}: no column named {column} (columns: {available})")]
    MissingColumn { path: PathBuf, column: String, available: String },
    #[error("{path}: column {column} must be a floating-point or integer number, found {found}")]
    ColumnType { path: PathBuf, column: String, found: String },
    #[error("{path}, row {row}: {problem}")]
    BadRow { path: PathBuf, row: u64, problem: String },
    #[error("{path}: its columns differ from those of {first}: {difference}")]
    SchemaMismatch { path: PathBuf, first: PathBuf, difference: String },
    #[error("no input files")]
    NoInput,
}

pub type Result<T, E = LoaderError> = std::result::Result<T, E>;
