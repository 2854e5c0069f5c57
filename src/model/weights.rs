//! Loading Qwen2-VL safetensors strictly: every expected tensor must be there
//! with the expected shape, and nothing unexpected may be left over (except
//! `lm_head.*`, which the embedding path never uses).
//!
//! Key names are normalised to the legacy layout (`model.*`, `visual.*`);
//! the newer layout (`model.language_model.*`, `model.visual.*`) is renamed
//! in [`normalise_key`], the one place that knows about both.
use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use mlx_rs::{Array, Dtype};

use super::{config::Qwen2VlConfig, ModelError};

/// Checkpoint key → its name in the legacy layout, or `None` for keys we ignore.
pub fn normalise_key(key: &str) -> Option<String> {
    if key.starts_with("lm_head.") {
        return None;
    }
    if let Some(rest) = key.strip_prefix("model.language_model.") {
        return Some(format!("model.{rest}"));
    }
    if let Some(rest) = key.strip_prefix("model.visual.") {
        return Some(format!("visual.{rest}"));
    }
    Some(key.to_owned())
}

/// The safetensors files of a model directory: the shards named by
/// `model.safetensors.index.json`, or the single `model.safetensors`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| ModelError::io(&index, e))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            ModelError::Weights(format!("{} is not valid JSON: {e}", index.display()))
        })?;
        let map = json["weight_map"]
            .as_object()
            .ok_or_else(|| ModelError::Weights(format!("{} has no weight_map", index.display())))?;
        let mut files: Vec<String> = map
            .values()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(ModelError::Weights(format!(
        "no model.safetensors or model.safetensors.index.json in {}",
        dir.display()
    )))
}

/// Number of parameters in a model directory's safetensors files (read from
/// their headers only, without loading any tensor), excluding `lm_head.*`,
/// which is never loaded.
pub fn parameter_count(dir: &Path) -> Result<u64, ModelError> {
    use std::io::Read;
    let mut total = 0u64;
    for file in weight_files(dir)? {
        let bad = |why: &str| ModelError::Weights(format!("{}: {why}", file.display()));
        let mut f = std::fs::File::open(&file).map_err(|e| ModelError::io(&file, e))?;
        let mut len = [0u8; 8];
        f.read_exact(&mut len)
            .map_err(|e| ModelError::io(&file, e))?;
        let len = u64::from_le_bytes(len);
        // The format caps headers at 100 MB.
        if len > 100_000_000 {
            return Err(bad("not a safetensors file (header too large)"));
        }
        let mut header = vec![0u8; len as usize];
        f.read_exact(&mut header)
            .map_err(|e| ModelError::io(&file, e))?;
        let header: serde_json::Value =
            serde_json::from_slice(&header).map_err(|_| bad("safetensors header is not JSON"))?;
        let entries = header
            .as_object()
            .ok_or_else(|| bad("safetensors header is not an object"))?;
        for (name, entry) in entries {
            if name == "__metadata__" || normalise_key(name).is_none() {
                continue;
            }
            let shape = entry["shape"]
                .as_array()
                .ok_or_else(|| bad("tensor without shape"))?;
            total += shape
                .iter()
                .map(|d| d.as_u64().unwrap_or(0))
                .product::<u64>();
        }
    }
    Ok(total)
}

