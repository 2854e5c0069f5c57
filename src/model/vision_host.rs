//! The vision tower on the float32 CPU path: every block computed on host
//! buffers with `host` layers and the `kernels` attention (see `host` for
//! why). Same model as `vision`'s MLX path; the fixtures hold both to the
//! reference.
use mlx_rs::Array;

use super::{
    config::VisionConfig,
    host::{HostLayerNorm, HostLinear},
    kernels,
    stages::StageClock,
    vision::{Patches, LN_EPS},
    weights::Weights,
    ModelError,
};

struct Block {
    norm1: HostLayerNorm,
    norm2: HostLayerNorm,
    qkv: HostLinear,
    proj: HostLinear,
    fc1: HostLinear,
    fc2: HostLinear,
}

pub struct HostVisionTower {
    /// Conv3d with stride = kernel is a linear map over the flattened
    /// patch: weight `[embed_dim, patch_dim]`.
    patch_embed: HostLinear,
    blocks: Vec<Block>,
    merger_ln: HostLayerNorm,
    merger_fc1: HostLinear,
    merger_fc2: HostLinear,
}

fn norm(w: &mut Weights, prefix: &str) -> Result<HostLayerNorm, ModelError> {
    HostLayerNorm::new(
        &w.take(&format!("{prefix}.weight")),
        &w.take(&format!("{prefix}.bias")),
        LN_EPS,
    )
}

fn linear(w: &mut Weights, prefix: &str) -> Result<HostLinear, ModelError> {
    HostLinear::new(
        &w.take(&format!("{prefix}.weight")),
        Some(&w.take(&format!("{prefix}.bias"))),
    )
}

impl HostVisionTower {
    pub fn load(cfg: &VisionConfig, w: &mut Weights) -> Result<Self, ModelError> {
        let conv = w
            .take("visual.patch_embed.proj.weight")
            .reshape(&[cfg.embed_dim as i32, cfg.patch_dim() as i32])?;
        let blocks = (0..cfg.depth)
            .map(|i| {
                let p = format!("visual.blocks.{i}");
                Ok(Block {
                    norm1: norm(w, &format!("{p}.norm1"))?,
                    norm2: norm(w, &format!("{p}.norm2"))?,
                    qkv: linear(w, &format!("{p}.attn.qkv"))?,
                    proj: linear(w, &format!("{p}.attn.proj"))?,
                    fc1: linear(w, &format!("{p}.mlp.fc1"))?,
                    fc2: linear(w, &format!("{p}.mlp.fc2"))?,
                })
            })
            .collect::<Result<_, ModelError>>()?;
        Ok(HostVisionTower {
            patch_embed: HostLinear::new(&conv, None)?,
            blocks,
            merger_ln: norm(w, "visual.merger.ln_q")?,
            merger_fc1: linear(w, "visual.merger.mlp.0")?,
            merger_fc2: linear(w, "visual.merger.mlp.2")?,
        })
    }

    /// All the images' patches through the tower together (one GEMM per
    /// layer; attention per image) → `[patches / merge², hidden]`.
    pub fn forward(
        &self,
        cfg: &VisionConfig,
        patches: &Patches,
        clock: &StageClock,
    ) -> Result<Array, ModelError> {
        let n = patches.count;
        let ed = cfg.embed_dim;
        let hd = cfg.head_dim();
        // The residual stream, and buffers reused by every block.
        let mut x = vec![0.0f32; n * ed];
        let mut normed = vec![0.0f32; n * ed];
        let mut qkv = vec![0.0f32; n * 3 * ed];
        let mut hidden = vec![0.0f32; n * cfg.mlp_hidden()];
        let mut attended = vec![0.0f32; n * ed];
        let mut scratch = kernels::AttentionScratch::default();
        self.patch_embed.forward(&patches.pixels, &mut x);
        clock.charge("vision patch embed");

        for b in &self.blocks {
            b.norm1.forward(&x, &mut normed);
            clock.charge("vision norms/rotary/residual");
            b.qkv.forward(&normed, &mut qkv);
            clock.charge("vision attention projections");
            let part = |offset| kernels::Rows {
                data: &qkv,
                row_stride: 3 * ed,
                offset,
                first_token: 0,
            };
            kernels::attention(
                part(0),
                part(ed),
                part(2 * ed),
                kernels::Heads {
                    heads: cfg.num_heads,
                    kv_heads: cfg.num_heads,
                    head_dim: hd,
                },
                // Bidirectional within each image.
                &patches.sequences,
                Some(kernels::Rotary {
                    cos: &patches.cos,
                    sin: &patches.sin,
                }),
                false,
                1.0 / (hd as f32).sqrt(),
                &mut scratch,
                &mut attended,
            );
            clock.charge("vision attention core");
            b.proj.accumulate(&attended, &mut x);
            clock.charge("vision attention projections");

            b.norm2.forward(&x, &mut normed);
            clock.charge("vision norms/rotary/residual");
            b.fc1.forward(&normed, &mut hidden);
            kernels::quick_gelu_in_place(&mut hidden);
            b.fc2.accumulate(&hidden, &mut x);
            clock.charge("vision mlp");
        }

        // The merger: each window of merge² consecutive patches (the
        // preprocessor emits them in window order) is one row of
        // `merge² · embed_dim` values — the normed stream read as such.
        self.merger_ln.forward(&x, &mut normed);
        let tokens = n / (cfg.spatial_merge_size * cfg.spatial_merge_size);
        let mut h = vec![0.0f32; tokens * self.merger_fc1.outputs()];
        self.merger_fc1.forward(&normed, &mut h);
        kernels::gelu_in_place(&mut h);
        let mut out = vec![0.0f32; tokens * self.merger_fc2.outputs()];
        self.merger_fc2.forward(&h, &mut out);
        clock.charge("vision merger");
        Ok(Array::from_slice(
            &out,
            &[tokens as i32, self.merger_fc2.outputs() as i32],
        ))
    }
}
