//! Qwen2-VL vision tower: patch embedding, ViT blocks with 2-D rotary
//! attention, and the PatchMerger that turns each 2×2 window of patches into
//! one token of the language model's width.
//! Reference: transformers `models/qwen2_vl/modeling_qwen2_vl.py`
//! (`Qwen2VisionTransformerPretrainedModel`).
use mlx_rs::{fast, ops, Array, Dtype};

use super::{
    config::VisionConfig,
    host, kernels,
    linear::{self, Linear, QuantSpec},
    preprocess::ImageInput,
    rope,
    stages::StageClock,
    vision_host::HostVisionTower,
    ModelError,
};

pub(super) const LN_EPS: f32 = 1e-6;

struct LayerNorm {
    weight: Array,
    bias: Array,
}

impl LayerNorm {
    fn load(
        w: &mut super::weights::Weights,
        prefix: &str,
        dtype: Dtype,
    ) -> Result<Self, ModelError> {
        Ok(LayerNorm {
            weight: w.take(&format!("{prefix}.weight")).as_dtype(dtype)?,
            bias: w.take(&format!("{prefix}.bias")).as_dtype(dtype)?,
        })
    }
    fn forward(&self, x: &Array) -> Result<Array, ModelError> {
        Ok(fast::layer_norm(x, &self.weight, &self.bias, LN_EPS)?)
    }
}

struct Block {
    norm1: LayerNorm,
    norm2: LayerNorm,
    qkv: Linear,
    proj: Linear,
    fc1: Linear,
    fc2: Linear,
}

pub struct VisionTower {
    cfg: VisionConfig,
    path: Path,
}

enum Path {
    /// float32 on the CPU: host buffers, BLAS and the `kernels`.
    Host(HostVisionTower),
    /// MLX ops (GPU, bfloat16 compute, or `cpu_kernels` off).
    Mlx(MlxVisionTower),
}

struct MlxVisionTower {
    dtype: Dtype,
    /// Conv3d with stride = kernel is a linear map over the flattened patch: `[1176, embed_dim]`.
    patch_embed_t: Array,
    blocks: Vec<Block>,
    merger_ln: LayerNorm,
    merger_fc1: Linear,
    merger_fc2: Linear,
}

/// A group of images' patches `[count, patch_dim]` (merge-window order),
/// their rotary tables `[count, head_dim]`, and one attention sequence per
/// image (attention never crosses images: the block-diagonal attention of
/// the reference).
pub(super) struct Patches {
    pub pixels: Vec<f32>,
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
    pub sequences: Vec<kernels::Sequence>,
    pub count: usize,
}

impl Patches {
    fn gather(cfg: &VisionConfig, images: &[&ImageInput]) -> Self {
        let merge = cfg.spatial_merge_size as u32;
        let mut pixels = Vec::new();
        let mut cos = Vec::new();
        let mut sin = Vec::new();
        let mut sequences = Vec::with_capacity(images.len());
        for image in images {
            let start = pixels.len() / cfg.patch_dim();
            pixels.extend_from_slice(&image.pixel_values);
            let (c, s) = rope::vision_tables(image.grid_thw, merge, cfg.head_dim());
            cos.extend(c);
            sin.extend(s);
            sequences.push(kernels::Sequence {
                tokens: (start..pixels.len() / cfg.patch_dim()).collect(),
                first_query: 0,
            });
        }
        let count = pixels.len() / cfg.patch_dim();
        Patches {
            pixels,
            cos,
            sin,
            sequences,
            count,
        }
    }
}

fn linear(
    w: &mut super::weights::Weights,
    prefix: &str,
    dtype: Dtype,
) -> Result<Linear, ModelError> {
    // The vision tower is small next to the decoder; it always stays dense.
    Linear::new(
        w.take(&format!("{prefix}.weight")),
        Some(w.take(&format!("{prefix}.bias"))),
        QuantSpec::None,
        dtype,
    )
}

impl VisionTower {
    /// `host_kernels`: the float32 CPU path (when a CBLAS is loaded).
    pub fn load(
        cfg: &VisionConfig,
        w: &mut super::weights::Weights,
        dtype: Dtype,
        host_kernels: bool,
    ) -> Result<Self, ModelError> {
        let path = if host_kernels && dtype == Dtype::Float32 && host::available() {
            Path::Host(HostVisionTower::load(cfg, w)?)
        } else {
            Path::Mlx(MlxVisionTower::load(cfg, w, dtype)?)
        };
        Ok(VisionTower {
            cfg: cfg.clone(),
            path,
        })
    }

