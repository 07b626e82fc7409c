//! The audit line of a response is written when its body has been sent in full (or the client went away); the
//! log itself and what handlers tell it are [`platform::audit`].

use axum::body::Body;
use axum::response::Response;
use futures::StreamExt;

pub use platform::audit::{AuditLog, Tally, fingerprint};

/// Calls `done` with the bytes of the response's body once it has been sent, or dropped unsent.
pub(crate) fn when_sent(response: Response, done: impl FnOnce(u64) + Send + 'static) -> Response {
    struct Counted<F: FnOnce(u64)> {
        bytes: u64,
        done: Option<F>,
    }
    impl<F: FnOnce(u64)> Drop for Counted<F> {
        fn drop(&mut self) {
            if let Some(done) = self.done.take() {
                done(self.bytes);
            }
        }
    }
    let (parts, body) = response.into_parts();
    let mut counted = Counted {
        bytes: 0,
        done: Some(done),
    };
    let stream = body.into_data_stream().map(move |chunk| {
        // The whole guard moves into the closure (not just its counter), so it drops with the body.
        let counted = &mut counted;
        if let Ok(c) = &chunk {
            counted.bytes += c.len() as u64;
        }
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}
