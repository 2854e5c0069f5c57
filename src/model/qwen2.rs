//! Qwen2 text decoder as used by Qwen2-VL: GQA attention with q/k/v bias,
//! M-RoPE, SwiGLU MLP, RMSNorm (pre-norm). Only the final hidden state of the
//! last token is produced: `lm_head` is never computed.
//! Reference: transformers `models/qwen2_vl/modeling_qwen2_vl.py` (`Qwen2VLTextModel`).
use mlx_rs::{fast, ops, Array, Dtype};

use super::{
    config::TextConfig,
    host::{self, HostRmsNorm, Projection},
    kernels,
    linear::{self, Linear, QuantSpec},
    stages::StageClock,
    weights::Weights,
    ModelError,
};

struct Layer {
    input_norm: Array,
    post_attn_norm: Array,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// A layer of the float32 CPU path: host buffers, BLAS (MLX for quantized
/// projections) and the `kernels`.
struct HostLayer {
    input_norm: HostRmsNorm,
    post_attn_norm: HostRmsNorm,
    q: Projection,
    k: Projection,
    v: Projection,
    o: Projection,
    gate: Projection,
    up: Projection,
    down: Projection,
}

enum Layers {
    /// The padded batch in MLX ops (GPU, bfloat16 compute, or
    /// `cpu_kernels` off).
    Mlx(Vec<Layer>),
    /// The ragged batch on the host (float32 on the CPU).
    Host(Vec<HostLayer>),
}

pub struct TextDecoder {
    cfg: TextConfig,
    /// Compute dtype; `embed_tokens` may be stored narrower (bf16 weights).
    dtype: Dtype,
    embed_tokens: Array,
    layers: Layers,
    final_norm: Array,
}

/// Layer `i`'s projections q, k, v, o, gate, up, down, each built by
/// `make(weight, bias)` (q, k and v have biases).
fn projections<L>(
    w: &mut Weights,
    i: usize,
    mut make: impl FnMut(Array, Option<Array>) -> Result<L, ModelError>,
) -> Result<[L; 7], ModelError> {
    let p = format!("model.layers.{i}");
    let mut lin = |name: &str, bias: bool| {
        let b = bias.then(|| w.take(&format!("{p}.{name}.bias")));
        make(w.take(&format!("{p}.{name}.weight")), b)
    };
    Ok([
        lin("self_attn.q_proj", true)?,
        lin("self_attn.k_proj", true)?,
        lin("self_attn.v_proj", true)?,
        lin("self_attn.o_proj", false)?,
        lin("mlp.gate_proj", false)?,
        lin("mlp.up_proj", false)?,
        lin("mlp.down_proj", false)?,
    ])
}

/// Layer `i`'s norm weights: before attention, before the MLP.
fn norms(w: &mut Weights, i: usize) -> [Array; 2] {
    let p = format!("model.layers.{i}");
    [
        w.take(&format!("{p}.input_layernorm.weight")),
        w.take(&format!("{p}.post_attention_layernorm.weight")),
    ]
}

impl Layer {
    fn load(w: &mut Weights, i: usize, quant: QuantSpec, dtype: Dtype) -> Result<Self, ModelError> {
        let [q, k, v, o, gate, up, down] =
            projections(w, i, |weight, bias| Linear::new(weight, bias, quant, dtype))?;
        let [input_norm, post_attn_norm] = norms(w, i);
        Ok(Layer {
            input_norm: input_norm.as_dtype(dtype)?,
            post_attn_norm: post_attn_norm.as_dtype(dtype)?,
            q,
            k,
            v,
            o,
            gate,
            up,
            down,
        })
    }
}

impl HostLayer {
    fn load(w: &mut Weights, i: usize, quant: QuantSpec, eps: f32) -> Result<Self, ModelError> {
        let [q, k, v, o, gate, up, down] =
            projections(w, i, |weight, bias| Projection::new(weight, bias, quant))?;
        let [input_norm, post_attn_norm] = norms(w, i);
        Ok(HostLayer {
            input_norm: HostRmsNorm::new(&input_norm, eps)?,
            post_attn_norm: HostRmsNorm::new(&post_attn_norm, eps)?,
            q,
            k,
            v,
            o,
            gate,
            up,
            down,
        })
    }
}

/// What the decoder needs for one padded batch.
pub struct DecoderInput<'a> {
    /// `[batch, len]` token ids, left-padded.
    pub ids: &'a Array,
    /// Token embeddings for image positions, in order of appearance over the
    /// whole batch, `[n_image_tokens, hidden]`; `None` for text-only batches.
    pub image_embeds: Option<&'a Array>,
    /// Flat (row-major over `[batch, len]`) indices of the image positions.
    pub image_positions: &'a [i32],
    /// M-RoPE tables `[batch, 1, len, head_dim]`.
    pub cos: &'a Array,
    pub sin: &'a Array,
    /// Additive attention mask `[batch, 1, len, len]`; `None` = plain causal.
    pub mask: Option<&'a Array>,
}

