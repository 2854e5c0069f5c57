//! Embedding throughput on the "bench" Qwen2-VL configuration (265 M
//! parameters, `benches/data/config.json`) with random weights — speed does
//! not depend on weight values. Same cases as the transformers figures in
//! `benches/data/README.md`. Run: `cargo bench --bench embed`.
use std::{collections::HashMap, path::Path, time::Instant};

use mlx_rs::{random, Array};
use tkr_embed::model::{
    config::Qwen2VlConfig, preprocess, weights::expected_shapes, ComputeType, Embedder,
    LoadOptions, PreparedInput,
};

const INSTRUCTION: &str = "You are a helpful assistant.";

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("benches/data");
    let model = tempfile::tempdir().unwrap();
    write_random_model(
        &data,
        &root.join("tests/fixtures/qwen2vl-tiny/model"),
        model.path(),
    );
    let compute = match std::env::var("BENCH_DTYPE").as_deref() {
        Ok("bfloat16") => ComputeType::Bfloat16,
        _ => ComputeType::Float32,
    };
    let e = Embedder::load(
        model.path(),
        LoadOptions {
            compute,
            ..Default::default()
        },
    )
    .unwrap();
    println!(
        "device {} / blas {} / {}",
        tkr_embed::model::runtime::default_device(),
        tkr_embed::model::runtime::blas(),
        compute.as_str()
    );
    let inputs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("inputs.json")).unwrap()).unwrap();
    let texts: Vec<&str> = inputs["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let caption = inputs["caption"].as_str().unwrap();
    let image = |name: &str| {
        let bytes = std::fs::read(data.join(name)).unwrap();
        let rgb = preprocess::decode_image(&bytes, u64::MAX).unwrap();
        preprocess::preprocess_image(&rgb, 200_704, 1_003_520).unwrap()
    };

    // End to end: preprocessing and tokenization are inside the timed closure.
    let batch_texts = || {
        let prepared: Vec<PreparedInput> = texts
            .iter()
            .map(|t| e.prepare(INSTRUCTION, t, vec![]).unwrap())
            .collect();
        e.embed_batch(&prepared).unwrap();
    };
    report("8 texts in one batch", texts.len(), batch_texts);
    report("one 448x448 image", 1, || {
        e.embed_batch(&[e
            .prepare(INSTRUCTION, "", vec![image("img448.png")])
            .unwrap()])
            .unwrap();
    });
    report("one 1024x768 image", 1, || {
        e.embed_batch(&[e
            .prepare(INSTRUCTION, "", vec![image("img1024x768.png")])
            .unwrap()])
            .unwrap();
    });
    report("448x448 image + caption", 1, || {
        e.embed_batch(&[e
            .prepare(INSTRUCTION, caption, vec![image("img448.png")])
            .unwrap()])
            .unwrap();
    });
}

/// Median of 5 runs after a warm-up.
fn report(name: &str, items: usize, mut run: impl FnMut()) {
    run();
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times[2];
    println!(
        "{name:<28} {median:7.3} s  {:7.3} items/s",
        items as f64 / median
    );
}

/// A checkpoint of the bench config's shapes with N(0, 0.02) weights (norm
/// weights 1), plus the tiny fixture's tokenizer.
fn write_random_model(data: &Path, tokenizer_dir: &Path, out: &Path) {
    let config_text = std::fs::read_to_string(data.join("config.json")).unwrap();
    std::fs::write(out.join("config.json"), &config_text).unwrap();
    std::fs::copy(
        tokenizer_dir.join("tokenizer.json"),
        out.join("tokenizer.json"),
    )
    .unwrap();
    let cfg = Qwen2VlConfig::from_json(&config_text).unwrap();
    let mut tensors = HashMap::new();
    for (name, shape) in expected_shapes(&cfg) {
        let array = if name.contains("norm") && name.ends_with("weight") {
            mlx_rs::ops::ones::<f32>(&shape).unwrap()
        } else {
            random::normal::<f32>(&shape, 0.0, 0.02, None).unwrap()
        };
        tensors.insert(name, array.as_dtype(mlx_rs::Dtype::Bfloat16).unwrap());
    }
    Array::save_safetensors(&tensors, None, out.join("model.safetensors")).unwrap();
}
