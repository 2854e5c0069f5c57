//! API errors: every failure becomes `{"error": {"code", "message"}}` with a
//! status code decided here, in one place, by exhaustive matches over the
//! error kinds of the layers below (a new kind must be given a status).
use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderValue, Request, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::config::{RateLimit, Scope};
use crate::db::backup::BackupError;
use crate::db::postgres::PgError;
use crate::db::DbError;
use crate::engine::EngineError;
use crate::media::MediaError;
use crate::model::{preprocess::PreprocessError, ModelError};
use crate::service::{ImageError, ServiceError};
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (overload).
    pub retry_after: Option<u64>,
    /// A `Content-Range` header (416: the body's length).
    pub content_range: Option<String>,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable name (`invalid_request`,
    /// `collection_not_found`, `overloaded`, …).
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            content_range: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub fn unsupported_media(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// No route for this path.
    pub fn no_route(path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route {path} (see GET /openapi.json)"),
        )
    }

    /// `GET /metrics` while `monitoring.metrics` is off.
    pub fn metrics_off() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "metrics are off (monitoring.metrics)",
        )
    }

    /// No or a wrong API key.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// The API key's scope is below what the route needs. Names the
    /// scopes, never the key.
    pub fn forbidden(needed: Scope, has: Scope) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this request needs an API key with the `{needed}` scope; the key sent has `{has}`"
            ),
        )
    }

    /// The API key's rate limit is used up: 429 with `Retry-After` in whole
    /// seconds until its next request would pass.
    pub fn rate_limited(limit: &RateLimit, retry_after_secs: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after_secs),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "this API key's rate limit ({} requests/s, bursts of {}) is used up; retry in {retry_after_secs} s",
                    limit.per_sec, limit.burst
                ),
            )
        }
    }

    /// A class of routes has `cap` requests in flight already (see
    /// [`concurrency`](super::concurrency)): 503 `overloaded` with
    /// `Retry-After` (filled in by [`json_errors`]).
    pub fn class_full(class: &str, setting: &str, cap: usize) -> ApiError {
        ApiError::overloaded(format!(
            "{cap} {class} requests are running already ({setting}); retry later"
        ))
    }

    /// The request ran past `server.timeout_secs`.
    pub fn timeout(limit_secs: u64, retry_after_secs: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after_secs),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "the request took longer than server.timeout_secs ({limit_secs} s) and \
                     was stopped; it changed nothing"
                ),
            )
        }
    }

    /// A `Range` that starts past the end of a body of `len` bytes.
    pub fn range_not_satisfiable(len: usize) -> ApiError {
        ApiError {
            content_range: Some(format!("bytes */{len}")),
            ..ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the range starts past the end of the content ({len} bytes)"),
            )
        }
    }

    /// The stored content URI cannot be sent as a redirect.
    pub fn bad_stored_uri() -> ApiError {
        ApiError::internal("the stored content URI is not a valid header")
    }

    /// A body axum could not read (too large, broken multipart): the
    /// rejection's own status, with our shape.
    pub fn rejected(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError::new(status, status_code_name(status), message)
    }

    /// Prefixes the message, e.g. with the index of the failing input.
    pub fn context(mut self, prefix: impl std::fmt::Display) -> ApiError {
        self.message = format!("{prefix}: {}", self.message);
        self
    }

    fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = code;
        self
    }

    /// The engine's queue is full: 503 with `Retry-After` (the configured
    /// value is filled in by [`json_errors`]).
    fn overloaded(message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, "{}", self.message);
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(range) = self
            .content_range
            .and_then(|r| HeaderValue::try_from(r).ok())
        {
            response.headers_mut().insert(header::CONTENT_RANGE, range);
        }
        response
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        // The message is the whole error's (with any context); the status
        // comes from the kind underneath.
        let message = e.to_string();
        let mut error = match e {
            ServiceError::Invalid(_) => ApiError::bad_request(""),
            ServiceError::TooLarge(_) => ApiError::too_large(""),
            ServiceError::UnsupportedFile(_) => ApiError::unsupported_media(""),
            ServiceError::WrongMedia(_) => ApiError::bad_request("").with_code("invalid_media"),
            ServiceError::Db(e) => ApiError::from(e),
            ServiceError::Engine(e) => ApiError::from(e),
            ServiceError::Media(e) => ApiError::from(e),
            ServiceError::Image(e) => ApiError::from(e),
            ServiceError::ContentExternal { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "content_external", "")
            }
            ServiceError::NoContent { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "content_not_found", "")
            }
            ServiceError::NoSegment { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "segment_not_found", "")
            }
            ServiceError::BackupDisabled(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "backup_disabled", "")
            }
            ServiceError::OutsideBackupRoot(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "outside_backup_root", "")
            }
            ServiceError::NoModel
            | ServiceError::Cancelled
            | ServiceError::Worker(_)
            | ServiceError::Io(_) => ApiError::internal(""),
            ServiceError::Renamed { source, .. } | ServiceError::In { source, .. } => {
                ApiError::from(*source)
            }
        };
        error.message = message;
        error
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        let message = e.to_string();
        match e {
            EngineError::Overloaded(_) => ApiError::overloaded(message),
            EngineError::Stopped => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
            EngineError::Model(m) => model_error(&m, message),
        }
    }
}

