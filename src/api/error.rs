//! API errors: every failure becomes `{"error": {"code", "message"}}` with a
//! status code decided here, in one place.
use axum::{
    body::Body,
    http::{header, HeaderValue, Request, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use crate::db::DbError;
use crate::engine::EngineError;
use crate::model::{preprocess::PreprocessError, ModelError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (overload).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub fn unsupported_media(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// Prefixes the message, e.g. with the index of the failing input.
    pub fn context(mut self, prefix: impl std::fmt::Display) -> ApiError {
        self.message = format!("{prefix}: {}", self.message);
        self
    }

    /// The engine's queue is full: 503 with `Retry-After`.
    pub fn overloaded(message: impl Into<String>, retry_after_secs: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after_secs),
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
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match &e {
            // Retry-After is filled in by the caller that knows the config;
            // 1 s is the default.
            EngineError::Overloaded(_) => ApiError::overloaded(e.to_string(), 1),
            EngineError::Stopped => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
            EngineError::Model(m) => model_error(m, e.to_string()),
        }
    }
}

fn model_error(e: &ModelError, message: String) -> ApiError {
    match e {
        ModelError::Image(PreprocessError::TooManyPixels { .. }) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "image_too_large", message)
        }
        ModelError::Image(_) => ApiError::bad_request(message).with_code("invalid_image"),
        ModelError::TooLong { .. } | ModelError::BadInput(_) => ApiError::bad_request(message),
        _ => ApiError::internal(message),
    }
}

impl ApiError {
    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = code;
        self
    }

    /// The generic code of the status (for errors made from axum's rejections).
    pub fn with_status_code_name(mut self) -> ApiError {
        self.code = status_code_name(self.status);
        self
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
            other if other.is_bad_input() => ApiError::bad_request(message),
            _ => ApiError::internal(message),
        }
    }
}

impl From<crate::media::MediaError> for ApiError {
    fn from(e: crate::media::MediaError) -> ApiError {
        use crate::media::MediaError as M;
        let message = e.to_string();
        match e {
            M::TooLarge { .. } | M::TooLong { .. } | M::TooManyPages { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "media_too_large", message)
            }
            M::Encrypted { .. } => ApiError::bad_request(message).with_code("encrypted_document"),
            other if other.is_bad_input() => {
                ApiError::bad_request(message).with_code("invalid_media")
            }
            _ => ApiError::internal(message),
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
pub async fn json_errors(request: Request<Body>, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
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
