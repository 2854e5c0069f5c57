//! Bearer API keys (`server.api_keys`): required on every route but
//! `/health` and the web page's own files when any key is configured.
use axum::{
    body::Body,
    extract::State,
    http::{header, Request},
    middleware::Next,
    response::{IntoResponse, Response},
};
use subtle::ConstantTimeEq;

use super::{error::ApiError, AppState};

pub async fn require_key(
    State(state): State<AppState>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let keys = &state.config.server.api_keys;
    let path = request.uri().path();
    if keys.is_empty() || path == "/health" || super::routes::ui::PUBLIC_PATHS.contains(&path) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(token) = presented else {
        return unauthorized("missing API key: send `Authorization: Bearer <key>`");
    };
    if !keys.iter().any(|k| key_matches(k, token)) {
        return unauthorized("invalid API key");
    }
    next.run(request).await
}

/// Constant-time in the key's content, so response timing does not reveal
/// how much of a guess was right (only, at most, the key's length).
fn key_matches(expected: &str, presented: &str) -> bool {
    expected.as_bytes().ct_eq(presented.as_bytes()).into()
}

fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::unauthorized(message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_comparison() {
        assert!(super::key_matches("secret", "secret"));
        assert!(!super::key_matches("secret", "secreT"));
        assert!(!super::key_matches("secret", "secret2"));
        assert!(!super::key_matches("secret", ""));
    }
}
