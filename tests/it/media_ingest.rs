//! Files as documents through the real engine and database: a video's
//! segments are its sampled frames' embeddings, a PDF's pages are its
//! rendered pages' embeddings in order, text chunks cover the text, and bad
//! media leaves nothing behind.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tkr_embed::{
    config::{Config, VideoPooling},
    db::{
        files::{FileInput, IngestOptions},
        Db, DbOptions,
    },
    engine::{EmbedRequest, Engine, ImageData},
    media::{
        pdf::render_page,
        video::{sample_frames, Sampling},
    },
    types::Span,
};

use crate::{engine::engine_config, mlx_lock, model_parity::max_abs_diff};

pub fn media(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/media")
        .join(name)
}

struct Setup {
    db: Db,
    engine: Engine,
    options: IngestOptions,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    // No cache: the expected vectors below are computed afresh, not looked up.
    let mut config = engine_config();
    config.cache_size = 0;
    let engine = Engine::start(config).unwrap();
    let db = Db::open(dir.path(), DbOptions::new("qwen2vl-tiny", 64, "float32")).unwrap();
    db.create_collection("m").unwrap();
    let mut options = IngestOptions::from_config(&Config::default());
    options.video.max_frames = 4;
    options.sampling = Sampling::Uniform(4);
    options.pdf.render_max_side = 100;
    options.chunk_tokens = 16;
    options.chunk_overlap_tokens = 4;
    Setup {
        db,
        engine,
        options,
        _dir: dir,
    }
}

impl Setup {
    fn insert(&self, path: &Path, id: &str) -> tkr_embed::db::Result<String> {
        let input = FileInput {
            path,
            id: Some(id.into()),
            metadata: Value::Null,
        };
        self.db
            .insert_file(&self.engine, "m", input, &self.options, &|_, _| {})
    }

    fn count(&self) -> u64 {
        self.db.list_collections().unwrap()[0].documents
    }
}

fn mean_normalized(vectors: &[Vec<f32>]) -> Vec<f32> {
    let mut out = vec![0f32; vectors[0].len()];
    for v in vectors {
        out.iter_mut().zip(v).for_each(|(o, x)| *o += x);
    }
    let norm = out.iter().map(|x| x * x).sum::<f32>().sqrt();
    out.iter().map(|x| x / norm).collect()
}

#[test]
fn video_segments_are_the_sampled_frames_embeddings() {
    let _mlx = mlx_lock();
    let s = setup();
    let path = media("video.mp4");
    s.insert(&path, "clip").unwrap();
    let doc = s.db.get("m", "clip").unwrap().unwrap();
    assert_eq!(doc.modality.as_str(), "video");
    let expected_spans: Vec<Span> = (0..4)
        .map(|i| Span::Time {
            start_s: f64::from(i),
            end_s: f64::from(i + 1),
        })
        .collect();
    assert_eq!(doc.segments, expected_spans);
    assert_eq!(doc.content.as_ref().map(|c| matches!(c, tkr_embed::db::ContentInfo::Stored { content_type, .. } if content_type == "video/mp4")), Some(true));
    let media_summary = &doc.metadata["media"];
    assert_eq!(media_summary["frames"], 4);
    assert_eq!(media_summary["duration_s"], 4.0);

    // Each segment vector equals the embedding of the same decoded frame,
    // computed alone.
    let frames = sample_frames(&path, Sampling::Uniform(4), &s.options.video).unwrap();
    let vectors = s.db.get_vectors("m", "clip").unwrap().unwrap();
    assert_eq!(vectors.len(), 1 + 4);
    let mut singles = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let alone = s
            .engine
            .embed(EmbedRequest {
                images: vec![ImageData::Decoded(Arc::new(frame.image.clone()))],
                ..EmbedRequest::default()
            })
            .unwrap();
        let diff = max_abs_diff(&alone, &vectors[1 + i]);
        assert!(diff <= 1e-5, "segment {i}: max |Δ| {diff}");
        singles.push(alone);
    }
    // Frames differ, so the equality above is not vacuous.
    assert!(max_abs_diff(&singles[0], &singles[3]) > 1e-3);
    // Primary = mean-pooled frames, renormalised.
    assert!(max_abs_diff(&vectors[0], &mean_normalized(&singles)) <= 1e-5);

    // A frame as the query finds the video, at that frame's time range.
    let hits = s.db.search("m", &singles[2], 1, None).unwrap();
    assert_eq!(hits[0].id, "clip");
    let segment = hits[0].segment.as_ref().expect("a segment hit");
    assert_eq!(segment.span, expected_spans[2]);
    assert!(hits[0].score > 0.999);
}

