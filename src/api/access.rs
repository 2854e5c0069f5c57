//! Which routes need which API key scope: one table, by method and path.
//!
//! A route missing from the table needs `admin` (the widest scope), so a
//! new route is never reachable with a weaker key by accident; the tests
//! check that every route the API documents is listed here.
use axum::http::Method;

use super::routes::ui;
use crate::config::{Scope, ServerConfig};

/// What a request must bring when API keys are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: liveness, the web page's own files, and `/metrics` or
    /// `/info` when configured public.
    Public,
    /// A key with at least this scope.
    Key(Scope),
}

/// The access rule for a request (paths as sent, before any decoding: the
/// router matches the same text).
pub fn access(method: &Method, path: &str, server: &ServerConfig) -> Access {
    listed(method, path, server).unwrap_or(Access::Key(Scope::Admin))
}

/// The table itself; `None` for anything it does not list.
fn listed(method: &Method, path: &str, server: &ServerConfig) -> Option<Access> {
    use Access::{Key, Public};
    use Scope::{Admin, Read, Write};

    // HEAD is answered by the GET route.
    let get = *method == Method::GET || *method == Method::HEAD;
    let post = *method == Method::POST;
    let delete = *method == Method::DELETE;
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let public_if = |public: bool| if public { Public } else { Key(Read) };

    let rule = match segments.as_slice() {
        _ if get && ui::PUBLIC_PATHS.contains(&path) => Public,
        ["health"] if get => Public,
        ["info"] if get => public_if(server.public_info),
        ["metrics"] if get => public_if(server.public_metrics),
        ["openapi.json"] if get => Key(Read),

        ["v1", "embeddings"] if post => Key(Read),
        ["embed", "text" | "image" | "multimodal" | "video"] if post => Key(Read),

        ["collections"] if get => Key(Read),
        ["collections"] if post => Key(Admin),
        ["collections", _] if get => Key(Read),
        ["collections", _] if delete => Key(Admin),
        ["collections", _, "search"] if post => Key(Read),
        ["collections", _, "documents"] if get => Key(Read),
        ["collections", _, "documents"] if post => Key(Write),
        ["collections", _, "documents", _] if get => Key(Read),
        ["collections", _, "documents", _] if delete => Key(Write),
        ["collections", _, "documents", _, "content" | "thumbnail"] if get => Key(Read),

        // Backups, reindexing and whatever else operators do, any method.
        ["admin", ..] => Key(Admin),

        _ => return None,
    };
    Some(rule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openapi::ROUTES;

    fn rule(method: &str, path: &str) -> Option<Access> {
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
        listed(&method, path, &ServerConfig::default())
    }

    /// The scope each documented route needs; a route added to the API
    /// (and so to `ROUTES`) fails here until it is given one.
    #[test]
    fn every_documented_route_is_listed_with_its_scope() {
        use Access::{Key, Public};
        use Scope::{Admin, Read, Write};
        let expected = |method: &str, path: &str| match (method, path) {
            ("get", "/health") => Public,
            ("post", "/collections")
            | ("delete", "/collections/{collection}")
            | (_, "/admin/backup") => Key(Admin),
            ("post", "/collections/{collection}/documents")
            | ("delete", "/collections/{collection}/documents/{id}") => Key(Write),
            ("get" | "post", _) => Key(Read),
            _ => panic!("{method} {path}: no expected scope in this test"),
        };
        for (method, path) in ROUTES {
            // Template segments (`{collection}`) stand for any name.
            assert_eq!(
                rule(method, path),
                Some(expected(method, path)),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn unlisted_routes_and_methods_need_admin() {
        let server = ServerConfig::default();
        for (method, path) in [
            (Method::PUT, "/collections/c"),
            (Method::PATCH, "/collections/c/documents/d"),
            (Method::POST, "/collections/c/documents/d"),
            (Method::GET, "/no/such/route"),
            (Method::POST, "/embed/other"),
            (Method::GET, "/collections/c/"),
            (Method::GET, "/collections//documents/d/extra"),
            (Method::POST, "/admin/backup"),
            (Method::GET, "/admin"),
            (Method::GET, ""),
        ] {
            assert_eq!(
                access(&method, path, &server),
                Access::Key(Scope::Admin),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn the_page_and_health_are_public_and_metrics_info_when_configured() {
        assert_eq!(rule("get", "/"), Some(Access::Public));
        assert_eq!(rule("head", "/ui/app.js"), Some(Access::Public));
        assert_eq!(rule("post", "/"), None);
        assert_eq!(rule("get", "/metrics"), Some(Access::Key(Scope::Read)));
        assert_eq!(rule("get", "/info"), Some(Access::Key(Scope::Read)));
        let server = ServerConfig {
            public_metrics: true,
            public_info: true,
            ..ServerConfig::default()
        };
        assert_eq!(access(&Method::GET, "/metrics", &server), Access::Public);
        assert_eq!(access(&Method::GET, "/info", &server), Access::Public);
        assert_eq!(
            access(&Method::POST, "/info", &server),
            Access::Key(Scope::Admin)
        );
    }
}
