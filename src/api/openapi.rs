//! The OpenAPI 3.1 description served at `/openapi.json`, generated from
//! the handlers' `#[utoipa::path]` annotations and the wire types' derived
//! schemas, so it cannot drift from what the routes accept and return.
use axum::http::Method;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::access::{access, Access};
use super::concurrency::class;
use super::routes::{admin, collections, content, documents, embed, search, system};
use crate::config::ServerConfig;

/// Every (method, path) of the API the router serves, for the listing
/// tests (the web page's own files, `/` and `/ui/…`, are not API routes).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/info"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("post", "/v1/embeddings"),
    ("post", "/embed/text"),
    ("post", "/embed/image"),
    ("post", "/embed/multimodal"),
    ("post", "/embed/video"),
    ("get", "/collections"),
    ("post", "/collections"),
    ("get", "/collections/{collection}"),
    ("delete", "/collections/{collection}"),
    ("get", "/collections/{collection}/documents"),
    ("post", "/collections/{collection}/documents"),
    ("get", "/collections/{collection}/documents/{id}"),
    ("delete", "/collections/{collection}/documents/{id}"),
    ("get", "/collections/{collection}/documents/{id}/content"),
    ("get", "/collections/{collection}/documents/{id}/thumbnail"),
    ("post", "/collections/{collection}/search"),
    ("post", "/admin/backup"),
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tkr-embed",
        description = "Embedded multimodal vector database with a built-in Ops-MM-embedding-v1 embedder"
    ),
    paths(
        system::health,
        system::info,
        system::metrics,
        system::openapi,
        embed::openai_embeddings,
        embed::embed_text,
        embed::embed_image,
        embed::embed_multimodal,
        embed::embed_video,
        collections::list_collections,
        collections::create_collection,
        collections::get_collection,
        collections::drop_collection,
        documents::list_documents,
        documents::insert,
        documents::get_document,
        documents::delete_document,
        content::get_content,
        content::get_thumbnail,
        search::search,
        admin::backup,
    ),
    modifiers(&BearerAuth, &KeyResponses, &BusyResponses),
    security(("bearer" = []))
)]
struct ApiDoc;

/// `Authorization: Bearer KEY` (required when `server.api_keys` is set).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every route that takes a key says which scope, and documents the answers
/// of the key check (401, 403, 429), from the one access table
/// ([`super::access`]) so the document follows it.
struct KeyResponses;

impl Modify for KeyResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{header::HeaderBuilder, Content, Object, Ref, ResponseBuilder, Type};
        let defaults = ServerConfig::default();
        let answer = |description: &str| {
            ResponseBuilder::new().description(description).content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            )
        };
        let answers = [
            ("401", answer("No API key, or an unknown one").build()),
            (
                "403",
                answer("The API key's scope is too small (`forbidden`)").build(),
            ),
            (
                "429",
                answer("The API key's rate limit is used up (`rate_limited`)")
                    .header(
                        "Retry-After",
                        HeaderBuilder::new()
                            .schema(Some(Object::with_type(Type::Integer)))
                            .description(Some("Whole seconds until this key's next request passes"))
                            .build(),
                    )
                    .build(),
            ),
        ];
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in operations(item) {
                let Some(operation) = operation else { continue };
                let Access::Key(scope) = access(&method, path, &defaults) else {
                    continue;
                };
                let unless = match path.as_str() {
                    "/metrics" => " unless `server.public_metrics`",
                    "/info" => " unless `server.public_info`",
                    _ => "",
                };
                let note = format!(
                    "With `server.api_keys` set: needs a key with the `{scope}` scope{unless}."
                );
                operation.description = Some(match operation.description.take() {
                    Some(text) => format!("{text}\n\n{note}"),
                    None => note,
                });
                for (status, response) in &answers {
                    operation
                        .responses
                        .responses
                        .insert((*status).to_owned(), response.clone().into());
                }
            }
        }
    }
}

/// A path's operations by method (absent ones as `None`).
fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> [(Method, Option<&mut utoipa::openapi::path::Operation>); 5] {
    [
        (Method::GET, item.get.as_mut()),
        (Method::POST, item.post.as_mut()),
        (Method::PUT, item.put.as_mut()),
        (Method::PATCH, item.patch.as_mut()),
        (Method::DELETE, item.delete.as_mut()),
    ]
}

/// Every route but `/health` may answer 503: its class of routes is full
/// (`overloaded`, see [`super::concurrency`]) or it ran past
/// `server.timeout_secs` (`timeout`). Routes that document their own 503
/// keep it.
struct BusyResponses;

impl Modify for BusyResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{header::HeaderBuilder, Content, Object, Ref, ResponseBuilder, Type};
        let busy = ResponseBuilder::new()
            .description(
                "Too many requests of this route's class at once (`overloaded`), or \
                 over `server.timeout_secs` (`timeout`: nothing was changed)",
            )
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            )
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(Some(Object::with_type(Type::Integer)))
                    .description(Some("`server.retry_after_secs`"))
                    .build(),
            )
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in operations(item) {
                let Some(operation) = operation else { continue };
                if class(&method, path).is_none() {
                    continue;
                }
                operation
                    .responses
                    .responses
                    .entry("503".to_owned())
                    .or_insert_with(|| busy.clone().into());
            }
        }
    }
}

/// The whole document as JSON.
pub fn document() -> Value {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    serde_json::to_value(&doc).expect("the OpenAPI document serializes")
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_documented() {
        let doc = super::document();
        for (method, path) in super::ROUTES {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} missing from openapi.json"
            );
        }
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(documented, super::ROUTES.len());
        if let Ok(path) = std::env::var("TKR_DUMP_OPENAPI") {
            std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        }
    }
}
