//! The HTTP API's own wire types: request bodies (JSON, and the fields of
//! multipart forms for the schema), and the responses only HTTP has. The
//! results shared with the CLI are in `service::views`. Every type derives
//! its schema; `/openapi.json` is generated from them.
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::service::{ImageInput, InsertContent, QueryPart};

/// The images of one input (`image` first, then `images`) as service input.
pub fn image_inputs(image: Option<String>, images: Option<Vec<String>>) -> Vec<ImageInput> {
    image
        .into_iter()
        .chain(images.into_iter().flatten())
        .map(ImageInput::Source)
        .collect()
}

/// `POST /collections`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    pub name: String,
    /// How the index holds vectors: `f32` (default) or `int8` (a quarter of
    /// the memory; candidates rescored exactly).
    #[serde(default)]
    #[schema(value_type = Option<VectorsName>)]
    pub vectors: Option<String>,
    /// Metadata fields (dotted paths to strings or lists of strings) that
    /// lexical search matches.
    #[serde(default)]
    pub text_fields: Vec<String>,
}

/// The vector encodings of a collection (schema only).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum VectorsName {
    F32,
    Int8,
}

/// `POST /collections/{c}/documents` as JSON.
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InsertBody {
    /// Default: generated. An existing id is replaced.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    /// A data URL, base64, an http(s) URL, or a `file://` path under
    /// `server.file_root`.
    #[serde(default)]
    pub image: Option<String>,
    /// Several images, embedded together with the text into one vector.
    #[serde(default)]
    pub images: Option<Vec<String>>,
    /// A JSON object.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// A precomputed vector: stored as given, the model is not run.
    #[serde(default)]
    pub vector: Option<Vec<f32>>,
}

impl From<InsertBody> for InsertContent {
    fn from(body: InsertBody) -> InsertContent {
        InsertContent {
            id: body.id,
            text: body.text,
            images: image_inputs(body.image, body.images),
            metadata: body.metadata.unwrap_or(Value::Null),
            vector: body.vector,
        }
    }
}

/// `POST /collections/{c}/documents` as a form: a `file` (image, video,
/// PDF, .txt/.md/.html) with optional fields.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InsertForm {
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    pub id: Option<String>,
    /// With an image file: embedded together with it.
    pub text: Option<String>,
    /// A JSON object, as text.
    pub metadata: Option<String>,
}

/// `POST /collections/{c}/search` as JSON: one query (`text` and/or
/// `image`, `document_id`, `vector` — hybrid: `vector` with `text`), or
/// `queries`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    #[serde(default)]
    pub text: Option<String>,
    /// A data URL, base64, an http(s) URL, or a `file://` path under
    /// `server.file_root`.
    #[serde(default)]
    pub image: Option<String>,
    /// Search with a stored document's vector (left out of the hits).
    #[serde(default)]
    pub document_id: Option<String>,
    #[serde(default)]
    pub vector: Option<Vec<f32>>,
    /// Number of hits (1 to `server.max_k`).
    #[serde(default = "default_k")]
    #[schema(default = 10, minimum = 1)]
    pub k: usize,
    /// A metadata filter (see the README's filter language).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    /// Fields per hit: `metadata` (default), `text`, `vector`, `scores`,
    /// `chunk`, `highlights`.
    #[serde(default)]
    #[schema(value_type = Option<Vec<IncludeName>>)]
    pub include: Option<Vec<String>>,
    /// The system-turn instruction the query is embedded with.
    #[serde(default)]
    pub instruction: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<ModeName>)]
    pub mode: Option<String>,
    /// Hybrid: the reciprocal-rank-fusion constant (60).
    #[serde(default)]
    pub rrf_k: Option<f32>,
    /// Hybrid: the weights of the two lists (1 each).
    #[serde(default)]
    pub weights: Option<Weights>,
    /// `document` (default: one hit per document) or `segment`.
    #[serde(default)]
    #[schema(value_type = Option<GroupName>)]
    pub group_by: Option<String>,
    /// A multi-part query instead of the fields above: weighted parts whose
    /// unit vectors are summed (negative weights push away).
    #[serde(default)]
    pub queries: Option<Vec<QueryPartBody>>,
}

/// Search modes (schema only).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ModeName {
    Vector,
    Lexical,
    Hybrid,
}

/// Hit groupings (schema only).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum GroupName {
    Document,
    Segment,
}

/// Fields a hit may include (schema only).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum IncludeName {
    Metadata,
    Text,
    Vector,
    Scores,
    Chunk,
    Highlights,
}

/// One part of a multi-part query.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryPartBody {
    #[serde(default)]
    pub text: Option<String>,
    /// A data URL, base64, an http(s) URL, or a `file://` path under
    /// `server.file_root`.
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub vector: Option<Vec<f32>>,
    #[serde(default)]
    pub instruction: Option<String>,
    #[serde(default = "one")]
    #[schema(default = 1.0)]
    pub weight: f32,
}

impl From<QueryPartBody> for QueryPart {
    fn from(p: QueryPartBody) -> QueryPart {
        QueryPart {
            text: p.text,
            image: p.image.map(ImageInput::Source),
            vector: p.vector,
            instruction: p.instruction,
            weight: p.weight,
        }
    }
}