impl TextDecoder {
    pub fn load(
        cfg: &TextConfig,
        w: &mut Weights,
        quant: QuantSpec,
        dtype: Dtype,
        host_kernels: bool,
    ) -> Result<Self, ModelError> {
        let host = host_kernels && dtype == Dtype::Float32 && host::available();
        let layers = if host {
            Layers::Host(
                (0..cfg.num_hidden_layers)
                    .map(|i| HostLayer::load(w, i, quant, cfg.rms_norm_eps))
                    .collect::<Result<_, _>>()?,
            )
        } else {
            Layers::Mlx(
                (0..cfg.num_hidden_layers)
                    .map(|i| Layer::load(w, i, quant, dtype))
                    .collect::<Result<_, _>>()?,
            )
        };
        Ok(TextDecoder {
            cfg: cfg.clone(),
            dtype,
            embed_tokens: w.take("model.embed_tokens.weight"),
            layers,
            final_norm: w.take("model.norm.weight").as_dtype(dtype)?,
        })
    }

    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// Whether batches go through [`Self::last_hidden_ragged`] (the
    /// float32 CPU path) rather than [`Self::last_hidden`].
    pub fn host_kernels(&self) -> bool {
        matches!(self.layers, Layers::Host(_))
    }

    /// `[tokens, hidden]` input embeddings of flat token ids, with the rows
    /// at `image_positions` (flat indices) taken from `image_embeds`.
    fn input_embeddings(
        &self,
        flat_ids: &Array,
        image_embeds: Option<&Array>,
        image_positions: &[i32],
    ) -> Result<Array, ModelError> {
        let h = linear::as_dtype(&self.embed_tokens.take_axis(flat_ids, 0)?, self.dtype)?;
        let Some(image_embeds) = image_embeds else {
            return Ok(h);
        };
        // Scatter: gather from [text rows; image rows] with image positions
        // pointing past the text rows.
        let n = flat_ids.shape()[0];
        let mut index: Vec<i32> = (0..n).collect();
        for (k, &pos) in image_positions.iter().enumerate() {
            index[pos as usize] = n + k as i32;
        }
        let both = ops::concatenate(&[&h, &image_embeds.as_dtype(h.dtype())?], 0)?;
        Ok(both.take_axis(Array::from_slice(&index, &[n]), 0)?)
    }

    /// Final-normed hidden state of each row's last token, `[batch, hidden]`.
    pub fn last_hidden(
        &self,
        input: &DecoderInput,
        clock: &StageClock,
    ) -> Result<Array, ModelError> {
        let cfg = &self.cfg;
        let (b, l) = (input.ids.shape()[0], input.ids.shape()[1]);
        let hidden = cfg.hidden_size as i32;
        let (nh, nkv, hd) = (
            cfg.num_attention_heads as i32,
            cfg.num_key_value_heads as i32,
            cfg.head_dim() as i32,
        );
        let flat_ids = input.ids.reshape(&[b * l])?;
        let h = self.input_embeddings(&flat_ids, input.image_embeds, input.image_positions)?;
        let mut h = h.reshape(&[b, l, hidden])?;
        let dtype = h.dtype();
        let cos = input.cos.as_dtype(dtype)?;
        let sin = input.sin.as_dtype(dtype)?;
        let scale = 1.0 / (hd as f32).sqrt();
        clock.mark("decoder input (embeddings, scatter)", &h)?;

        let Layers::Mlx(layers) = &self.layers else {
            unreachable!("the float32 CPU path decodes ragged batches")
        };
        for layer in layers {
            let x = fast::rms_norm(&h, Some(&layer.input_norm), cfg.rms_norm_eps)?;
            clock.mark("decoder norms/rotary/residual", &x)?;
            let heads = |a: Array, n: i32| a.reshape(&[b, l, n, hd])?.transpose_axes(&[0, 2, 1, 3]);
            let q = heads(layer.q.forward(&x)?, nh)?;
            let k = heads(layer.k.forward(&x)?, nkv)?;
            let v = heads(layer.v.forward(&x)?, nkv)?;
            if clock.is_running() {
                mlx_rs::transforms::eval([&q, &k, &v])?;
                clock.charge("decoder attention projections");
            }
            let q = super::apply_rotary(&q, &cos, &sin)?;
            let k = super::apply_rotary(&k, &cos, &sin)?;
            if clock.is_running() {
                mlx_rs::transforms::eval([&q, &k])?;
                clock.charge("decoder norms/rotary/residual");
            }
            let o = match input.mask {
                Some(mask) => fast::scaled_dot_product_attention(&q, &k, &v, scale, mask, None)?,
                None => fast::scaled_dot_product_attention(
                    &q,
                    &k,
                    &v,
                    scale,
                    fast::ScaledDotProductAttentionMask::Causal,
                    None,
                )?,
            };
            let o = o.transpose_axes(&[0, 2, 1, 3])?.reshape(&[b, l, nh * hd])?;
            clock.mark("decoder attention core", &o)?;
            let o = layer.o.forward(&o)?;
            clock.mark("decoder attention projections", &o)?;
            h = ops::add(&h, o)?;

            let x = fast::rms_norm(&h, Some(&layer.post_attn_norm), cfg.rms_norm_eps)?;
            clock.mark("decoder norms/rotary/residual", &x)?;
            let gated = ops::multiply(
                mlx_rs::nn::silu(layer.gate.forward(&x)?)?,
                layer.up.forward(&x)?,
            )?;
            let y = layer.down.forward(&gated)?;
            clock.mark("decoder mlp", &y)?;
            h = ops::add(&h, y)?;
        }
        let last = h.take_axis(Array::from_int(l - 1), 1)?; // [b, hidden]
        Ok(fast::rms_norm(
            &last,
            Some(&self.final_norm),
            cfg.rms_norm_eps,
        )?)
    }

