//! Regression tests for what an attacker found against `serve` (issue 16):
//! each fails without its fix.
use reqwest::StatusCode;
use serde_json::json;

use crate::http_common::TestServer;

fn unit(i: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; 64];
    v[i] = 1.0;
    v
}

#[test]
fn a_vector_of_tiny_numbers_cannot_poison_a_collection() {
    let s = TestServer::start();
    s.create_collection("c");
    for (id, vector) in [("a", unit(0)), ("b", unit(1))] {
        let r = s.post_json(
            "/collections/c/documents",
            &json!({"id": id, "vector": vector}),
        );
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    }
    // 64 × 1e-45: subnormal; its norm's inverse does not fit an f32.
    let tiny = vec![1e-45f32; 64];
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"id": "tiny", "vector": tiny}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);

    // Other queries still find their own document first, exactly.
    let r = s.post_json(
        "/collections/c/search",
        &json!({"vector": unit(0), "k": 3, "include": ["vector"]}),
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let hits = r.json["hits"].as_array().unwrap();
    assert_eq!(hits[0]["id"], "a");
    assert!((hits[0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-6);
    for hit in hits {
        let score = hit["score"].as_f64().unwrap();
        assert!(score.is_finite() && score <= 1.0 + 1e-6, "{hit}");
        if hit["id"] == "tiny" {
            assert!((score - 0.125).abs() < 1e-4, "{hit}");
        }
    }
    // And the tiny vector as a query has a direction like any other.
    let r = s.post_json("/collections/c/search", &json!({"vector": tiny, "k": 3}));
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["hits"][0]["id"], "tiny");
    assert!((r.json["hits"][1]["score"].as_f64().unwrap() - 0.125).abs() < 1e-4);

    // Vectors without a direction are refused, stored or asked.
    for bad in [vec![0.0f32; 64], vec![f32::MIN_POSITIVE * 0.0; 64]] {
        let r = s.post_json(
            "/collections/c/documents",
            &json!({"id": "zero", "vector": bad}),
        );
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    }
    assert_eq!(s.documents("c"), 3);
}

#[test]
fn a_fifo_under_the_file_root_is_refused_without_blocking() {
    let root = tempfile::tempdir().unwrap();
    let fifo = root.path().join("pipe.png");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let mut config = crate::http_common::test_config();
    config.server.file_root = Some(root.path().canonicalize().unwrap());
    config.server.timeout_secs = 20;
    let s = TestServer::with_config(config);
    s.create_collection("c");
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let r = s.post_json(
            "/collections/c/documents",
            &json!({"image": "file://pipe.png"}),
        );
        // Before the fix, opening the FIFO waited for a writer: 503 timeout.
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
        assert!(r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a regular file"));
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(s.documents("c"), 0);
}

#[test]
fn five_redirects_are_followed_and_a_sixth_is_refused() {
    let mut config = crate::http_common::test_config();
    config.server.allow_private_urls = true;
    let s = TestServer::with_config(config);
    let app = axum::Router::new()
        .route(
            "/img.png",
            axum::routing::get(|| async { crate::http_common::image_bytes("img_tiny_20x30") }),
        )
        .route(
            "/r/{n}",
            axum::routing::get(
                |axum::extract::Path(n): axum::extract::Path<u32>| async move {
                    let next = match n {
                        0 => "/img.png".to_owned(),
                        n => format!("/r/{}", n - 1),
                    };
                    axum::response::Redirect::temporary(&next)
                },
            ),
        );
    let files = s.serve_other(app);
    s.create_collection("c");
    // /r/4 → /r/3 → … → /r/0 → /img.png: five redirects.
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"image": format!("http://{files}/r/4")}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"image": format!("http://{files}/r/5")}),
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert!(r.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("more than 5 redirects"));
    assert_eq!(s.documents("c"), 1);
}

#[test]
fn trailing_garbage_and_repeated_form_parts_are_refused() {
    let s = TestServer::start();
    s.create_collection("c");
    let vector: Vec<f32> = unit(3);
    let body = format!("{} xyz", json!({"id": "u8", "vector": vector}));
    let r = s.send(
        s.client
            .post(s.url("/collections/c/documents"))
            .header("content-type", "application/json")
            .body(body),
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert!(r.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("trailing characters"));
    // Whitespace after the value is fine.
    let r = s.send(
        s.client
            .post(s.url("/collections/c/documents"))
            .header("content-type", "application/json")
            .body(format!("{}\n  ", json!({"id": "ok", "vector": vector}))),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);

    let png = crate::http_common::image_bytes("img_tiny_20x30");
    let two_files = reqwest::multipart::Form::new()
        .part("file", crate::http_common::file_part(png.clone(), "a.png"))
        .part("file", crate::http_common::file_part(png.clone(), "b.png"));
    let r = s.post_form("/collections/c/documents", two_files);
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert!(r.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("more than one `file`"));
    let two_ids = reqwest::multipart::Form::new()
        .part("file", crate::http_common::file_part(png, "a.png"))
        .text("id", "x")
        .text("id", "y");
    let r = s.post_form("/collections/c/documents", two_ids);
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert!(r.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("more than once"));
    assert_eq!(s.documents("c"), 1);
}

#[test]
fn dot_ids_are_refused_because_no_url_can_reach_them() {
    let s = TestServer::start();
    s.create_collection("c");
    let png = crate::http_common::image_bytes("img_tiny_20x30");
    for id in [".", ".."] {
        let r = s.post_json(
            "/collections/c/documents",
            &json!({"id": id, "image": crate::http_common::data_url(&png)}),
        );
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{id}: {}", r.json);
        assert!(r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("URL path segment"));
    }
    // Dots with anything else are ordinary ids.
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"id": "...", "image": crate::http_common::data_url(&png)}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let doc = s.get("/collections/c/documents/...");
    let content = s.get(doc.json["content_url"].as_str().unwrap());
    assert_eq!(content.bytes, png);
    assert_eq!(s.documents("c"), 1);
}

