//! What can go wrong on a worker, and the gRPC status each failure travels as ([`protocol::ErrorCode`]).

use std::path::PathBuf;

use datafusion::error::DataFusionError;
use protocol::ErrorCode;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The czar named a load this worker does not have (the table was reloaded, or never shipped here).
    #[error("this worker does not hold load {load} of {table} (was the table reloaded?)")]
    LoadNotHeld { table: String, load: String },
    /// A chunk the czar knows has rows is not here: never read as an empty chunk.
    #[error("this worker does not hold chunk {chunk} of {table} (load {load})")]
    ChunkNotHeld {
        table: String,
        chunk: u64,
        load: String,
    },
    #[error("bad ticket: {0}")]
    BadTicket(prost::DecodeError),
    #[error("bad {action} action: {source}")]
    BadAction {
        action: &'static str,
        source: prost::DecodeError,
    },
    #[error("unknown action {0}")]
    UnknownAction(String),
    /// A put or drop that names something outside the data directory's layout.
    #[error("{reason}")]
    BadPath { reason: String },
    /// A chunk file this worker holds cannot be read as Parquet (truncated, corrupt, not the table's columns):
    /// another replica may hold a good copy.
    #[error("chunk file {} cannot be read: {reason}", path.display())]
    DamagedFile { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The fragment's operators needed more memory than one fragment may hold on a worker (`--fragment-memory-mb`);
    /// every replica would fail alike.
    #[error(
        "the query needs more memory on a worker than one query may hold there ({detail}); narrow it (a smaller \
         area, fewer columns, TOP) or ask the operator to raise --fragment-memory-mb"
    )]
    TooLarge { detail: String },
    /// The fragment itself failed (a cast that cannot be done, a bad plan): every replica would fail alike.
    #[error("{message}")]
    Query { message: String },
}

impl WorkerError {
    pub fn code(&self) -> ErrorCode {
        match self {
            // Another replica may hold it.
            WorkerError::LoadNotHeld { .. } | WorkerError::ChunkNotHeld { .. } => {
                ErrorCode::NotFound
            }
            WorkerError::BadTicket(_)
            | WorkerError::BadAction { .. }
            | WorkerError::UnknownAction(_)
            | WorkerError::BadPath { .. }
            | WorkerError::Query { .. } => ErrorCode::BadRequest,
            WorkerError::TooLarge { .. } => ErrorCode::TooLarge,
            WorkerError::Io { .. } => ErrorCode::Internal,
            WorkerError::DamagedFile { .. } => ErrorCode::Unavailable,
        }
    }

    /// A fragment's failure: ours when we raised it inside DataFusion, else an error of the query.
    pub fn from_datafusion(e: DataFusionError) -> WorkerError {
        if let DataFusionError::External(inner) = e.find_root()
            && let Some(ours) = inner.downcast_ref::<WorkerError>()
        {
            return match ours {
                WorkerError::LoadNotHeld { table, load } => WorkerError::LoadNotHeld {
                    table: table.clone(),
                    load: load.clone(),
                },
                WorkerError::ChunkNotHeld { table, chunk, load } => WorkerError::ChunkNotHeld {
                    table: table.clone(),
                    chunk: *chunk,
                    load: load.clone(),
                },
                WorkerError::DamagedFile { path, reason } => WorkerError::DamagedFile {
                    path: path.clone(),
                    reason: reason.clone(),
                },
                WorkerError::Io { path, source } => WorkerError::Io {
                    path: path.clone(),
                    source: std::io::Error::new(source.kind(), source.to_string()),
                },
                other => WorkerError::Query {
                    message: other.to_string(),
                },
            };
        }
        if matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) {
            return WorkerError::TooLarge {
                detail: adql::engine::clean_message(&e),
            };
        }
        WorkerError::Query {
            message: adql::engine::clean_message(&e),
        }
    }
}

impl From<WorkerError> for DataFusionError {
    fn from(e: WorkerError) -> DataFusionError {
        DataFusionError::External(Box::new(e))
    }
}

impl From<WorkerError> for Status {
    fn from(e: WorkerError) -> Status {
        Status::new(e.code().grpc(), e.to_string())
    }
}
