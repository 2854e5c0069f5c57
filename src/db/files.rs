//! Files in, documents out: images, videos, PDFs and text files are turned
//! into one document each — a primary vector plus one vector per video
//! segment, PDF page or text chunk — using [`crate::media`] to read them
//! and the engine to embed. Nothing is stored unless every part embedded.
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::{Content, Db, DbError, NewDocument, Result};
use crate::config::{Config, VideoPooling};
use crate::engine::{EmbedRequest, Engine, ImageData, Pending, Priority};
use crate::media::{
    chunk::{chunk_text, Chunk},
    detect_kind,
    pdf::{for_each_page_image, pdf_info, pdf_text, PdfLimits},
    video::{sample_frames, Sampling, VideoLimits},
    MediaError, MediaKind, DETECT_HEAD_LEN,
};
use crate::types::{l2_normalize, Modality, Span};

/// How files are read and embedded (from the `processing` settings).
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub video: VideoLimits,
    pub sampling: Sampling,
    pub pooling: VideoPooling,
    pub pdf: PdfLimits,
    pub chunk_tokens: usize,
    pub chunk_overlap_tokens: usize,
    /// `processing.max_document_text_bytes`.
    pub max_text_bytes: u64,
    /// Files larger than this are referenced by path instead of copied into
    /// the database (`None`: always copied). Only for files that stay where
    /// they are (CLI import), never for uploads.
    pub reference_above_bytes: Option<u64>,
}

impl IngestOptions {
    pub fn from_config(config: &Config) -> IngestOptions {
        let p = &config.processing;
        IngestOptions {
            video: VideoLimits {
                max_frames: p.max_video_frames,
                max_duration_s: p.max_video_seconds as f64,
                max_pixels: config.server.max_image_pixels,
            },
            sampling: Sampling::Uniform(p.max_video_frames),
            pooling: p.video_pooling,
            pdf: PdfLimits {
                max_pages: p.max_pdf_pages,
                timeout: std::time::Duration::from_secs(p.media_timeout_secs),
                render_max_side: p.pdf_render_max_side,
                ..PdfLimits::default()
            },
            chunk_tokens: p.chunk_tokens,
            chunk_overlap_tokens: p.chunk_overlap_tokens,
            max_text_bytes: p.max_document_text_bytes,
            reference_above_bytes: None,
        }
    }
}

/// Reports progress inside one file: (units done, units in all), where a
/// unit is a frame, a page or a chunk.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// A file read and embedded, ready to insert (id and metadata still to set).
pub struct EmbeddedFile {
    pub kind: MediaKind,
    pub document: NewDocument,
    /// What was found: frames, pages, chunks, duration — merged into the
    /// metadata under `"media"`.
    pub summary: Value,
}

/// What a file is, from its first bytes (and extension, for text kinds).
pub fn file_kind(path: &Path) -> Result<Option<MediaKind>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(DETECT_HEAD_LEN);
    std::fs::File::open(path)
        .and_then(|f| f.take(DETECT_HEAD_LEN as u64).read_to_end(&mut head))
        .map_err(|e| DbError::BadInput(format!("{}: {e}", path.display())))?;
    Ok(detect_kind(path, &head))
}

/// Reads and embeds one file of any supported kind.
pub fn embed_file(
    engine: &Engine,
    path: &Path,
    options: &IngestOptions,
    progress: Progress<'_>,
) -> Result<EmbeddedFile> {
    let kind = file_kind(path)?.ok_or_else(|| {
        DbError::BadInput(format!(
            "{}: not a supported file (images, MP4/MOV/MKV/WebM/AVI video, PDF, .txt, .md, .html)",
            path.display()
        ))
    })?;
    // Images and text are read whole to embed them; their bytes are kept
    // for the content instead of reading the file a second time.
    let (document, summary, bytes) = match kind {
        MediaKind::Image => embed_image_file(engine, path)?,
        MediaKind::Video => with_no_bytes(embed_video(engine, path, options, progress)?),
        MediaKind::Pdf => with_no_bytes(embed_pdf(engine, path, options, progress)?),
        MediaKind::Text | MediaKind::Markdown | MediaKind::Html => {
            embed_text_file(engine, path, kind, options, progress)?
        }
    };
    let document = attach_content(document, path, kind, options, bytes)?;
    Ok(EmbeddedFile {
        kind,
        document,
        summary,
    })
}

