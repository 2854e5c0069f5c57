//! The service layer: what the HTTP API and the CLI both do, typed.
//!
//! Front ends turn their input (JSON bodies, forms, flags) into the request
//! types here and print or serialize the results ([`views`]); everything in
//! between — checking a request against the limits, turning content into a
//! document, choosing and running a search, embedding — happens once, here.
//! No HTTP and no terminal in this module: it knows neither axum nor clap.
//!
//! Methods are `async` so that a dropped request (a timeout, a client gone)
//! stops waiting for the model, and the engine skips work nobody waits for;
//! database calls and input preparation run on tokio's blocking pool. The
//! CLI drives them with a small runtime ([`block_on`]).
mod backup;
pub mod commit;
mod documents;
mod embed;
mod error;
pub mod images;
mod search;
mod thumbnails;
pub mod views;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config::Config;
use crate::db::{files::IngestOptions, Db};
use crate::engine::{EmbedRequest, Engine};

pub use documents::{FileSource, InsertContent, StoredContent, Upload};
pub use embed::{EmbedInput, VideoOptions};
pub use error::ServiceError;
pub use images::{ImageError, ImageSources};
pub use search::{Include, QueryPart, SearchQuery, SearchRequest};
pub use thumbnails::{Thumbnail, ThumbnailOf, THUMBNAIL_SIDE};

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// The limits every front end applies, from [`Config`].
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most hits one search may ask for (`server.max_k`).
    pub max_k: usize,
    /// Most inputs (and images) in one embedding request
    /// (`server.max_inputs_per_request`).
    pub max_inputs_per_request: usize,
    /// Most images fused into one input.
    pub max_images_per_input: usize,
    /// Most parts of a multi-part query.
    pub max_query_parts: usize,
    /// Most bytes of a document's text (`processing.max_document_text_bytes`).
    pub max_document_text_bytes: u64,
}

/// Most images fused into one input.
pub const MAX_IMAGES_PER_INPUT: usize = 16;

impl Limits {
    pub fn from_config(config: &Config) -> Limits {
        Limits {
            max_k: config.server.max_k,
            max_inputs_per_request: config.server.max_inputs_per_request,
            max_images_per_input: MAX_IMAGES_PER_INPUT,
            max_query_parts: crate::db::MAX_QUERY_PARTS,
            max_document_text_bytes: config.processing.max_document_text_bytes,
        }
    }
}

/// An image of a request: bytes already in hand (an upload, a file the CLI
/// read) or a reference the service resolves ([`ImageSources`]).
#[derive(Debug, Clone)]
pub enum ImageInput {
    Bytes(Vec<u8>),
    /// A data URL, bare base64, an http(s) URL or a `file://` path under
    /// `server.file_root`.
    Source(String),
}

/// The database, the engine (when a model is loaded) and the settings the
/// front ends share. Cheap to share through an `Arc`.
pub struct Service {
    db: Arc<Db>,
    engine: Option<Arc<Engine>>,
    limits: Limits,
    ingest: IngestOptions,
    images: ImageSources,
    model_name: String,
    thumbnails: thumbnails::ThumbnailCache,
    /// `server.backup_root`: where API backups may go.
    backup_root: Option<std::path::PathBuf>,
}

impl Service {
    /// `engine` is `None` for work that needs no model (lexical search,
    /// stored vectors, reading and deleting); asking such a service to
    /// embed fails with [`ServiceError::NoModel`].
    pub fn new(db: Arc<Db>, engine: Option<Arc<Engine>>, config: &Config) -> Result<Service> {
        let model_name = db.options().model_id.clone();
        Ok(Service {
            images: ImageSources::new(&config.server)?,
            ingest: IngestOptions::from_config(config),
            limits: Limits::from_config(config),
            db,
            engine,
            model_name,
            thumbnails: thumbnails::ThumbnailCache::new(thumbnails::CACHE_BYTES),
            backup_root: config.server.backup_root.clone(),
        })
    }

    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    pub fn engine(&self) -> Result<&Arc<Engine>> {
        self.engine.as_ref().ok_or(ServiceError::NoModel)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How the database names the model.
    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    /// Runs a database call on the blocking pool.
    pub async fn with_db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> crate::db::Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = Arc::clone(&self.db);
        Ok(blocking(move || f(&db)).await??)
    }

