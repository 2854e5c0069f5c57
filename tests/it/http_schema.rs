//! Every route's real responses (successes and errors, JSON and forms)
//! checked against the schemas of the generated `/openapi.json`: the
//! document cannot promise a shape the handlers do not return, and the
//! handlers cannot return a field the document does not list (every object
//! schema is made closed for the check).
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::http_common::{data_url, file_part, image_bytes, test_config, TestServer};
use crate::media_ingest::media;

/// Object schemas with listed properties get `additionalProperties: false`
/// (free-form objects such as metadata have none listed and stay open).
fn close_objects(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for value in map.values_mut() {
                close_objects(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

pub(crate) struct Schemas {
    doc: Value,
    components: Value,
}

impl Schemas {
    pub(crate) fn new(doc: Value) -> Schemas {
        let mut components = doc["components"].clone();
        close_objects(&mut components);
        Schemas { doc, components }
    }

    /// Validates `body` against the documented response of (method, path)
    /// for `status` (its exact code, else its class, e.g. `4XX`).
    pub(crate) fn check(&self, method: &str, path: &str, status: StatusCode, body: &Value) {
        let errors = self.errors(method, path, status, body);
        assert!(
            errors.is_empty(),
            "{method} {path} {status}: the response contradicts the schema:\n{}\n{body}",
            errors.join("\n")
        );
    }

    fn errors(&self, method: &str, path: &str, status: StatusCode, body: &Value) -> Vec<String> {
        let responses = &self.doc["paths"][path][method]["responses"];
        assert!(
            responses.is_object(),
            "{method} {path} is not in openapi.json"
        );
        let class = format!("{}XX", status.as_u16() / 100);
        let response = [status.as_u16().to_string(), class]
            .iter()
            .map(|key| &responses[key.as_str()])
            .find(|r| r.is_object())
            .unwrap_or_else(|| panic!("{method} {path}: status {status} is not documented"));
        let schema = &response["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path} {status}: no JSON schema documented"
        );
        let mut root = schema.clone();
        close_objects(&mut root);
        root["components"] = self.components.clone();
        let validator = jsonschema::draft202012::new(&root)
            .unwrap_or_else(|e| panic!("{method} {path}: bad schema: {e}\n{root}"));
        validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }
}

#[test]
fn every_route_answers_as_its_schema_says() {
    let mut config = test_config();
    config.processing.max_video_frames = 2;
    config.processing.pdf_render_max_side = 100;
    let backups = tempfile::tempdir().unwrap();
    config.server.backup_root = Some(backups.path().to_owned());
    let s = TestServer::with_config(config);
    let schemas = Schemas::new(s.get("/openapi.json").json);
    let checked = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let seen = |method: &str, path: &str| {
        checked
            .borrow_mut()
            .insert((method.to_owned(), path.to_owned()));
    };
    let check = |method: &str, path: &str, r: &crate::http_common::Response| {
        schemas.check(method, path, r.status, &r.json);
        seen(method, path);
    };
    let png = image_bytes("img_medium_333x250");
    // The check can fail: a wrong type, a missing field, an unlisted field.
    let ok = StatusCode::OK;
    let good = json!({"collections": [{"name": "a", "documents": 1, "created_ms": 2,
        "vectors": "f32", "text_fields": []}]});
    assert!(schemas.errors("get", "/collections", ok, &good).is_empty());
    for bad in [
        json!({"collections": [{"name": 1, "documents": 1, "created_ms": 2, "vectors": "f32", "text_fields": []}]}),
        json!({"collections": [{"name": "a", "created_ms": 2, "vectors": "f32", "text_fields": []}]}),
        json!({"collections": [], "extra": true}),
    ] {
        assert!(
            !schemas.errors("get", "/collections", ok, &bad).is_empty(),
            "{bad}"
        );
    }

    // System routes.
    check("get", "/health", &s.get("/health"));
    check("get", "/info", &s.get("/info"));
    let openapi = s.get("/openapi.json");
    assert_eq!(openapi.json["openapi"], "3.1.0");
    check("get", "/openapi.json", &openapi);
    let metrics = s.get("/metrics");
    assert_eq!(metrics.status, StatusCode::OK);
    seen("get", "/metrics");

    // Embeddings, and their errors.
    let r = s.post_json(
        "/v1/embeddings",
        &json!({"input": ["a", {"text": "b", "images": [data_url(&png)]}]}),
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    check("post", "/v1/embeddings", &r);
    let r = s.post_json(
        "/v1/embeddings",
        &json!({"input": "a", "encoding_format": "base64"}),
    );
    check("post", "/v1/embeddings", &r);
    check(
        "post",
        "/v1/embeddings",
        &s.post_json("/v1/embeddings", &json!({"input": []})),
    );
    check(
        "post",
        "/embed/text",
        &s.post_json("/embed/text", &json!({"texts": ["x", "y"]})),
    );
    let r = s.post_json(
        "/embed/multimodal",
        &json!({"text": "x", "image": data_url(&png)}),
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    check("post", "/embed/multimodal", &r);
    let form = reqwest::multipart::Form::new()
        .part("file", file_part(png.clone(), "a.png"))
        .text("text", "caption");
    check("post", "/embed/image", &s.post_form("/embed/image", form));
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            file_part(std::fs::read(media("video.mp4")).unwrap(), "v.mp4"),
        )
        .text("max_frames", "2");
    let r = s.post_form("/embed/video", form);
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    check("post", "/embed/video", &r);
    let form = reqwest::multipart::Form::new().part("file", file_part(png.clone(), "a.png"));
    let r = s.post_form("/embed/video", form);
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    check("post", "/embed/video", &r);

    // Collections.
    let r = s.post_json(
        "/collections",
        &json!({"name": "c", "text_fields": ["title"]}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    check("post", "/collections", &r);
    let r = s.post_json("/collections", &json!({"name": "c"}));
    assert_eq!(r.status, StatusCode::CONFLICT);
    check("post", "/collections", &r);
    check("get", "/collections", &s.get("/collections"));
    check("get", "/collections/{collection}", &s.get("/collections/c"));
    check(
        "get",
        "/collections/{collection}",
        &s.get("/collections/nope"),
    );

    // Documents of every kind: text, fused multi-image, vector, video, PDF.
    let docs = "/collections/{collection}/documents";
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"id": "t", "text": "a red fox", "metadata": {"title": "fox"}}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    check("post", docs, &r);
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"id": "f", "text": "two pictures", "images": [data_url(&png), data_url(&png)]}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    check("post", docs, &r);
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"id": "v", "vector": vec![0.5f32; 64]}),
    );
    check("post", docs, &r);
    for (name, id) in [("video.mp4", "clip"), ("three_pages.pdf", "pdf")] {
        let form = reqwest::multipart::Form::new()
            .part("file", file_part(std::fs::read(media(name)).unwrap(), name))
            .text("id", id);
        let r = s.post_form("/collections/c/documents", form);
        assert_eq!(r.status, StatusCode::CREATED, "{name}: {}", r.json);
        check("post", docs, &r);
    }
    let r = s.post_json("/collections/c/documents", &json!({"metadata": {}}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    check("post", docs, &r);

    let r = s.get("/collections/c/documents?limit=2");
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["documents"].as_array().unwrap().len(), 2);
    check("get", docs, &r);
    let last = s.get(&format!(
        "/collections/c/documents?limit=1000&after={}",
        r.json["next"].as_str().unwrap()
    ));
    assert_eq!(last.status, StatusCode::OK, "{}", last.json);
    assert!(last.json.get("next").is_none());
    check("get", docs, &last);
    check("get", docs, &s.get("/collections/c/documents?limit=0"));
    check("get", docs, &s.get("/collections/nope/documents"));

    let doc = "/collections/{collection}/documents/{id}";
    for id in ["t", "f", "v", "clip", "pdf"] {
        let r = s.get(&format!("/collections/c/documents/{id}"));
        assert_eq!(r.status, StatusCode::OK, "{id}: {}", r.json);
        check("get", doc, &r);
    }
    check("get", doc, &s.get("/collections/c/documents/missing"));
    let content = "/collections/{collection}/documents/{id}/content";
    let r = s.get("/collections/c/documents/f/content");
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "image/png");
    seen("get", content);
    check("get", content, &s.get("/collections/c/documents/t/content"));
    let r = s.send(
        s.client
            .get(s.url("/collections/c/documents/clip/content"))
            .header("Range", "bytes=0-9"),
    );
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes.len(), 10);
    let r = s.send(
        s.client
            .get(s.url("/collections/c/documents/clip/content"))
            .header("Range", "bytes=999999999-"),
    );
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    check("get", content, &r);
    let thumbnail = "/collections/{collection}/documents/{id}/thumbnail";
    for path in [
        "/collections/c/documents/f/thumbnail",
        "/collections/c/documents/pdf/thumbnail?page=2",
    ] {
        let r = s.get(path);
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.json);
        assert_eq!(r.headers["content-type"], "image/jpeg");
    }
    seen("get", thumbnail);
    for path in [
        "/collections/c/documents/pdf/thumbnail?page=9",
        "/collections/c/documents/pdf/thumbnail?page=1&start_s=0",
        "/collections/c/documents/t/thumbnail",
        "/collections/c/documents/missing/thumbnail",
    ] {
        let r = s.get(path);
        assert!(r.status.is_client_error(), "{path}: {}", r.status);
        check("get", thumbnail, &r);
    }

    // Searches: every mode, grouping and include, JSON and form.
    let search = "/collections/{collection}/search";
    for body in [
        json!({"text": "fox", "include": ["metadata", "text", "vector", "scores", "chunk", "highlights"]}),
        json!({"text": "fox", "mode": "lexical", "include": ["chunk", "highlights", "scores"]}),
        json!({"text": "fox", "mode": "hybrid", "include": ["scores"], "group_by": "segment"}),
        json!({"document_id": "t", "k": 3}),
        json!({"vector": vec![0.1f32; 64], "filter": {"field": "title", "eq": "fox"}}),
        json!({"queries": [{"text": "fox"}, {"image": data_url(&png), "weight": -0.5}]}),
        json!({"text": "page", "group_by": "segment", "include": ["chunk"]}),
    ] {
        let r = s.post_json("/collections/c/search", &body);
        assert_eq!(r.status, StatusCode::OK, "{body}: {}", r.json);
        check("post", search, &r);
    }
    let form = reqwest::multipart::Form::new()
        .part("file", file_part(png.clone(), "q.png"))
        .text("k", "2")
        .text("include", "metadata,scores");
    let r = s.post_form("/collections/c/search", form);
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    check("post", search, &r);
    for bad in [
        json!({"text": "x", "k": 0}),
        json!({"text": "x", "mode": "fuzzy"}),
    ] {
        let r = s.post_json("/collections/c/search", &bad);
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        check("post", search, &r);
    }
    check(
        "post",
        search,
        &s.post_json("/collections/nope/search", &json!({"text": "x"})),
    );

    // A backup, a used destination, one outside the root, a bad body.
    let backup = "/admin/backup";
    let r = s.post_json(backup, &json!({"dest": "b"}));
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    check("post", backup, &r);
    for (body, status) in [
        (json!({"dest": "b"}), StatusCode::CONFLICT),
        (json!({"dest": "/"}), StatusCode::FORBIDDEN),
        (json!({}), StatusCode::BAD_REQUEST),
    ] {
        let r = s.post_json(backup, &body);
        assert_eq!(r.status, status, "{body}: {}", r.json);
        check("post", backup, &r);
    }

    // Deletes, last.
    check("delete", doc, &s.delete("/collections/c/documents/t"));
    check("delete", doc, &s.delete("/collections/c/documents/t"));
    check(
        "delete",
        "/collections/{collection}",
        &s.delete("/collections/c"),
    );
    check(
        "delete",
        "/collections/{collection}",
        &s.delete("/collections/c"),
    );

    // Not found and wrong methods answer in the error shape too.
    let r = s.get("/no/such/route");
    assert_eq!(r.code(), "not_found");

    let all: std::collections::BTreeSet<(String, String)> = tkr_embed::api::openapi::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let checked = checked.into_inner();
    let missed: Vec<_> = all.difference(&checked).collect();
    assert!(missed.is_empty(), "routes not exercised: {missed:?}");
}