#[test]
fn slow_and_idle_connections_are_closed_and_capped() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    let mut config = crate::http_common::test_config();
    config.server.header_timeout_secs = 1;
    config.server.max_connections = 8;
    let s = TestServer::with_config(config);
    // Closed by the server: a read returns end of file (or a reset).
    let closed_within = |stream: &mut TcpStream, limit: Duration| {
        stream.set_read_timeout(Some(limit)).unwrap();
        let mut buf = [0u8; 256];
        match stream.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    };
    let started = Instant::now();
    // Eight hold every slot: four say nothing, four send half a header.
    let mut held: Vec<TcpStream> = (0..8)
        .map(|i| {
            let mut c = TcpStream::connect(s.addr).unwrap();
            if i % 2 == 1 {
                c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
            }
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // A ninth is over the cap: closed at once.
    let mut extra = TcpStream::connect(s.addr).unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_millis(900)),
        "over the cap"
    );
    // The held ones are closed by the header timeout, not kept for ever.
    for (i, c) in held.iter_mut().enumerate() {
        assert!(
            closed_within(c, Duration::from_secs(5)),
            "connection {i} kept open"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // And the server answers again.
    assert_eq!(s.get("/health").status, StatusCode::OK);
    // A connection that talks in time is served, and may be reused.
    let mut c = TcpStream::connect(s.addr).unwrap();
    for _ in 0..2 {
        c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 512];
        let n = c.read(&mut buf).unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
}

#[test]
fn a_vector_only_document_reports_modality_vector() {
    let s = TestServer::start();
    s.create_collection("c");
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"id": "v", "vector": unit(3)}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["modality"], "vector", "{}", r.json);
    assert_eq!(
        s.get("/collections/c/documents/v").json["modality"],
        "vector"
    );
    // With text beside it, the text's modality.
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"id": "t", "vector": unit(4), "text": "a caption"}),
    );
    assert_eq!(r.json["modality"], "text", "{}", r.json);
    // And the filter language knows it.
    let r = s.post_json(
        "/collections/c/search",
        &json!({"vector": unit(4), "k": 5, "filter": {"modality": "vector"}}),
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let ids: Vec<&str> = r.json["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["v"]);
}

#[test]
fn document_text_over_the_limit_is_refused_before_embedding() {
    let mut config = crate::http_common::test_config();
    config.processing.max_document_text_bytes = 1000;
    let s = TestServer::with_config(config);
    s.create_collection("c");
    let limit_named = |r: &crate::http_common::Response| {
        r.json["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("processing.max_document_text_bytes")
    };
    // Exactly the limit is fine; one byte more is not.
    let fits = "word ".repeat(200);
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"id": "fits", "text": fits}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let over = format!("{fits}x");
    let r = s.post_json(
        "/collections/c/documents",
        &json!({"id": "over", "text": over}),
    );
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);
    assert_eq!(r.json["error"]["code"], "payload_too_large", "{}", r.json);
    assert!(limit_named(&r), "{}", r.json);
    // A text file, and an HTML file whose extracted text is over the limit.
    for (name, bytes) in [
        ("big.txt", over.clone().into_bytes()),
        (
            "big.html",
            format!("<html><body><p>{over}</p></body></html>").into_bytes(),
        ),
    ] {
        let form = reqwest::multipart::Form::new()
            .part("file", crate::http_common::file_part(bytes, name))
            .text("id", "file");
        let r = s.post_form("/collections/c/documents", form);
        assert_eq!(
            r.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{name}: {}",
            r.json
        );
        assert!(limit_named(&r), "{}", r.json);
    }
    // Nothing of the refused documents was stored.
    for id in ["over", "file"] {
        let r = s.get(&format!("/collections/c/documents/{id}"));
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{id}");
    }
    assert_eq!(
        s.get("/info").json["limits"]["max_document_text_bytes"],
        1000
    );
}
