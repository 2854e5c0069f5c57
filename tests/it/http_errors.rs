//! Bad input over HTTP: each case gets the right 4xx with a JSON error body
//! (checked by `TestServer::send`) and nothing is stored.
use reqwest::StatusCode;
use serde_json::json;

use crate::http_common::{data_url, file_part, image_bytes, test_config, TestServer};
use crate::preprocess::crc32;

/// A PNG that declares `width`×`height` pixels: a valid header and a tiny
/// compressed body of one colour (a decompression bomb in miniature).
fn large_png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(width, height, image::Rgb([200, 30, 30]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A PNG whose header declares `width`×`height` followed by a stub of pixel
/// data (a zlib header, nothing more): if the pixel limit were checked after
/// decoding, this would be a decode error (400), not the limit (413).
fn header_only_png(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    let idat = b"IDAT\x78\x9c";
    png.extend(2u32.to_be_bytes());
    png.extend(idat);
    png.extend(crc32(idat).to_be_bytes());
    png.extend(0u32.to_be_bytes());
    png.extend(b"IEND");
    png.extend(crc32(b"IEND").to_be_bytes());
    png
}

#[test]
fn bad_input_is_a_json_4xx_and_nothing_is_stored() {
    let mut config = test_config();
    config.server.max_body_bytes = 256 * 1024;
    config.server.max_image_pixels = 2_000_000;
    config.server.max_inputs_per_request = 4;
    let s = TestServer::with_config(config);
    s.create_collection("c");
    let png = image_bytes("img_medium_333x250");
    let docs = "/collections/c/documents";

    // Corrupt image: random bytes with a PNG signature, and a truncated PNG.
    let mut corrupt = b"\x89PNG\r\n\x1a\n".to_vec();
    corrupt.extend((0..500u32).map(|i| (i * 7919 % 251) as u8));
    let truncated = png[..png.len() / 2].to_vec();
    for (what, bytes) in [("corrupt", corrupt), ("truncated", truncated)] {
        let r = s.post_json(docs, &json!({"image": data_url(&bytes)}));
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.json);
        assert_eq!(r.code(), "invalid_image", "{what}");
        let form = reqwest::multipart::Form::new().part("file", file_part(bytes, "x.png"));
        let r = s.post_form(docs, form);
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{what} multipart: {}",
            r.json
        );
    }
    // Not an image at all.
    let form = reqwest::multipart::Form::new().part(
        "file",
        file_part(b"just some text, not an image".to_vec(), "notes.png"),
    );
    let r = s.post_form(docs, form);
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.json);
    // Not base64 / not a URL.
    let r = s.post_json(docs, &json!({"image": "%%% not an image reference %%%"}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Huge dimensions: refused from the header, before decoding.
    let r = s.post_json(docs, &json!({"image": data_url(&large_png(2000, 1500))}));
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);
    assert_eq!(r.code(), "image_too_large");
    let r = s.post_json(
        docs,
        &json!({"image": data_url(&header_only_png(50_000, 50_000))}),
    );
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);
    assert!(r.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("50000x50000"));
    // Too many images fused into one input.
    let many: Vec<String> = (0..17).map(|_| data_url(&png)).collect();
    let r = s.post_json(docs, &json!({"images": many}));
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);

    // Wrong content type, invalid JSON, wrong field types, unknown fields.
    let r = s.send(
        s.client
            .post(s.url(docs))
            .header("content-type", "text/plain")
            .body("hello"),
    );
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = s.send(
        s.client
            .post(s.url(docs))
            .header("content-type", "application/json")
            .body("{\"text\": "),
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s.post_json(docs, &json!({"text": 42}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("text"));
    let r = s.post_json(docs, &json!({"txet": "typo"}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s.post_json(docs, &json!({"text": "x", "metadata": [1, 2]}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s.post_json(docs, &json!({}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s.post_json(docs, &json!({"vector": [0.5, 0.5]}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "wrong dimension");
    let r = s.post_json(docs, &json!({"id": "", "text": "x"}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "empty id");
    // Invalid UTF-8 in a JSON body.
    let r = s.send(
        s.client
            .post(s.url(docs))
            .header("content-type", "application/json")
            .body(b"{\"text\": \"\xff\xfe\"}".to_vec()),
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Oversized body (limit 256 KiB).
    let big = "a".repeat(300 * 1024);
    let r = s.post_json(docs, &json!({"text": big}));
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);
    let form =
        reqwest::multipart::Form::new().part("file", file_part(vec![7u8; 300 * 1024], "x.png"));
    let r = s.post_form(docs, form);
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);

    // Too many inputs in one request.
    let r = s.post_json(
        "/v1/embeddings",
        &json!({"input": ["a", "b", "c", "d", "e"]}),
    );
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Private address URL.
    let r = s.post_json(docs, &json!({"image": "http://127.0.0.1:1/x.png"}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "private_address");

    // Unknown collection: refused before any embedding, for insert and search.
    let r = s.post_json("/collections/nope/documents", &json!({"text": "x"}));
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "collection_not_found");
    let r = s.post_json("/collections/nope/search", &json!({"text": "x"}));
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = s.post_json("/collections", &json!({"name": "bad/name"}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Search errors.
    let search = "/collections/c/search";
    let r = s.post_json(
        search,
        &json!({"text": "x", "filter": {"field": "a", "bogus": 1}}),
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "invalid_filter");
    let r = s.post_json(search, &json!({"text": "x", "k": 0}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s.post_json(search, &json!({"text": "x", "document_id": "y"}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s.post_json(search, &json!({"document_id": "missing"}));
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = s.post_json(search, &json!({"text": "x", "include": ["everything"]}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Unknown route and wrong method are JSON too.
    assert_eq!(s.get("/nope").status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.send(s.client.put(s.url("/collections"))).status,
        StatusCode::METHOD_NOT_ALLOWED
    );

    assert_eq!(s.documents("c"), 0, "a bad request stored something");
    // …and the server still works.
    let r = s.post_json(docs, &json!({"image": data_url(&png)}));
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(s.documents("c"), 1);
}
