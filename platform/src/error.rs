//! What the platform refuses, by kind: each front end answers a kind in its own words (TAP and WebDAV with an HTTP
//! status, Flight SQL with a gRPC code), and nothing decides on a message's text.

use czar::error::CzarError;

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The request itself is wrong (a bad name, a bad value, rows that do not fit the table).
    #[error("{0}")]
    BadRequest(String),
    /// It needs a named caller and none was given (a front end adds its ways to log in).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such thing, or none the caller may see (the two answer alike).
    #[error("{0}")]
    NotFound(String),
    /// It exists already, or is in a state that does not allow this.
    #[error("{0}")]
    Conflict(String),
    /// It would take the caller's space (tables or files) past its quota; nothing was changed.
    #[error("{0}")]
    OverQuota(String),
    /// The data's format is not one this takes.
    #[error("{0}")]
    UnsupportedFormat(String),
    /// The service cannot do it just now (a disk, the accounts); the caller may try again.
    #[error("{0}")]
    Unavailable(String),
    /// The engine refused or failed (a load, a query): its own kind applies.
    #[error("{0}")]
    Czar(#[from] CzarError),
}

impl PlatformError {
    /// The service could not store something: the caller may try again.
    pub fn unavailable(e: impl std::fmt::Display) -> PlatformError {
        PlatformError::Unavailable(format!("the service cannot store that just now: {e}"))
    }
}

pub type Result<T, E = PlatformError> = std::result::Result<T, E>;
