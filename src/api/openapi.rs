//! The OpenAPI 3.1 description served at `/openapi.json`, written out by
//! hand: the routes are few and stable, and a test checks every route of
//! the router is listed here.
use serde_json::{json, Value};

/// Every (method, path) the router serves, for the listing test.
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
    ("post", "/collections/{collection}/documents"),
    ("get", "/collections/{collection}/documents/{id}"),
    ("delete", "/collections/{collection}/documents/{id}"),
    ("get", "/collections/{collection}/documents/{id}/content"),
    ("post", "/collections/{collection}/search"),
];

fn json_body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn ok(description: &str) -> Value {
    json!({
        "200": {"description": description},
        "4XX": {"$ref": "#/components/responses/Error"},
        "503": {"$ref": "#/components/responses/Error"},
    })
}

fn op(summary: &str, body: Option<Value>, responses: Value) -> Value {
    let mut o = json!({"summary": summary, "responses": responses});
    if let Some(b) = body {
        o["requestBody"] = b;
    }
    o
}

pub fn document() -> Value {
    let image_ref = json!({"type": "string", "description": "data URL, base64, or http(s) URL"});
    let embeddings = json!({"type": "object", "properties": {
        "embeddings": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "model": {"type": "string"}}});
    let search_body = json!({"required": true, "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "text": {"type": "string"}, "image": image_ref.clone(), "document_id": {"type": "string"},
                    "vector": {"type": "array", "items": {"type": "number"}},
                    "k": {"type": "integer", "default": 10}, "filter": {"type": "object"},
                    "instruction": {"type": "string"},
                    "mode": {"enum": ["vector", "lexical", "hybrid"], "default": "vector",
                        "description": "lexical: BM25 over the documents' text (needs `text` only); hybrid: vector and lexical lists fused by reciprocal rank (`text`, with `image` or `vector` at most)"},
                    "rrf_k": {"type": "number", "default": 60},
                    "group_by": {"enum": ["document", "segment"], "default": "document",
                        "description": "segment: one hit per matching segment (chunk, page, scene), several per document allowed"},
                    "queries": {"type": "array", "maxItems": 8, "description": "multi-part query (instead of text/image/vector/document_id): weighted parts whose unit vectors are summed and renormalised; negative weights push away",
                        "items": {"type": "object", "properties": {"text": {"type": "string"}, "image": image_ref.clone(),
                            "vector": {"type": "array", "items": {"type": "number"}}, "instruction": {"type": "string"},
                            "weight": {"type": "number", "default": 1}}}},
                    "weights": {"type": "object", "properties": {"vector": {"type": "number", "default": 1}, "lexical": {"type": "number", "default": 1}}},
                    "include": {"type": "array", "items": {"enum": ["metadata", "text", "vector", "scores", "chunk", "highlights"]}}}}},
                "multipart/form-data": {"schema": {"type": "object", "properties": {
                    "file": {"type": "string", "format": "binary"}, "text": {"type": "string"},
                    "k": {"type": "integer"}, "filter": {"type": "string"},
                    "mode": {"enum": ["vector", "lexical", "hybrid"]}, "rrf_k": {"type": "number"}}}}}});
    let paths = json!({
        "/health": {"get": op("Liveness (no auth)", None, ok("ok"))},
        "/info": {"get": op("Model, device, versions, document counts", None, ok("info"))},
        "/metrics": {"get": op("Prometheus metrics", None, ok("text exposition format"))},
        "/openapi.json": {"get": op("This document", None, ok("OpenAPI 3.1"))},
        "/v1/embeddings": {"post": op("OpenAI-compatible embeddings", Some(json_body(json!({
            "type": "object", "required": ["input"], "properties": {
                "input": {"oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}},
                    {"type": "array", "items": {"type": "object", "properties": {
                        "text": {"type": "string"}, "image": image_ref, "instruction": {"type": "string"}}}}]},
                "model": {"type": "string"},
                "encoding_format": {"enum": ["float", "base64"]},
                "dimensions": {"description": "not supported (400)"}}}))), ok("list of embeddings"))},
        "/embed/text": {"post": op("Embed texts", Some(json_body(json!({
            "type": "object", "required": ["texts"], "properties": {
                "texts": {"type": "array", "items": {"type": "string"}},
                "normalize": {"type": "boolean", "default": true},
                "instruction": {"type": "string"}}}))), json!({"200": {"description": "embeddings",
                "content": {"application/json": {"schema": embeddings}}}}))},
        "/embed/image": {"post": op("Embed an uploaded image (multipart `file`, optional `text`)",
            Some(json!({"content": {"multipart/form-data": {"schema": {"type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}, "text": {"type": "string"}}}}}})),
            ok("embeddings"))},
        "/embed/multimodal": {"post": op("Embed text and an image together (one vector)",
            Some(json_body(json!({"type": "object", "properties": {
                "text": {"type": "string"}, "image_url": image_ref}}))), ok("embeddings"))},
        "/embed/video": {"post": op("Embed a video: sampled frames, one vector per segment, and a pooled vector",
            Some(json!({"content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
                "file": {"type": "string", "format": "binary"}, "max_frames": {"type": "integer"},
                "fps": {"type": "number"}, "pooling": {"enum": ["mean", "max", "first"]}}}}}})),
            ok("{\"embeddings\", \"shape\", \"model\", \"segments\": [{\"start_s\", \"end_s\", \"time_s\", \"embedding\"}], \"duration_s\"}"))},
        "/collections": {
            "get": op("List collections", None, ok("collections")),
            "post": op("Create a collection", Some(json_body(json!({"type": "object",
                "required": ["name"], "properties": {"name": {"type": "string"},
                    "text_fields": {"type": "array", "items": {"type": "string"},
                        "description": "metadata fields (dotted paths) lexical search matches"},
                    "vectors": {"enum": ["f32", "int8"], "default": "f32",
                        "description": "int8: a quarter of the index memory; candidates rescored exactly from the stored float32 vectors"}}}))),
                json!({"201": {"description": "created"}, "409": {"$ref": "#/components/responses/Error"}}))},
        "/collections/{collection}": {
            "get": op("Collection info", None, ok("collection")),
            "delete": op("Drop a collection and its documents", None, ok("dropped"))},
        "/collections/{collection}/documents": {"post": op(
            "Insert (or replace, same id) a document; embedded unless `vector` is given",
            Some(json!({"required": true, "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "id": {"type": "string"}, "text": {"type": "string"}, "image": image_ref,
                    "metadata": {"type": "object"}, "vector": {"type": "array", "items": {"type": "number"}}}}},
                "multipart/form-data": {"schema": {"type": "object", "properties": {
                    "file": {"type": "string", "format": "binary", "description": "image, video, PDF, .txt/.md/.html"}, "metadata": {"type": "string"},
                    "id": {"type": "string"}, "text": {"type": "string"}}}}}})),
            json!({"201": {"description": "{\"id\", \"modality\"}"}, "4XX": {"$ref": "#/components/responses/Error"}}))},
        "/collections/{collection}/documents/{id}": {
            "get": op("A stored document", None, ok("document")),
            "delete": op("Delete a document", None, ok("deleted"))},
        "/collections/{collection}/documents/{id}/content": {
            "get": op("The stored bytes, with their content type", None, ok("bytes"))},
        "/collections/{collection}/search": {"post": op("Search by text, image, both, a stored document or a vector",
            Some(search_body),
            ok("{\"hits\": [{\"id\", \"score\", \"modality\", \"metadata\", \"content_url\", \"segment\"?, \"chunk\"?, \"scores\"?}], \"took_ms\"}"))},
    });
    json!({
        "openapi": "3.1.0",
        "info": {"title": "tkr-embed", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Embedded multimodal vector database with a built-in Ops-MM-embedding-v1 embedder"},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "error", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}}}}}}}}},
        },
        "security": [{"bearer": []}],
    })
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
    }
}