fn model_error(e: &ModelError, message: String) -> ApiError {
    match e {
        ModelError::Image(PreprocessError::TooManyPixels { .. }) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "image_too_large", message)
        }
        ModelError::Image(
            PreprocessError::EmptyInput
            | PreprocessError::UnknownFormat
            | PreprocessError::Unsupported(_)
            | PreprocessError::Decode(_)
            | PreprocessError::ZeroSize { .. }
            | PreprocessError::AspectRatio { .. }
            | PreprocessError::InvalidArgument(_),
        ) => ApiError::bad_request(message).with_code("invalid_image"),
        ModelError::TooLong { .. } | ModelError::BadInput(_) => ApiError::bad_request(message),
        ModelError::Config(_)
        | ModelError::Weights(_)
        | ModelError::Tokenizer(_)
        | ModelError::Io { .. }
        | ModelError::Download(_)
        | ModelError::Mlx(_)
        | ModelError::MlxData(_) => ApiError::internal(message),
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> ApiError {
        let message = e.to_string();
        match e {
            DbError::UnknownCollection(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "collection_not_found", message)
            }
            DbError::DocumentNotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "document_not_found", message)
            }
            DbError::CollectionExists(_) => {
                ApiError::new(StatusCode::CONFLICT, "collection_exists", message)
            }
            DbError::Engine(engine) => ApiError::from(engine),
            DbError::Media(media) => ApiError::from(media),
            DbError::Filter(_) => ApiError::bad_request(message).with_code("invalid_filter"),
            DbError::WrongDimension { .. } | DbError::BadInput(_) => ApiError::bad_request(message),
            DbError::Store(store) => store_error(&store, message),
            DbError::Backup(backup) => backup_error(&backup, message),
            DbError::Postgres(pg) => postgres_error(&pg, message),
            DbError::Index(_) | DbError::Internal(_) => ApiError::internal(message),
        }
    }
}

fn postgres_error(e: &PgError, message: String) -> ApiError {
    match e {
        PgError::Connect(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            message,
        ),
        PgError::Unsupported(..) => ApiError::bad_request(message).with_code("not_supported"),
        PgError::IncompatibleModel { .. } => ApiError::bad_request(message),
        PgError::Schema(_) | PgError::Query(_) => ApiError::internal(message),
    }
}

fn store_error(e: &StoreError, message: String) -> ApiError {
    match e {
        StoreError::UnknownCollection(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "collection_not_found", message)
        }
        StoreError::CollectionExists(_) => {
            ApiError::new(StatusCode::CONFLICT, "collection_exists", message)
        }
        StoreError::IncompatibleModel { .. } | StoreError::UnsupportedFormat { .. } => {
            ApiError::bad_request(message)
        }
        StoreError::SnapshotRunning => {
            ApiError::new(StatusCode::CONFLICT, "backup_running", message)
        }
        StoreError::DiskFull { .. } => ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "insufficient_storage",
            message,
        ),
        StoreError::ReadOnly(_) | StoreError::ReadOnlyAtOpen(_) => ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "read_only_storage",
            message,
        ),
        StoreError::Failed(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_failed", message)
        }
        StoreError::Sled(_)
        | StoreError::Codec(_)
        | StoreError::IdCollision(_)
        | StoreError::Flush(_)
        | StoreError::Exhausted(_)
        | StoreError::Locked(_)
        | StoreError::Inconsistent(_) => ApiError::internal(message),
    }
}

