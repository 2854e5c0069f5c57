//! The embedding engine: one OS thread owns the MLX model (MLX is not
//! thread-safe); requests arrive on a bounded queue with two lanes
//! (interactive ahead of bulk ingest parts, see `queue`) and are answered on
//! one-shot channels. Callers decode images and tokenize on their own
//! threads; the model thread groups waiting requests into batches up to a
//! size and a token budget. A full lane is an [`EngineError::Overloaded`]
//! (HTTP 503 upstream), never a hang. Results are cached by content.
mod cache;
mod queue;
mod worker;

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc, Mutex,
    },
};

pub use queue::Priority;
use queue::{JobQueue, PushError};

use image::RgbImage;
use tokio::sync::oneshot;

use crate::model::{
    preprocess, ComputeType, LoadOptions, ModelError, PreparedInput, Preparer, QuantSpec,
    WeightStorage,
};
use cache::{CacheKey, Cached, EmbeddingCache};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the embedding queue is full ({0} requests waiting); retry later")]
    Overloaded(usize),
    #[error("the embedding engine has stopped")]
    Stopped,
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl EngineError {
    /// Whether the caller's input is at fault.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, EngineError::Model(e) if e.is_bad_input())
    }
}

/// An image given to the engine: encoded file bytes, or decoded pixels
/// (e.g. a video frame).
#[derive(Clone)]
pub enum ImageData {
    Encoded(Arc<Vec<u8>>),
    Decoded(Arc<RgbImage>),
}

/// One thing to embed: text and/or images (images come first in the prompt).
#[derive(Clone, Default)]
pub struct EmbedRequest {
    pub text: String,
    pub images: Vec<ImageData>,
    /// System-turn instruction; `None` = the engine's default.
    pub instruction: Option<String>,
}

