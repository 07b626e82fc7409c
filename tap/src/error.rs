//! What can go wrong in a request, each kind with its [`protocol::ErrorCode`] and so its HTTP status. Every one is
//! answered as a DALI error document whose message says what to change.

use czar::CzarError;
use protocol::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// A parameter the request cannot be run with (LANG, QUERY, RESPONSEFORMAT, MAXREC, UPLOAD, ...).
    #[error("{message}")]
    BadParameter { name: &'static str, message: String },
    /// The body cannot be read (a broken multipart body).
    #[error("{message}")]
    BadBody { message: String },
    /// An upload that cannot be used: unreadable, unreachable, refused.
    #[error("upload {name}: {reason}")]
    BadUpload { name: String, reason: String },
    #[error("upload {name} is {bytes} bytes; the limit is {limit}")]
    UploadTooLarge {
        name: String,
        bytes: usize,
        limit: usize,
    },
    #[error(
        "the query ran longer than the limit of {seconds} s for sync queries and was stopped; run it as an async job"
    )]
    SyncTimeout { seconds: u64 },
    #[error(transparent)]
    Query(#[from] CzarError),
}

impl TapError {
    pub fn code(&self) -> ErrorCode {
        match self {
            TapError::BadParameter { .. }
            | TapError::BadBody { .. }
            | TapError::BadUpload { .. } => ErrorCode::BadRequest,
            TapError::UploadTooLarge { .. } => ErrorCode::TooLarge,
            TapError::SyncTimeout { .. } => ErrorCode::Timeout,
            TapError::Query(e) => e.code(),
        }
    }

    pub(crate) fn parameter(name: &'static str, message: impl Into<String>) -> TapError {
        TapError::BadParameter {
            name,
            message: message.into(),
        }
    }
}
