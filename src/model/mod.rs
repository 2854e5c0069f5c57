//! The Ops-MM-embedding-v1 model (Qwen2-VL) on MLX. This is the only module
//! that imports mlx-rs; its public API speaks plain Rust types
//! (`Vec<f32>`, token ids, pixel buffers), so nothing of MLX leaks out.
//!
//! Embedding = final-normed hidden state of the last token (the trailing
//! `<|endoftext|>`) of the Ops-MM prompt, L2-normalised; batches are
//! left-padded. See `tests/fixtures/qwen2vl-tiny/README.md` for the recipe.
pub mod config;
mod host;
pub mod hub;
mod kernels;
mod linear;
pub mod preprocess;
mod qwen2;
pub mod rope;
pub mod runtime;
mod stages;
mod tokenizer;
mod vision;
mod vision_host;
pub mod weights;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use mlx_rs::{ops, Array, Dtype};

use config::Qwen2VlConfig;
pub use linear::QuantSpec;
use qwen2::{DecoderInput, TextDecoder};
use stages::StageClock;
use tokenizer::PromptTokenizer;
use vision::VisionTower;

/// Pad id of Qwen2 tokenizers (`<|endoftext|>`), used for left padding.
pub const PAD_TOKEN_ID: u32 = 151_643;
/// Additive mask value: large and finite, so fully padded rows stay NaN-free.
const MASKED: f32 = -1e30;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model config: {0}")]
    Config(String),
    #[error("model weights: {0}")]
    Weights(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the input needs {needed} tokens without its text, more than the limit of {limit} (processing.max_text_length); use fewer or smaller images")]
    TooLong { needed: usize, limit: usize },
    #[error("invalid input: {0}")]
    BadInput(String),
    #[error(transparent)]
    Image(#[from] preprocess::PreprocessError),
    #[error("model download: {0}")]
    Download(String),
    #[error("mlx: {0}")]
    Mlx(#[from] mlx_rs::error::Exception),
    #[error("mlx data: {0}")]
    MlxData(#[from] mlx_rs::error::AsSliceError),
}

impl ModelError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// Whether the caller's input is at fault (vs. the model or the machine).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            ModelError::TooLong { .. } | ModelError::BadInput(_) | ModelError::Image(_)
        )
    }
}

/// Compute precision of the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComputeType {
    Float32,
    Bfloat16,
}

impl ComputeType {
    fn dtype(self) -> Dtype {
        match self {
            ComputeType::Float32 => Dtype::Float32,
            ComputeType::Bfloat16 => Dtype::Bfloat16,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ComputeType::Float32 => "float32",
            ComputeType::Bfloat16 => "bfloat16",
        }
    }
}

/// How the large weight matrices are kept in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightStorage {
    /// In the compute dtype (float32 weights for float32 compute).
    Compute,
    /// In bfloat16, cast to the compute dtype one layer at a time: half the
    /// memory of float32 weights at float32 kernel speed (the 7B model in
    /// ~17 GB on a Linux CPU). Exact for bf16 checkpoints, which all
    /// Ops-MM-embedding-v1 releases are.
    Bfloat16,
}

impl WeightStorage {
    pub fn as_str(self) -> &'static str {
        match self {
            WeightStorage::Compute => "compute-dtype",
            WeightStorage::Bfloat16 => "bfloat16",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub compute: ComputeType,
    pub weights: WeightStorage,
    pub quant: QuantSpec,
    /// Token limit per prompt (`processing.max_text_length`).
    pub max_len: usize,
    /// Attention and activations through our CPU kernels (`kernels.rs`)
    /// when computing in float32 on the CPU; `false` keeps everything in MLX
    /// (for comparisons).
    pub cpu_kernels: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            compute: ComputeType::Float32,
            weights: WeightStorage::Compute,
            quant: QuantSpec::None,
            max_len: 8192,
            cpu_kernels: true,
        }
    }
}

