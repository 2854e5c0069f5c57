//! Prometheus metrics: request counts and latency histograms per route,
//! rendered with the engine's and the database's figures in the text
//! exposition format (written by hand: a handful of series needs no crate).
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use axum::{
    body::Body,
    extract::{MatchedPath, State},
    http::Request,
    middleware::Next,
    response::Response,
};
use parking_lot::Mutex;

use super::AppState;
use crate::engine::BATCH_SIZE_BUCKETS;

/// Latency bucket upper bounds, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct RouteSeries {
    /// Requests by status code.
    by_status: BTreeMap<u16, u64>,
    /// Cumulative bucket counts, as Prometheus expects.
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

#[derive(Default)]
pub struct Metrics {
    /// Keyed by (method, route template).
    routes: Mutex<BTreeMap<(String, String), RouteSeries>>,
}

impl Metrics {
    fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut routes = self.routes.lock();
        let series = routes
            .entry((method.to_owned(), route.to_owned()))
            .or_default();
        *series.by_status.entry(status).or_default() += 1;
        series.count += 1;
        series.sum_seconds += seconds;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(series.buckets.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
    }

    fn render_routes(&self, out: &mut String) {
        let routes = self.routes.lock();
        out.push_str("# HELP tkr_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE tkr_http_requests_total counter\n");
        for ((method, route), s) in routes.iter() {
            for (status, n) in &s.by_status {
                let _ = writeln!(
                    out,
                    "tkr_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP tkr_http_request_duration_seconds HTTP request latency by route.\n");
        out.push_str("# TYPE tkr_http_request_duration_seconds histogram\n");
        for ((method, route), s) in routes.iter() {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            for (bound, n) in LATENCY_BUCKETS.iter().zip(&s.buckets) {
                let _ = writeln!(
                    out,
                    "tkr_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "tkr_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "tkr_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum_seconds
            );
            let _ = writeln!(
                out,
                "tkr_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
    }
}

/// Middleware: times every request under its route template (`/collections/{c}/search`,
/// not the concrete path, so series stay few).
pub async fn track(State(state): State<AppState>, request: Request<Body>, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    // Known methods only: a made-up method must not mint a new series.
    let method = match request.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "HEAD" | "OPTIONS" | "PATCH") => m,
        _ => "OTHER",
    }
    .to_owned();
    let start = Instant::now();
    let response = next.run(request).await;
    state.metrics.record(
        &method,
        &route,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

/// The whole exposition text for `GET /metrics`.
pub fn render(state: &AppState) -> String {
    let mut out = String::with_capacity(8 * 1024);
    state.metrics.render_routes(&mut out);

    let stats = state.engine.stats();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let requests = load(&stats.requests);
    let hits = load(&stats.cache_hits);
    let counters = [
        (
            "tkr_engine_requests_total",
            "Embedding requests submitted to the engine.",
            requests,
        ),
        (
            "tkr_engine_cache_hits_total",
            "Embedding requests answered from the cache.",
            hits,
        ),
        (
            "tkr_engine_batched_inputs_total",
            "Inputs run through the model.",
            load(&stats.batched_inputs),
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let ratio = if requests == 0 {
        0.0
    } else {
        hits as f64 / requests as f64
    };
    let gauges = [
        (
            "tkr_engine_queue_depth",
            "Requests waiting for the model.",
            load(&stats.queue_depth) as f64,
        ),
        (
            "tkr_engine_max_batch_size",
            "Largest batch run so far.",
            load(&stats.max_batch) as f64,
        ),
        (
            "tkr_engine_cache_hit_ratio",
            "Share of engine requests answered from the cache.",
            ratio,
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    out.push_str("# HELP tkr_engine_batch_size Inputs per model forward pass.\n");
    out.push_str("# TYPE tkr_engine_batch_size histogram\n");
    for (bound, n) in BATCH_SIZE_BUCKETS.iter().zip(&stats.batch_sizes) {
        let _ = writeln!(
            out,
            "tkr_engine_batch_size_bucket{{le=\"{bound}\"}} {}",
            load(n)
        );
    }
    let batches = load(&stats.batches);
    let _ = writeln!(out, "tkr_engine_batch_size_bucket{{le=\"+Inf\"}} {batches}");
    let _ = writeln!(
        out,
        "tkr_engine_batch_size_sum {}",
        load(&stats.batched_inputs)
    );
    let _ = writeln!(out, "tkr_engine_batch_size_count {batches}");

    if let Ok(collections) = state.db.list_collections() {
        out.push_str("# HELP tkr_documents Live documents per collection.\n");
        out.push_str("# TYPE tkr_documents gauge\n");
        for c in &collections {
            let _ = writeln!(
                out,
                "tkr_documents{{collection=\"{}\"}} {}",
                c.name, c.documents
            );
        }
    }
    out
}
