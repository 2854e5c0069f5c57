//! What the web page needs from the server: the page's own files (served
//! without a key, with a strict content security policy), `Range` requests
//! on content, and thumbnails of images, PDF pages and video segments.
use reqwest::StatusCode;
use serde_json::json;

use crate::http_common::{data_url, image_bytes, test_config, TestServer};
use crate::media_ingest::media;

fn upload(s: &TestServer, name: &str, id: &str) {
    let r = crate::http_media::upload(s, "/collections/m/documents", name, id);
    assert_eq!(r.status, StatusCode::CREATED, "{name}: {}", r.json);
}

fn jpeg(bytes: &[u8]) -> image::RgbImage {
    image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)
        .expect("a JPEG")
        .to_rgb8()
}

/// The mean colour of an image's middle quarter.
fn middle_colour(img: &image::RgbImage) -> [f64; 3] {
    let (w, h) = img.dimensions();
    let mut sum = [0.0; 3];
    let mut n = 0.0;
    for y in h / 4..3 * h / 4 {
        for x in w / 4..3 * w / 4 {
            let p = img.get_pixel(x, y);
            for c in 0..3 {
                sum[c] += f64::from(p[c]);
            }
            n += 1.0;
        }
    }
    sum.map(|v| v / n)
}

#[test]
fn the_page_is_served_without_a_key_and_the_api_still_needs_one() {
    let mut config = test_config();
    config.server.api_keys = vec!["k".into()];
    let s = TestServer::with_config(config);
    for (path, kind) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let r = s.get(path);
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let content_type = r.headers["content-type"].to_str().unwrap();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        let csp = r.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    }
    let page = String::from_utf8(s.get("/").bytes).unwrap();
    for hook in [
        "search-input",
        "image-query",
        "upload",
        "collection-select",
        "api-key",
    ] {
        assert!(page.contains(&format!("data-testid=\"{hook}\"")), "{hook}");
    }
    // Nothing from another origin: every src and href is this server's or
    // a data URL.
    for attribute in ["src=\"", "href=\""] {
        for value in page.split(attribute).skip(1) {
            assert!(
                value.starts_with('/') || value.starts_with("data:"),
                "{attribute}{}",
                &value[..value.len().min(40)]
            );
        }
    }
    let r = s.get("/collections");
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = s.get("/collections/m/documents/x/thumbnail");
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[test]
fn content_answers_byte_ranges() {
    let s = TestServer::start();
    s.create_collection("m");
    upload(&s, "video.mp4", "clip");
    let whole = std::fs::read(media("video.mp4")).unwrap();
    let get = |range: &str| {
        s.send(
            s.client
                .get(s.url("/collections/m/documents/clip/content"))
                .header("Range", range),
        )
    };
    let r = s.get("/collections/m/documents/clip/content");
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["accept-ranges"], "bytes");
    assert_eq!(r.bytes, whole);

    let r = get("bytes=100-199");
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers["content-range"],
        format!("bytes 100-199/{}", whole.len()).as_str()
    );
    assert_eq!(r.bytes, whole[100..200]);
    let r = get("bytes=-50");
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes, whole[whole.len() - 50..]);
    let r = get(&format!("bytes={}-", whole.len() - 10));
    assert_eq!(r.bytes, whole[whole.len() - 10..]);

    let r = get(&format!("bytes={}-", whole.len()));
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.code(), "range_not_satisfiable");
    assert_eq!(
        r.headers["content-range"],
        format!("bytes */{}", whole.len()).as_str()
    );
    // Several ranges, or nonsense: the whole body.
    for range in ["bytes=0-1,5-6", "lines=1-2", "bytes=z-"] {
        let r = get(range);
        assert_eq!(r.status, StatusCode::OK, "{range}");
        assert_eq!(r.bytes.len(), whole.len());
    }
}