/// One image ready for the vision tower (see [`preprocess::preprocess_image`]).
pub use preprocess::ImageInput;

/// One tokenized input: token ids (image pads expanded) and its images.
#[derive(Debug, Clone)]
pub struct PreparedInput {
    pub ids: Vec<u32>,
    pub images: Vec<ImageInput>,
}

impl PreparedInput {
    /// Work estimate for batching: tokens through the decoder plus patches through the vision tower.
    pub fn cost(&self) -> usize {
        self.ids.len()
            + self
                .images
                .iter()
                .map(|i| i.pixel_values.len() / 1176)
                .sum::<usize>()
    }
}

/// Turns inputs into token ids. Cheap to share (`Arc`), `Send + Sync`, and
/// free of MLX, so callers prepare inputs on their own threads and only the
/// forward pass runs on the model thread.
pub struct Preparer {
    tokenizer: PromptTokenizer,
    /// Tokens per image = patches / merge_window.
    merge_window: u32,
    max_len: usize,
}

impl Preparer {
    /// The model's tokenizer (no prompt template).
    pub fn tokenizer(&self) -> &tokenizers::Tokenizer {
        self.tokenizer.tokenizer()
    }

    /// Tokenizes one input: images first, then text, in the Ops-MM prompt.
    pub fn prepare(
        &self,
        instruction: &str,
        text: &str,
        images: Vec<ImageInput>,
    ) -> Result<PreparedInput, ModelError> {
        for special in ["<|image_pad|>", "<|video_pad|>"] {
            if text.contains(special) || instruction.contains(special) {
                return Err(ModelError::BadInput(format!(
                    "text must not contain the model's special token {special}"
                )));
            }
        }
        let image_tokens: Vec<usize> = images
            .iter()
            .map(|i| (i.grid_thw.iter().product::<u32>() / self.merge_window) as usize)
            .collect();
        let ids = self
            .tokenizer
            .encode(instruction, text, &image_tokens, self.max_len)?;
        Ok(PreparedInput { ids, images })
    }
}

pub struct Embedder {
    config: Qwen2VlConfig,
    preparer: Arc<Preparer>,
    vision: VisionTower,
    decoder: TextDecoder,
    options: LoadOptions,
    clock: StageClock,
    /// `<|im_start|>`, which ends the cached system-turn prefix.
    im_start_id: Option<u32>,
    prefix_cache: PrefixCache,
}

impl Embedder {
    /// Loads a Qwen2-VL checkpoint from a local directory (config.json,
    /// tokenizer.json, safetensors).
    pub fn load(dir: &Path, options: LoadOptions) -> Result<Self, ModelError> {
        check_memory(dir, &options)?;
        let config_path = dir.join("config.json");
        let text =
            std::fs::read_to_string(&config_path).map_err(|e| ModelError::io(&config_path, e))?;
        let config = Qwen2VlConfig::from_json(&text)?;
        let tokenizer =
            PromptTokenizer::from_file(&dir.join("tokenizer.json"), config.image_token_id)?;
        let compute = options.compute.dtype();
        let storage = match options.weights {
            WeightStorage::Compute => compute,
            WeightStorage::Bfloat16 => Dtype::Bfloat16,
        };
        let mut weights = weights::Weights::load(dir, &config, storage)?;
        let host_kernels = options.cpu_kernels
            && compute == Dtype::Float32
            && runtime::default_device().contains("cpu");
        let vision = VisionTower::load(&config.vision, &mut weights, compute, host_kernels)?;
        let decoder = TextDecoder::load(
            &config.text,
            &mut weights,
            options.quant,
            compute,
            host_kernels,
        )?;
        let im_start_id = tokenizer.tokenizer().token_to_id("<|im_start|>");
        let preparer = Arc::new(Preparer {
            tokenizer,
            merge_window: config.vision.spatial_merge_size.pow(2) as u32,
            max_len: options.max_len,
        });
        Ok(Embedder {
            config,
            preparer,
            vision,
            decoder,
            options,
            clock: StageClock::default(),
            im_start_id,
            prefix_cache: PrefixCache::default(),
        })
    }

