//! `/tap/sync`: a query answered in the response, streamed batch by batch; and `/tap/explain` (skyshard's own):
//! the distributed plan as text.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::audit::Tally;
use crate::auth::{Caller, Client};
use crate::error::TapError;
use crate::output::{OutputFormat, stream_result};
use crate::params::Params;
use crate::query::{QueryRequest, result_info, start_query};
use crate::reply::{base_url, busy, error, failure, streamed_response};
use crate::service::Tap;
use crate::upload;
use platform::access::Reader;

pub async fn sync(
    State(tap): State<Arc<Tap>>,
    Extension(client): Extension<Client>,
    Extension(caller): Extension<Caller>,
    tally: Option<Extension<Arc<Tally>>>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let visible = tap.visible_to(Reader::of(&caller));
    let mut req = match QueryRequest::from_params(&params, &tap.limits) {
        Ok(r) => r,
        Err(e) => return failure(&e),
    };
    req.links = Some(format!("{}/datalink/links", base_url(&headers)));
    let tally = tally.map(|t| t.0);
    if let Some(t) = &tally {
        t.query(&req.query);
    }
    // The caller's turn first: decoding the uploads (and fetching those given by URL) is the caller's work too.
    let turn = match tap.sync_turn(&client).await {
        Ok(t) => t,
        Err(b) => return busy(&b),
    };
    let uploads = match upload::load_all(&params, &tap.limits).await {
        Ok(u) => u,
        Err(e) => return failure(&e),
    };
    let secs = tap.limits.sync_duration;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    let stream = match tokio::time::timeout_at(
        deadline,
        start_query(
            &tap.czar,
            &req,
            &czar::QueryContext {
                uploads: &uploads,
                visible: visible.as_deref(),
                ..Default::default()
            },
        ),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return failure(&e.into()),
        Err(_) => return failure(&TapError::SyncTimeout { seconds: secs }),
    };
    let info = result_info(&req);
    let extra = match req.format {
        OutputFormat::Parquet => vec![(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"result.parquet\"".to_string(),
        )],
        _ => Vec::new(),
    };
    let deadline = (deadline, secs);
    result_response(
        stream, req.format, req.maxrec, info, deadline, turn, extra, tally,
    )
}

/// The answer of a started sync query or cone search: its result written into the body batch by batch by a task
/// that holds the query's turn until the last byte, within the time limit. A writer that panics breaks the body,
/// never ends it as if the result were complete.
pub(crate) fn result_response(
    stream: datafusion::physical_plan::SendableRecordBatchStream,
    format: OutputFormat,
    maxrec: u64,
    info: crate::output::Head,
    deadline: (tokio::time::Instant, u64),
    turn: crate::service::Turn,
    extra: Vec<(header::HeaderName, String)>,
    tally: Option<Arc<Tally>>,
) -> Response {
    streamed_response(StatusCode::OK, format.mime(), extra, move |tx| {
        tokio::spawn(async move {
            let _turn = turn;
            let body = tx.clone();
            let written = stream_result(stream, format, maxrec, &info, tx, Some(deadline), false);
            // `body` (a sender) stays open until the rows are told, so the audit line has them.
            let outcome =
                futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(written)).await;
            if let (Ok(Ok(o)), Some(t)) = (&outcome, &tally) {
                t.rows(o.rows);
            }
            if outcome.is_err() {
                tracing::error!(event = "panic", "writing a result panicked");
                let _ = body
                    .send(Err(std::io::Error::other(
                        "the result could not be written",
                    )))
                    .await;
            }
        });
    })
}

pub async fn explain(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> Response {
    let visible = tap.visible_to(Reader::of(&caller));
    let Some(query) = params.get("QUERY") else {
        return error(StatusCode::BAD_REQUEST, "QUERY is missing");
    };
    let uploads = match upload::load_all(&params, &tap.limits).await {
        Ok(u) => u,
        Err(e) => return failure(&e),
    };
    let context = czar::QueryContext {
        uploads: &uploads,
        visible: visible.as_deref(),
        ..Default::default()
    };
    match tap.czar.explain(query, &context).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        Err(e) => failure(&e.into()),
    }
}
