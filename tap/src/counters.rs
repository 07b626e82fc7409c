//! The request counters of `/metrics`: requests by route and status and a latency histogram per route, the route
//! being the template the router matched ([`matched`], a route layer, notes it on the response), so the router is the
//! one table of what the service answers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use protocol::metrics::{Histogram, describe, label, sample};

/// Requests by route and status, and a latency histogram per route (time to the response head: a streamed result's
/// body is not waited for). A route is the template the router matched (`/tap/async/{id}`), so the router is the
/// one table of what the service answers; requests that matched none count as `unmatched`.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Arc<Histogram>>>,
}

/// The route a request matched, handed from [`matched`] (a route layer) to [`observe`] in the response.
#[derive(Clone)]
struct Route(String);

/// A route layer: notes the matched route's template on the response, for [`observe`].
pub(crate) async fn matched(route: MatchedPath, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response
        .extensions_mut()
        .insert(Route(route.as_str().to_string()));
    response
}

impl Metrics {
    /// Counts a response and the time to its head.
    pub(crate) fn record(&self, response: &Response, elapsed: Duration) {
        let route = response
            .extensions()
            .get::<Route>()
            .map_or("unmatched", |r| r.0.as_str())
            .to_string();
        let histogram = self
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(route.clone())
            .or_default()
            .clone();
        histogram.observe(elapsed.as_secs_f64());
        *self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((route, response.status().as_u16()))
            .or_default() += 1;
    }

    /// The counters in the Prometheus text format.
    pub(crate) fn write(&self, out: &mut String) {
        let out = out;
        describe(
            out,
            "skyshard_requests_total",
            "counter",
            "HTTP requests answered, by route (the router's template) and status.",
        );
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            sample(
                out,
                "skyshard_requests_total",
                &format!("route=\"{}\",status=\"{status}\"", label(route)),
                n,
            );
        }
        describe(
            out,
            "skyshard_request_seconds",
            "histogram",
            "Time to the response head, by route.",
        );
        let histograms = self
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (route, h) in &histograms {
            h.write(
                out,
                "skyshard_request_seconds",
                &format!("route=\"{}\"", label(route)),
            );
        }
    }
}
