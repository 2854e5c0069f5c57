//! Media over HTTP: video and PDF uploads become documents whose hits name
//! the segment (time range, page); `/embed/video`; fused multi-image
//! documents; bad media answered 4xx with the server still up.
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::http_common::{data_url, file_part, image_bytes, test_config, TestServer};
use crate::media_ingest::media;
use crate::model_parity::{floats, max_abs_diff};

pub fn upload(s: &TestServer, path: &str, name: &str, id: &str) -> crate::http_common::Response {
    let bytes = std::fs::read(media(name)).unwrap();
    let form = reqwest::multipart::Form::new()
        .part("file", file_part(bytes, name))
        .text("id", id.to_owned());
    s.post_form(path, form)
}

#[test]
fn video_and_pdf_uploads_report_their_segments() {
    let mut config = test_config();
    config.processing.max_video_frames = 4;
    config.processing.pdf_render_max_side = 100;
    let s = TestServer::with_config(config);
    s.create_collection("m");
    let r = upload(&s, "/collections/m/documents", "video.mp4", "clip");
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["modality"], "video");
    let r = upload(&s, "/collections/m/documents", "three_pages.pdf", "doc");
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["modality"], "document");

    let doc = s.get("/collections/m/documents/clip").json;
    assert_eq!(doc["segments"].as_array().unwrap().len(), 4);
    assert_eq!(doc["metadata"]["filename"], "video.mp4");
    let content = s.get("/collections/m/documents/clip/content");
    assert_eq!(content.headers["content-type"], "video/mp4");
    assert_eq!(content.headers["x-content-type-options"], "nosniff");
    assert_eq!(content.bytes, std::fs::read(media("video.mp4")).unwrap());

    // /embed/video: the same frames, with times.
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            file_part(std::fs::read(media("video.mp4")).unwrap(), "v.mp4"),
        )
        .text("max_frames", "4")
        .text("pooling", "mean");
    let r = s.post_form("/embed/video", form);
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["shape"], json!([1, 64]));
    assert_eq!(r.json["duration_s"], 4.0);
    let segments = r.json["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 4);
    for (i, seg) in segments.iter().enumerate() {
        assert_eq!(seg["start_s"], i as f64);
        assert_eq!(seg["end_s"], (i + 1) as f64);
        let t = seg["time_s"].as_f64().unwrap();
        assert!(t >= i as f64 + 0.5 && t < i as f64 + 0.6, "frame time {t}");
    }
    let stored = s.db.get_vectors("m", "clip").unwrap().unwrap();
    assert!(max_abs_diff(&floats(&r.json["embeddings"][0]), &stored[0]) <= 1e-5);

    // Searching with the third segment's vector: the video, at 2..3 s.
    let third = floats(&segments[2]["embedding"]);
    let r = s.post_json("/collections/m/search", &json!({"vector": third, "k": 1}));
    let hit = &r.json["hits"][0];
    assert_eq!(hit["id"], "clip");
    assert_eq!(hit["segment"], json!({"start_s": 2.0, "end_s": 3.0}));
    // A PDF page's vector finds its page.
    let page_two = &s.db.get_vectors("m", "doc").unwrap().unwrap()[2];
    let r = s.post_json(
        "/collections/m/search",
        &json!({"vector": page_two, "k": 1}),
    );
    assert_eq!(r.json["hits"][0]["id"], "doc");
    assert_eq!(r.json["hits"][0]["segment"], json!({"page": 2}));
}

