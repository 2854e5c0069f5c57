//! One validated [`Config`], assembled from layers in this order of
//! precedence (later wins):
//!
//! defaults < config file (`config.yaml`) < memory profile < `TKR_*` environment < flags
//!
//! Every layer is a partial YAML/JSON tree; they are merged leaf by leaf, and
//! the layer that set each leaf is remembered so `tkr-embed config show` can
//! say where every value came from. The merged tree is deserialized once
//! (unknown fields rejected, the failing field named) and then validated.
mod keys;
mod layers;
mod profiles;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use keys::{ApiKey, RateLimit, Scope, Secret};
pub use layers::{load, ConfigInputs, ConfigSources, Layer, Source};
pub use profiles::{
    available_memory_bytes, detect_profile, total_memory_bytes, Profile, PROFILE_NAMES,
};

/// Default model: the 7B Ops-MM embedding model on the Hugging Face hub.
pub const DEFAULT_MODEL: &str = "OpenSearch-AI/Ops-MM-embedding-v1-7B";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid YAML: {message}")]
    Yaml { path: String, message: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("unknown profile `{0}` (allowed: auto, {names}, or a path to a YAML file)", names = PROFILE_NAMES.join(", "))]
    UnknownProfile(String),
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

impl ConfigError {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// The whole effective configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub model: ModelConfig,
    pub processing: ProcessingConfig,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub optimization: OptimizationConfig,
    pub monitoring: MonitoringConfig,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// q4/q8/none chosen by device and memory at model load.
    Auto,
    Q4,
    Q8,
    None,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// GPU when MLX has one (Metal, CUDA), else CPU.
    Auto,
    Cpu,
    Gpu,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ComputeDtype {
    /// float32 on CPU (bf16 kernels are slow there), bfloat16 on a GPU.
    Auto,
    Float32,
    Bfloat16,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WeightStorageChoice {
    /// bfloat16 when float32 weights would not fit in memory (CPU, float32
    /// compute), else the compute dtype.
    Auto,
    /// Weights in the compute dtype.
    Compute,
    /// Weights kept in bfloat16, cast to the compute dtype layer by layer.
    Bfloat16,
}

/// Most hits any search may return (the database's own bound; `server.max_k`
/// may only lower it).
pub const MAX_K: usize = 10_000;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum VideoPooling {
    Mean,
    Max,
    First,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Local directory or Hugging Face repo id.
    pub name: String,
    pub quantization: Quantization,
    /// Quantization group size (32, 64 or 128).
    pub group_size: i32,
    pub dtype: ComputeDtype,
    /// How weight matrices are held in memory (`bfloat16`: half of float32).
    pub weight_storage: WeightStorageChoice,
    /// Where hub downloads go; `null` = the standard Hugging Face cache.
    pub cache_dir: Option<PathBuf>,
    pub device: DeviceChoice,
    /// System-turn instruction of the Ops-MM prompt.
    pub instruction: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingConfig {
    pub image_min_pixels: u64,
    pub image_max_pixels: u64,
    /// Token limit of one prompt (text is truncated to fit; image tokens never are).
    pub max_text_length: usize,
    pub max_video_frames: usize,
    pub video_pooling: VideoPooling,
    /// Longest video accepted, in seconds.
    pub max_video_seconds: u64,
    /// Most pages of a PDF accepted.
    pub max_pdf_pages: u32,
    /// Longest side of a rendered PDF page, in pixels (the model resizes
    /// to at most image_max_pixels anyway).
    pub pdf_render_max_side: u32,
    /// Seconds one external tool run (PDF rendering) may take.
    pub media_timeout_secs: u64,
    /// Tokens per text chunk (long text is split into overlapping chunks,
    /// one vector each).
    pub chunk_tokens: usize,
    /// Tokens shared by consecutive chunks.
    pub chunk_overlap_tokens: usize,
    /// Most bytes of text one document may have (a `text` field, a text,
    /// Markdown or HTML file after extraction, a PDF's text); larger ones are
    /// refused (HTTP 413) before any tokenizing or embedding.
    pub max_document_text_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// Most inputs the engine runs in one forward pass.
    pub max_batch_size: usize,
    /// Requests waiting for the engine beyond this are refused (HTTP 503).
    pub max_queue: usize,
    /// Request timeout in seconds.
    pub timeout_secs: u64,
    /// Seconds a connection may take to send a request's headers, and may
    /// stay idle between requests; then it is closed (slow or stuck clients
    /// cannot hold connections).
    pub header_timeout_secs: u64,
    /// Most open client connections; further ones are closed at once.
    pub max_connections: usize,
    /// Most document inserts (JSON or file uploads) and deletes in flight
    /// at once; more are answered 503 `overloaded` at once. Each class of
    /// route has its own cap, so slow clients of one (uploads trickling in)
    /// cannot starve the others; `/health` is never limited.
    pub max_ingest_requests: usize,
    /// Most searches and embedding requests (`/embed/*`, `/v1/embeddings`)
    /// in flight at once.
    pub max_query_requests: usize,
    /// Most reads (collections, documents, content, thumbnails, `/info`,
    /// `/metrics`, the web page) in flight at once.
    pub max_read_requests: usize,
    /// Most admin requests (create and drop collections, `/admin/*`) in
    /// flight at once.
    pub max_admin_requests: usize,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Largest decoded image (width × height) accepted, checked before decoding.
    pub max_image_pixels: u64,
    /// Most inputs in one request (texts of /embed/text, `input` of
    /// /v1/embeddings).
    pub max_inputs_per_request: usize,
    /// Most hits one search may ask for (HTTP API and CLI).
    pub max_k: usize,
    /// API keys accepted as `Authorization: Bearer KEY`; empty = no auth.
    /// Each a plain string (scope `admin`, no limit) or a mapping with
    /// `key`, `scope` and an optional `rate_per_sec` / `burst` (see
    /// [`ApiKey`]). Environment: TKR_SERVER_API_KEYS=key1,key2 (or
    /// TKR_API_KEYS), or a JSON list for scoped keys.
    pub api_keys: Vec<ApiKey>,
    /// `GET /metrics` without a key even when keys are configured (for a
    /// scraper that cannot send one).
    pub public_metrics: bool,
    /// `GET /info` without a key even when keys are configured.
    pub public_info: bool,
    /// Seconds a client is told to wait (Retry-After) when the queue is full.
    pub retry_after_secs: u64,
    /// Image URLs: allow loopback, private and link-local addresses
    /// (off: the server cannot be used to reach your internal network).
    pub allow_private_urls: bool,
    /// Largest image fetched from a URL, in bytes.
    pub url_max_bytes: u64,
    /// Seconds an image URL fetch may take.
    pub url_timeout_secs: u64,
    /// Directory from which API requests may name local files
    /// (`file://` / paths); `null` = no local file access through the API.
    pub file_root: Option<PathBuf>,
    /// Directory under which `POST /admin/backup` may write backups;
    /// `null` = no backups through the API (the CLI's offline `backup` is
    /// not affected).
    pub backup_root: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// Where the database is, overriding `data_dir`: a directory (or
    /// `sled:DIR`) for the embedded store, or `postgres://…` for
    /// PostgreSQL (`--store`, `TKR_STORE`). Printed without its password.
    #[serde(serialize_with = "serialize_store_url")]
    pub url: Option<String>,
    /// PostgreSQL: connections this process keeps at most.
    pub pool_size: usize,
    /// Embedded store: bytes sled may keep in its page cache.
    pub cache_bytes: u64,
    /// Free bytes to keep on the data dir's file system: writes that would
    /// go below are refused (HTTP 507) and resume once space is back.
    pub min_free_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizationConfig {
    /// Entries in the embedding LRU cache (0 disables it).
    pub cache_size: usize,
    pub warmup_on_start: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringConfig {
    pub log_level: LogLevel,
    pub metrics: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            name: DEFAULT_MODEL.to_owned(),
            quantization: Quantization::Auto,
            group_size: 64,
            dtype: ComputeDtype::Auto,
            weight_storage: WeightStorageChoice::Auto,
            cache_dir: None,
            device: DeviceChoice::Auto,
            instruction: "You are a helpful assistant.".to_owned(),
        }
    }
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        // The Ops-MM recipe's own limits: 256·28·28 and 1280·28·28 pixels.
        ProcessingConfig {
            image_min_pixels: 256 * 28 * 28,
            image_max_pixels: 1280 * 28 * 28,
            max_text_length: 8192,
            max_video_frames: 16,
            video_pooling: VideoPooling::Mean,
            max_video_seconds: 4 * 3600,
            max_pdf_pages: 500,
            pdf_render_max_side: 1600,
            media_timeout_secs: 60,
            chunk_tokens: 512,
            chunk_overlap_tokens: 64,
            max_document_text_bytes: 8 * 1024 * 1024,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".to_owned(),
            port: 8000,
            max_batch_size: 32,
            max_queue: 1024,
            timeout_secs: 120,
            header_timeout_secs: 10,
            max_connections: 512,
            max_ingest_requests: 16,
            max_query_requests: 128,
            max_read_requests: 128,
            max_admin_requests: 4,
            max_body_bytes: 64 * 1024 * 1024,
            max_image_pixels: 64_000_000,
            max_inputs_per_request: 256,
            max_k: 1000,
            api_keys: Vec::new(),
            public_metrics: false,
            public_info: false,
            retry_after_secs: 1,
            allow_private_urls: false,
            url_max_bytes: 32 * 1024 * 1024,
            url_timeout_secs: 10,
            file_root: None,
            backup_root: None,
        }
    }
}

impl StorageConfig {
    /// Where the database is: `url` when set, else `data_dir`.
    pub fn location(&self) -> crate::db::StoreLocation {
        match &self.url {
            Some(url) => crate::db::StoreLocation::parse(url),
            None => crate::db::StoreLocation::Embedded(self.data_dir.clone()),
        }
    }
}

fn serialize_store_url<S: serde::Serializer>(
    url: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => serializer.serialize_some(&crate::db::StoreLocation::parse(url).to_string()),
        None => serializer.serialize_none(),
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./tkr-data"),
            url: None,
            pool_size: crate::db::postgres::DEFAULT_POOL_SIZE,
            cache_bytes: crate::store::DEFAULT_CACHE_BYTES,
            min_free_bytes: crate::store::space::DEFAULT_MIN_FREE_BYTES,
        }
    }
}