    /// Runs a database write on the blocking pool, unless the request's
    /// deadline passed first (see [`commit`]): then nothing is written.
    pub async fn write_db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> crate::db::Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = Arc::clone(&self.db);
        let gate = commit::current();
        blocking(move || {
            commit::begin(gate.as_ref())?;
            Ok(f(&db)?)
        })
        .await?
    }

    /// Embeds requests together (so the engine can batch them); results in
    /// order, with each prompt's token count. The first failure fails all,
    /// naming the input's position when there are several.
    pub async fn embed(&self, requests: Vec<EmbedRequest>) -> Result<Vec<(Vec<f32>, usize)>> {
        let engine = Arc::clone(self.engine()?);
        let several = requests.len() > 1;
        let submitter = Arc::clone(&engine);
        // Decoding and tokenizing are CPU work: off the async workers. All
        // are queued before the first is awaited, so they batch.
        let pending = blocking(move || {
            requests
                .into_iter()
                .map(|r| submitter.submit(r))
                .collect::<Vec<_>>()
        })
        .await?;
        let mut out = Vec::with_capacity(pending.len());
        for (i, p) in pending.into_iter().enumerate() {
            let tokens = p.prompt_tokens();
            let vector = engine.wait_async(p).await.map_err(|e| {
                let error = ServiceError::from(e);
                match several && error.is_bad_input() {
                    true => error.context(format!("input {i}")),
                    false => error,
                }
            })?;
            out.push((vector, tokens));
        }
        Ok(out)
    }

    pub async fn embed_one(&self, request: EmbedRequest) -> Result<Vec<f32>> {
        let mut out = self.embed(vec![request]).await?;
        Ok(out.pop().expect("one result per request").0)
    }

    /// The bytes of each image, references resolved; at most
    /// [`Limits::max_images_per_input`], checked before any is fetched.
    pub async fn load_images(&self, images: Vec<ImageInput>) -> Result<Vec<Vec<u8>>> {
        let max = self.limits.max_images_per_input;
        if images.len() > max {
            return Err(ServiceError::TooLarge(format!(
                "{} images in one input; at most {max}",
                images.len()
            )));
        }
        let mut out = Vec::with_capacity(images.len());
        for image in images {
            out.push(self.load_image(image).await?);
        }
        Ok(out)
    }

    pub async fn load_image(&self, image: ImageInput) -> Result<Vec<u8>> {
        match image {
            ImageInput::Bytes(bytes) => Ok(bytes),
            ImageInput::Source(source) => Ok(self.images.load(&source).await?),
        }
    }
}

/// `data` in a new temporary file whose name ends in `suffix` (FFmpeg and
/// poppler read files; some kinds are told apart by extension). Removed
/// when the handle drops.
pub(crate) fn temp_file(
    data: &[u8],
    prefix: &str,
    suffix: &str,
) -> Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let io = |e: std::io::Error| ServiceError::Io(format!("temporary file: {e}"));
    let mut file = tempfile::Builder::new()
        .prefix(prefix)
        .suffix(suffix)
        .tempfile()
        .map_err(io)?;
    file.write_all(data).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(file)
}

/// Runs CPU or blocking work on tokio's blocking pool.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Worker(e.to_string()))
}

/// Runs a service call to completion on a small runtime of its own (for the
/// CLI, which is not async).
pub fn block_on<F: Future>(future: F) -> std::io::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(future))
}

/// Raised when its owner is dropped: work on the blocking pool checks it
/// before storing, so a request answered with an error (timeout, client
/// gone) never leaves a document behind.
#[derive(Default)]
pub(crate) struct CancelOnDrop(Arc<AtomicBool>);

impl CancelOnDrop {
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Whether a [`CancelOnDrop`] flag was raised.
pub(crate) fn cancelled(flag: &AtomicBool) -> bool {
    flag.load(Ordering::SeqCst)
}