/// A file to insert as a document.
pub struct FileInput<'a> {
    pub path: &'a Path,
    /// `None`: generated.
    pub id: Option<String>,
    /// A JSON object or null; gets a `"media"` summary unless it has one.
    pub metadata: Value,
}

impl Db {
    /// Embeds a file and inserts it as one document.
    pub fn insert_file(
        &self,
        engine: &Engine,
        collection: &str,
        input: FileInput<'_>,
        options: &IngestOptions,
        progress: Progress<'_>,
    ) -> Result<String> {
        self.check_collection(collection)?;
        let file = embed_file(engine, input.path, options, progress)?;
        let metadata = merge_summary(input.metadata, file.summary)?;
        let mut document = file.document.with_metadata(metadata);
        document.id = input.id;
        self.insert(collection, document)
    }
}

/// `metadata` with `"media": summary` added (unless already present).
pub fn merge_summary(metadata: Value, summary: Value) -> Result<Value> {
    let mut map = match metadata {
        Value::Null => Map::new(),
        Value::Object(m) => m,
        _ => return Err(DbError::BadInput("metadata must be a JSON object".into())),
    };
    map.entry("media").or_insert(summary);
    Ok(Value::Object(map))
}

fn media_error(e: MediaError) -> DbError {
    DbError::Media(e)
}

/// A document, its `"media"` summary, and the file's bytes when they were
/// read whole on the way.
type Embedded = (NewDocument, Value, Option<Vec<u8>>);

fn with_no_bytes((document, summary): (NewDocument, Value)) -> Embedded {
    (document, summary, None)
}

fn embed_image_file(engine: &Engine, path: &Path) -> Result<Embedded> {
    let bytes = Arc::new(read(path)?);
    let request = EmbedRequest {
        images: vec![ImageData::Encoded(Arc::clone(&bytes))],
        ..EmbedRequest::default()
    };
    let vector = engine.embed(request)?;
    // The engine has let go of its reference by now: no copy.
    let bytes = Arc::try_unwrap(bytes).unwrap_or_else(|shared| (*shared).clone());
    Ok((
        NewDocument::new(Modality::Image, vector),
        json!({"kind": "image"}),
        Some(bytes),
    ))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        media_error(MediaError::Io {
            path: path.to_owned(),
            action: "read",
            source: e,
        })
    })
}

/// Keeps a bounded number of a document's parts (frames, pages, chunks) in
/// the engine's queue: enough for full batches, never the whole document —
/// a long text must neither fill the shared queue (other clients would get
/// 503s) nor hold every prepared input in memory at once.
struct Pipeline<'a> {
    engine: &'a Engine,
    window: usize,
    pending: VecDeque<Pending>,
    done: Vec<Vec<f32>>,
    total: u64,
    progress: Progress<'a>,
}