#[test]
fn thumbnails_of_images_pdf_pages_and_video_segments() {
    let mut config = test_config();
    config.processing.max_video_frames = 4;
    config.processing.pdf_render_max_side = 200;
    let s = TestServer::with_config(config);
    s.create_collection("m");
    upload(&s, "three_pages.pdf", "pdf");
    upload(&s, "video.mp4", "clip");
    let png = image_bytes("img_medium_333x250");
    let r = s.post_json(
        "/collections/m/documents",
        &json!({"id": "pic", "image": data_url(&png)}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);

    // An image: scaled to 320 px on its longer side, colours kept.
    let r = s.get("/collections/m/documents/pic/thumbnail");
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.headers["content-type"], "image/jpeg");
    let thumb = jpeg(&r.bytes);
    assert_eq!(thumb.dimensions(), (320, 240));
    let original = image::load_from_memory(&png).unwrap().to_rgb8();
    let (a, b) = (middle_colour(&thumb), middle_colour(&original));
    for c in 0..3 {
        assert!((a[c] - b[c]).abs() < 12.0, "{a:?} vs {b:?}");
    }

    // PDF pages: red, green, blue rectangles (the fixture's recipe).
    for (page, channel) in [(1, 0), (2, 1), (3, 2)] {
        let r = s.get(&format!(
            "/collections/m/documents/pdf/thumbnail?page={page}"
        ));
        assert_eq!(r.status, StatusCode::OK, "page {page}: {}", r.json);
        let img = jpeg(&r.bytes);
        assert_eq!(img.width().max(img.height()), 320);
        let colour = middle_colour(&img);
        let strongest = (0..3)
            .max_by(|&x, &y| colour[x].total_cmp(&colour[y]))
            .unwrap();
        assert_eq!(strongest, channel, "page {page}: {colour:?}");
    }
    // No page: the first.
    let first = s.get("/collections/m/documents/pdf/thumbnail");
    assert_eq!(
        first.bytes,
        s.get("/collections/m/documents/pdf/thumbnail?page=1").bytes
    );

    // Video segments, by the times the document lists.
    let doc = s.get("/collections/m/documents/clip").json;
    let segments = doc["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 4);
    let mut pictures = Vec::new();
    for segment in segments {
        let path = format!(
            "/collections/m/documents/clip/thumbnail?start_s={}&end_s={}",
            segment["start_s"], segment["end_s"]
        );
        let r = s.get(&path);
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.json);
        // The fixture is 64×48: never scaled up.
        assert_eq!(jpeg(&r.bytes).dimensions(), (64, 48));
        pictures.push(r.bytes);
    }
    // testsrc changes from frame to frame: four different pictures.
    for i in 0..4 {
        for j in i + 1..4 {
            assert_ne!(pictures[i], pictures[j], "segments {i} and {j}");
        }
    }

    // Only what the document has.
    for (path, code) in [
        (
            "/collections/m/documents/pdf/thumbnail?page=4",
            "segment_not_found",
        ),
        (
            "/collections/m/documents/clip/thumbnail?start_s=0.1&end_s=0.2",
            "segment_not_found",
        ),
        (
            "/collections/m/documents/clip/thumbnail?page=1",
            "segment_not_found",
        ),
        (
            "/collections/m/documents/nope/thumbnail",
            "content_not_found",
        ),
        (
            "/collections/m/documents/pdf/thumbnail?page=1&end_s=1",
            "invalid_request",
        ),
        (
            "/collections/m/documents/pdf/thumbnail?page=x",
            "invalid_request",
        ),
    ] {
        let r = s.get(path);
        assert!(r.status.is_client_error(), "{path}: {}", r.status);
        assert_eq!(r.code(), code, "{path}: {}", r.json);
    }
}

#[test]
fn a_replaced_document_gets_a_new_thumbnail() {
    let s = TestServer::start();
    s.create_collection("m");
    let insert = |png: &[u8]| {
        let r = s.post_json(
            "/collections/m/documents",
            &json!({"id": "pic", "image": data_url(png)}),
        );
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    };
    let solid = |rgb: [u8; 3]| {
        let img = image::RgbImage::from_pixel(300, 200, image::Rgb(rgb));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    insert(&solid([250, 10, 10]));
    let red = jpeg(&s.get("/collections/m/documents/pic/thumbnail").bytes);
    assert!(middle_colour(&red)[0] > 200.0);
    insert(&solid([10, 10, 250]));
    let blue = jpeg(&s.get("/collections/m/documents/pic/thumbnail").bytes);
    assert!(
        middle_colour(&blue)[2] > 200.0,
        "not the cached red picture"
    );
}

#[test]
fn documents_are_listed_a_page_at_a_time_in_id_order() {
    let s = TestServer::start();
    s.create_collection("m");
    let mut ids: Vec<String> = (0..25)
        .map(|i| format!("doc-{:02}", (i * 7) % 25))
        .collect();
    for (n, id) in ids.iter().enumerate() {
        let mut vector = vec![0.0f32; 64];
        vector[n % 64] = 1.0;
        let r = s.post_json(
            "/collections/m/documents",
            &json!({"id": id, "vector": vector, "metadata": {"n": n}}),
        );
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &after {
            Some(a) => format!("/collections/m/documents?limit=10&after={a}"),
            None => "/collections/m/documents?limit=10".to_owned(),
        };
        let r = s.get(&path);
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        pages += 1;
        for d in r.json["documents"].as_array().unwrap() {
            seen.push(d["id"].as_str().unwrap().to_owned());
            assert!(d.get("vector").is_none());
        }
        match r.json["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids, "every document once, in id order");

    // `after` need not exist: the listing continues after where it would be.
    let r = s.get("/collections/m/documents?limit=3&after=doc-10x");
    let got: Vec<_> = r.json["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, ["doc-11", "doc-12", "doc-13"]);
    // The default page is 50; the limit is checked.
    let r = s.get("/collections/m/documents");
    assert_eq!(r.json["documents"].as_array().unwrap().len(), 25);
    for bad in ["limit=0", "limit=1001", "limit=x"] {
        let r = s.get(&format!("/collections/m/documents?{bad}"));
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let r = s.get("/collections/none/documents");
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
