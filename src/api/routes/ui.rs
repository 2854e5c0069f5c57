//! The web page at `/`: one HTML file, its script and its style sheet,
//! compiled into the binary (no build step, nothing fetched at run time).
//! The page itself holds no data, so it is served without an API key; it
//! asks for one when the API answers 401.
use axum::{
    http::header,
    response::{IntoResponse, Response},
};

const INDEX_HTML: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const APP_CSS: &str = include_str!("../ui/app.css");

/// Paths of the page's files, which need no API key.
pub const PUBLIC_PATHS: [&str; 3] = ["/", "/ui/app.js", "/ui/app.css"];

/// What the page may load and run: only this origin's script, styles,
/// API calls and media (blob: for media fetched with an API key, data: for
/// the query image's preview).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        ],
        body,
    )
        .into_response()
}

pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}
