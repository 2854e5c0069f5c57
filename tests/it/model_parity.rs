//! The MLX engine against the HF transformers reference fixtures
//! (`tests/fixtures/qwen2vl-tiny/`, tolerances from its README).
use std::{path::PathBuf, sync::OnceLock};

use serde_json::Value;
use tkr_embed::model::{
    preprocess, ComputeType, Embedder, ImageInput, LoadOptions, PreparedInput, QuantSpec,
    WeightStorage,
};

use crate::mlx_lock;

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2vl-tiny")
}

pub fn reference() -> &'static Value {
    static REF: OnceLock<Value> = OnceLock::new();
    REF.get_or_init(|| {
        let text = std::fs::read_to_string(fixture_dir().join("reference.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    })
}

pub fn case(id: &str) -> &'static Value {
    reference()["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no case {id}"))
}

pub fn load(compute: ComputeType) -> Embedder {
    Embedder::load(
        &fixture_dir().join("model"),
        LoadOptions {
            compute,
            ..Default::default()
        },
    )
    .unwrap()
}

pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// An original fixture image through our own decode + resize + patchify.
pub fn image_input(name: &str) -> ImageInput {
    let bytes = std::fs::read(fixture_dir().join(format!("images/{name}.png"))).unwrap();
    let rgb = preprocess::decode_image(&bytes, u64::MAX).unwrap();
    preprocess::preprocess_image(&rgb, 200_704, 1_003_520).unwrap()
}

/// Rows of a case as prepared inputs. Single-row cases list all their
/// images for that row; batch cases have one image per row.
fn prepare_case(e: &Embedder, c: &Value) -> Vec<PreparedInput> {
    let instruction = c["instruction"].as_str().unwrap();
    let rows = c["input_ids"].as_array().unwrap().len();
    let images: Vec<&str> = c["images"].as_array().map_or(Vec::new(), |a| {
        a.iter().map(|v| v.as_str().unwrap()).collect()
    });
    (0..rows)
        .map(|r| {
            let text = c["texts"].as_array().map_or("", |t| t[r].as_str().unwrap());
            let row_images: Vec<ImageInput> = if rows == 1 {
                images.iter().map(|n| image_input(n)).collect()
            } else {
                images.get(r).map(|n| image_input(n)).into_iter().collect()
            };
            e.prepare(instruction, text, row_images).unwrap()
        })
        .collect()
}

fn all_cases() -> Vec<&'static str> {
    reference()["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect()
}

const TEXT_CASES: &[&str] = &[
    "text_short",
    "text_sentence",
    "text_long",
    "text_unicode",
    "text_empty",
    "text_custom_instruction",
    "batch_texts",
    "batch_texts_single_0",
    "batch_texts_single_1",
    "batch_texts_single_2",
];

/// Real (unpadded) ids of each row of a case.
fn real_ids(c: &Value) -> Vec<Vec<u32>> {
    let ids = c["input_ids"].as_array().unwrap();
    let mask = c["attention_mask"].as_array().unwrap();
    ids.iter()
        .zip(mask)
        .map(|(row, m)| {
            row.as_array()
                .unwrap()
                .iter()
                .zip(m.as_array().unwrap())
                .filter(|(_, m)| m.as_u64() == Some(1))
                .map(|(id, _)| id.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

#[test]
fn token_ids_grids_and_shapes_match_reference() {
    let _mlx = mlx_lock();
    let e = load(ComputeType::Float32);
    for id in all_cases() {
        let c = case(id);
        let prepared = prepare_case(&e, c);
        let want = real_ids(c);
        assert_eq!(prepared.len(), want.len(), "{id}: rows");
        for (p, w) in prepared.iter().zip(&want) {
            assert_eq!(&p.ids, w, "{id}: input_ids");
        }
        let images: Vec<&ImageInput> = prepared.iter().flat_map(|p| &p.images).collect();
        if let Some(grids) = c["image_grid_thw"].as_array() {
            let got: Vec<Value> = images
                .iter()
                .map(|i| serde_json::json!(i.grid_thw))
                .collect();
            assert_eq!(&got, grids, "{id}: image_grid_thw");
            let got: Vec<Value> = images
                .iter()
                .map(|i| serde_json::json!([i.resized_wh.0, i.resized_wh.1]))
                .collect();
            assert_eq!(
                &got,
                c["resized_image_sizes_wh"].as_array().unwrap(),
                "{id}: resized"
            );
            let rows: usize = images.iter().map(|i| i.pixel_values.len() / 1176).sum();
            assert_eq!(
                serde_json::json!([rows, 1176]),
                c["pixel_values_shape"],
                "{id}: pixel_values_shape"
            );
        } else {
            assert!(images.is_empty(), "{id}");
        }
    }
}

fn check_embeddings(compute: ComputeType, ids: &[&str]) {
    let e = load(compute);
    for id in ids {
        let c = case(id);
        let prepared = prepare_case(&e, c);
        let got = e.embed_batch(&prepared).unwrap();
        let key = match compute {
            ComputeType::Float32 => "embedding_fp32",
            ComputeType::Bfloat16 => "embedding_bf16",
        };
        for (r, want) in c[key].as_array().unwrap().iter().enumerate() {
            let want = floats(want);
            let cos = cosine(&got[r], &want);
            let diff = max_abs_diff(&got[r], &want);
            eprintln!("{id}[{r}] {key}: cos {cos:.9} max|d| {diff:.2e}");
            match compute {
                ComputeType::Float32 => {
                    assert!(cos >= 0.99999, "{id}[{r}]: cosine {cos}");
                    assert!(diff <= 1e-4, "{id}[{r}]: max |d| {diff}");
                }
                ComputeType::Bfloat16 => assert!(cos >= 0.9995, "{id}[{r}]: cosine {cos}"),
            }
        }
    }
}

#[test]
fn text_embeddings_f32_match_reference() {
    let _mlx = mlx_lock();
    check_embeddings(ComputeType::Float32, TEXT_CASES);
}

#[test]
fn image_and_fused_embeddings_f32_match_reference() {
    let _mlx = mlx_lock();
    let cases: Vec<&str> = all_cases()
        .into_iter()
        .filter(|id| !TEXT_CASES.contains(id))
        .collect();
    assert_eq!(cases.len(), 7);
    check_embeddings(ComputeType::Float32, &cases);
}

#[test]
fn all_embeddings_bf16_match_reference() {
    let _mlx = mlx_lock();
    check_embeddings(ComputeType::Bfloat16, &all_cases());
}

#[test]
fn batch_rows_equal_single_inputs() {
    let _mlx = mlx_lock();
    let e = load(ComputeType::Float32);
    for (batch, singles) in [
        (
            "batch_texts",
            &[
                "batch_texts_single_0",
                "batch_texts_single_1",
                "batch_texts_single_2",
            ][..],
        ),
        ("batch_fused", &["fused_1", "fused_2"][..]),
    ] {
        let rows = e.embed_batch(&prepare_case(&e, case(batch))).unwrap();
        for (row, single) in rows.iter().zip(singles) {
            let alone = e.embed_batch(&prepare_case(&e, case(single))).unwrap();
            let diff = max_abs_diff(row, &alone[0]);
            eprintln!("{batch} vs {single}: max|d| {diff:.2e}");
            assert!(diff <= 1e-5, "{batch} vs {single}: {diff}");
        }
    }
    // A mixed batch (text-only rows beside image rows, different lengths).
    let mut mixed = prepare_case(&e, case("text_long"));
    mixed.extend(prepare_case(&e, case("img_tiny_20x30")));
    mixed.extend(prepare_case(&e, case("text_empty")));
    let rows = e.embed_batch(&mixed).unwrap();
    for (row, input) in rows.iter().zip(&mixed) {
        let alone = e.embed_batch(std::slice::from_ref(input)).unwrap();
        assert!(max_abs_diff(row, &alone[0]) <= 1e-5);
    }
}

#[test]
fn quantized_models_stay_close_to_float32() {
    let _mlx = mlx_lock();
    let exact = load(ComputeType::Float32);
    for (bits, floor) in [(8, 0.999), (4, 0.95)] {
        let q = Embedder::load(
            &fixture_dir().join("model"),
            LoadOptions {
                quant: QuantSpec::Bits {
                    bits,
                    group_size: 64,
                },
                ..Default::default()
            },
        )
        .unwrap();
        let mut worst = 1.0f64;
        let mut sum = 0.0;
        let mut rows = 0;
        let ids = all_cases();
        for id in &ids {
            let c = case(id);
            let a = exact.embed_batch(&prepare_case(&exact, c)).unwrap();
            let b = q.embed_batch(&prepare_case(&q, c)).unwrap();
            for (x, y) in a.iter().zip(&b) {
                let cos = cosine(x, y);
                worst = worst.min(cos);
                sum += cos;
                rows += 1;
            }
        }
        eprintln!(
            "q{bits}: min cosine to f32 {worst:.6}, mean {:.6}",
            sum / rows as f64
        );
        assert!(worst >= floor, "q{bits}: min cosine {worst}");
        assert!(worst < 1.0, "q{bits}: quantization had no effect");
    }
}

/// bf16 weights with float32 compute give the float32 run of the
/// bf16-rounded weights: the fixture's weights are exactly representable in
/// bf16, so every embedding must be bit-identical to the float32 run.
#[test]
fn bf16_weights_with_f32_compute_equal_the_f32_run() {
    let _mlx = mlx_lock();
    let exact = load(ComputeType::Float32);
    let half = Embedder::load(
        &fixture_dir().join("model"),
        LoadOptions {
            weights: WeightStorage::Bfloat16,
            ..Default::default()
        },
    )
    .unwrap();
    for id in all_cases() {
        let c = case(id);
        let a = exact.embed_batch(&prepare_case(&exact, c)).unwrap();
        let b = half.embed_batch(&prepare_case(&half, c)).unwrap();
        assert_eq!(a, b, "{id}");
    }
}

/// The CPU kernels (attention, activations) and the all-MLX path agree.
#[test]
fn cpu_kernels_agree_with_the_mlx_path() {
    let _mlx = mlx_lock();
    let kernels = load(ComputeType::Float32);
    let mlx_only = Embedder::load(
        &fixture_dir().join("model"),
        LoadOptions {
            cpu_kernels: false,
            ..Default::default()
        },
    )
    .unwrap();
    for id in all_cases() {
        let c = case(id);
        let a = kernels.embed_batch(&prepare_case(&kernels, c)).unwrap();
        let b = mlx_only.embed_batch(&prepare_case(&mlx_only, c)).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!(max_abs_diff(x, y) <= 1e-6, "{id}: {}", max_abs_diff(x, y));
        }
    }
}

#[test]
fn a_model_that_cannot_fit_names_the_ways_out() {
    // The 7B checkpoint: 8.29 B parameters.
    let params = 8_290_000_000u64;
    let f32_opts = LoadOptions::default();
    assert_eq!(
        tkr_embed::model::weight_bytes(params, &f32_opts),
        4 * params
    );
    let gib = 1u64 << 30;
    let message = tkr_embed::model::memory_shortfall(params, &f32_opts, 22 * gib).unwrap();
    for needle in [
        "33.2 GB",
        "Ops-MM-embedding-v1-2B",
        "weight-storage bfloat16",
        "16.6 GB",
        "q8",
    ] {
        assert!(message.contains(needle), "{needle} missing in: {message}");
    }
    let half = LoadOptions {
        weights: WeightStorage::Bfloat16,
        ..Default::default()
    };
    assert_eq!(
        tkr_embed::model::memory_shortfall(params, &half, 22 * gib),
        None
    );
    // The header-only parameter count of the fixture equals its tensors.
    let counted = tkr_embed::model::weights::parameter_count(&fixture_dir().join("model")).unwrap();
    let cfg_text = std::fs::read_to_string(fixture_dir().join("model/config.json")).unwrap();
    let cfg = tkr_embed::model::config::Qwen2VlConfig::from_json(&cfg_text).unwrap();
    let expected: u64 = tkr_embed::model::weights::expected_shapes(&cfg)
        .values()
        .map(|s| s.iter().map(|&d| d as u64).product::<u64>())
        .sum();
    assert_eq!(counted, expected);
}

/// The system turn's keys and values are cached across calls on the CPU
/// path: a later call that reuses them (single inputs, batches, other
/// instructions in between) gives what a fresh model gives.
#[test]
fn cached_system_turn_gives_the_same_embeddings() {
    let _mlx = mlx_lock();
    let warm = load(ComputeType::Float32);
    let sequence = [
        "text_sentence",
        "text_custom_instruction",
        "img_medium_333x250",
        "text_sentence",
        "batch_texts",
        "fused_1",
        "text_custom_instruction",
    ];
    for id in sequence {
        let fresh = load(ComputeType::Float32);
        let c = case(id);
        let a = warm.embed_batch(&prepare_case(&warm, c)).unwrap();
        let b = fresh.embed_batch(&prepare_case(&fresh, c)).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!(max_abs_diff(x, y) <= 1e-6, "{id}: {}", max_abs_diff(x, y));
        }
    }
}
