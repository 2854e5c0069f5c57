//! The HTTP API over a real socket: documents, search, embeddings, auth,
//! metrics, the OpenAPI listing, and the `serve` binary's shutdown.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::http_common::{data_url, file_part, image_bytes, test_config, TestServer};
use crate::model_parity::{case, fixture_dir, floats, max_abs_diff};

const IMAGES: [&str; 3] = ["img_medium_333x250", "img_wide_640x96", "img_tiny_20x30"];

#[test]
fn inserted_images_are_found_by_the_same_image_first() {
    let s = TestServer::start();
    s.create_collection("pics");
    // Two images by multipart upload, one as a data URL in JSON.
    for name in &IMAGES[..2] {
        let form = reqwest::multipart::Form::new()
            .part("file", file_part(image_bytes(name), &format!("{name}.png")))
            .text("id", name.to_string())
            .text("metadata", json!({"name": name}).to_string());
        let r = s.post_form("/collections/pics/documents", form);
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        assert_eq!(r.json["id"], *name);
        assert_eq!(r.json["modality"], "image");
    }
    let r = s.post_json(
        "/collections/pics/documents",
        &json!({"id": IMAGES[2], "image": data_url(&image_bytes(IMAGES[2])),
                "metadata": {"name": IMAGES[2]}}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let r = s.post_json(
        "/collections/pics/documents",
        &json!({"id": "caption", "text": "A photo of a red apple on a wooden table."}),
    );
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(s.documents("pics"), 4);

    for name in IMAGES {
        // JSON search with the image as base64 (no data: prefix).
        let b64 = base64::engine::general_purpose::STANDARD.encode(image_bytes(name));
        let r = s.post_json(
            "/collections/pics/search",
            &json!({"image": b64, "k": 4, "include": ["metadata", "text", "vector"]}),
        );
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let top = &r.json["hits"][0];
        assert_eq!(top["id"], name, "{}", r.json);
        assert!(top["score"].as_f64().unwrap() >= 0.99, "{top}");
        assert_eq!(top["metadata"]["name"], name);
        assert_eq!(top["modality"], "image");
        assert_eq!(floats(&top["vector"]).len(), 64);
        assert!(r.json["took_ms"].as_f64().unwrap() >= 0.0);
        // The same by multipart upload.
        let form = reqwest::multipart::Form::new()
            .part("file", file_part(image_bytes(name), "q.png"))
            .text("k", "2");
        let r = s.post_form("/collections/pics/search", form);
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["hits"][0]["id"], name);
        assert_eq!(r.json["hits"].as_array().unwrap().len(), 2);
    }

    // Text query, filter, search by a stored document, raw vector.
    let r = s.post_json(
        "/collections/pics/search",
        &json!({"text": "A photo of a red apple on a wooden table.", "k": 1, "include": ["text"]}),
    );
    assert_eq!(r.json["hits"][0]["id"], "caption");
    assert_eq!(
        r.json["hits"][0]["text"],
        "A photo of a red apple on a wooden table."
    );
    let r = s.post_json(
        "/collections/pics/search",
        &json!({"text": "anything", "filter": {"field": "name", "eq": "img_wide_640x96"}}),
    );
    let hits = r.json["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{}", r.json);
    assert_eq!(hits[0]["id"], "img_wide_640x96");
    let r = s.post_json(
        "/collections/pics/search",
        &json!({"document_id": "img_medium_333x250", "k": 10}),
    );
    assert!(r.json["hits"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["id"] != "img_medium_333x250"));
    let r = s.post_json(
        "/collections/pics/search",
        &json!({"vector": floats(&case("img_tiny_20x30")["embedding_fp32"][0]), "k": 1}),
    );
    assert_eq!(r.json["hits"][0]["id"], "img_tiny_20x30");

    // Get, content, delete.
    let r = s.get("/collections/pics/documents/img_wide_640x96");
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["content"]["content_type"], "image/png");
    assert_eq!(r.json["metadata"]["name"], "img_wide_640x96");
    let url = r.json["content_url"].as_str().unwrap().to_owned();
    let r = s.get(&url);
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "image/png");
    assert_eq!(r.bytes, image_bytes("img_wide_640x96"));
    let r = s.delete("/collections/pics/documents/img_wide_640x96");
    assert_eq!(r.status, StatusCode::OK);
    let r = s.get("/collections/pics/documents/img_wide_640x96");
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "document_not_found");
    let r = s.delete("/collections/pics/documents/img_wide_640x96");
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = s.post_json(
        "/collections/pics/search",
        &json!({"image": data_url(&image_bytes("img_wide_640x96")), "k": 10}),
    );
    assert!(r.json["hits"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["id"] != "img_wide_640x96"));

    // Collections.
    let r = s.get("/collections");
    assert_eq!(r.json["collections"][0]["name"], "pics");
    assert_eq!(r.json["collections"][0]["documents"], 3);
    let r = s.get("/collections/pics");
    assert_eq!(r.json["documents"], 3);
    let r = s.post_json("/collections", &json!({"name": "pics"}));
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(s.get("/collections/pics").json["vectors"], "f32");
    // A compressed collection: int8 in the index, exact scores out.
    let r = s.post_json("/collections", &json!({"name": "small", "vectors": "int8"}));
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["vectors"], "int8");
    let r = s.post_json("/collections", &json!({"name": "bad", "vectors": "int4"}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("int8"),
        "{}",
        r.json
    );
    let dim = s.get("/info").json["model"]["dim"].as_u64().unwrap() as usize;
    let v: Vec<f32> = (0..dim).map(|i| ((i * 7 % 11) as f32) - 5.0).collect();
    let w: Vec<f32> = (0..dim).map(|i| ((i * 5 % 13) as f32) - 6.0).collect();
    for (id, vector) in [("v", &v), ("w", &w)] {
        let r = s.post_json(
            "/collections/small/documents",
            &json!({"id": id, "vector": vector}),
        );
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    }
    let r = s.post_json("/collections/small/search", &json!({"vector": v, "k": 2}));
    assert_eq!(r.json["hits"][0]["id"], "v");
    let top = r.json["hits"][0]["score"].as_f64().unwrap();
    assert!((top - 1.0).abs() < 1e-6, "{}", r.json);
    let norm = |x: &[f32]| x.iter().map(|a| (a * a) as f64).sum::<f64>().sqrt();
    let cos = v.iter().zip(&w).map(|(a, b)| (a * b) as f64).sum::<f64>() / (norm(&v) * norm(&w));
    let second = r.json["hits"][1]["score"].as_f64().unwrap();
    assert!((second - cos).abs() < 1e-5, "{second} vs {cos}");
    assert_eq!(s.delete("/collections/small").status, StatusCode::OK);
    let r = s.delete("/collections/pics");
    assert_eq!(r.status, StatusCode::OK);
    let r = s.get("/collections/pics");
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// `tkr-embed embed --json` for the same inputs, from the binary.
fn cli_embed(args: &[&str]) -> Vec<Vec<f32>> {
    let out = Command::new(env!("CARGO_BIN_EXE_tkr-embed"))
        .arg("--model")
        .arg(fixture_dir().join("model"))
        .arg("embed")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // One input prints {"embedding": [...]}.
    vec![floats(&v["embedding"])]
}

#[test]
fn openai_embeddings_equal_the_cli_and_the_reference() {
    let s = TestServer::start();
    let image_path = fixture_dir().join("images/img_medium_333x250.png");
    let image_arg = image_path.display().to_string();
    let r = s.post_json(
        "/v1/embeddings",
        &json!({"model": "text-embedding-3-small", "input": [
            "Hello world",
            {"text": "Describe the shapes in this picture.", "image": data_url(&image_bytes("img_medium_333x250"))},
            {"image": data_url(&image_bytes("img_medium_333x250"))},
        ]}),
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["object"], "list");
    assert_eq!(r.json["model"], "qwen2vl-tiny");
    let data = r.json["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    let cli = [
        cli_embed(&["--text", "Hello world"]),
        cli_embed(&[
            "--text",
            "Describe the shapes in this picture.",
            "--image",
            &image_arg,
        ]),
        cli_embed(&["--image", &image_arg]),
    ];
    let reference = ["text_short", "fused_1", "img_medium_333x250"];
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        let got = floats(&item["embedding"]);
        let diff = max_abs_diff(&got, &cli[i][0]);
        assert!(diff <= 1e-6, "input {i}: max |api - cli| = {diff}");
        let want = floats(&case(reference[i])["embedding_fp32"][0]);
        assert!(max_abs_diff(&got, &want) <= 1e-4);
    }
    let tokens = r.json["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(tokens > 20, "usage {}", r.json["usage"]);
    assert_eq!(r.json["usage"]["total_tokens"], tokens);

    // A single string, and base64 output (little-endian f32).
    let plain = s.post_json("/v1/embeddings", &json!({"input": "Hello world"}));
    let b64 = s.post_json(
        "/v1/embeddings",
        &json!({"input": "Hello world", "encoding_format": "base64"}),
    );
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.json["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(decoded, floats(&plain.json["data"][0]["embedding"]));

    let r = s.post_json(
        "/v1/embeddings",
        &json!({"input": "Hello world", "dimensions": 32}),
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("dimensions"));
    let r = s.post_json("/v1/embeddings", &json!({"input": [[1, 2, 3]]}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s.post_json("/v1/embeddings", &json!({"input": []}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[test]
fn seed_plan_embed_routes() {
    let s = TestServer::start();
    let r = s.post_json(
        "/embed/text",
        &json!({"texts": ["Hello world", "短文本"], "normalize": true}),
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["shape"], json!([2, 64]));
    let rows = r.json["embeddings"].as_array().unwrap();
    for (row, id) in rows
        .iter()
        .zip(["batch_texts_single_0", "batch_texts_single_2"])
    {
        let want = floats(&case(id)["embedding_fp32"][0]);
        assert!(max_abs_diff(&floats(row), &want) <= 1e-4);
    }
    let r = s.post_json("/embed/text", &json!({"texts": ["x"], "normalize": false}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let form = reqwest::multipart::Form::new().part(
        "file",
        file_part(image_bytes("img_wide_640x96"), "wide.png"),
    );
    let r = s.post_form("/embed/image", form);
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["shape"], json!([1, 64]));
    let want = floats(&case("img_wide_640x96")["embedding_fp32"][0]);
    assert!(max_abs_diff(&floats(&r.json["embeddings"][0]), &want) <= 1e-4);

    let r = s.post_json(
        "/embed/multimodal",
        &json!({"text": "这是什么图案？", "image_url": data_url(&image_bytes("img_wide_640x96"))}),
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let want = floats(&case("fused_2")["embedding_fp32"][0]);
    assert!(max_abs_diff(&floats(&r.json["embeddings"][0]), &want) <= 1e-4);
}

#[test]
fn api_keys_are_required_except_for_health() {
    let mut config = test_config();
    config.server.api_keys = vec!["k-one".into(), "k-two".into()];
    let mut s = TestServer::with_config(config);
    let r = s.get("/info");
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "unauthorized");
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    let r = s.post_json("/v1/embeddings", &json!({"input": "x"}));
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.get("/health").status, StatusCode::OK);
    s.key = Some("k-wrong".into());
    assert_eq!(s.get("/info").status, StatusCode::UNAUTHORIZED);
    s.key = Some("k-two".into());
    let r = s.get("/info");
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["auth"], true);
    let r = s.post_json("/v1/embeddings", &json!({"input": "x"}));
    assert_eq!(r.status, StatusCode::OK);
}

#[test]
fn concurrent_requests_are_batched_and_metrics_show_it() {
    let s = TestServer::start();
    s.create_collection("c");
    let texts: Vec<String> = (0..48)
        .map(|i| format!("concurrent request number {i} with some words"))
        .collect();
    let statuses = s.runtime.block_on(async {
        let mut tasks = Vec::new();
        for t in &texts {
            let rb = s
                .client
                .post(s.url("/v1/embeddings"))
                .json(&json!({"input": t}));
            tasks.push(tokio::spawn(
                async move { rb.send().await.unwrap().status() },
            ));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let r = s.send(s.client.get(s.url("/metrics")));
    assert_eq!(r.status, StatusCode::OK);
    let text = String::from_utf8(r.bytes).unwrap();
    let metric = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("{name} missing"))
            .parse()
            .unwrap()
    };
    assert!(metric("tkr_engine_max_batch_size ") > 1.0, "{text}");
    let batches = metric("tkr_engine_batch_size_count ");
    let inputs = metric("tkr_engine_batch_size_sum ");
    assert_eq!(inputs, 48.0);
    assert!(batches < 48.0, "{batches} batches for 48 inputs");
    assert!(text.contains(
        "tkr_http_requests_total{method=\"POST\",route=\"/v1/embeddings\",status=\"200\"} 48"
    ));
    assert!(text.contains("tkr_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/embeddings\",le=\"+Inf\"} 48"));
    assert!(text.contains("tkr_documents{collection=\"c\"} 0"));
    assert!(text.contains("tkr_engine_cache_hit_ratio"));
}

#[test]
fn every_documented_route_is_served() {
    let s = TestServer::start();
    let doc = s.get("/openapi.json").json;
    assert_eq!(doc["openapi"], "3.1.0");
    for (method, path) in tkr_embed::api::openapi::ROUTES {
        assert!(doc["paths"][path][method].is_object());
        let concrete = path.replace("{collection}", "nope").replace("{id}", "nope");
        let rb = match *method {
            "get" => s.client.get(s.url(&concrete)),
            "post" => s.client.post(s.url(&concrete)).json(&json!({})),
            "delete" => s.client.delete(s.url(&concrete)),
            other => panic!("{other}"),
        };
        let r = s.send(rb);
        // Whatever the answer, it is not "no such route".
        assert_ne!(r.code(), "not_found", "{method} {path}: {}", r.json);
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
    let info = s.get("/info").json;
    assert_eq!(info["model"]["dim"], 64);
    assert_eq!(info["model"]["dtype"], "float32");
    assert!(info["versions"]["tkr_embed"].is_string());
    // Which BLAS and kernel the server computes with, and whether that is slow.
    let blas = &info["model"]["blas"];
    assert_eq!(blas["library"], tkr_embed::model::runtime::blas());
    assert!(blas["summary"].is_string() && blas["kernel_chosen_by"].is_string());
    assert!(blas["slow_fallback"].is_boolean());
}

#[test]
fn image_urls_are_fetched_when_allowed_and_refused_when_private() {
    // A second server on loopback hands out the fixture image.
    let mut config = test_config();
    config.server.allow_private_urls = true;
    config.server.url_max_bytes = 200_000;
    config.server.url_timeout_secs = 1;
    let s = TestServer::with_config(config);
    let app = axum::Router::new()
        .route(
            "/img.png",
            axum::routing::get(|| async { image_bytes("img_tiny_20x30") }),
        )
        .route(
            "/big.png",
            axum::routing::get(|| async { vec![0u8; 300_000] }),
        )
        .route(
            "/slow.png",
            axum::routing::get(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                image_bytes("img_tiny_20x30")
            }),
        )
        .route(
            "/moved",
            axum::routing::get(|| async { axum::response::Redirect::temporary("/img.png") }),
        );
    let files = s.serve_other(app);
    s.create_collection("c");
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"id": "u", "image": format!("http://{files}/moved")}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let r = s.get("/collections/c/documents/u/content");
    assert_eq!(r.bytes, image_bytes("img_tiny_20x30"));
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"image": format!("http://{files}/big.png")}),
    );
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"image": format!("http://{files}/missing.png")}),
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert_eq!(r.code(), "url_fetch_failed");
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"image": format!("http://{files}/slow.png")}),
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert!(r.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("longer than 1 s"));
    assert_eq!(s.documents("c"), 1);
    drop(s);

    // Default configuration: loopback, private and link-local are refused,
    // by literal address and by name.
    let s = TestServer::start();
    s.create_collection("c");
    for url in [
        format!("http://{files}/img.png"),
        "http://localhost:9/img.png".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://[::1]/x.png".to_owned(),
        "http://10.0.0.1/x.png".to_owned(),
    ] {
        let r = s.post_json("/collections/c/documents", &json!({"image": url}));
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{url}: {}", r.json);
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("private"),
            "{url}: {}",
            r.json
        );
    }
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"image": "ftp://example.com/x.png"}),
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.documents("c"), 0);
}

