//! Embedding routes: OpenAI-compatible `/v1/embeddings` and the seed plan's
//! `/embed/{text,image,multimodal}`.
use std::sync::Arc;

use axum::{extract::State, Json};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    error::{ApiError, ApiResult},
    input::{Form, JsonBody},
    AppState,
};
use crate::engine::{EmbedRequest, ImageData};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiRequest {
    input: Value,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<Value>,
    /// Accepted and ignored, as OpenAI clients send it.
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
}

/// `POST /v1/embeddings`.
pub async fn openai_embeddings(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<OpenAiRequest>,
) -> ApiResult<Json<Value>> {
    if body.dimensions.is_some() {
        return Err(ApiError::bad_request(
            "`dimensions` is not supported: this model was not trained for shortened \
             (matryoshka) embeddings; omit it to get the full vector",
        ));
    }
    let base64_out = match body.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "encoding_format {other:?} is not supported (float or base64)"
            )))
        }
    };
    let inputs = openai_inputs(body.input)?;
    check_count(&state, inputs.len())?;
    let images: usize = inputs.iter().map(InputItem::image_count).sum();
    check_count(&state, images).map_err(|e| e.context("images"))?;
    let mut requests = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.into_iter().enumerate() {
        requests.push(
            input
                .into_request(&state)
                .await
                .map_err(|e| e.context(format!("input {i}")))?,
        );
    }
    let results = state.embed(requests).await?;
    let tokens: usize = results.iter().map(|(_, t)| t).sum();
    let data: Vec<Value> = results
        .into_iter()
        .enumerate()
        .map(|(i, (vector, _))| {
            let embedding = if base64_out {
                Value::String(vector_base64(&vector))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let _ = body.model; // any model name is accepted; the answer names ours
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": state.model_name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}

/// OpenAI's base64 format: the little-endian f32 bytes.
fn vector_base64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One input of `/v1/embeddings`: text and/or an image reference.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputItem {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    image: Option<String>,
    /// Several images, embedded together (with the text) into one vector.
    #[serde(default)]
    images: Option<Vec<String>>,
    /// A system-turn instruction for this input (e.g. a retrieval task).
    #[serde(default)]
    instruction: Option<String>,
}

impl InputItem {
    fn image_count(&self) -> usize {
        usize::from(self.image.is_some()) + self.images.as_ref().map_or(0, Vec::len)
    }

    async fn into_request(self, state: &AppState) -> ApiResult<EmbedRequest> {
        if self.text.is_none() && self.image_count() == 0 {
            return Err(ApiError::bad_request("needs `text` and/or `image`"));
        }
        let images = state.load_images(self.image, self.images).await?;
        let mut request = EmbedRequest::text(self.text.unwrap_or_default());
        request.instruction = self.instruction;
        request.images = images
            .into_iter()
            .map(|bytes| ImageData::Encoded(Arc::new(bytes)))
            .collect();
        Ok(request)
    }
}

fn openai_inputs(input: Value) -> ApiResult<Vec<InputItem>> {
    let text = |s: &str| InputItem {
        text: Some(s.to_owned()),
        image: None,
        images: None,
        instruction: None,
    };
    match input {
        Value::String(s) => Ok(vec![text(&s)]),
        Value::Array(items) if items.is_empty() => {
            Err(ApiError::bad_request("`input` is an empty list"))
        }
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(text(&s)),
                item @ Value::Object(_) => serde_json::from_value(item).map_err(|e| {
                    ApiError::bad_request(format!("input {i}: {e}"))
                }),
                Value::Array(_) | Value::Number(_) => Err(ApiError::bad_request(format!(
                    "input {i}: token arrays are not supported; send text"
                ))),
                _ => Err(ApiError::bad_request(format!(
                    "input {i}: expected a string or an object {{\"text\", \"image\"}}"
                ))),
            })
            .collect(),
        _ => Err(ApiError::bad_request(
            "`input` must be a string, a list of strings, or a list of {\"text\", \"image\"} objects",
        )),
    }
}

fn check_count(state: &AppState, n: usize) -> ApiResult<()> {
    let max = state.config.server.max_inputs_per_request;
    if n > max {
        return Err(ApiError::too_large(format!(
            "{n} inputs in one request; at most {max} (server.max_inputs_per_request)"
        )));
    }
    Ok(())
}

fn embeddings_response(state: &AppState, vectors: Vec<Vec<f32>>) -> Json<Value> {
    let dim = state.engine.info().dim;
    Json(json!({
        "embeddings": vectors,
        "shape": [vectors.len(), dim],
        "model": state.model_name,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextRequest {
    texts: Vec<String>,
    #[serde(default = "yes")]
    normalize: bool,
    #[serde(default)]
    instruction: Option<String>,
}

fn yes() -> bool {
    true
}

/// Embeddings are always unit length (the model's recipe ends in an L2
/// normalisation); say so instead of pretending to skip it.
fn check_normalize(normalize: bool) -> ApiResult<()> {
    if normalize {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "normalize=false is not supported: the model's embeddings are L2-normalised by its recipe",
        ))
    }
}

/// `POST /embed/text` `{"texts": [...], "normalize": true}`.
pub async fn embed_text(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<TextRequest>,
) -> ApiResult<Json<Value>> {
    check_normalize(body.normalize)?;
    if body.texts.is_empty() {
        return Err(ApiError::bad_request("`texts` is an empty list"));
    }
    check_count(&state, body.texts.len())?;
    let requests = body
        .texts
        .into_iter()
        .map(|t| EmbedRequest {
            text: t,
            images: Vec::new(),
            instruction: body.instruction.clone(),
        })
        .collect();
    let vectors = state
        .embed(requests)
        .await?
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    Ok(embeddings_response(&state, vectors))
}

/// `POST /embed/image`: multipart with a `file` (and optional `text`, fused
/// with the image).
pub async fn embed_image(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> ApiResult<Json<Value>> {
    let (mut form, file) = Form::read_upload(request).await?;
    let mut embed = EmbedRequest::text(form.fields.remove("text").unwrap_or_default());
    embed.images.push(ImageData::Encoded(Arc::new(file.data)));
    let vector = state.embed_one(embed).await?;
    Ok(embeddings_response(&state, vec![vector]))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultimodalRequest {
    #[serde(default)]
    text: Option<String>,
    #[serde(default, alias = "image")]
    image_url: Option<String>,
    #[serde(default)]
    instruction: Option<String>,
}

/// `POST /embed/multimodal` `{"text", "image_url"}`: one fused vector.
pub async fn embed_multimodal(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<MultimodalRequest>,
) -> ApiResult<Json<Value>> {
    let item = InputItem {
        text: body.text,
        image: body.image_url,
        images: None,
        instruction: body.instruction,
    };
    let request = item.into_request(&state).await?;
    let vector = state.embed_one(request).await?;
    Ok(embeddings_response(&state, vec![vector]))
}

/// `POST /embed/video`: multipart `file` (+ `max_frames`, `fps`, `pooling`)
/// → the pooled vector and one vector per sampled segment.
pub async fn embed_video(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> ApiResult<Json<Value>> {
    use crate::config::VideoPooling;
    use crate::db::files::{embed_file, IngestOptions};
    use crate::media::{video::Sampling, MediaKind};
    use crate::types::Span;

    let (form, file) = Form::read_upload(request).await?;
    let mut options = IngestOptions::from_config(&state.config);
    let limit = options.video.max_frames;
    if let Some(n) = form.parsed_field::<usize>("max_frames")? {
        if n == 0 || n > limit {
            return Err(ApiError::bad_request(format!(
                "max_frames must be 1 to {limit} (processing.max_video_frames)"
            )));
        }
        options.video.max_frames = n;
        options.sampling = Sampling::Uniform(n);
    }
    if let Some(fps) = form.parsed_field::<f64>("fps")? {
        if !(fps.is_finite() && fps > 0.0 && fps <= 60.0) {
            return Err(ApiError::bad_request("fps must be above 0 and at most 60"));
        }
        options.sampling = Sampling::Fps(fps);
    }
    if let Some(p) = form.fields.get("pooling") {
        options.pooling = match p.as_str() {
            "mean" => VideoPooling::Mean,
            "max" => VideoPooling::Max,
            "first" => VideoPooling::First,
            other => {
                return Err(ApiError::bad_request(format!(
                    "pooling {other:?} is not one of mean, max, first"
                )))
            }
        };
    }
    let upload = super::docs::Upload {
        name: file.filename.unwrap_or_else(|| "upload.mp4".into()),
        data: file.data,
    };
    let engine = Arc::clone(&state.engine);
    let embedded = tokio::task::spawn_blocking(move || -> ApiResult<_> {
        let temp = upload.to_temp_file()?;
        let kind = crate::db::files::file_kind(temp.path())?;
        if kind != Some(MediaKind::Video) {
            return Err(ApiError::bad_request(
                "the file is not a video (MP4/MOV, Matroska/WebM or AVI)",
            )
            .with_code("invalid_media"));
        }
        embed_file(&engine, temp.path(), &options, &|_, _| {})
            .map_err(|e| upload.rename_in(ApiError::from(e), temp.path()))
    })
    .await?
    .map_err(|e| state.with_retry_after(e))?;
    let times = embedded.summary["frame_times_s"].clone();
    let segments: Vec<Value> = embedded
        .document
        .segments
        .iter()
        .enumerate()
        .map(|(i, seg)| {
            let (start_s, end_s) = match seg.span {
                Span::Time { start_s, end_s } => (start_s, end_s),
                _ => (0.0, 0.0),
            };
            json!({"start_s": start_s, "end_s": end_s, "time_s": times[i],
                   "embedding": seg.vector})
        })
        .collect();
    let dim = state.engine.info().dim;
    Ok(Json(json!({
        "embeddings": [embedded.document.vector],
        "shape": [1, dim],
        "model": state.model_name,
        "segments": segments,
        "duration_s": embedded.summary["duration_s"],
        "pooling": embedded.summary["pooling"],
    })))
}