    /// The float32 CPU path on a ragged batch (see [`RaggedInput`]):
    /// attention and SwiGLU through `kernels`, and the last layer after its
    /// attention computed for each row's last token only (the only row the
    /// embedding reads; tokens never mix outside attention).
    /// Returns `[rows, hidden]`, and the keys and values of the first
    /// `input.capture` tokens when asked.
    pub fn last_hidden_ragged(
        &self,
        input: &RaggedInput,
        clock: &StageClock,
    ) -> Result<(Array, Option<PrefixKv>), ModelError> {
        let cfg = &self.cfg;
        // Token indices: a cached prefix's tokens come first (keys and values
        // only), then the `computed` tokens that go through the layers.
        let cached_len = input.cached.map_or(0, |c| c.len);
        let computed = input.ids.len();
        let tokens = cached_len + computed;
        let Layers::Host(layers) = &self.layers else {
            unreachable!("ragged batches are decoded on the float32 CPU path")
        };
        let ids: Vec<i32> = input.ids.iter().map(|&i| i as i32).collect();
        let h = self.input_embeddings(
            &Array::from_slice(&ids, &[computed as i32]),
            input.image_embeds,
            input.image_positions,
        )?;
        // The residual stream, `[computed, hidden]` (after the last layer's
        // attention: the rows' last tokens only).
        let mut h = host::to_host(&h)?;
        clock.charge("decoder input (embeddings, scatter)");

        let width = cfg.hidden_size;
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim(),
        );
        let shape = kernels::Heads {
            heads: nh,
            kv_heads: nkv,
            head_dim: hd,
        };
        let rotary = kernels::Rotary {
            cos: input.cos,
            sin: input.sin,
        };
        let scale = 1.0 / (hd as f32).sqrt();
        let every: Vec<kernels::Sequence> =
            input.prefix.iter().chain(input.rows).cloned().collect();
        let last_only: Vec<kernels::Sequence> = input
            .rows
            .iter()
            .map(|r| kernels::Sequence {
                tokens: r.tokens.clone(),
                first_query: r.tokens.len() - 1,
            })
            .collect();
        // Rows of the computed tokens that are some row's last token.
        let last_rows: Vec<usize> = input.last_tokens.iter().map(|&t| t - cached_len).collect();
        let mut captured = input.capture.map(|len| PrefixKv {
            len,
            keys: Vec::new(),
            values: Vec::new(),
        });
        let mut x = vec![0.0f32; computed * width];
        let mut q = vec![0.0f32; computed * nh * hd];
        let mut k = vec![0.0f32; computed * nkv * hd];
        let mut v = vec![0.0f32; computed * nkv * hd];
        let intermediate = cfg.intermediate_size;
        let mut gate = vec![0.0f32; computed * intermediate];
        let mut up = vec![0.0f32; computed * intermediate];
        let mut attended = vec![0.0f32; tokens * nh * hd];
        let mut scratch = kernels::AttentionScratch::default();
        for (i, layer) in layers.iter().enumerate() {
            let last_layer = i + 1 == layers.len();
            layer.input_norm.forward(&h, &mut x);
            clock.charge("decoder norms/rotary/residual");
            layer.q.forward(&x, &mut q)?;
            layer.k.forward(&x, &mut k)?;
            layer.v.forward(&x, &mut v)?;
            clock.charge("decoder attention projections");
            if let Some(c) = captured.as_mut() {
                c.keys.push(k[..c.len * nkv * hd].to_vec());
                c.values.push(v[..c.len * nkv * hd].to_vec());
            }
            let keys = after_prefix(input.cached.map(|c| &c.keys[i]), &k);
            let values = after_prefix(input.cached.map(|c| &c.values[i]), &v);
            kernels::attention(
                rows(&q, nh * hd, cached_len),
                rows(&keys, nkv * hd, 0),
                rows(&values, nkv * hd, 0),
                shape,
                if last_layer { &last_only } else { &every },
                Some(rotary),
                true,
                scale,
                &mut scratch,
                &mut attended,
            );
            let o = &attended[cached_len * nh * hd..];
            clock.charge("decoder attention core");
            if last_layer {
                h = gather_rows(&h, width, &last_rows);
                x.truncate(h.len());
                layer
                    .o
                    .accumulate(&gather_rows(o, nh * hd, &last_rows), &mut h)?;
            } else {
                layer.o.accumulate(o, &mut h)?;
            }
            clock.charge("decoder attention projections");

            layer.post_attn_norm.forward(&h, &mut x);
            clock.charge("decoder norms/rotary/residual");
            // Buffers sized for every computed token; the last layer uses
            // the first rows only.
            let used = h.len() / width * intermediate;
            let (gate, up) = (&mut gate[..used], &mut up[..used]);
            layer.gate.forward(&x, gate)?;
            layer.up.forward(&x, up)?;
            kernels::silu_mul_in_place(gate, up);
            layer.down.accumulate(gate, &mut h)?;
            clock.charge("decoder mlp");
        }
        let h = Array::from_slice(&h, &[(h.len() / width) as i32, width as i32]);
        let hidden = fast::rms_norm(&h, Some(&self.final_norm), cfg.rms_norm_eps)?;
        Ok((hidden, captured))
    }
}

