//! Qwen2-VL `config.json`, in both layouts seen in the wild:
//! the flat legacy one (text fields at top level, as in Qwen/Qwen2-VL-7B-Instruct
//! and Ops-MM-embedding-v1) and the newer nested one (`text_config` /
//! `vision_config`, transformers ≥ 4.5x). Every size is read from the file.
use serde::Deserialize;
use serde_json::Value;

use super::ModelError;

#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    /// M-RoPE split of the rotary half-dimension into (temporal, height, width).
    pub mrope_section: [usize; 3],
}

impl TextConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VisionConfig {
    pub depth: usize,
    pub embed_dim: usize,
    pub num_heads: usize,
    pub mlp_ratio: f64,
    #[serde(default = "default_in_chans", alias = "in_channels")]
    pub in_chans: usize,
    /// Output size of the patch merger (= the text hidden size).
    pub hidden_size: usize,
    pub patch_size: usize,
    pub spatial_merge_size: usize,
    pub temporal_patch_size: usize,
}

fn default_in_chans() -> usize {
    3
}

impl VisionConfig {
    pub fn head_dim(&self) -> usize {
        self.embed_dim / self.num_heads
    }
    pub fn mlp_hidden(&self) -> usize {
        (self.embed_dim as f64 * self.mlp_ratio) as usize
    }
    /// Floats per patch row: channels × temporal × patch × patch (1176 for Qwen2-VL).
    pub fn patch_dim(&self) -> usize {
        self.in_chans * self.temporal_patch_size * self.patch_size * self.patch_size
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Qwen2VlConfig {
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub image_token_id: u32,
    pub vision_start_token_id: u32,
    pub vision_end_token_id: u32,
}

#[derive(Deserialize)]
struct TextFields {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: usize,
    rms_norm_eps: f32,
    #[serde(default = "default_rope_theta")]
    rope_theta: f32,
    #[serde(default)]
    rope_scaling: Option<Value>,
    #[serde(default)]
    rope_parameters: Option<Value>,
}

fn default_rope_theta() -> f32 {
    1_000_000.0
}

impl Qwen2VlConfig {
    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        let root: Value = serde_json::from_str(text)
            .map_err(|e| ModelError::Config(format!("config.json is not valid JSON: {e}")))?;
        // Nested layout keeps text fields in `text_config`; the legacy one at the top.
        let text_node = root.get("text_config").unwrap_or(&root);
        let t: TextFields = serde_json::from_value(text_node.clone())
            .map_err(|e| ModelError::Config(format!("config.json text fields: {e}")))?;
        let vision: VisionConfig = serde_json::from_value(
            root.get("vision_config")
                .cloned()
                .ok_or_else(|| ModelError::Config("config.json has no vision_config".into()))?,
        )
        .map_err(|e| ModelError::Config(format!("config.json vision_config: {e}")))?;
        let rope = t
            .rope_scaling
            .as_ref()
            .or(t.rope_parameters.as_ref())
            .or_else(|| root.get("rope_scaling"));
        let rope_theta = rope
            .and_then(|r| r.get("rope_theta"))
            .and_then(Value::as_f64)
            .map_or(t.rope_theta, |v| v as f32);
        let section: Vec<usize> = rope
            .and_then(|r| r.get("mrope_section"))
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .ok_or_else(|| {
                ModelError::Config("config.json has no rope_scaling.mrope_section".into())
            })?;
        let mrope_section: [usize; 3] = section.try_into().map_err(|s: Vec<usize>| {
            ModelError::Config(format!("mrope_section must have 3 entries, got {s:?}"))
        })?;
        let text = TextConfig {
            vocab_size: t.vocab_size,
            hidden_size: t.hidden_size,
            intermediate_size: t.intermediate_size,
            num_hidden_layers: t.num_hidden_layers,
            num_attention_heads: t.num_attention_heads,
            num_key_value_heads: t.num_key_value_heads,
            rms_norm_eps: t.rms_norm_eps,
            rope_theta,
            mrope_section,
        };
        let token = |name: &str, default: u32| {
            root.get(name)
                .or_else(|| text_node.get(name))
                .and_then(Value::as_u64)
                .map_or(default, |v| v as u32)
        };
        let config = Qwen2VlConfig {
            image_token_id: token("image_token_id", 151_655),
            vision_start_token_id: token("vision_start_token_id", 151_652),
            vision_end_token_id: token("vision_end_token_id", 151_653),
            text,
            vision,
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ModelError> {
        let t = &self.text;
        let bad = |m: String| Err(ModelError::Config(m));
        if t.num_attention_heads == 0
            || !t.hidden_size.is_multiple_of(t.num_attention_heads)
            || t.num_key_value_heads == 0
            || !t.num_attention_heads.is_multiple_of(t.num_key_value_heads)
        {
            return bad(format!(
                "inconsistent attention sizes: hidden {} heads {} kv heads {}",
                t.hidden_size, t.num_attention_heads, t.num_key_value_heads
            ));
        }
        if t.mrope_section.iter().sum::<usize>() * 2 != t.head_dim() {
            return bad(format!(
                "mrope_section {:?} must sum to head_dim/2 = {}",
                t.mrope_section,
                t.head_dim() / 2
            ));
        }
        let v = &self.vision;
        if v.num_heads == 0
            || !v.embed_dim.is_multiple_of(v.num_heads)
            || !v.head_dim().is_multiple_of(4)
        {
            return bad(format!(
                "inconsistent vision sizes: embed_dim {} heads {}",
                v.embed_dim, v.num_heads
            ));
        }
        if v.hidden_size != t.hidden_size {
            return bad(format!(
                "vision_config.hidden_size {} differs from the text hidden size {}",
                v.hidden_size, t.hidden_size
            ));
        }
        Ok(())
    }
}
