//! Target `api_request`: whole HTTP requests (method, path and query,
//! headers, body) through the real router, `tkr_embed::api::app`, with the
//! real engine on the tiny test model and a real database in a temporary
//! directory (one per process, seeded with a few collections and
//! documents). Requests are sent with `tower::ServiceExt::oneshot` on a
//! current-thread runtime; no socket is involved.
//!
//! Input, readable so corpus files can be written by hand:
//!
//! ```text
//! POST /collections/c/search?x=1
//! content-type: application/json
//!
//! {"text": "bicycle", "filter": {"field": "lang", "eq": "en"}}
//! ```
//!
//! a request line (method, a space, the request target), header lines up
//! to the first empty line, then the body, byte for byte. Inputs whose head
//! is not valid (method, URI, header names or values) are skipped. So are
//! requests that could make the server fetch an `http(s)` image URL: a
//! fuzzer must not reach the network.
//!
//! Properties: no panic; no 5xx but the documented ones (503 `timeout`,
//! `overloaded`, `unavailable`); every 4xx/5xx body is the JSON error shape
//! `{"error": {"code": "...", "message": "..."}}`.
//!
//! `TKR_FUZZ_VERBOSE=1` prints each request line with the status and the
//! start of the response body.
//!
//! The server state carries over from one input to the next (documents a
//! request inserts stay), so a failing input may need the inputs before it;
//! the seeded collections are recreated whenever an input drops them.
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tkr_embed::api::{self, AppState};
use tkr_embed::config::Config;
use tkr_embed::db::{Db, DbOptions};
use tkr_embed::engine::{self, Engine};
use tower::ServiceExt;

use super::common::{repo_root, tiny_model_dir};

/// One server: the router, the runtime requests run on, and what must
/// outlive them.
pub struct Server {
    runtime: tokio::runtime::Runtime,
    router: Router,
    db: Arc<Db>,
    _engine: Arc<Engine>,
    // Last: removed after the database is closed.
    _data: tempfile::TempDir,
}

/// The collections the seed requests create.
const SEEDED: [&str; 2] = ["c", "t"];

impl Server {
    /// Starts the engine on the tiny model and opens an empty database
    /// (slow: about a second). Callers in tests hold the MLX lock.
    pub fn start() -> Server {
        let data = data_dir();
        let mut config = Config::default();
        config.model.name = tiny_model_dir().display().to_string();
        config.storage.data_dir = data.path().to_owned();
        // As in the HTTP tests; then limits that keep one request fast
        // (the fuzzer wants thousands a minute) without changing the code
        // paths: smaller images, shorter external-tool runs and URL waits.
        config.server.max_batch_size = 8;
        config.optimization.cache_size = 1000;
        config.server.max_image_pixels = 4 << 20;
        config.server.url_timeout_secs = 2;
        config.processing.media_timeout_secs = 10;
        let engine_config = engine::engine_config(&config, tiny_model_dir(), "qwen2vl-tiny".into());
        let engine = Arc::new(Engine::start(engine_config).expect("the tiny model loads"));
        let info = engine.info().clone();
        let db = Arc::new(
            Db::open(
                data.path(),
                DbOptions::new("qwen2vl-tiny", info.dim, info.dtype),
            )
            .expect("a fresh database opens"),
        );
        let state = AppState::new(Arc::clone(&db), Arc::clone(&engine), config, None)
            .expect("the app state builds");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let server = Server {
            runtime,
            router: api::app(state),
            db,
            _engine: engine,
            _data: data,
        };
        server.seed();
        server
    }

    /// Sends one request and checks the properties of its response.
    pub fn run(&self, data: &[u8]) {
        let Some(request) = parse_request(data) else {
            return;
        };
        if may_fetch_url(request.body) {
            return;
        }
        let head = request.method == Method::HEAD;
        let line = format!("{} {}", request.method, request.target);
        let (status, body) = self.send(request.into_http());
        if std::env::var_os("TKR_FUZZ_VERBOSE").is_some() {
            eprintln!(
                "{line} -> {status} {}",
                String::from_utf8_lossy(&body[..body.len().min(160)])
            );
        }
        check_response(status, &body, head);
        if !self.seeded() {
            self.seed();
        }
    }

    fn send(&self, request: Request<Body>) -> (StatusCode, Vec<u8>) {
        self.runtime.block_on(async {
            let response = self
                .router
                .clone()
                .oneshot(request)
                .await
                .expect("the router is infallible");
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("the response body reads");
            (status, body.to_vec())
        })
    }

    fn seeded(&self) -> bool {
        let names: Vec<String> = self
            .db
            .list_collections()
            .expect("collections list")
            .into_iter()
            .map(|c| c.name)
            .collect();
        SEEDED.iter().all(|s| names.iter().any(|n| n == s))
    }