    /// Embedding dimension (the text hidden size).
    pub fn dim(&self) -> usize {
        self.config.text.hidden_size
    }

    pub fn config(&self) -> &Qwen2VlConfig {
        &self.config
    }

    pub fn options(&self) -> &LoadOptions {
        &self.options
    }

    /// The input preparer (tokenizer) of this model, shareable across threads.
    pub fn preparer(&self) -> Arc<Preparer> {
        Arc::clone(&self.preparer)
    }

    /// Shorthand for `self.preparer().prepare(..)`.
    pub fn prepare(
        &self,
        instruction: &str,
        text: &str,
        images: Vec<ImageInput>,
    ) -> Result<PreparedInput, ModelError> {
        self.preparer.prepare(instruction, text, images)
    }

    /// Starts timing the forward pass per stage (benchmarks only: every stage
    /// is then evaluated on its own, which is slower).
    pub fn start_stage_timing(&self) {
        self.clock.start();
    }

    /// Seconds per stage since [`Self::start_stage_timing`], which it ends.
    pub fn stop_stage_timing(&self) -> Vec<(&'static str, f64)> {
        self.clock.stop()
    }

    /// L2-normalised embeddings, one per input, computed as one padded batch.
    pub fn embed_batch(&self, inputs: &[PreparedInput]) -> Result<Vec<Vec<f32>>, ModelError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        // With the stage clock on (benchmarks), the time since it started is
        // the caller's input preparation.
        self.clock.charge("preprocess (decode, resize, tokenize)");
        let merge = self.config.vision.spatial_merge_size as u32;
        let image_id = self.config.image_token_id;
        let positions: Vec<Vec<[u32; 3]>> = inputs
            .iter()
            .map(|input| {
                let grids: Vec<[u32; 3]> = input.images.iter().map(|i| i.grid_thw).collect();
                rope::mrope_positions(&input.ids, image_id, &grids, merge)
            })
            .collect();
        let images: Vec<&ImageInput> = inputs.iter().flat_map(|i| &i.images).collect();
        let image_embeds = match images.len() {
            0 => None,
            _ => Some(self.vision.forward(&images, &self.clock)?),
        };
        if let Some(e) = &image_embeds {
            let image_tokens: usize = inputs
                .iter()
                .map(|i| i.ids.iter().filter(|&&id| id == image_id).count())
                .sum();
            if e.shape()[0] as usize != image_tokens {
                return Err(ModelError::BadInput(format!(
                    "{image_tokens} image tokens in the prompt but the images give {}",
                    e.shape()[0]
                )));
            }
        }
        if self.decoder.host_kernels() {
            self.decode_ragged(inputs, &positions, image_embeds.as_ref())
        } else {
            self.decode_padded(inputs, &positions, image_embeds.as_ref())
        }
    }

    /// The decoder in MLX on a left-padded batch `[rows, longest]`.
    fn decode_padded(
        &self,
        inputs: &[PreparedInput],
        positions: &[Vec<[u32; 3]>],
        image_embeds: Option<&Array>,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let b = inputs.len();
        let len = inputs.iter().map(|i| i.ids.len()).max().unwrap_or(0);
        let image_id = self.config.image_token_id;
        let mut ids = Vec::with_capacity(b * len);
        let mut image_positions = Vec::new();
        for (row, input) in inputs.iter().enumerate() {
            let pad = len - input.ids.len();
            ids.extend(std::iter::repeat_n(PAD_TOKEN_ID as i32, pad));
            ids.extend(input.ids.iter().map(|&i| i as i32));
            for (k, &id) in input.ids.iter().enumerate() {
                if id == image_id {
                    image_positions.push((row * len + pad + k) as i32);
                }
            }
        }
        let t = &self.config.text;
        let hd = t.head_dim();
        let (cos, sin) = rope::mrope_tables(positions, len, hd, t.rope_theta, t.mrope_section);
        let shape = [b as i32, 1, len as i32, hd as i32];
        let cos = Array::from_slice(&cos, &shape);
        let sin = Array::from_slice(&sin, &shape);
        let mask = padding_mask(inputs, len)
            .map(|m| {
                Array::from_slice(&m, &[b as i32, 1, len as i32, len as i32])
                    .as_dtype(self.decoder.dtype())
            })
            .transpose()?;
        let ids = Array::from_slice(&ids, &[b as i32, len as i32]);
        self.clock.charge("decoder input (embeddings, scatter)");
        let hidden = self.decoder.last_hidden(
            &DecoderInput {
                ids: &ids,
                image_embeds,
                image_positions: &image_positions,
                cos: &cos,
                sin: &sin,
                mask: mask.as_ref(),
            },
            &self.clock,
        )?;
        self.pool(hidden)
    }

    /// `[rows, hidden]` final hidden states → L2-normalised embeddings.
    fn pool(&self, hidden: Array) -> Result<Vec<Vec<f32>>, ModelError> {
        let hidden = hidden.as_dtype(Dtype::Float32)?;
        hidden.eval()?;
        let flat: &[f32] = hidden.as_slice();
        let embeddings = flat.chunks(self.dim()).map(l2_normalize).collect();
        self.clock.charge("pooling (final norm, normalise)");
        Ok(embeddings)
    }

    /// The decoder on the CPU kernels' ragged layout: every row's tokens
    /// once, without padding, and the prompt prefix that all rows share (the
    /// system turn up to the first image) stored and computed once. Exact:
    /// under causal attention a prefix's keys and values do not depend on
    /// what follows it, and its positions are the same in every row.
    fn decode_ragged(
        &self,
        inputs: &[PreparedInput],
        positions: &[Vec<[u32; 3]>],
        image_embeds: Option<&Array>,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let image_id = self.config.image_token_id;
        // The system turn: from an earlier call's cache, or computed here
        // (then kept for the next call).
        let instruction = self.instruction_prefix(inputs);
        let cached = instruction.and_then(|ids| self.prefix_cache.take(ids));
        let (skip, shared, capture) = match &cached {
            Some(c) => (c.len, 0, None),
            None => {
                let shared = shared_prefix_len(inputs, image_id);
                let capture = instruction
                    .map(<[u32]>::len)
                    .filter(|&n| shared == 0 || shared >= n);
                (0, shared, capture)
            }
        };
        let lead = skip + shared; // leading tokens common to every row
        let mut ids: Vec<u32> = inputs[0].ids[skip..lead].to_vec();
        let mut flat_positions: Vec<[u32; 3]> = positions[0][..lead].to_vec();
        let mut image_positions = Vec::new();
        let mut rows = Vec::with_capacity(inputs.len());
        let mut last_tokens = Vec::with_capacity(inputs.len());
        for (input, row_positions) in inputs.iter().zip(positions) {
            let start = ids.len();
            for (k, &id) in input.ids[lead..].iter().enumerate() {
                if id == image_id {
                    image_positions.push((start + k) as i32);
                }
            }
            ids.extend_from_slice(&input.ids[lead..]);
            flat_positions.extend_from_slice(&row_positions[lead..]);
            rows.push(kernels::Sequence {
                tokens: (0..lead).chain(skip + start..skip + ids.len()).collect(),
                first_query: lead,
            });
            last_tokens.push(skip + ids.len() - 1);
        }
        let prefix = (shared > 0).then(|| kernels::Sequence {
            tokens: (0..lead).collect(),
            first_query: skip,
        });
        let t = &self.config.text;
        // One "row" of all tokens: tables `[tokens, head_dim]`.
        let (cos, sin) = rope::mrope_tables(
            &[flat_positions],
            skip + ids.len(),
            t.head_dim(),
            t.rope_theta,
            t.mrope_section,
        );
        self.clock.charge("decoder input (embeddings, scatter)");
        let (hidden, captured) = self.decoder.last_hidden_ragged(
            &qwen2::RaggedInput {
                cached: cached.as_ref(),
                ids: &ids,
                image_embeds,
                image_positions: &image_positions,
                cos: &cos,
                sin: &sin,
                prefix,
                rows: &rows,
                last_tokens: &last_tokens,
                capture,
            },
            &self.clock,
        )?;
        if let (Some(ids), Some(kv)) = (instruction, cached.or(captured)) {
            self.prefix_cache.put(ids.to_vec(), kv);
        }
        self.pool(hidden)
    }

    /// The system turn up to and including the user turn's `<|im_start|>`,
    /// when every input starts with the same one and has tokens after it:
    /// special tokens on both sides, so tokenization never merges across it.
    fn instruction_prefix<'a>(&self, inputs: &'a [PreparedInput]) -> Option<&'a [u32]> {
        let im_start = self.im_start_id?;
        let first = &inputs[0].ids;
        let end = first
            .iter()
            .enumerate()
            .filter(|(_, &id)| id == im_start)
            .nth(1)
            .map(|(i, _)| i + 1)?;
        let prefix = &first[..end];
        inputs
            .iter()
            .all(|i| i.ids.len() > end && i.ids.starts_with(prefix))
            .then_some(prefix)
    }
}

