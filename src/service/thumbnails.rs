//! Small pictures of stored documents for the web page: an image document
//! scaled down, a PDF page rendered small, the frame that stands for a video
//! segment. Made on the first request from the stored content and kept in a
//! byte-capped cache (least recently used out first), keyed by the
//! document's write sequence, so an updated document never shows an old
//! picture.
//!
//! Only segments the document has can be asked for (a page it was split
//! into, a time range it was embedded as): the work a request can cause is
//! bounded by what was stored.
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use image::{codecs::jpeg::JpegEncoder, DynamicImage, ImageReader, RgbImage};
use lru::LruCache;

use super::{blocking, temp_file, Result, Service, ServiceError};
use crate::db::Document;
use crate::media::{pdf, video};
use crate::types::{Modality, Span};

/// Longer side of a thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 320;
/// JPEG quality of thumbnails.
const JPEG_QUALITY: u8 = 80;
/// Bytes of encoded thumbnails kept in memory.
pub const CACHE_BYTES: usize = 64 << 20;

/// Which picture of a document.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThumbnailOf {
    /// The document as a whole: an image, a PDF's first page, a video's
    /// first segment.
    Document,
    /// A page of a PDF.
    Page(u32),
    /// The video segment `[start_s, end_s)` (as listed in the document's
    /// segments).
    Time { start_s: f64, end_s: f64 },
}

/// An encoded thumbnail.
#[derive(Debug, Clone)]
pub struct Thumbnail {
    pub jpeg: Arc<Vec<u8>>,
}

impl Service {
    /// The thumbnail of a document or one of its segments, as JPEG.
    pub async fn thumbnail(
        &self,
        collection: &str,
        id: &str,
        of: ThumbnailOf,
    ) -> Result<Thumbnail> {
        let (c, i) = (collection.to_owned(), id.to_owned());
        let document = self
            .with_db(move |db| db.get(&c, &i))
            .await?
            .ok_or_else(|| ServiceError::NoContent {
                collection: collection.to_owned(),
                id: id.to_owned(),
            })?;
        let span = pick_span(&document, of)?;
        let key = CacheKey {
            collection: collection.to_owned(),
            id: id.to_owned(),
            seq: document.seq,
            span: span_key(span.as_ref()),
        };
        if let Some(jpeg) = self.thumbnails.get(&key) {
            return Ok(Thumbnail { jpeg });
        }
        let content = self.content(collection, id).await?;
        let super::StoredContent::Bytes { data, content_type } = content else {
            return Err(ServiceError::ContentExternal { id: id.to_owned() });
        };
        let limits = self.ingest.clone();
        let jpeg = blocking(move || render(&data, &content_type, span, &limits)).await??;
        let jpeg = Arc::new(jpeg);
        self.thumbnails.put(key, Arc::clone(&jpeg));
        Ok(Thumbnail { jpeg })
    }
}

/// The span the picture is of (`None`: the content itself, an image).
fn pick_span(document: &Document, of: ThumbnailOf) -> Result<Option<Span>> {
    let no_segment = |what: String| ServiceError::NoSegment {
        id: document.id.clone(),
        what,
    };
    let first = |want: fn(&Span) -> bool| document.segments.iter().find(|s| want(s)).cloned();
    match of {
        ThumbnailOf::Document => match document.modality {
            Modality::Image | Modality::Fused => Ok(None),
            _ => first(|s| matches!(s, Span::Page { .. } | Span::Time { .. }))
                .map(Some)
                .ok_or_else(|| no_segment("a picture (no page or video segment)".into())),
        },
        ThumbnailOf::Page(page) => document
            .segments
            .iter()
            .find(|s| **s == Span::Page { page })
            .cloned()
            .map(Some)
            .ok_or_else(|| no_segment(format!("page {page}"))),
        ThumbnailOf::Time { start_s, end_s } => document
            .segments
            .iter()
            .find(|s| match **s {
                // The page sends back the numbers it was given; allow for
                // a decimal round trip.
                Span::Time {
                    start_s: a,
                    end_s: b,
                } => (a - start_s).abs() < 1e-6 && (b - end_s).abs() < 1e-6,
                _ => false,
            })
            .cloned()
            .map(Some)
            .ok_or_else(|| no_segment(format!("a video segment {start_s}–{end_s} s"))),
    }
}

fn span_key(span: Option<&Span>) -> String {
    match span {
        None => "whole".into(),
        Some(Span::Page { page }) => format!("page {page}"),
        Some(Span::Time { start_s, end_s }) => format!("time {start_s} {end_s}"),
        Some(Span::Bytes { start, end }) => format!("bytes {start} {end}"),
    }
}