/// Hybrid search: the weight of each list in the fusion.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    #[serde(default = "one")]
    #[schema(default = 1.0)]
    pub vector: f32,
    #[serde(default = "one")]
    #[schema(default = 1.0)]
    pub lexical: f32,
}

/// `POST /collections/{c}/search` as a form: an image `file` with optional
/// fields.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SearchForm {
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// Embedded together with the image.
    pub text: Option<String>,
    pub k: Option<String>,
    /// A filter, as JSON text.
    pub filter: Option<String>,
    /// Comma-separated field names.
    pub include: Option<String>,
    pub instruction: Option<String>,
    pub mode: Option<String>,
    pub group_by: Option<String>,
    pub rrf_k: Option<String>,
}

pub fn one() -> f32 {
    1.0
}

pub fn default_k() -> usize {
    10
}

/// `POST /embed/text`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextRequest {
    pub texts: Vec<String>,
    /// Must be true: the model's embeddings are L2-normalised.
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub normalize: bool,
    #[serde(default)]
    pub instruction: Option<String>,
}

fn yes() -> bool {
    true
}

/// `POST /embed/multimodal`: one fused vector.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MultimodalRequest {
    #[serde(default)]
    pub text: Option<String>,
    /// Also accepted as `image`.
    #[serde(default, alias = "image")]
    pub image_url: Option<String>,
    #[serde(default)]
    pub instruction: Option<String>,
}

/// `POST /embed/image` as a form.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EmbedImageForm {
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// Embedded together with the image.
    pub text: Option<String>,
}

/// `POST /embed/video` as a form.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EmbedVideoForm {
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// Frames sampled uniformly (1 to `processing.max_video_frames`).
    pub max_frames: Option<String>,
    /// Frames per second instead.
    pub fps: Option<String>,
    /// `mean`, `max` or `first`.
    pub pooling: Option<String>,
}

/// `POST /v1/embeddings` (OpenAI-compatible).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAiRequest {
    /// A string, a list of strings, or a list of `{text, image, images,
    /// instruction}` objects.
    #[schema(value_type = OpenAiInput)]
    pub input: Value,
    /// Any name is accepted; the answer names the server's model.
    #[serde(default)]
    pub model: Option<String>,
    /// `float` (default) or `base64` (little-endian float32).
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Not supported (the model has no shortened embeddings).
    #[serde(default)]
    #[schema(value_type = Option<u32>)]
    pub dimensions: Option<Value>,
    /// Accepted and ignored, as OpenAI clients send it.
    #[serde(default)]
    pub user: Option<String>,
}

/// The `input` of `/v1/embeddings` (schema only).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum OpenAiInput {
    One(String),
    Many(Vec<OpenAiInputItem>),
}

/// One element of a list `input`: a text, or text and/or images.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum OpenAiInputItem {
    Text(String),
    Item(InputItem),
}

/// One input of `/v1/embeddings`: text and/or images, fused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputItem {
    #[serde(default)]
    pub text: Option<String>,
    /// A data URL, base64, an http(s) URL, or a `file://` path under
    /// `server.file_root`.
    #[serde(default)]
    pub image: Option<String>,
    /// Several images, embedded together (with the text) into one vector.
    #[serde(default)]
    pub images: Option<Vec<String>>,
    /// A system-turn instruction for this input (e.g. a retrieval task).
    #[serde(default)]
    pub instruction: Option<String>,
}

/// The answer of `/v1/embeddings`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiResponse {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<OpenAiEmbedding>,
    pub model: String,
    pub usage: Usage,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiEmbedding {
    /// Always `embedding`.
    pub object: &'static str,
    pub index: usize,
    pub embedding: EmbeddingValue,
}

/// Floats, or base64 of their little-endian bytes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingValue {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

/// `DELETE /collections/{c}/documents/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub deleted: String,
}

/// `POST /admin/backup`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// A new (or empty) directory on the server, under `server.backup_root`:
    /// relative to it, or absolute.
    pub dest: String,
}

/// `DELETE /collections/{c}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Dropped {
    pub dropped: String,
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
    pub uptime_s: f64,
}

/// `GET /info`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Info {
    pub model: ModelInfo,
    /// The memory profile in use.
    pub profile: Option<String>,
    pub versions: Versions,
    /// Documents in all collections.
    pub documents: u64,
    /// Documents per collection.
    #[schema(value_type = Object)]
    pub collections: serde_json::Map<String, Value>,
    /// Whether requests need an API key.
    pub auth: bool,
    pub limits: InfoLimits,
    pub uptime_s: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelInfo {
    pub name: String,
    pub id: String,
    pub dim: usize,
    pub dtype: String,
    pub quantization: String,
    pub device: String,
    /// The BLAS library and kernel in use.
    #[schema(value_type = Object)]
    pub blas: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Versions {
    pub tkr_embed: &'static str,
    pub mlx_rs: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InfoLimits {
    pub max_body_bytes: usize,
    pub max_image_pixels: u64,
    pub max_inputs_per_request: usize,
    pub max_k: usize,
    pub max_document_text_bytes: u64,
}