/// Keys and values of recent system turns (one per instruction), for the
/// CPU decoder. Small: 2 · layers · tokens · kv width floats each.
#[derive(Default)]
struct PrefixCache {
    entries: std::cell::RefCell<Vec<(Vec<u32>, qwen2::PrefixKv)>>,
}

impl PrefixCache {
    const CAPACITY: usize = 8;

    /// Removes and returns the entry for `ids` (given back with `put`).
    fn take(&self, ids: &[u32]) -> Option<qwen2::PrefixKv> {
        let mut entries = self.entries.borrow_mut();
        let at = entries.iter().position(|(key, _)| key == ids)?;
        Some(entries.remove(at).1)
    }

    /// Keeps `kv` as the most recent entry, forgetting the oldest beyond capacity.
    fn put(&self, ids: Vec<u32>, kv: qwen2::PrefixKv) {
        let mut entries = self.entries.borrow_mut();
        entries.retain(|(key, _)| *key != ids);
        entries.insert(0, (ids, kv));
        entries.truncate(Self::CAPACITY);
    }
}

/// Leading tokens that every input has in common, stopping before the
/// first image token (images differ behind identical placeholder ids) and
/// leaving each input at least its last token. 0 for a single input: a
/// prefix shared with nobody saves nothing.
fn shared_prefix_len(inputs: &[PreparedInput], image_id: u32) -> usize {
    if inputs.len() < 2 {
        return 0;
    }
    let first = &inputs[0].ids;
    let limit = inputs
        .iter()
        .map(|i| i.ids.len())
        .min()
        .unwrap_or(0)
        .saturating_sub(1);
    (0..limit)
        .take_while(|&k| first[k] != image_id && inputs.iter().all(|i| i.ids[k] == first[k]))
        .count()
}

