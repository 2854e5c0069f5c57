//! `GET /metrics` over a real loopback server: the series names, types,
//! labels and buckets dashboards rely on, fed by real requests.
use reqwest::StatusCode;
use serde_json::json;

use crate::http_common::TestServer;

/// The exposition text of one scrape.
fn scrape(s: &TestServer) -> String {
    let r = s.get("/metrics");
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    String::from_utf8(r.bytes).unwrap()
}

/// The value of the sample line that starts with `series` (name and labels
/// exactly as printed).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

const LATENCY_LE: [&str; 14] = [
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
    "10", "30",
];

#[test]
fn metrics_label_routes_and_fill_histograms_per_server() {
    let s = TestServer::start();
    // Nothing recorded yet: the first scrape of a fresh server shows no
    // request series, in particular none from other servers in this process.
    let first = scrape(&s);
    assert!(!first.contains("tkr_http_requests_total{"), "{first}");

    s.create_collection("m");
    let r = s.post_json(
        "/collections/m/documents",
        &json!({"id": "a", "text": "a short text to embed"}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(s.get("/collections/m").status, StatusCode::OK);
    assert_eq!(s.get("/collections/nope").status, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/collections/m/documents/a").status, StatusCode::OK);
    assert_eq!(s.get("/no/such/route").status, StatusCode::NOT_FOUND);

    let text = scrape(&s);
    let count = |labels: &str| value(&text, &format!("tkr_http_requests_total{{{labels}}}"));
    // Labelled by route template, method and status, never the concrete path.
    assert_eq!(
        count(r#"method="POST",route="/collections",status="201""#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        count(r#"method="POST",route="/collections/{collection}/documents",status="201""#),
        Some(1.0)
    );
    assert_eq!(
        count(r#"method="GET",route="/collections/{collection}",status="200""#),
        Some(1.0)
    );
    assert_eq!(
        count(r#"method="GET",route="/collections/{collection}",status="404""#),
        Some(1.0)
    );
    assert_eq!(
        count(r#"method="GET",route="/collections/{collection}/documents/{id}",status="200""#),
        Some(1.0)
    );
    assert_eq!(
        count(r#"method="GET",route="/metrics",status="200""#),
        Some(1.0),
        "the first scrape is counted once it is answered"
    );
    assert!(!text.contains("/collections/m\""), "{text}");
    assert!(!text.contains("/no/such/route"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("tkr_http_requests_total{")
                && l.contains(r#"status="404""#)
                && !l.contains("/collections")),
        "the unknown route is counted without its path: {text}"
    );

    // The latency histogram: every bucket of LATENCY_BUCKETS, cumulative,
    // ending in +Inf = _count; both GETs of /collections/{collection}.
    let labels = r#"method="GET",route="/collections/{collection}""#;
    let mut previous = 0.0;
    for le in LATENCY_LE {
        let series = format!("tkr_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}}");
        let n = value(&text, &series).unwrap_or_else(|| panic!("{series} missing: {text}"));
        assert!(n >= previous, "{series} not cumulative");
        previous = n;
    }
    // Loopback requests answer well inside 30 s.
    assert_eq!(previous, 2.0, "{text}");
    let bucket = |le: &str| {
        value(
            &text,
            &format!("tkr_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}}"),
        )
    };
    assert_eq!(bucket("+Inf"), Some(2.0));
    let series = |suffix: &str| {
        value(
            &text,
            &format!("tkr_http_request_duration_seconds_{suffix}{{{labels}}}"),
        )
    };
    assert_eq!(series("count"), Some(2.0));
    let sum = series("sum").unwrap();
    assert!(sum > 0.0 && sum < 60.0, "{sum}");

    // Engine and database figures, read at scrape time.
    assert_eq!(value(&text, "tkr_engine_requests_total"), Some(1.0));
    assert_eq!(value(&text, "tkr_engine_batched_inputs_total"), Some(1.0));
    assert_eq!(value(&text, "tkr_engine_cache_hits_total"), Some(0.0));
    assert_eq!(value(&text, "tkr_engine_queue_depth"), Some(0.0));
    assert_eq!(value(&text, "tkr_engine_max_batch_size"), Some(1.0));
    assert_eq!(value(&text, "tkr_engine_cache_hit_ratio"), Some(0.0));
    assert_eq!(
        value(&text, r#"tkr_engine_batch_size_bucket{le="1"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(&text, r#"tkr_engine_batch_size_bucket{le="128"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(&text, r#"tkr_engine_batch_size_bucket{le="+Inf"}"#),
        Some(1.0)
    );
    assert_eq!(value(&text, "tkr_engine_batch_size_sum"), Some(1.0));
    assert_eq!(value(&text, "tkr_engine_batch_size_count"), Some(1.0));
    assert_eq!(value(&text, r#"tkr_documents{collection="m"}"#), Some(1.0));

    // One HELP and one TYPE per family, as before the exporter.
    let families = [
        (
            "tkr_http_requests_total",
            "counter",
            "HTTP requests by route and status.",
        ),
        (
            "tkr_http_request_duration_seconds",
            "histogram",
            "HTTP request latency by route.",
        ),
        (
            "tkr_engine_requests_total",
            "counter",
            "Embedding requests submitted to the engine.",
        ),
        (
            "tkr_engine_cache_hits_total",
            "counter",
            "Embedding requests answered from the cache.",
        ),
        (
            "tkr_engine_batched_inputs_total",
            "counter",
            "Inputs run through the model.",
        ),
        (
            "tkr_engine_queue_depth",
            "gauge",
            "Requests waiting for the model.",
        ),
        (
            "tkr_engine_max_batch_size",
            "gauge",
            "Largest batch run so far.",
        ),
        (
            "tkr_engine_cache_hit_ratio",
            "gauge",
            "Share of engine requests answered from the cache.",
        ),
        (
            "tkr_engine_batch_size",
            "histogram",
            "Inputs per model forward pass.",
        ),
        ("tkr_documents", "gauge", "Live documents per collection."),
    ];
    for (name, kind, help) in families {
        let lines = |line: String| text.lines().filter(|l| **l == line).count();
        assert_eq!(lines(format!("# TYPE {name} {kind}")), 1, "{name}: {text}");
        assert_eq!(lines(format!("# HELP {name} {help}")), 1, "{name}: {text}");
    }
    assert_eq!(text.matches("# TYPE ").count(), families.len(), "{text}");

    // A dropped collection leaves the documents gauge; DELETE is its own series.
    assert_eq!(s.delete("/collections/m").status, StatusCode::OK);
    let text = scrape(&s);
    assert!(!text.contains(r#"tkr_documents{collection="m"}"#), "{text}");
    assert_eq!(
        value(
            &text,
            r#"tkr_http_requests_total{method="DELETE",route="/collections/{collection}",status="200"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"tkr_http_requests_total{method="GET",route="/metrics",status="200"}"#
        ),
        Some(2.0)
    );
    drop(s);

    // Another server in this process starts from nothing: no global recorder.
    let other = TestServer::start();
    let text = scrape(&other);
    assert!(!text.contains("tkr_http_requests_total{"), "{text}");
    assert!(
        !text.contains("tkr_http_request_duration_seconds"),
        "{text}"
    );
    assert_eq!(value(&text, "tkr_engine_requests_total"), Some(0.0));
}