    /// Images' patches → their tokens, `[Σ t·h·w / merge², hidden]` in
    /// image order. The host path takes all images through each layer
    /// together; MLX takes one image at a time.
    pub fn forward(&self, images: &[&ImageInput], clock: &StageClock) -> Result<Array, ModelError> {
        match &self.path {
            Path::Host(tower) => {
                tower.forward(&self.cfg, &Patches::gather(&self.cfg, images), clock)
            }
            Path::Mlx(tower) => {
                let each = images
                    .iter()
                    .map(|image| {
                        tower.forward(&self.cfg, &Patches::gather(&self.cfg, &[image]), clock)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(match each.len() {
                    1 => each.into_iter().next().expect("one"),
                    _ => ops::concatenate(&each, 0)?,
                })
            }
        }
    }
}

impl MlxVisionTower {
    fn load(
        cfg: &VisionConfig,
        w: &mut super::weights::Weights,
        dtype: Dtype,
    ) -> Result<Self, ModelError> {
        let conv = w.take("visual.patch_embed.proj.weight");
        let patch_embed_t = conv
            .reshape(&[cfg.embed_dim as i32, cfg.patch_dim() as i32])?
            .t();
        let mut blocks = Vec::with_capacity(cfg.depth);
        for i in 0..cfg.depth {
            let p = format!("visual.blocks.{i}");
            blocks.push(Block {
                norm1: LayerNorm::load(w, &format!("{p}.norm1"), dtype)?,
                norm2: LayerNorm::load(w, &format!("{p}.norm2"), dtype)?,
                qkv: linear(w, &format!("{p}.attn.qkv"), dtype)?,
                proj: linear(w, &format!("{p}.attn.proj"), dtype)?,
                fc1: linear(w, &format!("{p}.mlp.fc1"), dtype)?,
                fc2: linear(w, &format!("{p}.mlp.fc2"), dtype)?,
            });
        }
        Ok(MlxVisionTower {
            dtype,
            patch_embed_t,
            blocks,
            merger_ln: LayerNorm::load(w, "visual.merger.ln_q", dtype)?,
            merger_fc1: linear(w, "visual.merger.mlp.0", dtype)?,
            merger_fc2: linear(w, "visual.merger.mlp.2", dtype)?,
        })
    }

    /// One image's patches through the tower.
    fn forward(
        &self,
        cfg: &VisionConfig,
        patches: &Patches,
        clock: &StageClock,
    ) -> Result<Array, ModelError> {
        let (heads, hd) = (cfg.num_heads as i32, cfg.head_dim() as i32);
        let n = patches.count as i32;
        let x = Array::from_slice(&patches.pixels, &[n, cfg.patch_dim() as i32])
            .as_dtype(self.dtype)?;
        let mut x = ops::matmul(&x, linear::as_dtype(&self.patch_embed_t, self.dtype)?)?;
        clock.mark("vision patch embed", &x)?;

        let cos = Array::from_slice(&patches.cos, &[n, 1, hd]);
        let sin = Array::from_slice(&patches.sin, &[n, 1, hd]);
        let scale = 1.0 / (hd as f32).sqrt();

        for b in &self.blocks {
            let y = b.norm1.forward(&x)?;
            clock.mark("vision norms/rotary/residual", &y)?;
            let qkv = b.qkv.forward(&y)?.reshape(&[n, 3, heads, hd])?;
            clock.mark("vision attention projections", &qkv)?;
            let parts = qkv.split_equal(3, 1)?;
            let q = rotate(&parts[0].reshape(&[n, heads, hd])?, &cos, &sin, self.dtype)?;
            let k = rotate(&parts[1].reshape(&[n, heads, hd])?, &cos, &sin, self.dtype)?;
            let v = parts[2].reshape(&[n, heads, hd])?;
            clock.mark("vision norms/rotary/residual", &ops::add(&q, &k)?)?;
            // [n, heads, hd] → [1, heads, n, hd]; bidirectional within the image.
            let to_bhld = |a: &Array| a.transpose_axes(&[1, 0, 2])?.expand_dims(0);
            let o = fast::scaled_dot_product_attention(
                to_bhld(&q)?,
                to_bhld(&k)?,
                to_bhld(&v)?,
                scale,
                None,
                None,
            )?;
            let o = o
                .squeeze_axes(&[0])?
                .transpose_axes(&[1, 0, 2])?
                .reshape(&[n, cfg.embed_dim as i32])?;
            clock.mark("vision attention core", &o)?;
            let o = b.proj.forward(&o)?;
            clock.mark("vision attention projections", &o)?;
            x = ops::add(&x, o)?;

            let y = b.norm2.forward(&x)?;
            clock.mark("vision norms/rotary/residual", &y)?;
            let y = quick_gelu(&b.fc1.forward(&y)?)?;
            let y = b.fc2.forward(&y)?;
            clock.mark("vision mlp", &y)?;
            x = ops::add(&x, y)?;
        }

        let window = (cfg.spatial_merge_size * cfg.spatial_merge_size) as i32;
        let y = self
            .merger_ln
            .forward(&x)?
            .reshape(&[n / window, cfg.embed_dim as i32 * window])?;
        let y = self.merger_fc1.forward(&y)?;
        let y = mlx_rs::nn::gelu(y)?;
        let y = self.merger_fc2.forward(&y)?;
        clock.mark("vision merger", &y)?;
        Ok(y)
    }
}

/// Vision RoPE is applied in f32 whatever the compute dtype, as the reference does.
fn rotate(x: &Array, cos: &Array, sin: &Array, dtype: Dtype) -> Result<Array, ModelError> {
    let y = super::apply_rotary(&x.as_dtype(Dtype::Float32)?, cos, sin)?;
    Ok(y.as_dtype(dtype)?)
}

/// `x · sigmoid(1.702 x)` (CLIP's quick GELU).
fn quick_gelu(x: &Array) -> Result<Array, ModelError> {
    let s = ops::sigmoid(ops::multiply(x, super::scalar(1.702, x.dtype())?)?)?;
    Ok(ops::multiply(x, &s)?)
}