/// Bytes the weights take in memory with these options (quantized layers
/// counted at their packed size plus scales).
pub fn weight_bytes(parameters: u64, options: &LoadOptions) -> u64 {
    let per_param = match (options.quant, options.weights, options.compute) {
        // Decoder linears dominate; packed bits + f32 scale/bias per group.
        (QuantSpec::Bits { bits, group_size }, _, _) => bits as f64 / 8.0 + 8.0 / group_size as f64,
        (QuantSpec::None, WeightStorage::Bfloat16, _) => 2.0,
        (QuantSpec::None, WeightStorage::Compute, ComputeType::Bfloat16) => 2.0,
        (QuantSpec::None, WeightStorage::Compute, ComputeType::Float32) => 4.0,
    };
    (parameters as f64 * per_param) as u64
}

/// Fails at once, naming the ways out, when the weights cannot fit in the
/// memory that is available (instead of swapping or being killed halfway
/// through loading).
fn check_memory(dir: &Path, options: &LoadOptions) -> Result<(), ModelError> {
    let (Some(available), Ok(parameters)) = (
        crate::config::available_memory_bytes(),
        weights::parameter_count(dir),
    ) else {
        return Ok(()); // unknown: let the load try
    };
    match memory_shortfall(parameters, options, available) {
        Some(message) => Err(ModelError::Config(message)),
        None => Ok(()),
    }
}