#[test]
fn fused_documents_hold_text_and_several_images() {
    let s = TestServer::start();
    s.create_collection("f");
    let images = [
        data_url(&image_bytes("img_medium_333x250")),
        data_url(&image_bytes("img_wide_640x96")),
    ];
    let r = s.post_json(
        "/collections/f/documents",
        &json!({"id": "pair", "text": "Two pictures", "images": images}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["modality"], "fused");
    let stored = &s.db.get_vectors("f", "pair").unwrap().unwrap()[0];
    let r = s.post_json(
        "/v1/embeddings",
        &json!({"input": [
            {"text": "Two pictures", "images": images},
            {"text": "Two pictures", "image": images[0]},
        ]}),
    );
    let both = floats(&r.json["data"][0]["embedding"]);
    let first_only = floats(&r.json["data"][1]["embedding"]);
    assert!(max_abs_diff(stored, &both) <= 1e-5);
    // Both images are in the prompt: the second one changes the vector.
    assert!(max_abs_diff(stored, &first_only) > 1e-3);
    // At most 16 images fused into one input, for documents and embeddings.
    let many: Vec<&String> = (0..17).map(|_| &images[1]).collect();
    for (path, body) in [
        ("/collections/f/documents", json!({"images": many})),
        ("/v1/embeddings", json!({"input": [{"images": many}]})),
    ] {
        let r = s.post_json(path, &body);
        assert_eq!(
            r.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{path}: {}",
            r.json
        );
        let message = r.json["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("17 images in one input"),
            "{path}: {message}"
        );
    }
    // The first image is the stored content.
    let content = s.get("/collections/f/documents/pair/content");
    assert_eq!(content.bytes, image_bytes("img_medium_333x250"));
}

#[test]
fn bad_media_uploads_are_4xx_and_the_server_stays_up() {
    let s = TestServer::start();
    s.create_collection("m");
    let docs = "/collections/m/documents";
    for (name, status) in [
        ("truncated_mid.mp4", StatusCode::BAD_REQUEST),
        ("truncated_head.mp4", StatusCode::BAD_REQUEST),
        ("audio_only.mp4", StatusCode::BAD_REQUEST),
        ("encrypted.pdf", StatusCode::BAD_REQUEST),
        ("corrupt.pdf", StatusCode::BAD_REQUEST),
        // Text in a file named .mp4, and an empty file: not a supported file.
        ("not_a_video.mp4", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("empty.mp4", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ] {
        let r = upload(&s, docs, name, name);
        assert_eq!(r.status, status, "{name}: {}", r.json);
        // Messages name the upload, not our temporary file.
        let message = r.json["error"]["message"].as_str().unwrap();
        assert!(!message.contains("tkr-upload-"), "{message}");
    }
    let form = reqwest::multipart::Form::new().part(
        "file",
        file_part(std::fs::read(media("three_pages.pdf")).unwrap(), "x.mp4"),
    );
    let r = s.post_form("/embed/video", form);
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert_eq!(r.code(), "invalid_media");
    assert_eq!(s.documents("m"), 0);
    assert_eq!(s.get("/health").status, StatusCode::OK);
    let r = s.post_json(docs, &json!({"text": "still working"}));
    assert_eq!(r.status, StatusCode::CREATED);
    // A failed replacement leaves the stored document as it was.
    let r = upload(&s, docs, "video.mp4", "keep");
    assert_eq!(r.status, StatusCode::CREATED);
    let before = s.get("/collections/m/documents/keep").json;
    let r = upload(&s, docs, "truncated_mid.mp4", "keep");
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.get("/collections/m/documents/keep").json, before);
    // Uploaded HTML is never served as a page of this origin.
    let form = reqwest::multipart::Form::new().part(
        "file",
        file_part(
            b"<html><body><script>alert(1)</script>hi</body></html>".to_vec(),
            "x.html",
        ),
    );
    let r = s.post_form(docs, form);
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let id = r.json["id"].as_str().unwrap().to_owned();
    let content = s.get(&format!("/collections/m/documents/{id}/content"));
    assert_eq!(content.headers["content-disposition"], "attachment");
    assert_eq!(content.headers["content-security-policy"], "sandbox");
    drop(s);

    // Over the configured limits: 413.
    let mut config = test_config();
    config.processing.max_pdf_pages = 2;
    config.processing.max_video_seconds = 3;
    let s = TestServer::with_config(config);
    s.create_collection("m");
    for name in ["three_pages.pdf", "video.mp4"] {
        let r = upload(&s, docs, name, name);
        assert_eq!(
            r.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{name}: {}",
            r.json
        );
        assert_eq!(r.code(), "media_too_large");
    }
    assert_eq!(s.documents("m"), 0);
}

/// A small text PDF (Helvetica, one text line per 8 words) for tests that
/// need more text than the fixtures have.
fn text_pdf(pages: &[String]) -> Vec<u8> {
    let mut objects: Vec<String> = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".into(),
        format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            (0..pages.len())
                .map(|i| format!("{} 0 R", 4 + 2 * i))
                .collect::<Vec<_>>()
                .join(" "),
            pages.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".into(),
    ];
    for (i, text) in pages.iter().enumerate() {
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
            5 + 2 * i
        ));
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut stream = String::from("BT /F1 10 Tf 40 750 Td 14 TL\n");
        for line in words.chunks(8) {
            stream.push_str(&format!("({}) Tj T*\n", line.join(" ")));
        }
        stream.push_str("ET");
        objects.push(format!(
            "<< /Length {} >>\nstream\n{stream}\nendstream",
            stream.len()
        ));
    }
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for offset in offsets {
        out.extend(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

#[test]
fn pdf_chunks_come_back_per_segment_with_pages_byte_ranges_and_text() {
    let mut config = test_config();
    config.processing.pdf_render_max_side = 100;
    config.processing.chunk_tokens = 16;
    config.processing.chunk_overlap_tokens = 2;
    let s = TestServer::with_config(config);
    s.create_collection("pdfs");
    let filler = "the quarterly report lists sales figures for every region and month";
    let pages: Vec<String> = ["harbor", "volcano", "glacier"]
        .iter()
        .map(|word| format!("{filler} {word} {filler} {filler}"))
        .collect();
    let form = reqwest::multipart::Form::new()
        .part("file", file_part(text_pdf(&pages), "report.pdf"))
        .text("id", "report");
    let r = s.post_form("/collections/pdfs/documents", form);
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let doc = s.get("/collections/pdfs/documents/report").json;
    assert!(
        doc["metadata"]["media"]["chunks"].as_u64().unwrap() >= 6,
        "{doc}"
    );

    let search = |body: Value| {
        let r = s.post_json("/collections/pdfs/search", &body);
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        r.json["hits"].as_array().unwrap().clone()
    };
    for (word, page) in [("harbor", 1), ("volcano", 2), ("glacier", 3)] {
        let hits = search(
            json!({"text": word, "mode": "lexical", "group_by": "segment",
            "include": ["chunk", "highlights"]}),
        );
        assert_eq!(hits[0]["id"], "report");
        let segment = &hits[0]["segment"];
        assert_eq!(segment["page"], page, "{word}: {segment}");
        let chunk = hits[0]["chunk"].as_str().unwrap();
        assert!(chunk.contains(word), "{word}: {chunk}");
        // Highlights: byte ranges of the query's words in the chunk.
        let marks = hits[0]["highlights"].as_array().unwrap();
        assert_eq!(marks.len(), 1, "{word}: {marks:?}");
        let (a, b) = (
            marks[0][0].as_u64().unwrap() as usize,
            marks[0][1].as_u64().unwrap() as usize,
        );
        assert_eq!(&chunk[a..b], word);
        // The byte range is the chunk's place in the document text.
        let (start, end) = (
            segment["start"].as_u64().unwrap(),
            segment["end"].as_u64().unwrap(),
        );
        assert_eq!(end - start, chunk.len() as u64);
    }
    // A word on every page: several chunks of the one PDF, on all pages.
    let hits =
        search(json!({"text": "quarterly", "mode": "lexical", "group_by": "segment", "k": 20}));
    assert!(hits.len() >= 3, "{hits:?}");
    assert!(hits.iter().all(|h| h["id"] == "report"));
    let mut pages_seen: Vec<u64> = hits
        .iter()
        .filter_map(|h| h["segment"]["page"].as_u64())
        .collect();
    pages_seen.sort();
    pages_seen.dedup();
    assert_eq!(pages_seen, [1, 2, 3]);
    // Per document: one hit.
    let hits = search(json!({"text": "quarterly", "mode": "lexical"}));
    assert_eq!(hits.len(), 1);
    // Hybrid per segment works on the same chunks.
    let hits = search(json!({"text": "volcano", "mode": "hybrid", "group_by": "segment", "k": 5}));
    assert!(hits.iter().filter(|h| h["id"] == "report").count() >= 2);
}