/// Decodes, renders or samples the picture and encodes it small.
fn render(
    data: &[u8],
    content_type: &str,
    span: Option<Span>,
    ingest: &crate::db::files::IngestOptions,
) -> Result<Vec<u8>> {
    let picture = match span {
        None => decode_image(data, ingest.video.max_pixels)?,
        Some(Span::Page { page }) => {
            let file = temp_file(data, "tkr-thumb-", ".pdf")?;
            let limits = pdf::PdfLimits {
                render_max_side: THUMBNAIL_SIDE,
                ..ingest.pdf.clone()
            };
            pdf::render_page(file.path(), page, &limits)?
        }
        Some(Span::Time { start_s, end_s }) => {
            let suffix = match content_type {
                "video/webm" => ".webm",
                "video/x-matroska" => ".mkv",
                "video/quicktime" => ".mov",
                _ => ".mp4",
            };
            let file = temp_file(data, "tkr-thumb-", suffix)?;
            video::frame_in(file.path(), start_s, end_s, &ingest.video)?.1
        }
        Some(Span::Bytes { .. }) => {
            return Err(ServiceError::Invalid("a text chunk has no picture".into()))
        }
    };
    encode(picture)
}

fn decode_image(data: &[u8], max_pixels: u64) -> Result<RgbImage> {
    let bad = |e: String| ServiceError::Invalid(format!("the stored image cannot be read: {e}"));
    let reader = ImageReader::new(Cursor::new(data))
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?;
    let (w, h) = reader.into_dimensions().map_err(|e| bad(e.to_string()))?;
    if u64::from(w) * u64::from(h) > max_pixels {
        return Err(ServiceError::TooLarge(format!(
            "the stored image is {w}×{h}, more than {max_pixels} pixels"
        )));
    }
    let image = image::load_from_memory(data).map_err(|e| bad(e.to_string()))?;
    Ok(image.to_rgb8())
}

fn encode(picture: RgbImage) -> Result<Vec<u8>> {
    // Scaled down to fit, never up (a small video stays its size).
    let fits = picture.width().max(picture.height()) <= THUMBNAIL_SIDE;
    let picture = DynamicImage::ImageRgb8(picture);
    let small = match fits {
        true => picture,
        false => picture.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE),
    };
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
        .encode_image(&small.to_rgb8())
        .map_err(|e| ServiceError::Io(format!("encoding a thumbnail: {e}")))?;
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    collection: String,
    id: String,
    seq: u64,
    span: String,
}

/// Encoded thumbnails, least recently used dropped first once the total
/// passes the cap (the `lru` crate orders them; the cap is in bytes, so
/// the cache itself is unbounded in entries).
pub struct ThumbnailCache {
    inner: Mutex<CacheInner>,
    cap_bytes: usize,
}

struct CacheInner {
    entries: LruCache<CacheKey, Arc<Vec<u8>>>,
    bytes: usize,
}

impl ThumbnailCache {
    pub fn new(cap_bytes: usize) -> ThumbnailCache {
        ThumbnailCache {
            inner: Mutex::new(CacheInner {
                entries: LruCache::unbounded(),
                bytes: 0,
            }),
            cap_bytes,
        }
    }

    fn get(&self, key: &CacheKey) -> Option<Arc<Vec<u8>>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.entries.get(key).cloned()
    }

    fn put(&self, key: CacheKey, jpeg: Arc<Vec<u8>>) {
        if jpeg.len() > self.cap_bytes {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.bytes += jpeg.len();
        if let Some(old) = inner.entries.put(key, jpeg) {
            inner.bytes -= old.len();
        }
        while inner.bytes > self.cap_bytes {
            let Some((_, old)) = inner.entries.pop_lru() else {
                break;
            };
            inner.bytes -= old.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> CacheKey {
        CacheKey {
            collection: "c".into(),
            id: format!("d{n}"),
            seq: n,
            span: "whole".into(),
        }
    }

    #[test]
    fn cache_drops_the_least_recently_used_past_its_cap() {
        let cache = ThumbnailCache::new(300);
        for n in 0..3 {
            cache.put(key(n), Arc::new(vec![0; 100]));
        }
        assert!(cache.get(&key(0)).is_some()); // 0 is now the most recent
        cache.put(key(3), Arc::new(vec![0; 100]));
        assert!(cache.get(&key(1)).is_none(), "1 was least recently used");
        for n in [0, 2, 3] {
            assert!(cache.get(&key(n)).is_some(), "{n} kept");
        }
        // Larger than the whole cache: not kept, nothing else lost.
        cache.put(key(9), Arc::new(vec![0; 301]));
        assert!(cache.get(&key(9)).is_none());
        assert!(cache.get(&key(3)).is_some());
    }

    #[test]
    fn rereading_keeps_the_use_list_bounded() {
        let cache = ThumbnailCache::new(1000);
        cache.put(key(0), Arc::new(vec![0; 10]));
        for _ in 0..10_000 {
            cache.get(&key(0));
        }
        cache.put(key(1), Arc::new(vec![0; 10]));
        // Replacing an entry counts its bytes once.
        cache.put(key(1), Arc::new(vec![0; 10]));
        let inner = cache.inner.lock().unwrap();
        // The use order is the LRU list itself: one node per picture.
        assert_eq!(inner.entries.len(), 2);
        assert_eq!(inner.bytes, 20);
    }
}
