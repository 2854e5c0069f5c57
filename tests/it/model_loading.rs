//! Strict weight loading and both checkpoint layouts.
use std::{collections::HashMap, path::Path};

use mlx_rs::Array;
use tkr_embed::model::{weights::normalise_key, ComputeType, Embedder, LoadOptions};

use crate::{
    mlx_lock,
    model_parity::{case, fixture_dir, load},
};

/// A copy of the fixture model whose weights went through `edit`, saved as
/// one `model.safetensors`, with `config.json` through `edit_config`.
fn edited_model(
    edit: impl FnOnce(&mut HashMap<String, Array>),
    edit_config: impl FnOnce(&mut serde_json::Value),
) -> tempfile::TempDir {
    let src = fixture_dir().join("model");
    let dir = tempfile::tempdir().unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit_config(&mut config);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let mut tensors = HashMap::new();
    for shard in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        tensors.extend(Array::load_safetensors(src.join(shard)).unwrap());
    }
    edit(&mut tensors);
    Array::save_safetensors(&tensors, None, dir.path().join("model.safetensors")).unwrap();
    dir
}

fn load_err(dir: &Path) -> String {
    match Embedder::load(dir, LoadOptions::default()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn embed_text(e: &Embedder, text: &str) -> Vec<f32> {
    let input = e
        .prepare("You are a helpful assistant.", text, Vec::new())
        .unwrap();
    e.embed_batch(&[input]).unwrap().remove(0)
}

#[test]
fn a_missing_tensor_is_named() {
    let _mlx = mlx_lock();
    let dir = edited_model(
        |t| {
            t.remove("model.layers.1.mlp.up_proj.weight").unwrap();
        },
        |_| {},
    );
    let msg = load_err(dir.path());
    assert!(
        msg.contains("missing") && msg.contains("model.layers.1.mlp.up_proj.weight"),
        "{msg}"
    );
}

#[test]
fn a_wrong_shape_is_named() {
    let _mlx = mlx_lock();
    let dir = edited_model(
        |t| {
            let w = t["model.norm.weight"].clone();
            let longer = mlx_rs::ops::concatenate(&[&w, &w], 0).unwrap();
            t.insert("model.norm.weight".into(), longer);
        },
        |_| {},
    );
    let msg = load_err(dir.path());
    assert!(
        msg.contains("model.norm.weight") && msg.contains("[128]"),
        "{msg}"
    );
}

#[test]
fn unexpected_tensors_are_reported_but_lm_head_is_ignored() {
    let _mlx = mlx_lock();
    let dir = edited_model(
        |t| {
            t.insert(
                "visual.extra.weight".into(),
                Array::from_slice(&[1.0f32], &[1]),
            );
        },
        |_| {},
    );
    let msg = load_err(dir.path());
    assert!(
        msg.contains("unexpected") && msg.contains("visual.extra.weight"),
        "{msg}"
    );

    let dir = edited_model(
        |t| {
            let embed = t["model.embed_tokens.weight"].clone();
            t.insert("lm_head.weight".into(), embed);
        },
        |_| {},
    );
    let e = Embedder::load(dir.path(), LoadOptions::default()).unwrap();
    let want = crate::model_parity::floats(&case("text_short")["embedding_fp32"][0]);
    let got = embed_text(&e, "Hello world");
    assert!(crate::model_parity::max_abs_diff(&got, &want) < 1e-5);
}

#[test]
fn nested_config_and_new_key_names_give_the_same_embeddings() {
    let _mlx = mlx_lock();
    // The newer transformers layout: text fields under text_config and
    // weights under model.language_model.* / model.visual.*.
    let rename = |t: &mut HashMap<String, Array>| {
        let old: Vec<(String, Array)> = t.drain().collect();
        for (k, v) in old {
            let new = if let Some(rest) = k.strip_prefix("visual.") {
                format!("model.visual.{rest}")
            } else {
                format!("model.language_model.{}", k.strip_prefix("model.").unwrap())
            };
            assert_eq!(normalise_key(&new).as_deref(), Some(k.as_str()));
            t.insert(new, v);
        }
    };
    let nest = |c: &mut serde_json::Value| {
        let obj = c.as_object_mut().unwrap();
        let mut text = serde_json::Map::new();
        for key in [
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "rms_norm_eps",
            "rope_theta",
            "rope_scaling",
        ] {
            text.insert(key.into(), obj.remove(key).unwrap());
        }
        obj.insert("text_config".into(), text.into());
    };
    let dir = edited_model(rename, nest);
    let nested = Embedder::load(dir.path(), LoadOptions::default()).unwrap();
    let flat = load(ComputeType::Float32);
    for text in ["Hello world", ""] {
        let a = embed_text(&nested, text);
        let b = embed_text(&flat, text);
        assert_eq!(a, b);
    }
}

#[test]
fn missing_files_give_clear_errors() {
    let _mlx = mlx_lock();
    let dir = tempfile::tempdir().unwrap();
    let msg = load_err(dir.path());
    assert!(msg.contains("config.json"), "{msg}");
    std::fs::copy(
        fixture_dir().join("model/config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    std::fs::copy(
        fixture_dir().join("model/tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let msg = load_err(dir.path());
    assert!(msg.contains("model.safetensors"), "{msg}");
}
