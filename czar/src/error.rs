//! What can go wrong at the czar. Each variant has a [`protocol::ErrorCode`]; the HTTP service answers with its
//! status and the message, which is written for the user (internal detail goes to the log).

use adql::AdqlError;
use datafusion::error::DataFusionError;
use protocol::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum CzarError {
    /// Bad ADQL, or a query DataFusion cannot plan: positioned where possible.
    #[error("{0}")]
    Adql(#[from] AdqlError),
    /// No replica of a chunk answered: the query fails rather than leave the chunk's rows out.
    #[error(
        "chunk {chunk} of {table} is unavailable: no replica answered (tried {}; last error: {last_error})",
        tried.join(", ")
    )]
    ChunkUnavailable {
        table: String,
        chunk: u64,
        tried: Vec<String>,
        last_error: String,
    },
    /// A worker refused a fragment for a reason every replica would share (an error of the query itself).
    #[error("{message}")]
    Worker {
        worker: String,
        code: ErrorCode,
        message: String,
    },
    /// The query's operators at the czar need more memory than one query may use.
    #[error(
        "the query needs more memory at the czar than one query may use ({detail}); narrow it (a smaller area, fewer \
         columns, TOP) or run it as an async job with a smaller result"
    )]
    QueryTooLarge { detail: String },
    /// The query failed while running (a cast that cannot be done, a division by zero, ...).
    #[error("{message}")]
    Execution { message: String },
    /// A published table could not be read into the catalog.
    #[error("table {table}: {reason}")]
    Catalog { table: String, reason: String },
    #[error("the metadata store: {0}")]
    Meta(#[from] metastore::MetaError),
    /// A load's files could not be shipped to a worker: nothing was published.
    #[error("the load was not published: shipping to worker {worker}: {reason}")]
    Ship { worker: String, reason: String },
    /// The loader refused a load (bad input, a name in use, ...) or could not write it: nothing was published.
    #[error("{0}")]
    Load(#[from] loader::LoaderError),
    /// A load's task ended before it finished (the service is stopping).
    #[error("the load stopped: {reason}")]
    LoadStopped { reason: String },
    /// No worker of this cluster can hold a chunk of a load.
    #[error("the load was not published: no worker of this cluster can hold chunk {chunk}")]
    NoPlacement { chunk: u64 },
}

impl CzarError {
    pub fn code(&self) -> ErrorCode {
        match self {
            CzarError::Adql(_) | CzarError::Execution { .. } => ErrorCode::BadRequest,
            CzarError::ChunkUnavailable { .. } => ErrorCode::Unavailable,
            CzarError::Worker { code, .. } => *code,
            CzarError::QueryTooLarge { .. } => ErrorCode::TooLarge,
            CzarError::Catalog { .. } | CzarError::Meta(_) => ErrorCode::Internal,
            CzarError::Ship { .. } | CzarError::NoPlacement { .. } => ErrorCode::Unavailable,
            CzarError::Load(e) => match e {
                loader::LoaderError::Io { .. } | loader::LoaderError::Meta(_) => {
                    ErrorCode::Internal
                }
                _ => ErrorCode::BadRequest,
            },
            CzarError::LoadStopped { .. } => ErrorCode::Internal,
        }
    }

    /// A query's failure as it came out of DataFusion: our own error when we raised it inside a plan (dispatch
    /// raises [`CzarError::ChunkUnavailable`] and [`CzarError::Worker`] in the streams it feeds), the memory
    /// limit's, or DataFusion's message.
    pub fn from_datafusion(e: DataFusionError) -> CzarError {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if let Some(ours) = c.downcast_ref::<CzarError>() {
                match ours {
                    CzarError::ChunkUnavailable {
                        table,
                        chunk,
                        tried,
                        last_error,
                    } => {
                        return CzarError::ChunkUnavailable {
                            table: table.clone(),
                            chunk: *chunk,
                            tried: tried.clone(),
                            last_error: last_error.clone(),
                        };
                    }
                    CzarError::Worker {
                        worker,
                        code,
                        message,
                    } => {
                        return CzarError::Worker {
                            worker: worker.clone(),
                            code: *code,
                            message: message.clone(),
                        };
                    }
                    _ => break,
                }
            }
            cause = c.source();
        }
        if matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) {
            return CzarError::QueryTooLarge {
                detail: adql::engine::clean_message(&e),
            };
        }
        CzarError::Execution {
            message: adql::engine::clean_message(&e),
        }
    }
}

impl From<CzarError> for DataFusionError {
    fn from(e: CzarError) -> DataFusionError {
        DataFusionError::External(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_raised_inside_a_plan_keep_their_kind() {
        let unavailable = CzarError::ChunkUnavailable {
            table: "sky.object".into(),
            chunk: 1234,
            tried: vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()],
            last_error: "connection refused".into(),
        };
        // DataFusion wraps errors that cross operators (context, shared between partitions).
        let wrapped = DataFusionError::Context(
            "merging".into(),
            Box::new(DataFusionError::Shared(std::sync::Arc::new(
                unavailable.into(),
            ))),
        );
        let e = CzarError::from_datafusion(wrapped);
        assert_eq!(e.code(), ErrorCode::Unavailable);
        assert_eq!(e.code().http_status(), 503);
        assert!(e.to_string().contains("chunk 1234 of sky.object"), "{e}");

        let memory = DataFusionError::ResourcesExhausted("Failed to allocate".into());
        assert_eq!(
            CzarError::from_datafusion(memory).code(),
            ErrorCode::TooLarge
        );

        // A message that merely mentions unavailability is still the query's own error.
        let plain = DataFusionError::Execution("column unavailable_flag is not numeric".into());
        assert_eq!(
            CzarError::from_datafusion(plain).code(),
            ErrorCode::BadRequest
        );
    }
}