#[test]
fn video_pooling_first_and_max() {
    let _mlx = mlx_lock();
    let mut s = setup();
    s.options.pooling = VideoPooling::First;
    s.insert(&media("video.mp4"), "first").unwrap();
    let v = s.db.get_vectors("m", "first").unwrap().unwrap();
    assert!(max_abs_diff(&v[0], &v[1]) <= 1e-6);
    s.options.pooling = VideoPooling::Max;
    s.insert(&media("video.mp4"), "max").unwrap();
    let v = s.db.get_vectors("m", "max").unwrap().unwrap();
    let mut max: Vec<f32> = v[1].clone();
    for seg in &v[2..] {
        max.iter_mut().zip(seg).for_each(|(m, x)| *m = m.max(*x));
    }
    assert!(max_abs_diff(&v[0], &mean_normalized(&[max])) <= 1e-6);
}

#[test]
fn pdf_pages_in_order_and_text_chunks() {
    let _mlx = mlx_lock();
    let s = setup();
    let path = media("three_pages.pdf");
    s.insert(&path, "doc").unwrap();
    let doc = s.db.get("m", "doc").unwrap().unwrap();
    assert_eq!(doc.modality.as_str(), "document");
    assert_eq!(doc.metadata["media"]["pages"], 3);
    let pages: Vec<&Span> = doc
        .segments
        .iter()
        .filter(|s| matches!(s, Span::Page { .. }))
        .collect();
    assert_eq!(
        pages,
        [
            &Span::Page { page: 1 },
            &Span::Page { page: 2 },
            &Span::Page { page: 3 }
        ]
    );
    let vectors = s.db.get_vectors("m", "doc").unwrap().unwrap();
    let mut page_vectors = Vec::new();
    for page in 1..=3u32 {
        let image = render_page(&path, page, &s.options.pdf).unwrap();
        let alone = s
            .engine
            .embed(EmbedRequest {
                images: vec![ImageData::Decoded(Arc::new(image))],
                ..EmbedRequest::default()
            })
            .unwrap();
        let diff = max_abs_diff(&alone, &vectors[page as usize]);
        assert!(diff <= 1e-5, "page {page}: max |Δ| {diff}");
        page_vectors.push(alone);
    }
    // Page 2's image finds page 2.
    let hits = s.db.search("m", &page_vectors[1], 1, None).unwrap();
    assert_eq!(
        hits[0].segment.as_ref().map(|m| m.span.clone()),
        Some(Span::Page { page: 2 })
    );
    // Text chunks: offsets into the stored text, covering every word.
    let text = doc.text.clone().expect("extracted text");
    let chunks: Vec<(usize, usize)> = doc
        .segments
        .iter()
        .filter_map(|s| match *s {
            Span::Bytes { start, end } => Some((start as usize, end as usize)),
            _ => None,
        })
        .collect();
    assert!(!chunks.is_empty());
    check_cover(&text, &chunks);
}

/// Every non-whitespace byte of `text` lies in some chunk; chunks are
/// ordered, on char boundaries, and inside the text.
fn check_cover(text: &str, chunks: &[(usize, usize)]) {
    let mut covered = vec![false; text.len()];
    let mut last_start = 0;
    for &(start, end) in chunks {
        assert!(start < end && end <= text.len(), "{start}..{end}");
        assert!(text.is_char_boundary(start) && text.is_char_boundary(end));
        assert!(start >= last_start);
        last_start = start;
        covered[start..end].iter_mut().for_each(|c| *c = true);
    }
    for (i, b) in text.bytes().enumerate() {
        assert!(covered[i] || b.is_ascii_whitespace(), "byte {i} uncovered");
    }
}

