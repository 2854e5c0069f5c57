//! The HTTP API (axum). [`app`] builds the whole router from an
//! [`AppState`], so tests can serve it on any listener; [`serve`] runs it
//! until shutdown, then lets in-flight requests finish.
//!
//! Blocking work never runs on the async workers: database calls (which
//! wait for the group-commit fsync) and input preparation (image decoding,
//! tokenization) go through `spawn_blocking`; the model runs on the
//! engine's own thread and is awaited.
mod auth;
mod docs;
mod embed;
pub mod error;
pub mod fetch;
mod input;
mod metrics;
pub mod openapi;
mod system;

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::{
    extract::{DefaultBodyLimit, State},
    http::{Request, StatusCode},
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
    Router,
};

use crate::config::Config;
use crate::db::Db;
use crate::engine::{EmbedRequest, Engine};
use error::{ApiError, ApiResult};

/// Most images fused into one input.
pub const MAX_IMAGES_PER_INPUT: usize = 16;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub db: Arc<Db>,
    pub engine: Arc<Engine>,
    pub config: Config,
    /// The memory profile in use, for `/info`.
    pub profile: Option<String>,
    /// How the database names the model (`/info`, `/v1/embeddings`' `model`).
    pub model_name: String,
    metrics: metrics::Metrics,
    images: fetch::ImageSources,
    started: Instant,
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(
        db: Arc<Db>,
        engine: Arc<Engine>,
        config: Config,
        profile: Option<String>,
    ) -> anyhow::Result<AppState> {
        let images = fetch::ImageSources::new(&config.server)?;
        let model_name = db.options().model_id.clone();
        Ok(AppState(Arc::new(Shared {
            db,
            engine,
            config,
            profile,
            model_name,
            metrics: metrics::Metrics::default(),
            images,
            started: Instant::now(),
        })))
    }

    /// Embeds requests together (so the engine can batch them); results in
    /// order, with each prompt's token count. The first failure fails all,
    /// naming the input's position when there are several.
    pub async fn embed(&self, requests: Vec<EmbedRequest>) -> ApiResult<Vec<(Vec<f32>, usize)>> {
        let several = requests.len() > 1;
        let engine = Arc::clone(&self.engine);
        // Decoding and tokenizing are CPU work: off the async workers.
        let pending = tokio::task::spawn_blocking(move || {
            requests
                .into_iter()
                .map(|r| engine.submit(r))
                .collect::<Vec<_>>()
        })
        .await?;
        let mut out = Vec::with_capacity(pending.len());
        for (i, p) in pending.into_iter().enumerate() {
            let tokens = p.prompt_tokens();
            let vector = self
                .engine
                .wait_async(p)
                .await
                .map_err(|e| self.engine_error(e, several.then_some(i)))?;
            out.push((vector, tokens));
        }
        Ok(out)
    }

    pub async fn embed_one(&self, request: EmbedRequest) -> ApiResult<Vec<f32>> {
        let mut out = self.embed(vec![request]).await?;
        Ok(out.pop().expect("one result per request").0)
    }

    /// An overload error carries the configured Retry-After.
    pub fn with_retry_after(&self, mut error: ApiError) -> ApiError {
        if error.retry_after.is_some() {
            error.retry_after = Some(self.config.server.retry_after_secs);
        }
        error
    }

    fn engine_error(&self, e: crate::engine::EngineError, index: Option<usize>) -> ApiError {
        let error = self.with_retry_after(ApiError::from(e));
        match index {
            Some(i) if error.status.is_client_error() => error.context(format!("input {i}")),
            _ => error,
        }
    }

    /// Runs a database call on the blocking pool.
    pub async fn with_db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> crate::db::Result<T> + Send + 'static,
    ) -> ApiResult<T> {
        let db = Arc::clone(&self.db);
        let result = tokio::task::spawn_blocking(move || f(&db)).await?;
        result.map_err(|e| self.with_retry_after(ApiError::from(e)))
    }

    /// Bytes of an image named by a data URL, base64, URL or allowed file.
    pub async fn load_image(&self, source: &str) -> ApiResult<Vec<u8>> {
        self.images.load(source).await
    }

    /// The images of one input (`image` first, then `images`), at most
    /// [`MAX_IMAGES_PER_INPUT`], checked before any is fetched.
    pub async fn load_images(
        &self,
        image: Option<String>,
        images: Option<Vec<String>>,
    ) -> ApiResult<Vec<Vec<u8>>> {
        let sources: Vec<String> = image
            .into_iter()
            .chain(images.into_iter().flatten())
            .collect();
        if sources.len() > MAX_IMAGES_PER_INPUT {
            return Err(ApiError::too_large(format!(
                "{} images in one input; at most {MAX_IMAGES_PER_INPUT}",
                sources.len()
            )));
        }
        let mut out = Vec::with_capacity(sources.len());
        for source in &sources {
            out.push(self.load_image(source).await?);
        }
        Ok(out)
    }
}

/// The whole router.
pub fn app(state: AppState) -> Router {
    let body_limit = state.config.server.max_body_bytes;
    Router::new()
        .route("/health", get(system::health))
        .route("/info", get(system::info))
        .route("/metrics", get(system::metrics))
        .route("/openapi.json", get(system::openapi))
        .route("/v1/embeddings", post(embed::openai_embeddings))
        .route("/embed/text", post(embed::embed_text))
        .route("/embed/image", post(embed::embed_image))
        .route("/embed/multimodal", post(embed::embed_multimodal))
        .route("/embed/video", post(embed::embed_video))
        .route(
            "/collections",
            get(docs::list_collections).post(docs::create_collection),
        )
        .route(
            "/collections/{collection}",
            get(docs::get_collection).delete(docs::drop_collection),
        )
        .route("/collections/{collection}/documents", post(docs::insert))
        .route(
            "/collections/{collection}/documents/{id}",
            get(docs::get_document).delete(docs::delete_document),
        )
        .route(
            "/collections/{collection}/documents/{id}/content",
            get(docs::get_content),
        )
        .route("/collections/{collection}/search", post(docs::search))
        .fallback(system::not_found)
        // Innermost first: body limit, auth, timeout, metrics, JSON errors.
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(middleware::from_fn(error::json_errors))
        .with_state(state)
}

/// Middleware: a request that takes longer than `server.timeout_secs` is
/// answered 503 and its handler dropped. Embedding stops there; a file
/// ingest on the blocking pool sees the handler's cancel flag and stores
/// nothing. Only a write already committing (milliseconds) still lands, and
/// it lands whole (one transaction).
async fn timeout(
    State(state): State<AppState>,
    request: Request<axum::body::Body>,
    next: Next,
) -> Response {
    use axum::response::IntoResponse;
    let limit = Duration::from_secs(state.config.server.timeout_secs);
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "the request took longer than server.timeout_secs ({} s)",
                    limit.as_secs()
                ),
            );
            e.retry_after = Some(state.config.server.retry_after_secs);
            e.into_response()
        }
    }
}

/// Serves the API on `listener` until `shutdown` completes, then waits for
/// in-flight requests. The caller closes the database afterwards.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
