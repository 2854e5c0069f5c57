//! The engine: the model thread, batching, cache, overload, bad inputs.
use std::sync::atomic::Ordering;

use tkr_embed::{
    engine::{EmbedRequest, Engine, EngineConfig, EngineError},
    model::LoadOptions,
};

use crate::{
    mlx_lock,
    model_parity::{case, fixture_dir, floats, max_abs_diff},
};

pub fn engine_config() -> EngineConfig {
    EngineConfig {
        model_dir: fixture_dir().join("model"),
        model_id: "qwen2vl-tiny".into(),
        gpu: false,
        load: LoadOptions::default(),
        instruction: "You are a helpful assistant.".into(),
        image_min_pixels: 200_704,
        image_max_pixels: 1_003_520,
        max_decode_pixels: 50_000_000,
        max_batch_size: 8,
        max_batch_tokens: 16_384,
        queue_capacity: 64,
        cache_size: 100,
    }
}

fn image_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(format!("images/{name}.png"))).unwrap()
}

fn reference(id: &str) -> Vec<f32> {
    floats(&case(id)["embedding_fp32"][0])
}

#[test]
fn queued_requests_are_batched_and_match_the_reference() {
    let _mlx = mlx_lock();
    let engine = Engine::start(engine_config()).unwrap();
    let fused = EmbedRequest {
        text: "Describe the shapes in this picture.".into(),
        images: EmbedRequest::image(image_bytes("img_medium_333x250")).images,
        instruction: None,
    };
    let requests = vec![
        EmbedRequest::text("Hello world"),
        fused,
        EmbedRequest::text(""),
        EmbedRequest::image(image_bytes("img_wide_640x96")),
        EmbedRequest {
            text: "What is the capital of France?".into(),
            images: vec![],
            instruction: Some("Find an image that matches the given text.".into()),
        },
    ];
    let results = engine.embed_many(requests);
    let want = [
        "text_short",
        "fused_1",
        "text_empty",
        "img_wide_640x96",
        "text_custom_instruction",
    ];
    for (got, id) in results.iter().zip(want) {
        let got = got.as_ref().unwrap();
        assert!(max_abs_diff(got, &reference(id)) <= 1e-5, "{id}");
    }
    let stats = engine.stats();
    assert!(
        stats.max_batch.load(Ordering::Relaxed) > 1,
        "no batch formed"
    );
    assert!(stats.batches.load(Ordering::Relaxed) < 5);
    assert_eq!(stats.queue_depth.load(Ordering::Relaxed), 0);
}

#[test]
fn repeated_requests_come_from_the_cache() {
    let _mlx = mlx_lock();
    let engine = Engine::start(engine_config()).unwrap();
    let a = engine.embed(EmbedRequest::text("cache me")).unwrap();
    assert_eq!(engine.stats().cache_hits.load(Ordering::Relaxed), 0);
    let b = engine.embed(EmbedRequest::text("cache me")).unwrap();
    assert_eq!(engine.stats().cache_hits.load(Ordering::Relaxed), 1);
    assert_eq!(a, b);
    // A different instruction is a different embedding.
    let c = engine
        .embed(EmbedRequest {
            instruction: Some("Other.".into()),
            ..EmbedRequest::text("cache me")
        })
        .unwrap();
    assert_eq!(engine.stats().cache_hits.load(Ordering::Relaxed), 1);
    assert_ne!(a, c);
}

#[test]
fn a_full_queue_is_an_overload_error_not_a_hang() {
    let _mlx = mlx_lock();
    let engine = Engine::start(EngineConfig {
        queue_capacity: 1,
        max_batch_size: 1,
        cache_size: 0,
        ..engine_config()
    })
    .unwrap();
    let long = "word ".repeat(600);
    let pending: Vec<_> = (0..64)
        .map(|i| engine.submit(EmbedRequest::text(format!("{i} {long}"))))
        .collect();
    let results: Vec<_> = pending.into_iter().map(|p| engine.wait(p)).collect();
    let overloaded = results
        .iter()
        .filter(|r| matches!(r, Err(EngineError::Overloaded(_))))
        .count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(overloaded > 0, "no request was refused");
    assert!(ok > 0, "nothing was computed");
    assert_eq!(ok + overloaded, 64);
}

#[test]
fn a_bad_image_fails_alone() {
    let _mlx = mlx_lock();
    let engine = Engine::start(engine_config()).unwrap();
    let mut png = image_bytes("img_medium_333x250");
    png.truncate(png.len() / 2);
    let results = engine.embed_many(vec![
        EmbedRequest::text("Hello world"),
        EmbedRequest::image(png),
        EmbedRequest::image(b"not an image at all".to_vec()),
        EmbedRequest::image(Vec::new()),
    ]);
    assert!(max_abs_diff(results[0].as_ref().unwrap(), &reference("text_short")) <= 1e-5);
    for r in &results[1..] {
        let e = r.as_ref().unwrap_err();
        assert!(e.is_bad_input(), "{e}");
    }
}

#[test]
fn long_text_is_truncated_but_image_tokens_never_are() {
    let _mlx = mlx_lock();
    let engine = Engine::start(EngineConfig {
        load: LoadOptions {
            max_len: 64,
            ..LoadOptions::default()
        },
        ..engine_config()
    })
    .unwrap();
    let long = "many words here ".repeat(100);
    let a = engine.embed(EmbedRequest::text(long.clone())).unwrap();
    let b = engine
        .embed(EmbedRequest::text(long + "different tail"))
        .unwrap();
    assert_eq!(a, b, "the cut-off tail must not matter");
    let err = engine
        .embed(EmbedRequest::image(image_bytes("img_medium_333x250")))
        .unwrap_err();
    assert!(
        err.is_bad_input() && err.to_string().contains("64"),
        "{err}"
    );
}

#[test]
fn interactive_requests_overtake_queued_bulk_parts() {
    use tkr_embed::engine::Priority;
    let _mlx = mlx_lock();
    let engine = Engine::start(engine_config()).unwrap();
    // 60 ingest parts (distinct, so none is a cache hit) wait in the bulk
    // lane: 8 batches of 8 in FIFO order.
    let bulk: Vec<_> = (0..60)
        .map(|i| {
            let text = format!("part {i} of a long document, with some words");
            engine.submit_as(EmbedRequest::text(text), Priority::Bulk)
        })
        .collect();
    let batches_before = engine.stats().batches.load(Ordering::Relaxed);
    let query = engine.submit(EmbedRequest::text("Hello world"));
    let vector = engine.wait(query).unwrap();
    let batches_until_answered = engine.stats().batches.load(Ordering::Relaxed) - batches_before;
    assert!(max_abs_diff(&vector, &reference("text_short")) <= 1e-5);
    // At most the batch already running and the one the query joins.
    assert!(
        batches_until_answered <= 2,
        "the query waited for {batches_until_answered} batches of bulk parts"
    );
    for pending in bulk {
        engine.wait(pending).unwrap();
    }
}