#[test]
fn long_text_files_are_chunked_and_found_by_chunk() {
    let _mlx = mlx_lock();
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let words: Vec<String> = (0..60)
        .map(|i| format!("sentence number {i} talks about topic {}.", i % 7))
        .collect();
    let text = words.join(" ");
    let path = dir.path().join("notes.md");
    std::fs::write(&path, &text).unwrap();
    s.insert(&path, "notes").unwrap();
    let doc = s.db.get("m", "notes").unwrap().unwrap();
    assert_eq!(doc.text.as_deref(), Some(text.as_str()));
    assert_eq!(doc.metadata["media"]["kind"], "markdown");
    let chunks: Vec<(usize, usize)> = doc
        .segments
        .iter()
        .map(|s| match *s {
            Span::Bytes { start, end } => (start as usize, end as usize),
            ref other => panic!("unexpected span {other:?}"),
        })
        .collect();
    assert!(chunks.len() > 10, "{} chunks", chunks.len());
    check_cover(&text, &chunks);
    // A chunk's own text as the query finds that chunk.
    let (start, end) = chunks[5];
    let query = s
        .engine
        .embed(EmbedRequest::text(&text[start..end]))
        .unwrap();
    let hits = s.db.search("m", &query, 1, None).unwrap();
    assert_eq!(
        hits[0].segment.as_ref().map(|m| m.span.clone()),
        Some(Span::Bytes {
            start: start as u64,
            end: end as u64
        })
    );

    // HTML: scripts dropped, the text is what gets stored.
    let html = dir.path().join("page.html");
    std::fs::write(
        &html,
        "<html><head><script>var x = 1;</script></head><body><h1>Title</h1><p>Body &amp; soul</p></body></html>",
    )
    .unwrap();
    s.insert(&html, "page").unwrap();
    let doc = s.db.get("m", "page").unwrap().unwrap();
    let stored = doc.text.unwrap();
    assert!(
        stored.contains("Title") && stored.contains("Body & soul"),
        "{stored:?}"
    );
    assert!(!stored.contains("var x"));
    assert_eq!(
        s.db.get_content("m", "page").unwrap().map(|c| match c {
            tkr_embed::db::ContentData::Bytes { content_type, .. } => content_type,
            _ => String::new(),
        }),
        Some("text/html; charset=utf-8".to_owned())
    );
}

#[test]
fn bad_media_is_refused_and_nothing_is_stored() {
    let _mlx = mlx_lock();
    let mut s = setup();
    let dir = tempfile::tempdir().unwrap();
    let latin1 = dir.path().join("latin1.txt");
    std::fs::write(&latin1, b"caf\xe9 au lait").unwrap();
    for name in [
        "truncated_mid.mp4",
        "truncated_head.mp4",
        "not_a_video.mp4",
        "empty.mp4",
        "audio_only.mp4",
        "encrypted.pdf",
        "corrupt.pdf",
    ] {
        let err = s.insert(&media(name), name).unwrap_err();
        assert!(err.is_bad_input(), "{name}: {err}");
        assert!(err.to_string().contains(name), "{name}: message {err}");
    }
    let err = s.insert(&latin1, "latin1").unwrap_err();
    assert!(
        err.is_bad_input() && err.to_string().contains("UTF-8"),
        "{err}"
    );
    // Limits.
    s.options.pdf.max_pages = 2;
    let err = s.insert(&media("three_pages.pdf"), "pages").unwrap_err();
    assert!(err.to_string().contains("too many pages"), "{err}");
    s.options.video.max_duration_s = 3.0;
    let err = s.insert(&media("video.mp4"), "long").unwrap_err();
    assert!(err.to_string().contains("too long"), "{err}");
    assert_eq!(s.count(), 0);
    // The model thread is fine afterwards.
    s.options.video.max_duration_s = 60.0;
    s.insert(&media("video.mp4"), "ok").unwrap();
    assert_eq!(s.count(), 1);
}