/// Why `parameters` weights cannot be loaded with `options` into `available`
/// bytes, with the options that would fit; `None` when they fit.
pub fn memory_shortfall(parameters: u64, options: &LoadOptions, available: u64) -> Option<String> {
    let needed = weight_bytes(parameters, options);
    if needed <= available {
        return None;
    }
    let gb = |b: u64| b as f64 / 1e9;
    let mut ways = vec!["a smaller model (e.g. OpenSearch-AI/Ops-MM-embedding-v1-2B)".to_owned()];
    let half = LoadOptions {
        weights: WeightStorage::Bfloat16,
        ..options.clone()
    };
    if options.quant == QuantSpec::None && weight_bytes(parameters, &half) < needed {
        ways.push(format!(
            "--weight-storage bfloat16 / model.weight_storage: bfloat16 (float32 compute, {:.1} GB of weights)",
            gb(weight_bytes(parameters, &half))
        ));
    }
    if !matches!(options.quant, QuantSpec::Bits { .. }) {
        let q8 = LoadOptions {
            quant: QuantSpec::Bits {
                bits: 8,
                group_size: 64,
            },
            ..options.clone()
        };
        ways.push(format!(
            "--quantize q8 / model.quantization: q8 ({:.1} GB)",
            gb(weight_bytes(parameters, &q8))
        ));
    }
    Some(format!(
        "the model's {:.2} B parameters need {:.1} GB of memory as configured, but only {:.1} GB \
         is available; use {}",
        parameters as f64 / 1e9,
        gb(needed),
        gb(available),
        ways.join(", or ")
    ))
}

/// `a` evaluated as a row-major contiguous array, so that its data can be
/// read as a slice by the CPU kernels.
fn on_host(a: &Array) -> Result<Array, ModelError> {
    let a = a.contiguous()?;
    a.eval()?;
    Ok(a)
}

/// Additive causal + left-padding mask `[b, len, len]`, or `None` when no
/// row is padded (then the plain causal kernel is used).
fn padding_mask(inputs: &[PreparedInput], len: usize) -> Option<Vec<f32>> {
    if inputs.iter().all(|i| i.ids.len() == len) {
        return None;
    }
    let mut m = vec![MASKED; inputs.len() * len * len];
    for (row, input) in inputs.iter().enumerate() {
        let pad = len - input.ids.len();
        for q in 0..len {
            for k in pad..=q {
                m[(row * len + q) * len + k] = 0.0;
            }
        }
    }
    Some(m)
}

fn l2_normalize(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / norm).collect()
}

/// A scalar of the given dtype (an f32 scalar would promote bf16 arrays).
fn scalar(value: f32, dtype: Dtype) -> Result<Array, ModelError> {
    Ok(Array::from_f32(value).as_dtype(dtype)?)
}

/// Rotary embedding, rotate-half convention: `x·cos + rotate_half(x)·sin`.
fn apply_rotary(x: &Array, cos: &Array, sin: &Array) -> Result<Array, ModelError> {
    let halves = x.split_equal(2, -1)?;
    let rotated = ops::concatenate(&[ops::negative(&halves[1])?, halves[0].clone()], -1)?;
    Ok(ops::add(
        ops::multiply(x, cos)?,
        ops::multiply(&rotated, sin)?,
    )?)
}
