//! Embedding routes: OpenAI-compatible `/v1/embeddings` and
//! `/embed/{text,image,multimodal,video}`.
use axum::{extract::State, Json};
use base64::Engine as _;
use serde_json::Value;

use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::input::{Form, JsonBody};
use crate::api::wire::{
    image_inputs, EmbedImageForm, EmbedVideoForm, EmbeddingValue, InputItem, MultimodalRequest,
    OpenAiEmbedding, OpenAiRequest, OpenAiResponse, TextRequest, Usage,
};
use crate::api::AppState;
use crate::config::VideoPooling;
use crate::service::views::{Embeddings, VideoEmbeddings};
use crate::service::{EmbedInput, ImageInput, ServiceError, Upload, VideoOptions};

/// OpenAI-compatible embeddings: `input` is a string, a list of strings, or
/// a list of `{text, image, images, instruction}` objects.
#[utoipa::path(post, path = "/v1/embeddings", tag = "embeddings", request_body = OpenAiRequest,
    responses((status = 200, body = OpenAiResponse), (status = "4XX", body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn openai_embeddings(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<OpenAiRequest>,
) -> ApiResult<Json<OpenAiResponse>> {
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
    let results = state.service.embed_inputs(inputs).await?;
    let tokens: usize = results.iter().map(|(_, t)| t).sum();
    let data = results
        .into_iter()
        .enumerate()
        .map(|(index, (vector, _))| OpenAiEmbedding {
            object: "embedding",
            index,
            embedding: if base64_out {
                EmbeddingValue::Base64(vector_base64(&vector))
            } else {
                EmbeddingValue::Float(vector)
            },
        })
        .collect();
    Ok(Json(OpenAiResponse {
        object: "list",
        data,
        model: state.service.model_name().to_owned(),
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }))
}

/// OpenAI's base64 format: the little-endian f32 bytes.
fn vector_base64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl From<InputItem> for EmbedInput {
    fn from(item: InputItem) -> EmbedInput {
        EmbedInput {
            text: item.text,
            images: image_inputs(item.image, item.images),
            instruction: item.instruction,
        }
    }
}

fn openai_inputs(input: Value) -> ApiResult<Vec<EmbedInput>> {
    match input {
        Value::String(s) => Ok(vec![EmbedInput::text(s)]),
        Value::Array(items) if items.is_empty() => {
            Err(ApiError::bad_request("`input` is an empty list"))
        }
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(EmbedInput::text(s)),
                item @ Value::Object(_) => serde_json::from_value::<InputItem>(item)
                    .map(Into::into)
                    .map_err(|e| ApiError::bad_request(format!("input {i}: {e}"))),
                Value::Array(_) | Value::Number(_) => Err(ApiError::bad_request(format!(
                    "input {i}: token arrays are not supported; send text"
                ))),
                Value::Null | Value::Bool(_) => Err(ApiError::bad_request(format!(
                    "input {i}: expected a string or an object {{\"text\", \"image\"}}"
                ))),
            })
            .collect(),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::Object(_) => {
            Err(ApiError::bad_request(
                "`input` must be a string, a list of strings, or a list of {\"text\", \"image\"} objects",
            ))
        }
    }
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

async fn embeddings(state: &AppState, inputs: Vec<EmbedInput>) -> ApiResult<Json<Embeddings>> {
    let vectors = state
        .service
        .embed_inputs(inputs)
        .await?
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    Ok(Json(state.service.embeddings_view(vectors)?))
}

/// Texts to vectors.
#[utoipa::path(post, path = "/embed/text", tag = "embeddings", request_body = TextRequest,
    responses((status = 200, body = Embeddings), (status = "4XX", body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn embed_text(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<TextRequest>,
) -> ApiResult<Json<Embeddings>> {
    check_normalize(body.normalize)?;
    if body.texts.is_empty() {
        return Err(ApiError::bad_request("`texts` is an empty list"));
    }
    let inputs = body
        .texts
        .into_iter()
        .map(|text| EmbedInput {
            instruction: body.instruction.clone(),
            ..EmbedInput::text(text)
        })
        .collect();
    embeddings(&state, inputs).await
}

/// An uploaded image (with optional `text`, fused) to one vector.
#[utoipa::path(post, path = "/embed/image", tag = "embeddings",
    request_body(content = EmbedImageForm, content_type = "multipart/form-data"),
    responses((status = 200, body = Embeddings), (status = "4XX", body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn embed_image(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> ApiResult<Json<Embeddings>> {
    let (mut form, file) = Form::read_upload(request).await?;
    let input = EmbedInput {
        text: Some(form.fields.remove("text").unwrap_or_default()),
        images: vec![ImageInput::Bytes(file.data)],
        instruction: None,
    };
    embeddings(&state, vec![input]).await
}

/// Text and/or an image reference to one fused vector.
#[utoipa::path(post, path = "/embed/multimodal", tag = "embeddings",
    request_body = MultimodalRequest,
    responses((status = 200, body = Embeddings), (status = "4XX", body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn embed_multimodal(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<MultimodalRequest>,
) -> ApiResult<Json<Embeddings>> {
    let input = EmbedInput {
        text: body.text,
        images: image_inputs(body.image_url, None),
        instruction: body.instruction,
    };
    embeddings(&state, vec![input]).await
}

/// An uploaded video to its pooled vector and one vector per sampled
/// segment.
#[utoipa::path(post, path = "/embed/video", tag = "embeddings",
    request_body(content = EmbedVideoForm, content_type = "multipart/form-data"),
    responses((status = 200, body = VideoEmbeddings), (status = "4XX", body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn embed_video(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> ApiResult<Json<VideoEmbeddings>> {
    let (form, file) = Form::read_upload(request).await?;
    let pooling = match form.fields.get("pooling").map(String::as_str) {
        None => None,
        Some("mean") => Some(VideoPooling::Mean),
        Some("max") => Some(VideoPooling::Max),
        Some("first") => Some(VideoPooling::First),
        Some(other) => {
            return Err(ServiceError::Invalid(format!(
                "pooling {other:?} is not one of mean, max, first"
            ))
            .into())
        }
    };
    let options = VideoOptions {
        max_frames: form.parsed_field("max_frames")?,
        fps: form.parsed_field("fps")?,
        pooling,
    };
    let upload = Upload {
        name: file.filename.unwrap_or_else(|| "upload.mp4".into()),
        data: file.data,
    };
    Ok(Json(state.service.embed_video(upload, options).await?))
}
