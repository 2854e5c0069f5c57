//! Prometheus metrics through the `metrics` crate and its Prometheus
//! exporter: request counts and latency histograms per route, with the
//! engine's and the database's figures read at scrape time.
//!
//! No global recorder: every server (tests run many in one process) has its
//! own [`PrometheusRecorder`] in its [`Metrics`], recorded into through
//! [`metrics::with_local_recorder`] and rendered by `GET /metrics` (the
//! exporter's own HTTP listener and push gateway are compiled out).
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::{
    body::Body,
    extract::{MatchedPath, State},
    http::Request,
    middleware::Next,
    response::Response,
};
use metrics_exporter_prometheus::{
    formatting::{write_help_line, write_type_line},
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use super::AppState;
use crate::engine::BATCH_SIZE_BUCKETS;

/// Latency bucket upper bounds, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

const HTTP_REQUESTS: &str = "tkr_http_requests_total";
const HTTP_DURATION: &str = "tkr_http_request_duration_seconds";

/// The exporter keeps each latency sample until upkeep folds it into the
/// buckets (a scrape does too); without the exporter's background task we
/// run upkeep every this many requests, so unscraped servers stay small.
const UPKEEP_EVERY: u64 = 1024;

/// The request series of one server.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Requests recorded, for [`UPKEEP_EVERY`].
    recorded: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), &LATENCY_BUCKETS)
            .expect("latency buckets are not empty")
            .build_recorder();
        metrics::with_local_recorder(&recorder, || {
            metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests by route and status.");
            metrics::describe_histogram!(HTTP_DURATION, "HTTP request latency by route.");
        });
        let handle = recorder.handle();
        Metrics {
            recorder,
            handle,
            recorded: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    fn record(&self, method: &'static str, route: String, status: u16, seconds: f64) {
        metrics::with_local_recorder(&self.recorder, || {
            metrics::counter!(
                HTTP_REQUESTS,
                "method" => method,
                "route" => route.clone(),
                "status" => status.to_string(),
            )
            .increment(1);
            metrics::histogram!(HTTP_DURATION, "method" => method, "route" => route)
                .record(seconds);
        });
        if (self.recorded.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(UPKEEP_EVERY) {
            self.handle.run_upkeep();
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
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "OTHER",
    };
    let start = Instant::now();
    let response = next.run(request).await;
    state.metrics.record(
        method,
        route,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

/// The whole exposition text for `GET /metrics`.
pub fn render(state: &AppState) -> String {
    let mut out = state.metrics.handle.render();
    out.push_str(&render_snapshot(state));
    render_batch_sizes(state, &mut out);
    out
}

/// The figures the engine and the database own, read now. They go through a
/// recorder made for this scrape alone, so the output is exactly their state
/// at this moment: a dropped collection's `tkr_documents` series is gone
/// (a long-lived recorder would keep showing its last value). The engine's
/// totals are cumulative atomics and are set as absolute counter values.
fn render_snapshot(state: &AppState) -> String {
    let stats = state.engine.stats();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let requests = load(&stats.requests);
    let hits = load(&stats.cache_hits);
    let ratio = if requests == 0 {
        0.0
    } else {
        hits as f64 / requests as f64
    };
    let collections = state.db.list_collections().ok();

    let recorder = PrometheusBuilder::new().build_recorder();
    metrics::with_local_recorder(&recorder, || {
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
            metrics::describe_counter!(name, help);
            metrics::counter!(name).absolute(value);
        }
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
            metrics::describe_gauge!(name, help);
            metrics::gauge!(name).set(value);
        }
        if let Some(collections) = &collections {
            metrics::describe_gauge!("tkr_documents", "Live documents per collection.");
            for c in collections {
                metrics::gauge!("tkr_documents", "collection" => c.name.clone())
                    .set(c.documents as f64);
            }
        }
    });
    recorder.handle().render()
}

/// `tkr_engine_batch_size`, written here rather than by the exporter: the
/// engine counts batches into its own cumulative buckets (atomics on the
/// model thread, `EngineStats::batch_sizes`), and the exporter's histograms
/// only take raw samples. Replaying samples could not reproduce `_sum` (the
/// exact input total) and would count batches twice across scrapes, so the
/// already-aggregated buckets are printed as they are, with the exporter's
/// HELP/TYPE formatting.
fn render_batch_sizes(state: &AppState, out: &mut String) {
    use std::fmt::Write as _;
    const NAME: &str = "tkr_engine_batch_size";
    let stats = state.engine.stats();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    write_help_line(out, NAME, None, None, "Inputs per model forward pass.");
    write_type_line(out, NAME, None, None, "histogram");
    for (bound, n) in BATCH_SIZE_BUCKETS.iter().zip(&stats.batch_sizes) {
        let _ = writeln!(out, "{NAME}_bucket{{le=\"{bound}\"}} {}", load(n));
    }
    let batches = load(&stats.batches);
    let _ = writeln!(out, "{NAME}_bucket{{le=\"+Inf\"}} {batches}");
    let _ = writeln!(out, "{NAME}_sum {}", load(&stats.batched_inputs));
    let _ = writeln!(out, "{NAME}_count {batches}");
}
