//! A cap on the requests of each class of route in flight at once, so that
//! slow or stuck clients of one class (uploads trickling in, a flood of
//! searches) cannot hold every connection, blocking thread or engine slot
//! the others need. A request over its class's cap is answered at once with
//! 503 `overloaded` and `Retry-After`, never queued (a queue would hold the
//! connection all the same). `GET /health` is in no class: a liveness probe
//! always gets through.
//!
//! A request holds its slot from its headers to its answer, the body's
//! upload included (that is what a slow client stretches).
use std::sync::Arc;

use axum::{
    body::Body,
    extract::State,
    http::{Method, Request},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tokio::sync::Semaphore;

use super::{error::ApiError, AppState};
use crate::config::ServerConfig;

/// What a route does, as far as sharing the server goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Document inserts (JSON or file uploads) and deletes.
    Ingest,
    /// Searches and embedding routes: work for the model and the indexes.
    Query,
    /// Everything that only reads (and unknown routes, answered 404).
    Read,
    /// Create and drop collections, `/admin/*`.
    Admin,
}

impl Class {
    /// The setting that caps the class, for messages.
    pub fn setting(self) -> &'static str {
        match self {
            Class::Ingest => "server.max_ingest_requests",
            Class::Query => "server.max_query_requests",
            Class::Read => "server.max_read_requests",
            Class::Admin => "server.max_admin_requests",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Class::Ingest => "insert and delete",
            Class::Query => "search and embedding",
            Class::Read => "read",
            Class::Admin => "admin",
        }
    }
}

/// The class of a request (paths as sent, like [`access`](super::access));
/// `None` for `/health`, which is never limited.
pub fn class(method: &Method, path: &str) -> Option<Class> {
    let get = *method == Method::GET || *method == Method::HEAD;
    let post = *method == Method::POST;
    let delete = *method == Method::DELETE;
    let segments: Vec<&str> = match path.strip_prefix('/') {
        Some(rest) => rest.split('/').collect(),
        None => return Some(Class::Read),
    };
    let class = match segments.as_slice() {
        ["health"] if get => return None,
        ["collections", _, "documents"] if post => Class::Ingest,
        ["collections", _, "documents", _] if delete => Class::Ingest,
        ["collections", _, "search"] if post => Class::Query,
        ["v1", "embeddings"] | ["embed", ..] if post => Class::Query,
        ["collections"] if post => Class::Admin,
        ["collections", _] if delete => Class::Admin,
        ["admin", ..] => Class::Admin,
        _ => Class::Read,
    };
    Some(class)
}

/// One semaphore per class, sized from the configuration.
pub struct Caps {
    ingest: Arc<Semaphore>,
    query: Arc<Semaphore>,
    read: Arc<Semaphore>,
    admin: Arc<Semaphore>,
    limits: [usize; 4],
}

impl Caps {
    pub fn new(server: &ServerConfig) -> Caps {
        let limits = [
            server.max_ingest_requests,
            server.max_query_requests,
            server.max_read_requests,
            server.max_admin_requests,
        ];
        let semaphore = |n: usize| Arc::new(Semaphore::new(n));
        Caps {
            ingest: semaphore(limits[0]),
            query: semaphore(limits[1]),
            read: semaphore(limits[2]),
            admin: semaphore(limits[3]),
            limits,
        }
    }

    fn of(&self, class: Class) -> (&Arc<Semaphore>, usize) {
        match class {
            Class::Ingest => (&self.ingest, self.limits[0]),
            Class::Query => (&self.query, self.limits[1]),
            Class::Read => (&self.read, self.limits[2]),
            Class::Admin => (&self.admin, self.limits[3]),
        }
    }
}

/// Middleware: takes a slot of the request's class for as long as the
/// request runs, or answers 503 `overloaded` when the class is full.
pub async fn limit(State(state): State<AppState>, request: Request<Body>, next: Next) -> Response {
    let Some(class) = class(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let (semaphore, cap) = state.caps.of(class);
    let Ok(_slot) = Arc::clone(semaphore).try_acquire_owned() else {
        tracing::debug!(
            setting = class.setting(),
            "request refused: its class is full"
        );
        return ApiError::class_full(class.name(), class.setting(), cap).into_response();
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openapi::ROUTES;

    #[test]
    fn every_documented_route_has_its_class_and_health_none() {
        let expected = |method: &str, path: &str| match (method, path) {
            ("get", "/health") => None,
            ("post", "/collections/{collection}/documents")
            | ("delete", "/collections/{collection}/documents/{id}") => Some(Class::Ingest),
            ("post", "/collections/{collection}/search") => Some(Class::Query),
            ("post", p) if p.starts_with("/embed/") || p == "/v1/embeddings" => Some(Class::Query),
            ("post", "/collections")
            | ("delete", "/collections/{collection}")
            | (_, "/admin/backup") => Some(Class::Admin),
            ("get", _) => Some(Class::Read),
            _ => panic!("{method} {path}: no expected class in this test"),
        };
        for (method, path) in ROUTES {
            let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            assert_eq!(class(&m, path), expected(method, path), "{method} {path}");
        }
        assert_eq!(class(&Method::HEAD, "/health"), None);
        assert_eq!(class(&Method::POST, "/health"), Some(Class::Read));
        assert_eq!(class(&Method::GET, "/no/such"), Some(Class::Read));
        assert_eq!(class(&Method::PUT, "/admin"), Some(Class::Admin));
    }
}