impl<'a> Pipeline<'a> {
    fn new(engine: &'a Engine, total: u64, progress: Progress<'a>) -> Pipeline<'a> {
        Pipeline {
            engine,
            window: (engine.config().max_batch_size * 2).max(2),
            pending: VecDeque::new(),
            done: Vec::with_capacity(total as usize),
            total,
            progress,
        }
    }

    fn push(&mut self, request: EmbedRequest) -> Result<()> {
        if self.pending.len() >= self.window {
            self.wait_one()?;
        }
        let pending = submit_patiently(self.engine, request)?;
        self.pending.push_back(pending);
        Ok(())
    }

    fn wait_one(&mut self) -> Result<()> {
        if let Some(p) = self.pending.pop_front() {
            self.done.push(self.engine.wait(p)?);
            (self.progress)(self.done.len() as u64, self.total);
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<Vec<f32>>> {
        while !self.pending.is_empty() {
            self.wait_one()?;
        }
        Ok(self.done)
    }
}

/// How long an ingest waits for room in a full engine queue before giving
/// up with the overload error.
const QUEUE_PATIENCE: Duration = Duration::from_secs(60);

/// Submits in the engine's bulk lane (queries and single documents go
/// first), waiting and retrying while that lane is full: ingest runs on a
/// blocking thread and can wait, unlike a single HTTP request.
fn submit_patiently(engine: &Engine, request: EmbedRequest) -> Result<Pending> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        let pending = engine.submit_as(request.clone(), Priority::Bulk);
        if !pending.is_overloaded() || started.elapsed() > QUEUE_PATIENCE {
            return Ok(pending);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Embeds requests through a [`Pipeline`]; results in order.
fn embed_all(
    engine: &Engine,
    requests: Vec<EmbedRequest>,
    progress: Progress<'_>,
) -> Result<Vec<Vec<f32>>> {
    let mut pipeline = Pipeline::new(engine, requests.len() as u64, progress);
    for request in requests {
        pipeline.push(request)?;
    }
    pipeline.finish()
}

fn embed_video(
    engine: &Engine,
    path: &Path,
    options: &IngestOptions,
    progress: Progress<'_>,
) -> Result<(NewDocument, Value)> {
    let info = crate::media::video::probe_video(path, &options.video).map_err(media_error)?;
    let frames = sample_frames(path, options.sampling, &options.video).map_err(media_error)?;
    if frames.is_empty() {
        return Err(media_error(MediaError::Unsupported {
            path: path.to_owned(),
            reason: "no frames could be sampled".into(),
        }));
    }
    let spans: Vec<Span> = frames
        .iter()
        .map(|f| Span::Time {
            start_s: f.start_s,
            end_s: f.end_s,
        })
        .collect();
    let times: Vec<f64> = frames.iter().map(|f| f.time_s).collect();
    let requests = frames
        .into_iter()
        .map(|f| EmbedRequest {
            images: vec![ImageData::Decoded(Arc::new(f.image))],
            ..EmbedRequest::default()
        })
        .collect();
    let vectors = embed_all(engine, requests, progress)?;
    let primary = pool(&vectors, options.pooling)?;
    let mut document = NewDocument::new(Modality::Video, primary);
    for (span, vector) in spans.into_iter().zip(vectors) {
        document = document.with_segment(span, vector);
    }
    let summary = json!({
        "kind": "video", "duration_s": info.duration_s, "width": info.width,
        "height": info.height, "fps": info.fps, "codec": info.codec,
        "frames": times.len(), "frame_times_s": times,
        "pooling": pooling_name(options.pooling),
    });
    Ok((document, summary))
}

fn pooling_name(p: VideoPooling) -> &'static str {
    match p {
        VideoPooling::Mean => "mean",
        VideoPooling::Max => "max",
        VideoPooling::First => "first",
    }
}

/// One vector for many (frames, pages, chunks): the mean, the element-wise
/// max or the first, renormalised to unit length.
pub fn pool(vectors: &[Vec<f32>], pooling: VideoPooling) -> Result<Vec<f32>> {
    let first = vectors
        .first()
        .ok_or_else(|| DbError::Internal("nothing to pool".into()))?;
    let mut out = first.clone();
    match pooling {
        VideoPooling::First => {}
        VideoPooling::Mean => {
            for v in &vectors[1..] {
                out.iter_mut().zip(v).for_each(|(o, x)| *o += x);
            }
        }
        VideoPooling::Max => {
            for v in &vectors[1..] {
                out.iter_mut().zip(v).for_each(|(o, x)| *o = o.max(*x));
            }
        }
    }
    l2_normalize(&mut out).map_err(|e| DbError::Internal(format!("pooled vector: {e}")))?;
    Ok(out)
}

fn embed_pdf(
    engine: &Engine,
    path: &Path,
    options: &IngestOptions,
    progress: Progress<'_>,
) -> Result<(NewDocument, Value)> {
    let info = pdf_info(path, &options.pdf).map_err(media_error)?;
    let pages_text = pdf_text(path, &options.pdf).map_err(media_error)?;
    // The document text: pages joined by blank lines; chunk offsets index
    // it, and where each page starts in it tells a chunk's page.
    let mut text = String::new();
    let mut page_starts = Vec::with_capacity(pages_text.len());
    for (i, page) in pages_text.iter().enumerate() {
        if i > 0 {
            text.push_str("\n\n");
        }
        page_starts.push(text.len());
        text.push_str(page.text.trim_end());
    }
    check_text_size(path, text.len() as u64, options)?;
    let chunks = chunk_text(
        engine.tokenizer(),
        &text,
        options.chunk_tokens,
        options.chunk_overlap_tokens,
    )
    .map_err(media_error)?;
    let total = u64::from(info.pages) + chunks.len() as u64;
    // Submit each page as soon as it is rendered: rendering overlaps with
    // the model working on earlier pages.
    let mut pages = Vec::with_capacity(info.pages as usize);
    let mut pipeline = Pipeline::new(engine, total, progress);
    let mut failed = None;
    for_each_page_image(path, &options.pdf, |page, _| {
        pages.push(page.page);
        let request = EmbedRequest {
            images: vec![ImageData::Decoded(Arc::new(page.image))],
            ..EmbedRequest::default()
        };
        if let Err(e) = pipeline.push(request) {
            failed = Some(e);
            return Err(MediaError::InvalidArgument(
                "embedding a page failed".into(),
            ));
        }
        Ok(())
    })
    .map_err(|e| failed.take().unwrap_or(media_error(e)))?;
    let visual_vectors = pipeline.finish()?;
    let done = visual_vectors.len() as u64;
    let primary = pool(&visual_vectors, VideoPooling::Mean)?;
    let page_vectors: Vec<(u32, Vec<f32>)> = pages.into_iter().zip(visual_vectors).collect();
    let chunk_requests = chunks.iter().map(|c| EmbedRequest::text(&c.text)).collect();
    let chunk_vectors = embed_all(engine, chunk_requests, &|d, _| progress(done + d, total))?;

    let mut document = NewDocument::new(Modality::Document, primary);
    for (page, vector) in page_vectors {
        document = document.with_segment(Span::Page { page }, vector);
    }
    let mut document = with_chunk_segments(document, &chunks, chunk_vectors);
    if !text.trim().is_empty() {
        document = document.with_text(text);
    }
    let summary = json!({
        "kind": "pdf", "pages": info.pages, "title": info.title, "chunks": chunks.len(),
        "page_starts": page_starts,
    });
    Ok((document, summary))
}

/// Refuses a document whose text has more than
/// `processing.max_document_text_bytes` bytes.
fn check_text_size(path: &Path, bytes: u64, options: &IngestOptions) -> Result<()> {
    if bytes > options.max_text_bytes {
        return Err(media_error(MediaError::TooLarge {
            path: path.to_owned(),
            what: "its text in bytes (processing.max_document_text_bytes)",
            actual: bytes,
            limit: options.max_text_bytes,
        }));
    }
    Ok(())
}

fn embed_text_file(
    engine: &Engine,
    path: &Path,
    kind: MediaKind,
    options: &IngestOptions,
    progress: Progress<'_>,
) -> Result<Embedded> {
    if kind != MediaKind::Html {
        // Plain text is its own document text: refuse it before reading it.
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        check_text_size(path, size, options)?;
    }
    let bytes = read(path)?;
    let raw = String::from_utf8(bytes).map_err(|e| {
        media_error(MediaError::Unsupported {
            path: path.to_owned(),
            reason: format!("not valid UTF-8 text ({e})"),
        })
    })?;
    let text = match kind {
        MediaKind::Html => crate::media::html::html_to_text(&raw),
        _ => raw.clone(),
    };
    check_text_size(path, text.len() as u64, options)?;
    let (document, chunks) = embed_long_text(engine, &text, options, progress)?;
    let summary = json!({
        "kind": match kind { MediaKind::Html => "html", MediaKind::Markdown => "markdown", _ => "text" },
        "chunks": chunks,
    });
    Ok((document.with_text(text), summary, Some(raw.into_bytes())))
}

/// A text document: one vector when it fits one chunk; otherwise one per
/// overlapping chunk (with byte offsets) and their mean as the primary.
pub fn embed_long_text(
    engine: &Engine,
    text: &str,
    options: &IngestOptions,
    progress: Progress<'_>,
) -> Result<(NewDocument, usize)> {
    let chunks = chunk_text(
        engine.tokenizer(),
        text,
        options.chunk_tokens,
        options.chunk_overlap_tokens,
    )
    .map_err(media_error)?;
    if chunks.is_empty() {
        return Err(DbError::BadInput("the document has no text".into()));
    }
    if chunks.len() == 1 {
        let vector = engine.embed(EmbedRequest::text(text))?;
        progress(1, 1);
        return Ok((NewDocument::new(Modality::Text, vector), 1));
    }
    let requests = chunks.iter().map(|c| EmbedRequest::text(&c.text)).collect();
    let vectors = embed_all(engine, requests, progress)?;
    let primary = pool(&vectors, VideoPooling::Mean)?;
    let document = with_chunk_segments(NewDocument::new(Modality::Text, primary), &chunks, vectors);
    Ok((document, chunks.len()))
}

/// One segment per text chunk: its byte range and its vector.
fn with_chunk_segments(
    mut document: NewDocument,
    chunks: &[Chunk],
    vectors: Vec<Vec<f32>>,
) -> NewDocument {
    for (chunk, vector) in chunks.iter().zip(vectors) {
        let span = Span::Bytes {
            start: chunk.start as u64,
            end: chunk.end as u64,
        };
        document = document.with_segment(span, vector);
    }
    document
}

/// The original file as the document's content: copied into the database
/// (`bytes` when already read), or referenced by path when large and allowed.
fn attach_content(
    document: NewDocument,
    path: &Path,
    kind: MediaKind,
    options: &IngestOptions,
    bytes: Option<Vec<u8>>,
) -> Result<NewDocument> {
    let len = std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| DbError::BadInput(format!("{}: {e}", path.display())))?;
    let content_type = content_type(kind, path);
    if options
        .reference_above_bytes
        .is_some_and(|limit| len > limit)
    {
        let absolute = std::fs::canonicalize(path)
            .map_err(|e| DbError::BadInput(format!("{}: {e}", path.display())))?;
        return Ok(document.with_content(Content::External {
            uri: format!("file://{}", absolute.display()),
            content_type: Some(content_type),
        }));
    }
    let data = match bytes {
        Some(data) => data,
        None => read(path)?,
    };
    let content = match kind {
        MediaKind::Image => super::image_content(data),
        _ => Content::Bytes { data, content_type },
    };
    Ok(document.with_content(content))
}

fn content_type(kind: MediaKind, path: &Path) -> String {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match kind {
        MediaKind::Image => "image",
        MediaKind::Video => match ext.as_deref() {
            Some("webm") => "video/webm",
            Some("mkv") => "video/x-matroska",
            Some("avi") => "video/x-msvideo",
            Some("mov") => "video/quicktime",
            _ => "video/mp4",
        },
        MediaKind::Pdf => "application/pdf",
        MediaKind::Text => "text/plain; charset=utf-8",
        MediaKind::Markdown => "text/markdown; charset=utf-8",
        MediaKind::Html => "text/html; charset=utf-8",
    }
    .to_owned()
}
