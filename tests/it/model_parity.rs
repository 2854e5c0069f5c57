//! The MLX engine against the HF transformers reference fixtures
//! (`tests/fixtures/qwen2vl-tiny/`, tolerances from its README).
use std::{path::PathBuf, sync::OnceLock};

use serde_json::Value;
use tkr_embed::model::{ComputeType, Embedder, LoadOptions, PreparedInput};

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

fn floats(v: &Value) -> Vec<f32> {
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

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Rows of a case as prepared inputs (texts and images of each row).
fn prepare_case(e: &Embedder, c: &Value) -> Vec<PreparedInput> {
    let instruction = c["instruction"].as_str().unwrap();
    let rows = c["input_ids"].as_array().unwrap().len();
    (0..rows)
        .map(|r| {
            let text = c["texts"].as_array().map_or("", |t| t[r].as_str().unwrap());
            e.prepare(instruction, text, Vec::new()).unwrap()
        })
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
fn text_token_ids_match_reference() {
    let _mlx = mlx_lock();
    let e = load(ComputeType::Float32);
    for id in TEXT_CASES {
        let c = case(id);
        let prepared = prepare_case(&e, c);
        let want = real_ids(c);
        for (p, w) in prepared.iter().zip(&want) {
            assert_eq!(&p.ids, w, "{id}");
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
fn text_embeddings_bf16_match_reference() {
    let _mlx = mlx_lock();
    check_embeddings(ComputeType::Bfloat16, TEXT_CASES);
}