    /// Collections and documents for the requests to find: text documents
    /// with metadata, one with a precomputed vector, an uploaded image.
    fn seed(&self) {
        let json = |method: &str, path: &str, body: Value| {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .expect("a seed request");
            let (status, body) = self.send(request);
            // 409: the collection survived the drop of its sibling.
            assert!(
                status.is_success() || status == StatusCode::CONFLICT,
                "seeding {path}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        };
        json(
            "POST",
            "/collections",
            serde_json::json!({"name": "c", "text_fields": ["title"]}),
        );
        json(
            "POST",
            "/collections",
            serde_json::json!({"name": "t", "vectors": "int8"}),
        );
        for (id, text, meta) in [
            (
                "a",
                "a red bicycle",
                serde_json::json!({"lang": "en", "year": 2021, "tags": ["x", "y"], "title": "bike"}),
            ),
            (
                "b",
                "ein blaues Auto",
                serde_json::json!({"lang": "de", "year": 2019.5, "camera": {"make": "N"}}),
            ),
        ] {
            for collection in SEEDED {
                json(
                    "POST",
                    &format!("/collections/{collection}/documents"),
                    serde_json::json!({"id": id, "text": text, "metadata": meta}),
                );
            }
        }
        let image = std::fs::read(
            repo_root().join("tests/fixtures/qwen2vl-tiny/images/img_tiny_20x30.png"),
        )
        .expect("fixture image");
        let boundary = "fuzzseedboundary";
        let mut body = format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"id\"\r\n\r\nimg\r\n\
             --{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\
             content-type: image/png\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&image);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let request = Request::builder()
            .method("POST")
            .uri("/collections/c/documents")
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from(body))
            .expect("a seed request");
        let (status, body) = self.send(request);
        assert!(
            status.is_success(),
            "seeding an image: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
}

/// A request as the input spells it.
struct Parsed<'a> {
    method: Method,
    target: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
}

impl Parsed<'_> {
    fn into_http(self) -> Request<Body> {
        let mut builder = Request::builder().method(self.method).uri(self.target);
        for (name, value) in self.headers {
            builder = builder.header(name, value);
        }
        builder
            .body(Body::from(self.body.to_vec()))
            .expect("checked by parse_request")
    }
}

fn parse_request(data: &[u8]) -> Option<Parsed<'_>> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &b""[..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let (method, target) = lines.next()?.split_once(' ')?;
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim(), value.trim()));
    }
    let parsed = Parsed {
        method,
        target,
        headers,
        body,
    };
    // The same builder calls as `into_http`, once, to refuse what they refuse.
    let mut builder = Request::builder()
        .method(parsed.method.clone())
        .uri(parsed.target);
    for (name, value) in &parsed.headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).ok()?;
    Some(parsed)
}

/// Whether any string the body could carry names an http(s) URL (for
/// JSON: every string after unescaping; otherwise the raw bytes, and any
/// `\u` escape, which could hide one).
fn may_fetch_url(body: &[u8]) -> bool {
    fn names_url(s: &str) -> bool {
        s.to_ascii_lowercase().contains("http")
    }
    fn walk(v: &Value) -> bool {
        match v {
            Value::String(s) => names_url(s),
            Value::Array(items) => items.iter().any(walk),
            Value::Object(map) => map.iter().any(|(k, v)| names_url(k) || walk(v)),
            _ => false,
        }
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => walk(&value),
        Err(_) => {
            let raw = String::from_utf8_lossy(body);
            names_url(&raw) || raw.contains("\\u")
        }
    }
}

fn check_response(status: StatusCode, body: &[u8], head: bool) {
    if !(status.is_client_error() || status.is_server_error()) || head {
        return;
    }
    let json: Value = serde_json::from_slice(body).unwrap_or_else(|_| {
        panic!(
            "{status} without a JSON body: {}",
            String::from_utf8_lossy(body)
        )
    });
    let code = json["error"]["code"].as_str();
    let message = json["error"]["message"].as_str();
    let (Some(code), Some(message)) = (code, message) else {
        panic!("{status}: not the error shape: {json}");
    };
    if status.is_server_error() {
        assert!(
            status == StatusCode::SERVICE_UNAVAILABLE
                && matches!(code, "timeout" | "overloaded" | "unavailable"),
            "undocumented {status} {code}: {message}"
        );
    }
}

/// A temporary directory for the database: in memory where `/dev/shm`
/// exists (fsyncs are the slowest part of a write). The fuzzer never drops
/// its server (statics are not dropped), so directories of earlier fuzzer
/// processes, named after their pid, are removed once that pid is gone.
fn data_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    };
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix("tkr-embed-fuzz-"))
                .and_then(|rest| rest.split('-').next())
            else {
                continue;
            };
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    tempfile::Builder::new()
        .prefix(&format!("tkr-embed-fuzz-{}-", std::process::id()))
        .tempdir_in(base)
        .expect("a temporary directory")
}
