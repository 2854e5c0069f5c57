//! A real server for the HTTP tests: the router from `tkr_embed::api::app`
//! on 127.0.0.1 (a free port), the real engine on the tiny fixture model and
//! a real database in a temporary directory; requests go through reqwest
//! over the socket.
use std::net::SocketAddr;
use std::sync::{Arc, MutexGuard};

use reqwest::StatusCode;
use serde_json::Value;
use tkr_embed::{
    api::AppState,
    config::Config,
    db::{Db, DbOptions},
    engine::Engine,
};

use crate::{mlx_lock, model_parity::fixture_dir};

pub struct TestServer {
    pub addr: SocketAddr,
    pub runtime: tokio::runtime::Runtime,
    pub client: reqwest::Client,
    pub db: Arc<Db>,
    /// Bearer key sent by the helpers (None: no header).
    pub key: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _data: tempfile::TempDir,
    // Last: the MLX lock is released after the engine is gone.
    _engine: Arc<Engine>,
    _mlx: MutexGuard<'static, ()>,
}

/// The default configuration for tests: the fixture model, small limits.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.model.name = fixture_dir().join("model").display().to_string();
    config.server.max_batch_size = 8;
    config.optimization.cache_size = 100;
    config
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::with_config(test_config())
    }

    pub fn with_config(mut config: Config) -> TestServer {
        let mlx = mlx_lock();
        let data = tempfile::tempdir().unwrap();
        config.storage.data_dir = data.path().to_owned();
        let engine_config = tkr_embed::engine::engine_config(
            &config,
            fixture_dir().join("model"),
            "qwen2vl-tiny".into(),
        );
        let engine = Arc::new(Engine::start(engine_config).unwrap());
        let info = engine.info().clone();
        let db = Arc::new(
            Db::open(
                data.path(),
                DbOptions::new("qwen2vl-tiny", info.dim, info.dtype),
            )
            .unwrap(),
        );
        let state = AppState::new(Arc::clone(&db), Arc::clone(&engine), config, None).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let addr = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(tkr_embed::api::serve(listener, state, async {
                let _ = rx.await;
            }));
            addr
        });
        TestServer {
            addr,
            runtime,
            client: reqwest::Client::new(),
            db,
            key: None,
            shutdown: Some(tx),
            _data: data,
            _engine: engine,
            _mlx: mlx,
        }
    }

    /// Serves `app` on another loopback port of this server's runtime (a
    /// stand-in for the web: image URLs, redirects).
    pub fn serve_other(&self, app: axum::Router) -> SocketAddr {
        self.runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            addr
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn authorized(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.key {
            Some(k) => rb.bearer_auth(k),
            None => rb,
        }
    }

    /// Sends a request and returns status, headers and the body as JSON
    /// (every error must be JSON; a non-JSON error body fails the test).
    pub fn send(&self, rb: reqwest::RequestBuilder) -> Response {
        let rb = self.authorized(rb);
        self.runtime.block_on(async {
            let r = rb.send().await.unwrap();
            let status = r.status();
            let headers = r.headers().clone();
            let bytes = r.bytes().await.unwrap().to_vec();
            let json = serde_json::from_slice(&bytes).ok();
            if !status.is_success() {
                let body: &Value = json.as_ref().unwrap_or_else(|| {
                    panic!(
                        "error {status} without a JSON body: {}",
                        String::from_utf8_lossy(&bytes)
                    )
                });
                assert!(
                    body["error"]["code"].is_string() && body["error"]["message"].is_string(),
                    "error body shape: {body}"
                );
            }
            Response {
                status,
                headers,
                bytes,
                json: json.unwrap_or(Value::Null),
            }
        })
    }

    pub fn get(&self, path: &str) -> Response {
        self.send(self.client.get(self.url(path)))
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Response {
        self.send(self.client.post(self.url(path)).json(body))
    }

    pub fn delete(&self, path: &str) -> Response {
        self.send(self.client.delete(self.url(path)))
    }

    pub fn post_form(&self, path: &str, form: reqwest::multipart::Form) -> Response {
        self.send(self.client.post(self.url(path)).multipart(form))
    }

    pub fn create_collection(&self, name: &str) {
        let r = self.post_json("/collections", &serde_json::json!({"name": name}));
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    }

    pub fn documents(&self, collection: &str) -> u64 {
        self.db
            .list_collections()
            .unwrap()
            .into_iter()
            .find(|c| c.name == collection)
            .map_or(0, |c| c.documents)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub struct Response {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
    pub json: Value,
}

impl Response {
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

pub fn image_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(format!("images/{name}.png"))).unwrap()
}

pub fn data_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

pub fn file_part(bytes: Vec<u8>, name: &str) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned())
}