#[test]
fn local_files_only_under_the_configured_root() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.png"), image_bytes("img_tiny_20x30")).unwrap();
    let outside = fixture_dir().join("images/img_wide_640x96.png");
    let mut config = test_config();
    config.server.file_root = Some(root.path().to_owned());
    let s = TestServer::with_config(config);
    s.create_collection("c");
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"image": "file://a.png"}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"image": format!("file://{}", outside.display())}),
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"image": "file://../../etc/passwd"}),
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);
    assert_eq!(r.code(), "outside_file_root");
    assert_eq!(s.documents("c"), 1);
    drop(s);

    let s = TestServer::start();
    s.create_collection("c");
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"image": format!("file://{}", outside.display())}),
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "file_access_disabled");
}

/// The binary: `serve --port 0` prints its address, answers, and on SIGTERM
/// finishes the request in flight, checkpoints and exits 0.
#[test]
fn serve_binary_shuts_down_gracefully() {
    let _mlx = crate::mlx_lock();
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tkr-embed"))
        .arg("--model")
        .arg(fixture_dir().join("model"))
        .arg("--data-dir")
        .arg(data.path())
        .args(["serve", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    runtime.block_on(async {
        let r = client
            .post(format!("{base}/collections"))
            .json(&json!({"name": "c"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        // A slow request (several large images), then SIGTERM while it runs.
        let images: Vec<Value> = (0..8)
            .map(|_| json!({"image": data_url(&image_bytes("img_large_1300x850"))}))
            .collect();
        let slow = tokio::spawn(
            client
                .post(format!("{base}/v1/embeddings"))
                .json(&json!({"input": images}))
                .send(),
        );
        let r = client
            .post(format!("{base}/collections/c/documents"))
            .json(&json!({"id": "kept", "text": "still here after restart"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        // The signal goes out once the slow request's inputs are queued
        // (the engine has counted them) and before its answer arrives.
        loop {
            let metrics = client
                .get(format!("{base}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let submitted: f64 = metrics
                .lines()
                .find_map(|l| l.strip_prefix("tkr_engine_requests_total "))
                .unwrap()
                .parse()
                .unwrap();
            if submitted >= 9.0 {
                break;
            }
            assert!(!slow.is_finished(), "the slow request finished too early");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(
            !slow.is_finished(),
            "the slow request finished before the signal"
        );
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let r = slow.await.unwrap().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["data"].as_array().unwrap().len(), 8);
    });
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("stopped cleanly"), "{stderr}");
    // The index was checkpointed and the document is there after restart.
    assert!(data.path().join("index/c1.ckpt").exists());
    let out = Command::new(env!("CARGO_BIN_EXE_tkr-embed"))
        .arg("--data-dir")
        .arg(data.path())
        .args(["get", "-c", "c", "kept", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["text"], "still here after restart");
}

#[test]
fn lexical_and_hybrid_search_over_http() {
    let s = TestServer::start();
    let r = s.post_json(
        "/collections",
        &json!({"name": "rag", "text_fields": ["title"]}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["text_fields"], json!(["title"]));
    let docs = [
        ("inv", "invoice QX-48213 is overdue", "Billing"),
        ("memo", "meeting notes about the invoice", "Minutes"),
        ("trip", "photos from the holiday", "Lisbon trip"),
    ];
    for (id, text, title) in docs {
        let r = s.post_json(
            "/collections/rag/documents",
            &json!({"id": id, "text": text, "metadata": {"title": title}}),
        );
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    }
    let search = |body: Value| s.post_json("/collections/rag/search", &body);

    let r = search(json!({"text": "qx-48213", "mode": "lexical", "include": ["chunk", "scores"]}));
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let hits = r.json["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["id"], "inv");
    assert_eq!(hits[0]["chunk"], "invoice QX-48213 is overdue");
    assert!(
        hits[0]["scores"].is_null(),
        "only hybrid hits have per-list scores"
    );
    // The title (a text field) matches; filters apply.
    let r = search(json!({"text": "lisbon", "mode": "lexical"}));
    assert_eq!(r.json["hits"][0]["id"], "trip");
    let r = search(json!({"text": "invoice", "mode": "lexical",
        "filter": {"field": "title", "eq": "Minutes"}}));
    let hits = r.json["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["id"], "memo");

    // Hybrid: the text is embedded and matched; the code decides.
    let r = search(json!({"text": "QX-48213", "mode": "hybrid", "include": ["scores"]}));
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let hits = r.json["hits"].as_array().unwrap();
    assert_eq!(hits[0]["id"], "inv", "{}", r.json);
    assert_eq!(hits[0]["scores"]["lexical"]["rank"], 1);
    assert_eq!(hits.len(), 3, "the vector list brings the rest");
    let r = search(json!({"text": "invoice", "mode": "hybrid", "rrf_k": 10,
        "weights": {"vector": 0.5, "lexical": 2}}));
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // An image has no lexical part: hybrid is vector search then.
    let png = image_bytes("img_medium_333x250");
    let r = search(json!({"image": data_url(&png), "mode": "hybrid", "k": 2}));
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["hits"].as_array().unwrap().len(), 2);

    let r = search(json!({"text": "invoice", "mode": "lexical", "group_by": "segment"}));
    assert_eq!(r.json["hits"].as_array().unwrap().len(), 2, "{}", r.json);
    // Multi-part queries: a part pulling to the memo's text, one pushing
    // away from the invoice's.
    let r = search(json!({"queries": [
        {"text": "meeting notes about the invoice"},
        {"text": "invoice QX-48213 is overdue", "weight": -0.5}], "k": 3}));
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["hits"][0]["id"], "memo", "{}", r.json);
    let r =
        search(json!({"queries": [{"text": "QX-48213"}], "mode": "hybrid", "include": ["scores"]}));
    assert_eq!(r.json["hits"][0]["id"], "inv", "{}", r.json);
    for (body, needle) in [
        (
            json!({"queries": [{"text": "a"}], "text": "b"}),
            "one or the other",
        ),
        (json!({"queries": []}), "1 to 8"),
        (
            json!({"text": "a", "group_by": "page"}),
            "document or segment",
        ),
        (json!({"queries": [{"weight": 1}]}), "queries[0]"),
        (
            json!({"queries": [{"text": "a"}, {"text": "a", "weight": -1}]}),
            "cancel out",
        ),
        (
            json!({"image": data_url(&png), "mode": "lexical"}),
            "lexical",
        ),
        (
            json!({"text": "x", "mode": "fuzzy"}),
            "vector, lexical or hybrid",
        ),
        (
            json!({"text": "x", "mode": "hybrid", "weights": {"vector": -1}}),
            "weights",
        ),
        (
            json!({"text": "x", "mode": "hybrid", "weights": {"vectr": 1}}),
            "vectr",
        ),
    ] {
        let r = search(body.clone());
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.json);
        let message = r.json["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
}

/// The acceptance run over a real socket with the tiny model:
/// 2,000 documents of random words, each with a unique code.
#[test]
fn codes_are_found_first_by_lexical_and_hybrid_search() {
    let s = TestServer::start();
    s.create_collection("codes");
    let vocabulary: Vec<String> = (0..300).map(|i| format!("w{}x{}", i * 7 % 97, i)).collect();
    let mut state = 12345u64;
    let mut next = move |n: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize % n
    };
    let mut docs = Vec::new();
    for i in 0..2000 {
        let mut words: Vec<String> = (0..20).map(|_| vocabulary[next(300)].clone()).collect();
        let code = format!("QX-{}", 10_000 + i * 37);
        words.insert(next(20), code.clone());
        let text = words.join(" ");
        let r = s.post_json(
            "/collections/codes/documents",
            &json!({"id": format!("d{i}"), "text": text}),
        );
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        docs.push((code, text));
    }
    let first = |body: Value| -> String {
        let r = s.post_json("/collections/codes/search", &body);
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        r.json["hits"][0]["id"].as_str().unwrap_or("").to_owned()
    };
    let (mut lexical, mut hybrid, mut vector) = (0, 0, 0);
    for i in (0..2000).step_by(10) {
        let (code, _) = &docs[i];
        let want = format!("d{i}");
        lexical += usize::from(first(json!({"text": code, "mode": "lexical"})) == want);
        hybrid += usize::from(first(json!({"text": code, "mode": "hybrid"})) == want);
        vector += usize::from(first(json!({"text": code})) == want);
    }
    eprintln!("codes first of 200: lexical {lexical}, hybrid {hybrid}, vector {vector}");
    assert!(lexical >= 198, "lexical {lexical}");
    assert!(hybrid >= 198, "hybrid {hybrid}");
    // A document's whole text finds it first in every mode.
    for i in [0usize, 999, 1998] {
        let (_, text) = &docs[i];
        for mode in ["vector", "lexical", "hybrid"] {
            assert_eq!(
                first(json!({"text": text, "mode": mode})),
                format!("d{i}"),
                "{mode}"
            );
        }
    }
}
