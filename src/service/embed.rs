//! Embeddings straight from the model: inputs of text and images (checked
//! against the limits) and videos sampled into segments.
use std::sync::Arc;

use super::views::{Embeddings, VideoEmbeddings, VideoSegment};
use super::{blocking, ImageInput, Result, Service, ServiceError, Upload};
use crate::config::VideoPooling;
use crate::db::files::{embed_file, file_kind};
use crate::engine::{EmbedRequest, ImageData};
use crate::media::{video::Sampling, MediaKind};
use crate::types::Span;

/// One input to embed: text and/or images, fused into one vector.
#[derive(Debug, Clone, Default)]
pub struct EmbedInput {
    pub text: Option<String>,
    pub images: Vec<ImageInput>,
    /// A system-turn instruction for this input (e.g. a retrieval task).
    pub instruction: Option<String>,
}

impl EmbedInput {
    pub fn text(text: impl Into<String>) -> EmbedInput {
        EmbedInput {
            text: Some(text.into()),
            ..EmbedInput::default()
        }
    }
}

/// How a video is sampled for `embed_video` (unset: the configuration's).
#[derive(Debug, Clone, Copy, Default)]
pub struct VideoOptions {
    /// Frames sampled uniformly, 1 to `processing.max_video_frames`.
    pub max_frames: Option<usize>,
    /// Frames per second instead (above 0, at most 60).
    pub fps: Option<f64>,
    pub pooling: Option<VideoPooling>,
}

impl Service {
    /// Embeds inputs together (the engine batches them); results in order,
    /// with each prompt's token count. At most
    /// `server.max_inputs_per_request` inputs and as many images in all.
    pub async fn embed_inputs(&self, inputs: Vec<EmbedInput>) -> Result<Vec<(Vec<f32>, usize)>> {
        self.check_count(inputs.len())?;
        let images: usize = inputs.iter().map(|i| i.images.len()).sum();
        self.check_count(images).map_err(|e| e.context("images"))?;
        let mut requests = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.into_iter().enumerate() {
            requests.push(
                self.embed_request(input)
                    .await
                    .map_err(|e| e.context(format!("input {i}")))?,
            );
        }
        self.embed(requests).await
    }

    /// Vectors as the `/embed/*` routes answer them.
    pub fn embeddings_view(&self, vectors: Vec<Vec<f32>>) -> Result<Embeddings> {
        Ok(Embeddings {
            shape: vec![vectors.len(), self.engine()?.info().dim],
            embeddings: vectors,
            model: self.model_name().to_owned(),
        })
    }

    async fn embed_request(&self, input: EmbedInput) -> Result<EmbedRequest> {
        if input.text.is_none() && input.images.is_empty() {
            return Err(ServiceError::Invalid("needs `text` and/or `image`".into()));
        }
        let images = self.load_images(input.images).await?;
        let mut request = EmbedRequest::text(input.text.unwrap_or_default());
        request.instruction = input.instruction;
        request.images = images
            .into_iter()
            .map(|bytes| ImageData::Encoded(Arc::new(bytes)))
            .collect();
        Ok(request)
    }

    fn check_count(&self, n: usize) -> Result<()> {
        let max = self.limits().max_inputs_per_request;
        if n > max {
            return Err(ServiceError::TooLarge(format!(
                "{n} inputs in one request; at most {max} (server.max_inputs_per_request)"
            )));
        }
        Ok(())
    }

    /// A video's pooled vector and one vector per sampled segment.
    pub async fn embed_video(
        &self,
        upload: Upload,
        options: VideoOptions,
    ) -> Result<VideoEmbeddings> {
        let mut ingest = self.ingest.clone();
        let limit = ingest.video.max_frames;
        if let Some(n) = options.max_frames {
            if n == 0 || n > limit {
                return Err(ServiceError::Invalid(format!(
                    "max_frames must be 1 to {limit} (processing.max_video_frames)"
                )));
            }
            ingest.video.max_frames = n;
            ingest.sampling = Sampling::Uniform(n);
        }
        if let Some(fps) = options.fps {
            if !(fps.is_finite() && fps > 0.0 && fps <= 60.0) {
                return Err(ServiceError::Invalid(
                    "fps must be above 0 and at most 60".into(),
                ));
            }
            ingest.sampling = Sampling::Fps(fps);
        }
        if let Some(pooling) = options.pooling {
            ingest.pooling = pooling;
        }
        let engine = Arc::clone(self.engine()?);
        let embedded = blocking(move || -> Result<_> {
            let temp = upload.to_temp_file()?;
            if file_kind(temp.path())? != Some(MediaKind::Video) {
                return Err(ServiceError::WrongMedia(
                    "the file is not a video (MP4/MOV, Matroska/WebM or AVI)".into(),
                ));
            }
            embed_file(&engine, temp.path(), &ingest, &|_, _| {})
                .map_err(|e| upload.rename_in(e.into(), temp.path()))
        })
        .await??;
        let summary = &embedded.summary;
        let times = summary["frame_times_s"].as_array();
        let segments = embedded
            .document
            .segments
            .iter()
            .enumerate()
            .map(|(i, seg)| {
                let (start_s, end_s) = match seg.span {
                    Span::Time { start_s, end_s } => (start_s, end_s),
                    _ => (0.0, 0.0),
                };
                VideoSegment {
                    start_s,
                    end_s,
                    time_s: times.and_then(|t| t.get(i)).and_then(|t| t.as_f64()),
                    embedding: seg.vector.clone(),
                }
            })
            .collect();
        Ok(VideoEmbeddings {
            shape: vec![1, self.engine()?.info().dim],
            embeddings: vec![embedded.document.vector],
            model: self.model_name().to_owned(),
            segments,
            duration_s: summary["duration_s"].as_f64(),
            pooling: summary["pooling"].as_str().map(str::to_owned),
        })
    }
}