impl EmbedRequest {
    pub fn text(text: impl Into<String>) -> Self {
        EmbedRequest {
            text: text.into(),
            ..Default::default()
        }
    }
    pub fn image(bytes: Vec<u8>) -> Self {
        EmbedRequest {
            images: vec![ImageData::Encoded(Arc::new(bytes))],
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Local model directory (see `model::hub::resolve_model`).
    pub model_dir: PathBuf,
    /// Identifies the model in caches and databases (repo id or directory).
    pub model_id: String,
    /// Compute on the GPU (Metal / CUDA) rather than the CPU.
    pub gpu: bool,
    pub load: LoadOptions,
    pub instruction: String,
    pub image_min_pixels: u64,
    pub image_max_pixels: u64,
    /// Decoded-size limit checked before decoding (decompression bombs).
    pub max_decode_pixels: u64,
    pub max_batch_size: usize,
    /// Most tokens (decoder tokens + vision patches) in one batch.
    pub max_batch_tokens: usize,
    pub queue_capacity: usize,
    pub cache_size: usize,
}

/// What the engine runs, for `/info` and database compatibility checks.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EngineInfo {
    pub model_id: String,
    pub dim: usize,
    pub dtype: String,
    pub quantization: String,
    pub device: String,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub requests: AtomicU64,
    pub cache_hits: AtomicU64,
    pub batches: AtomicU64,
    pub batched_inputs: AtomicU64,
    pub max_batch: AtomicU64,
    pub queue_depth: AtomicU64,
    /// Batches by size: `batch_sizes[i]` counts batches of at most
    /// `BATCH_SIZE_BUCKETS[i]` inputs (cumulative, as Prometheus histograms are).
    pub batch_sizes: [AtomicU64; BATCH_SIZE_BUCKETS.len()],
}

/// Upper bounds of the batch-size histogram buckets.
pub const BATCH_SIZE_BUCKETS: [u64; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

impl EngineStats {
    fn record_batch(&self, size: usize) {
        let size = size as u64;
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched_inputs.fetch_add(size, Ordering::Relaxed);
        self.max_batch.fetch_max(size, Ordering::Relaxed);
        for (bound, count) in BATCH_SIZE_BUCKETS.iter().zip(&self.batch_sizes) {
            if size <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

struct Job {
    input: PreparedInput,
    reply: oneshot::Sender<Result<Vec<f32>, ModelError>>,
}

pub struct Engine {
    queue: Arc<JobQueue<Job>>,
    preparer: Arc<Preparer>,
    info: EngineInfo,
    config: EngineConfig,
    cache: Mutex<EmbeddingCache>,
    stats: Arc<EngineStats>,
    worker: Option<std::thread::JoinHandle<()>>,
}

/// A submitted request; wait for it blocking or with `.await`.
pub struct Pending {
    state: PendingState,
    tokens: usize,
}

enum PendingState {
    Ready(Result<Vec<f32>, EngineError>),
    Waiting {
        rx: oneshot::Receiver<Result<Vec<f32>, ModelError>>,
        key: CacheKey,
    },
}

impl Pending {
    fn ready(result: Result<Vec<f32>, EngineError>, tokens: usize) -> Pending {
        Pending {
            state: PendingState::Ready(result),
            tokens,
        }
    }

    /// Refused because the queue was full (the request can be sent again).
    pub fn is_overloaded(&self) -> bool {
        matches!(
            self.state,
            PendingState::Ready(Err(EngineError::Overloaded(_)))
        )
    }

    /// Tokens of the prompt (text and image placeholders); 0 if it failed
    /// before tokenization.
    pub fn prompt_tokens(&self) -> usize {
        self.tokens
    }
}

impl Engine {
    /// Starts the model thread, which loads the model; returns once it is ready.
    pub fn start(config: EngineConfig) -> Result<Engine, EngineError> {
        let stats = Arc::new(EngineStats::default());
        let queue = Arc::new(JobQueue::new(config.queue_capacity));
        let (ready_tx, ready_rx) = mpsc::channel();
        let worker = worker::spawn(
            config.clone(),
            Arc::clone(&queue),
            ready_tx,
            Arc::clone(&stats),
        );
        let (preparer, info) = ready_rx.recv().map_err(|_| EngineError::Stopped)??;
        Ok(Engine {
            queue,
            preparer,
            info,
            cache: Mutex::new(EmbeddingCache::new(config.cache_size)),
            config,
            stats,
            worker: Some(worker),
        })
    }

    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The model's tokenizer, for chunking text by model tokens.
    pub fn tokenizer(&self) -> &tokenizers::Tokenizer {
        self.preparer.tokenizer()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Decodes, tokenizes and queues one request (on the caller's thread)
    /// in the interactive lane.
    pub fn submit(&self, request: EmbedRequest) -> Pending {
        self.submit_as(request, Priority::Interactive)
    }

    /// [`Engine::submit`] in the given lane: the parts of a long ingest go
    /// in the bulk lane, behind every interactive request.
    pub fn submit_as(&self, request: EmbedRequest, priority: Priority) -> Pending {
        self.enqueue(self.admit(request), priority)
    }

    /// Cache lookup and input preparation (decoding, tokenization), on the
    /// caller's thread.
    fn admit(&self, request: EmbedRequest) -> Admitted {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let instruction = request
            .instruction
            .clone()
            .unwrap_or_else(|| self.config.instruction.clone());
        let key = CacheKey::new(&self.info, &instruction, &request);
        if let Some(hit) = self.cache.lock().unwrap().get(&key) {
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Admitted::Done(Pending::ready(Ok(hit.embedding), hit.tokens));
        }
        match self.prepare(&instruction, request) {
            Ok(input) => Admitted::Prepared(input, key),
            Err(e) => Admitted::Done(Pending::ready(Err(e.into()), 0)),
        }
    }

    /// Hands a prepared input to the model thread.
    fn enqueue(&self, admitted: Admitted, priority: Priority) -> Pending {
        let (input, key) = match admitted {
            Admitted::Done(pending) => return pending,
            Admitted::Prepared(input, key) => (input, key),
        };
        let tokens = input.ids.len();
        let (reply, rx) = oneshot::channel();
        match self.queue.push(Job { input, reply }, priority) {
            Ok(()) => {
                self.stats.queue_depth.fetch_add(1, Ordering::Relaxed);
                Pending {
                    state: PendingState::Waiting { rx, key },
                    tokens,
                }
            }
            Err(PushError::Full(_)) => Pending::ready(
                Err(EngineError::Overloaded(self.config.queue_capacity)),
                tokens,
            ),
            Err(PushError::Closed) => Pending::ready(Err(EngineError::Stopped), tokens),
        }
    }

    fn prepare(
        &self,
        instruction: &str,
        request: EmbedRequest,
    ) -> Result<PreparedInput, ModelError> {
        let mut images = Vec::with_capacity(request.images.len());
        for image in &request.images {
            let decoded;
            let rgb = match image {
                ImageData::Encoded(bytes) => {
                    decoded = preprocess::decode_image(bytes, self.config.max_decode_pixels)?;
                    &decoded
                }
                ImageData::Decoded(img) => img.as_ref(),
            };
            images.push(preprocess::preprocess_image(
                rgb,
                self.config.image_min_pixels,
                self.config.image_max_pixels,
            )?);
        }
        self.preparer.prepare(instruction, &request.text, images)
    }

    /// Blocking: embeds one request.
    pub fn embed(&self, request: EmbedRequest) -> Result<Vec<f32>, EngineError> {
        self.wait(self.submit(request))
    }

    /// Blocking: embeds many requests, queued together so they are batched;
    /// results in input order.
    pub fn embed_many(&self, requests: Vec<EmbedRequest>) -> Vec<Result<Vec<f32>, EngineError>> {
        // All inputs are prepared before the first is queued: queued one by
        // one, the model thread would start on the first alone while the
        // rest are still being tokenized.
        let admitted: Vec<Admitted> = requests.into_iter().map(|r| self.admit(r)).collect();
        let pending: Vec<Pending> = admitted
            .into_iter()
            .map(|a| self.enqueue(a, Priority::Interactive))
            .collect();
        pending.into_iter().map(|p| self.wait(p)).collect()
    }

    /// Blocks until a submitted request is done.
    pub fn wait(&self, pending: Pending) -> Result<Vec<f32>, EngineError> {
        match pending.state {
            PendingState::Ready(r) => r,
            PendingState::Waiting { rx, key } => {
                self.finish(key, pending.tokens, rx.blocking_recv())
            }
        }
    }

    /// Awaits a submitted request (for async callers).
    pub async fn wait_async(&self, pending: Pending) -> Result<Vec<f32>, EngineError> {
        match pending.state {
            PendingState::Ready(r) => r,
            PendingState::Waiting { rx, key } => self.finish(key, pending.tokens, rx.await),
        }
    }

    fn finish(
        &self,
        key: CacheKey,
        tokens: usize,
        received: Result<Result<Vec<f32>, ModelError>, oneshot::error::RecvError>,
    ) -> Result<Vec<f32>, EngineError> {
        let embedding = received.map_err(|_| EngineError::Stopped)??;
        let cached = Cached {
            embedding: embedding.clone(),
            tokens,
        };
        self.cache.lock().unwrap().put(key, cached);
        Ok(embedding)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Closing the queue ends the worker loop after the jobs in hand.
        self.queue.close();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// A request after the caller-side work: answered already (cache hit, bad
/// input) or ready for the model thread.
enum Admitted {
    Done(Pending),
    Prepared(PreparedInput, CacheKey),
}

/// Engine settings from the validated configuration, for a resolved model directory.
pub fn engine_config(
    config: &crate::config::Config,
    model_dir: PathBuf,
    model_id: String,
) -> EngineConfig {
    use crate::config::{ComputeDtype, Quantization, WeightStorageChoice};
    let gpu = crate::model::runtime::gpu_selected(config.model.device);
    let compute = match config.model.dtype {
        ComputeDtype::Float32 => ComputeType::Float32,
        ComputeDtype::Bfloat16 => ComputeType::Bfloat16,
        // bf16 kernels are slow on CPU: float32 there.
        ComputeDtype::Auto if gpu => ComputeType::Bfloat16,
        ComputeDtype::Auto => ComputeType::Float32,
    };
    let group_size = config.model.group_size;
    let quant = match config.model.quantization {
        Quantization::None => QuantSpec::None,
        Quantization::Q8 => QuantSpec::Bits {
            bits: 8,
            group_size,
        },
        Quantization::Q4 => QuantSpec::Bits {
            bits: 4,
            group_size,
        },
        // Quantized kernels are slow on CPU; on a GPU follow the memory profile table.
        Quantization::Auto if !gpu => QuantSpec::None,
        Quantization::Auto => match crate::config::detect_profile(
            crate::config::total_memory_bytes().unwrap_or(u64::MAX),
        ) {
            "m1_16gb" => QuantSpec::Bits {
                bits: 4,
                group_size,
            },
            "m1_32gb" => QuantSpec::Bits {
                bits: 8,
                group_size,
            },
            _ => QuantSpec::None,
        },
    };
    let mut load = LoadOptions {
        compute,
        weights: WeightStorage::Compute,
        quant,
        max_len: config.processing.max_text_length,
        cpu_kernels: true,
    };
    load.weights = match config.model.weight_storage {
        WeightStorageChoice::Compute => WeightStorage::Compute,
        WeightStorageChoice::Bfloat16 => WeightStorage::Bfloat16,
        // float32 weights that would not fit: keep them in bf16 (same
        // numbers for the bf16 checkpoints every release ships).
        WeightStorageChoice::Auto => {
            let fits = match (
                crate::model::weights::parameter_count(&model_dir),
                crate::config::available_memory_bytes(),
            ) {
                (Ok(params), Some(available)) => {
                    // Leave an eighth for activations and the rest of the process.
                    let bytes = crate::model::weight_bytes(params, &load);
                    bytes + bytes / 8 <= available
                }
                _ => true,
            };
            if fits {
                WeightStorage::Compute
            } else {
                WeightStorage::Bfloat16
            }
        }
    };
    EngineConfig {
        model_dir,
        model_id,
        gpu,
        load,
        instruction: config.model.instruction.clone(),
        image_min_pixels: config.processing.image_min_pixels,
        image_max_pixels: config.processing.image_max_pixels,
        max_decode_pixels: config.server.max_image_pixels,
        max_batch_size: config.server.max_batch_size,
        max_batch_tokens: 16_384,
        queue_capacity: config.server.max_queue,
        cache_size: config.optimization.cache_size,
    }
}
