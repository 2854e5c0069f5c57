//! The HTTP API (axum). [`app`] builds the whole router from an
//! [`AppState`], so tests can serve it on any listener; [`serve`] runs it
//! until shutdown, then lets in-flight requests finish.
//!
//! Blocking work never runs on the async workers: database calls (which
//! wait for the group-commit fsync) and input preparation (image decoding,
//! tokenization) go through `spawn_blocking`; the model runs on the
//! engine's own thread and is awaited.
mod access;
mod auth;
mod concurrency;
pub mod error;
mod input;
mod metrics;
pub mod openapi;
mod range;
mod rate_limit;
mod routes;
pub mod wire;

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::{
    extract::{DefaultBodyLimit, State},
    http::Request,
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
    Router,
};

use crate::config::Config;
use crate::db::Db;
use crate::engine::Engine;
use crate::service::{Service, ServiceError};
use error::ApiError;
use routes::{admin, collections, content, documents, embed, search, system, ui};

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    /// What the routes do, typed; they only translate HTTP to it and back.
    pub service: Service,
    pub db: Arc<Db>,
    pub engine: Arc<Engine>,
    pub config: Config,
    /// The memory profile in use, for `/info`.
    pub profile: Option<String>,
    metrics: metrics::Metrics,
    /// `server.api_keys` with their rate-limit buckets.
    keys: auth::Keys,
    /// Requests in flight per class of route, capped.
    caps: concurrency::Caps,
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
    ) -> Result<AppState, ServiceError> {
        let service = Service::new(Arc::clone(&db), Some(Arc::clone(&engine)), &config)?;
        let keys = auth::Keys::new(&config.server.api_keys);
        let caps = concurrency::Caps::new(&config.server);
        Ok(AppState(Arc::new(Shared {
            service,
            db,
            engine,
            config,
            profile,
            metrics: metrics::Metrics::default(),
            keys,
            caps,
            started: Instant::now(),
        })))
    }
}

/// The whole router.
pub fn app(state: AppState) -> Router {
    let body_limit = state.config.server.max_body_bytes;
    Router::new()
        .route("/", get(ui::index))
        .route("/ui/app.js", get(ui::script))
        .route("/ui/app.css", get(ui::style))
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
            get(collections::list_collections).post(collections::create_collection),
        )
        .route(
            "/collections/{collection}",
            get(collections::get_collection).delete(collections::drop_collection),
        )
        .route(
            "/collections/{collection}/documents",
            get(documents::list_documents).post(documents::insert),
        )
        .route(
            "/collections/{collection}/documents/{id}",
            get(documents::get_document).delete(documents::delete_document),
        )
        .route(
            "/collections/{collection}/documents/{id}/content",
            get(content::get_content),
        )
        .route(
            "/collections/{collection}/documents/{id}/thumbnail",
            get(content::get_thumbnail),
        )
        .route("/collections/{collection}/search", post(search::search))
        .route("/admin/backup", post(admin::backup))
        .fallback(system::not_found)
        // Innermost first: body limit, the class's cap (after auth, so
        // requests without a valid key never hold a slot), auth, timeout
        // (which drops the handler and so frees its slot), metrics, JSON
        // errors.
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            concurrency::limit,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            error::json_errors,
        ))
        .with_state(state)
}

/// Middleware: a request that takes longer than `server.timeout_secs` is
/// answered 503 `timeout` and its handler dropped (not `POST /admin/backup`,
/// whose time grows with the database), and then it has changed nothing:
/// the request's [`CommitGate`](crate::service::commit) is closed, so a
/// write that has not reached the database never will (embedding stops, a
/// file ingest on the blocking pool stores nothing). A write that reached
/// it before the deadline (waiting for a checkpoint's lock, the fsync, the
/// index update) is not cut off: the answer waits for it and is its real
/// outcome, a little late, never a 503 for a write that lands anyway.
async fn timeout(
    State(state): State<AppState>,
    request: Request<axum::body::Body>,
    next: Next,
) -> Response {
    use crate::service::commit::{self, CommitGate};
    use axum::response::IntoResponse;
    if request.uri().path() == "/admin/backup" {
        return next.run(request).await;
    }
    let limit = Duration::from_secs(state.config.server.timeout_secs);
    let gate = CommitGate::default();
    let handler = commit::scope(gate.clone(), next.run(request));
    tokio::pin!(handler);
    if let Ok(response) = tokio::time::timeout(limit, &mut handler).await {
        return response;
    }
    if gate.expire() {
        return ApiError::timeout(limit.as_secs(), state.config.server.retry_after_secs)
            .into_response();
    }
    tracing::debug!("a write began before server.timeout_secs passed; waiting for its outcome");
    handler.await
}

/// Serves the API on `listener` until `shutdown` completes, then waits for
/// in-flight requests. The caller closes the database afterwards.
///
/// Our own accept loop (hyper's HTTP/1 server under the axum router) so
/// that clients cannot hold connections: a request's headers must arrive
/// within `server.header_timeout_secs`, which also closes connections idle
/// between requests; at most `server.max_connections` are open (more are
/// closed as soon as accepted), so file descriptors are left for the
/// clients that do talk (`/health` stays reachable). A failed accept (out
/// of file descriptors) pauses briefly instead of spinning.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let header_timeout = Duration::from_secs(state.config.server.header_timeout_secs);
    // Every request answers within server.timeout_secs (but a write that
    // reached the database before then, which is waited for); a little more
    // lets the last answers go out. Past that, shutdown goes on without them.
    let drain = Duration::from_secs(state.config.server.timeout_secs + 5);
    let slots = Arc::new(tokio::sync::Semaphore::new(
        state.config.server.max_connections,
    ));
    let router = app(state);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let shutdown = shutdown;
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!("connection refused: server.max_connections reached");
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // Errors here are the client's (reset, timed out): nothing to do.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open {} s after shutdown began; closing them",
            drain.as_secs()
        );
    }
    Ok(())
}