fn backup_error(e: &BackupError, message: String) -> ApiError {
    match e {
        BackupError::Busy => ApiError::new(StatusCode::CONFLICT, "backup_running", message),
        BackupError::NotEmpty(_) => {
            ApiError::new(StatusCode::CONFLICT, "backup_dest_not_empty", message)
        }
        BackupError::Destination(_)
        | BackupError::NoDatabase(_)
        | BackupError::NoManifest(_)
        | BackupError::Damaged { .. }
        | BackupError::Unsupported { .. } => ApiError::bad_request(message),
        BackupError::Io { .. } => ApiError::internal(message),
    }
}

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> ApiError {
        let message = e.to_string();
        match e {
            MediaError::TooLarge { .. }
            | MediaError::TooLong { .. }
            | MediaError::TooManyPages { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "media_too_large", message)
            }
            MediaError::Encrypted { .. } => {
                ApiError::bad_request(message).with_code("encrypted_document")
            }
            MediaError::Empty { .. }
            | MediaError::Unsupported { .. }
            | MediaError::Corrupt { .. }
            | MediaError::Truncated { .. }
            | MediaError::Timeout { .. } => {
                ApiError::bad_request(message).with_code("invalid_media")
            }
            MediaError::InvalidArgument(_)
            | MediaError::Io { .. }
            | MediaError::Tool { .. }
            | MediaError::Ffmpeg { .. }
            | MediaError::Image { .. }
            | MediaError::Tokenizer(_) => ApiError::internal(message),
        }
    }
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> ApiError {
        let message = e.to_string();
        match e {
            ImageError::Invalid(_) => ApiError::bad_request(message),
            ImageError::FetchFailed(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "url_fetch_failed", message)
            }
            ImageError::PrivateAddress(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "private_address", message)
            }
            ImageError::TooLarge(_) => ApiError::too_large(message),
            ImageError::FileAccessDisabled(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "file_access_disabled", message)
            }
            ImageError::OutsideFileRoot(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "outside_file_root", message)
            }
            ImageError::Setup(_) | ImageError::Worker(_) => ApiError::internal(message),
        }
    }
}

/// A panicked or cancelled blocking task.
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        ApiError::internal(format!("worker task failed: {e}"))
    }
}

/// Middleware: responses that leave the router as errors without a JSON body
/// (axum's own rejections, unknown routes, wrong methods, body limits) are
/// rewritten into the JSON error shape, so clients see one format.
///
/// Every 503's `Retry-After` carries the configured
/// `server.retry_after_secs`; a 429's is the key's own wait, kept.
pub async fn json_errors(
    State(state): State<AppState>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        if let Some(value) = response.headers_mut().get_mut(header::RETRY_AFTER) {
            *value = HeaderValue::from(state.config.server.retry_after_secs);
        }
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut error = ApiError::new(status, status_code_name(status), message);
    error.retry_after = parts
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let mut rewritten = error.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
}

fn status_code_name(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => "timeout",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_client_error() => "invalid_request",
        _ => "internal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_is_503_with_retry_after() {
        let response = ApiError::from(EngineError::Overloaded(8)).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn scopes_and_rate_limits_name_no_key() {
        let response = ApiError::forbidden(Scope::Admin, Scope::Read).into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let limit = RateLimit {
            per_sec: 0.5,
            burst: 2,
        };
        let error = ApiError::rate_limited(&limit, 3);
        assert_eq!(error.code, "rate_limited");
        assert!(
            error.message.contains("0.5 requests/s"),
            "{}",
            error.message
        );
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }

    #[test]
    fn bad_images_are_400_and_bombs_413() {
        let e = EngineError::Model(ModelError::Image(PreprocessError::EmptyInput));
        assert_eq!(ApiError::from(e).status, StatusCode::BAD_REQUEST);
        let e = EngineError::Model(ModelError::Image(PreprocessError::TooManyPixels {
            width: 10,
            height: 10,
            pixels: 100,
            max_pixels: 1,
        }));
        assert_eq!(ApiError::from(e).status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