/// The rows `which` of a row-major matrix `width` wide.
fn gather_rows(m: &[f32], width: usize, which: &[usize]) -> Vec<f32> {
    which
        .iter()
        .flat_map(|&r| &m[r * width..(r + 1) * width])
        .copied()
        .collect()
}

/// One batch in the CPU kernels' ragged layout: every row's tokens once,
/// without padding, after a prompt prefix that all rows share, stored once.
///
/// Token indices: the `cached` prefix's tokens first (they have keys and
/// values only), then the tokens in `ids`, which go through the layers.
pub struct RaggedInput<'a> {
    /// A prompt prefix computed by an earlier call, if this batch starts with it.
    pub cached: Option<&'a PrefixKv>,
    /// The computed tokens: the prefix the rows share (if not cached), then
    /// each row's own tokens.
    pub ids: &'a [u32],
    /// Token embeddings for image positions, in order of appearance.
    pub image_embeds: Option<&'a Array>,
    /// Indices into `ids` of the image positions.
    pub image_positions: &'a [i32],
    /// M-RoPE tables `[cached + computed tokens, head_dim]`.
    pub cos: &'a [f32],
    pub sin: &'a [f32],
    /// The shared prefix as a sequence of its own (keys and values for every
    /// row; its queries are computed once, here).
    pub prefix: Option<kernels::Sequence>,
    /// Each row: prefix tokens then its own, queries from its own.
    pub rows: &'a [kernels::Sequence],
    /// Token index of each row's last token.
    pub last_tokens: &'a [usize],
    /// Return the keys and values of this many leading tokens (to cache).
    pub capture: Option<usize>,
}

/// Plain rows for the CPU kernels, the first being token `first_token`.
fn rows(data: &[f32], width: usize, first_token: usize) -> kernels::Rows<'_> {
    kernels::Rows {
        data,
        row_stride: width,
        offset: 0,
        first_token,
    }
}

/// `cached` rows followed by `computed` ones (keys or values of a cached
/// prompt prefix and of the batch's own tokens).
fn after_prefix<'a>(cached: Option<&Vec<f32>>, computed: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
    match cached {
        None => std::borrow::Cow::Borrowed(computed),
        Some(cached) => std::borrow::Cow::Owned([cached.as_slice(), computed].concat()),
    }
}

/// Keys and values (the projections' outputs, before rotary) of a prompt
/// prefix at every layer, `[prefix_len, kv_heads · head_dim]` each: under
/// causal attention they do not depend on anything after the prefix, so a
/// prefix computed once serves every later prompt that starts with it.
pub struct PrefixKv {
    pub len: usize,
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
}