impl Default for OptimizationConfig {
    fn default() -> Self {
        OptimizationConfig {
            cache_size: 10_000,
            warmup_on_start: true,
        }
    }
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            log_level: LogLevel::Info,
            metrics: true,
        }
    }
}

#[allow(clippy::derivable_impls)] // spelled out: this is the documented default set
impl Default for Config {
    fn default() -> Self {
        Config {
            model: ModelConfig::default(),
            processing: ProcessingConfig::default(),
            server: ServerConfig::default(),
            storage: StorageConfig::default(),
            optimization: OptimizationConfig::default(),
            monitoring: MonitoringConfig::default(),
        }
    }
}

impl Config {
    /// Checks the rules that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let m = &self.model;
        if m.name.trim().is_empty() {
            return Err(ConfigError::invalid(
                "model.name",
                "must be a local directory or a Hugging Face repo id, not empty",
            ));
        }
        if ![32, 64, 128].contains(&m.group_size) {
            return Err(ConfigError::invalid(
                "model.group_size",
                format!("{} is not allowed (allowed: 32, 64, 128)", m.group_size),
            ));
        }
        let p = &self.processing;
        if p.image_min_pixels == 0 || p.image_min_pixels > p.image_max_pixels {
            return Err(ConfigError::invalid(
                "processing.image_min_pixels",
                format!(
                    "must be > 0 and <= processing.image_max_pixels ({})",
                    p.image_max_pixels
                ),
            ));
        }
        // The model sees images in 28x28 merge windows; smaller limits are meaningless.
        if p.image_max_pixels < 28 * 28 {
            return Err(ConfigError::invalid(
                "processing.image_max_pixels",
                "must be at least 784 (one 28x28 patch window)",
            ));
        }
        if p.max_text_length < 32 {
            return Err(ConfigError::invalid(
                "processing.max_text_length",
                format!(
                    "{} is too small (at least 32 tokens: the prompt template alone needs ~20)",
                    p.max_text_length
                ),
            ));
        }
        if p.max_video_frames == 0 {
            return Err(ConfigError::invalid(
                "processing.max_video_frames",
                "must be at least 1",
            ));
        }
        if p.chunk_tokens < 16 || p.chunk_overlap_tokens >= p.chunk_tokens {
            return Err(ConfigError::invalid(
                "processing.chunk_tokens",
                format!(
                    "chunk_tokens ({}) must be at least 16 and above chunk_overlap_tokens ({})",
                    p.chunk_tokens, p.chunk_overlap_tokens
                ),
            ));
        }
        for (field, value) in [
            ("processing.max_video_seconds", p.max_video_seconds),
            ("processing.max_pdf_pages", u64::from(p.max_pdf_pages)),
            (
                "processing.pdf_render_max_side",
                u64::from(p.pdf_render_max_side),
            ),
            ("processing.media_timeout_secs", p.media_timeout_secs),
            (
                "processing.max_document_text_bytes",
                p.max_document_text_bytes,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(field, "must be at least 1"));
            }
        }
        let s = &self.server;
        if s.host.trim().is_empty() {
            return Err(ConfigError::invalid("server.host", "must not be empty"));
        }
        for (field, value) in [
            ("server.max_batch_size", s.max_batch_size as u64),
            ("server.max_queue", s.max_queue as u64),
            ("server.timeout_secs", s.timeout_secs),
            ("server.header_timeout_secs", s.header_timeout_secs),
            ("server.max_connections", s.max_connections as u64),
            ("server.max_ingest_requests", s.max_ingest_requests as u64),
            ("server.max_query_requests", s.max_query_requests as u64),
            ("server.max_read_requests", s.max_read_requests as u64),
            ("server.max_admin_requests", s.max_admin_requests as u64),
            ("server.max_body_bytes", s.max_body_bytes as u64),
            ("server.max_image_pixels", s.max_image_pixels),
            (
                "server.max_inputs_per_request",
                s.max_inputs_per_request as u64,
            ),
            ("server.max_k", s.max_k as u64),
            ("server.url_max_bytes", s.url_max_bytes),
            ("server.url_timeout_secs", s.url_timeout_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(field, "must be at least 1"));
            }
        }
        if s.max_k > MAX_K {
            return Err(ConfigError::invalid(
                "server.max_k",
                format!("must be at most {MAX_K}"),
            ));
        }
        keys::validate(&s.api_keys)?;
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "storage.data_dir",
                "must not be empty",
            ));
        }
        Ok(())
    }
}
