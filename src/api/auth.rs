//! Bearer API keys (`server.api_keys`). With any key configured, every
//! request but the public ones (see [`access`](super::access)) must name a
//! key: none or an unknown one is 401, a key whose rate limit is used up is
//! 429 with `Retry-After`, a key with too small a scope is 403. Without
//! keys nothing is checked or limited.
//!
//! A request counts against its key's limit before its scope is checked, so
//! a key cannot make unlimited refused requests either. Logs name a key by
//! its place in the configuration (`server.api_keys[2]`), never by its text.
use std::time::Instant;

use axum::{
    body::Body,
    extract::State,
    http::{header, Request},
    middleware::Next,
    response::{IntoResponse, Response},
};
use subtle::ConstantTimeEq;

use super::access::{access, Access};
use super::rate_limit::{retry_after_secs, TokenBucket};
use super::{error::ApiError, AppState};
use crate::config::{ApiKey, RateLimit, Scope, Secret};

/// The configured keys with their buckets, built once per server.
pub struct Keys(Vec<Key>);

struct Key {
    secret: Secret,
    scope: Scope,
    /// Its index in `server.api_keys`, for logs.
    position: usize,
    limit: Option<(RateLimit, TokenBucket)>,
}

impl Keys {
    pub fn new(keys: &[ApiKey]) -> Keys {
        let now = Instant::now();
        Keys(
            keys.iter()
                .enumerate()
                .map(|(position, k)| Key {
                    secret: k.key.clone(),
                    scope: k.scope,
                    position,
                    limit: k
                        .rate_limit()
                        .map(|limit| (limit, TokenBucket::new(limit, now))),
                })
                .collect(),
        )
    }

    /// The key whose text is `presented`. Every key is compared, each in
    /// constant time, so timing reveals neither how much of a guess was
    /// right nor which key matched.
    fn find(&self, presented: &str) -> Option<&Key> {
        let mut found = None;
        for key in &self.0 {
            if key_matches(key.secret.expose(), presented) {
                found = Some(key);
            }
        }
        found
    }
}

pub async fn require_key(
    State(state): State<AppState>,
    request: Request<Body>,
    next: Next,
) -> Response {
    if state.keys.0.is_empty() {
        return next.run(request).await;
    }
    let needed = match access(request.method(), request.uri().path(), &state.config.server) {
        Access::Public => return next.run(request).await,
        Access::Key(scope) => scope,
    };
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
    let Some(key) = state.keys.find(token) else {
        return unauthorized("invalid API key");
    };
    if let Some((limit, bucket)) = &key.limit {
        if let Err(wait) = bucket.take(Instant::now()) {
            tracing::debug!(
                "server.api_keys[{}] is over its rate limit: {} {} refused",
                key.position,
                request.method(),
                request.uri().path()
            );
            return ApiError::rate_limited(limit, retry_after_secs(wait)).into_response();
        }
    }
    if key.scope < needed {
        tracing::debug!(
            "server.api_keys[{}] ({}) may not {} {}: needs {needed}",
            key.position,
            key.scope,
            request.method(),
            request.uri().path()
        );
        return ApiError::forbidden(needed, key.scope).into_response();
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
    use super::*;

    #[test]
    fn key_comparison() {
        assert!(key_matches("secret", "secret"));
        assert!(!key_matches("secret", "secreT"));
        assert!(!key_matches("secret", "secret2"));
        assert!(!key_matches("secret", ""));
    }

    #[test]
    fn keys_are_found_with_their_scope() {
        let keys = Keys::new(&[
            ApiKey {
                scope: Scope::Read,
                ..ApiKey::from("reader")
            },
            ApiKey::from("owner"),
        ]);
        assert_eq!(keys.find("reader").map(|k| k.scope), Some(Scope::Read));
        assert_eq!(keys.find("owner").map(|k| k.position), Some(1));
        assert!(keys.find("read").is_none());
        assert!(keys.find("").is_none());
    }
}