/// Every tensor the model needs, by legacy name, with its shape.
pub fn expected_shapes(cfg: &Qwen2VlConfig) -> BTreeMap<String, Vec<i32>> {
    let t = &cfg.text;
    let v = &cfg.vision;
    let (h, hd) = (t.hidden_size as i32, t.head_dim() as i32);
    let (nh, nkv, inter) = (
        t.num_attention_heads as i32,
        t.num_key_value_heads as i32,
        t.intermediate_size as i32,
    );
    let mut s = BTreeMap::new();
    let mut put = |k: String, shape: &[i32]| {
        s.insert(k, shape.to_vec());
    };
    put(
        "model.embed_tokens.weight".into(),
        &[t.vocab_size as i32, h],
    );
    put("model.norm.weight".into(), &[h]);
    for i in 0..t.num_hidden_layers {
        let p = format!("model.layers.{i}");
        put(format!("{p}.input_layernorm.weight"), &[h]);
        put(format!("{p}.post_attention_layernorm.weight"), &[h]);
        put(format!("{p}.self_attn.q_proj.weight"), &[nh * hd, h]);
        put(format!("{p}.self_attn.q_proj.bias"), &[nh * hd]);
        put(format!("{p}.self_attn.k_proj.weight"), &[nkv * hd, h]);
        put(format!("{p}.self_attn.k_proj.bias"), &[nkv * hd]);
        put(format!("{p}.self_attn.v_proj.weight"), &[nkv * hd, h]);
        put(format!("{p}.self_attn.v_proj.bias"), &[nkv * hd]);
        put(format!("{p}.self_attn.o_proj.weight"), &[h, nh * hd]);
        put(format!("{p}.mlp.gate_proj.weight"), &[inter, h]);
        put(format!("{p}.mlp.up_proj.weight"), &[inter, h]);
        put(format!("{p}.mlp.down_proj.weight"), &[h, inter]);
    }
    let ed = v.embed_dim as i32;
    let mlp = v.mlp_hidden() as i32;
    let ps = v.patch_size as i32;
    put(
        "visual.patch_embed.proj.weight".into(),
        &[ed, v.in_chans as i32, v.temporal_patch_size as i32, ps, ps],
    );
    for i in 0..v.depth {
        let p = format!("visual.blocks.{i}");
        for n in ["norm1", "norm2"] {
            put(format!("{p}.{n}.weight"), &[ed]);
            put(format!("{p}.{n}.bias"), &[ed]);
        }
        put(format!("{p}.attn.qkv.weight"), &[3 * ed, ed]);
        put(format!("{p}.attn.qkv.bias"), &[3 * ed]);
        put(format!("{p}.attn.proj.weight"), &[ed, ed]);
        put(format!("{p}.attn.proj.bias"), &[ed]);
        put(format!("{p}.mlp.fc1.weight"), &[mlp, ed]);
        put(format!("{p}.mlp.fc1.bias"), &[mlp]);
        put(format!("{p}.mlp.fc2.weight"), &[ed, mlp]);
        put(format!("{p}.mlp.fc2.bias"), &[ed]);
    }
    let merged = ed * (v.spatial_merge_size * v.spatial_merge_size) as i32;
    put("visual.merger.ln_q.weight".into(), &[ed]);
    put("visual.merger.ln_q.bias".into(), &[ed]);
    put("visual.merger.mlp.0.weight".into(), &[merged, merged]);
    put("visual.merger.mlp.0.bias".into(), &[merged]);
    put("visual.merger.mlp.2.weight".into(), &[h, merged]);
    put("visual.merger.mlp.2.bias".into(), &[h]);
    s
}

/// All tensors of a checkpoint, checked against the config, cast to `dtype`.
pub struct Weights {
    tensors: HashMap<String, Array>,
}

impl Weights {
    pub fn load(dir: &Path, cfg: &Qwen2VlConfig, dtype: Dtype) -> Result<Self, ModelError> {
        let mut tensors = HashMap::new();
        for file in weight_files(dir)? {
            if !file.is_file() {
                return Err(ModelError::Weights(format!(
                    "weight file {} (named in the index) is missing",
                    file.display()
                )));
            }
            let loaded = Array::load_safetensors(&file)
                .map_err(|e| ModelError::Weights(format!("cannot read {}: {e}", file.display())))?;
            for (key, array) in loaded {
                if let Some(name) = normalise_key(&key) {
                    tensors.insert(name, array);
                }
            }
        }
        let expected = expected_shapes(cfg);
        let missing: Vec<&String> = expected
            .keys()
            .filter(|k| !tensors.contains_key(*k))
            .collect();
        if !missing.is_empty() {
            return Err(ModelError::Weights(format!(
                "missing tensor{} {}",
                if missing.len() > 1 { "s" } else { "" },
                list(missing.iter().map(|s| s.as_str()))
            )));
        }
        let mut unexpected: Vec<&str> = tensors
            .keys()
            .filter(|k| !expected.contains_key(*k))
            .map(String::as_str)
            .collect();
        if !unexpected.is_empty() {
            unexpected.sort();
            return Err(ModelError::Weights(format!(
                "unexpected tensor{} {} (not part of a Qwen2-VL with this config.json)",
                if unexpected.len() > 1 { "s" } else { "" },
                list(unexpected.into_iter())
            )));
        }
        for (name, shape) in &expected {
            let got = tensors[name].shape();
            if got != shape.as_slice() {
                return Err(ModelError::Weights(format!(
                    "tensor {name} has shape {got:?}, config.json implies {shape:?}"
                )));
            }
        }
        for array in tensors.values_mut() {
            if array.dtype() != dtype {
                *array = array.as_dtype(dtype)?;
            }
        }
        // Cast now rather than lazily inside the first forward pass, which
        // would make the first request pay for the whole model's conversion.
        mlx_rs::transforms::eval(tensors.values())?;
        Ok(Weights { tensors })
    }

    /// Removes and returns a tensor; names were checked at load.
    pub fn take(&mut self, name: &str) -> Array {
        self.tensors
            .remove(name)
            .unwrap_or_else(|| panic!("weight {name} was checked at load"))
    }
}

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    let shown = names.iter().take(8).copied().collect::<Vec<_>>().join(", ");
    if names.len() > 8 {
        format!("{shown} and {} more", names.len() - 8)
    } else {
        shown
    }
}
