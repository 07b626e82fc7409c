use std::path::{Path, PathBuf};

/// What can go wrong turning input files into chunks. Every variant names the file; row-level ones name the row.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a readable Parquet file: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: not a readable {format} file: {problem}")]
    Format {
        path: PathBuf,
        format: &'static str,
        problem: String,
    },
    #[error("{path}: {source}")]
    Arrow {
        path: PathBuf,
        source: arrow::error::ArrowError,
    },
    #[error("{path}: no column named {column} (columns: {available})")]
    MissingColumn {
        path: PathBuf,
        column: String,
        available: String,
    },
    #[error("{path}: column {column} must be {expected}, found {found}")]
    ColumnType {
        path: PathBuf,
        column: String,
        expected: &'static str,
        found: String,
    },
    #[error("{path}, row {row}: {problem}")]
    BadRow {
        path: PathBuf,
        row: u64,
        problem: String,
    },
    #[error("{path}: its columns differ from those of {first}: {difference}")]
    SchemaMismatch {
        path: PathBuf,
        first: PathBuf,
        difference: String,
    },
    #[error("HATS catalog {path}: {problem}")]
    Hats { path: PathBuf, problem: String },
    #[error("no input files")]
    NoInput,
    #[error("{0}: no input file matches")]
    NoMatch(String),
    #[error("input pattern {pattern}: {problem}")]
    BadPattern { pattern: String, problem: String },
    #[error(
        "table name {0} must be SCHEMA.TABLE, each part a letter followed by letters, digits or '_'"
    )]
    TableName(String),
    #[error("table {0} exists already: add --replace to replace it or --append to add rows to it")]
    TableExists(String),
    #[error("cannot append to {table}: it was loaded as {existing}, with other table-kind flags")]
    KindMismatch { table: String, existing: String },
    #[error(
        "director table {table} has child tables ({children}), placed by its chunks: drop them first (or --append to it)"
    )]
    HasChildren { table: String, children: String },
    #[error("the metadata store holds an unreadable chunk map: {0}")]
    Corrupt(String),
    #[error(
        "{count} rows repeat an id of column {column} (for example {examples:?}); a director table needs unique ids"
    )]
    DuplicateIds {
        column: String,
        count: u64,
        examples: Vec<i64>,
    },
    #[error("{count} rows have a {key} that names no object of the director table, for example: {}", examples.join("; "))]
    Orphans {
        key: String,
        count: u64,
        examples: Vec<String>,
    },
    #[error("no table {0} in this data directory")]
    NoTable(String),
    #[error("director table {0} is not loaded (or is not a director table)")]
    NoDirector(String),
    #[error("{0}")]
    Meta(metastore::MetaError),
    #[error("{path}: {source}")]
    VoTable {
        path: PathBuf,
        source: votable::VoTableError,
    },
    #[error("{path}: {problem}")]
    ColumnsMeta { path: PathBuf, problem: String },
}

pub type Result<T, E = LoaderError> = std::result::Result<T, E>;

/// Maps an I/O error on `path` to [`LoaderError::Io`], for `map_err`.
pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> LoaderError + '_ {
    move |source| LoaderError::Io {
        path: path.to_path_buf(),
        source,
    }
}
