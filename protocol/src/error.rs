//! The kinds of failure, shared by workers (gRPC), the czar (failover) and the HTTP service (status codes), in the
//! manner of quickwit's `ServiceErrorCode`: each crate's error enum says which kind each of its variants is, and
//! nothing decides on an error's message text.

/// What kind of failure an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request itself is wrong: bad ADQL, a bad parameter, a query that fails on its own data (a cast that
    /// cannot be done). Another replica would fail the same way.
    BadRequest,
    /// What was asked for is not there. From a worker: data it should hold and does not (a replica may have it).
    NotFound,
    /// The request needs more than one request may use (memory, rows, bytes).
    TooLarge,
    /// The caller may not do this.
    Forbidden,
    /// Ran past its time limit.
    Timeout,
    /// A part of the service is down: no replica of a chunk answered, a worker is unreachable.
    Unavailable,
    /// The request was cancelled (the client went away, the job was aborted).
    Cancelled,
    /// Our own fault; details are in the log.
    Internal,
}

impl ErrorCode {
    /// Whether another worker may succeed where one failed with this code. A query error is final: every replica
    /// would refuse it alike; anything else counts against the worker.
    pub fn retryable(self) -> bool {
        !matches!(
            self,
            ErrorCode::BadRequest | ErrorCode::TooLarge | ErrorCode::Forbidden
        )
    }

    /// The HTTP status the service answers with.
    pub fn http_status(self) -> u16 {
        match self {
            // A query too large for its memory pool is the user's to narrow, like bad ADQL; a sync query past its
            // time limit is told to run as an async job (DALI has no better status for either).
            ErrorCode::BadRequest | ErrorCode::TooLarge | ErrorCode::Timeout => 400,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Unavailable | ErrorCode::Cancelled => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// The gRPC code a worker answers with.
    pub fn grpc(self) -> tonic::Code {
        match self {
            ErrorCode::BadRequest => tonic::Code::InvalidArgument,
            ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::TooLarge => tonic::Code::ResourceExhausted,
            ErrorCode::Forbidden => tonic::Code::PermissionDenied,
            ErrorCode::Timeout => tonic::Code::DeadlineExceeded,
            ErrorCode::Unavailable => tonic::Code::Unavailable,
            ErrorCode::Cancelled => tonic::Code::Cancelled,
            ErrorCode::Internal => tonic::Code::Internal,
        }
    }

    /// The kind of a gRPC failure as the czar sees it (a broken connection arrives as `Unknown` or `Internal`).
    pub fn from_grpc(code: tonic::Code) -> ErrorCode {
        match code {
            tonic::Code::InvalidArgument
            | tonic::Code::FailedPrecondition
            | tonic::Code::OutOfRange => ErrorCode::BadRequest,
            tonic::Code::NotFound => ErrorCode::NotFound,
            tonic::Code::ResourceExhausted => ErrorCode::TooLarge,
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => ErrorCode::Forbidden,
            tonic::Code::DeadlineExceeded => ErrorCode::Timeout,
            tonic::Code::Unavailable => ErrorCode::Unavailable,
            tonic::Code::Cancelled => ErrorCode::Cancelled,
            _ => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode::*;
    use super::*;

    #[test]
    fn grpc_codes_round_trip() {
        for code in [
            BadRequest,
            NotFound,
            TooLarge,
            Forbidden,
            Timeout,
            Unavailable,
            Cancelled,
            Internal,
        ] {
            assert_eq!(ErrorCode::from_grpc(code.grpc()), code);
        }
    }

    #[test]
    fn only_failures_of_a_worker_fail_over() {
        assert!(!BadRequest.retryable());
        assert!(NotFound.retryable() && Unavailable.retryable() && Internal.retryable());
        // A connection that breaks mid-stream surfaces as Unknown: the worker, not the query, failed.
        assert!(ErrorCode::from_grpc(tonic::Code::Unknown).retryable());
    }
}
