//! Content in, vectors out: documents and queries embedded through the
//! engine, then stored / searched like any other vector.
use std::sync::Arc;

use serde_json::{json, Value};

use super::{Content, ContentInfo, Db, DbError, NewDocument, Result};
use crate::{
    engine::{EmbedRequest, Engine, ImageData},
    types::{Modality, Span},
};

/// A document given by its content; the engine computes its vector.
#[derive(Debug, Clone, Default)]
pub struct ContentDocument {
    /// `None`: generated.
    pub id: Option<String>,
    pub text: Option<String>,
    /// An encoded image file (PNG, JPEG, WebP, …); stored as the content.
    pub image: Option<Vec<u8>>,
    /// A JSON object or `null`.
    pub metadata: Value,
}

impl Db {
    /// Embeds the document (text, image, or both fused into one vector)
    /// and inserts it. Nothing is stored when embedding fails.
    pub fn insert_content(
        &self,
        engine: &Engine,
        collection: &str,
        doc: ContentDocument,
    ) -> Result<String> {
        let modality = content_modality(doc.text.is_some(), doc.image.is_some())
            .ok_or_else(|| DbError::BadInput("a document needs text or an image".into()))?;
        let image = doc.image.map(Arc::new);
        let mut request = EmbedRequest::text(doc.text.clone().unwrap_or_default());
        if let Some(bytes) = &image {
            request.images.push(ImageData::Encoded(Arc::clone(bytes)));
        }
        let vector = engine.embed(request)?;
        let mut new = NewDocument::new(modality, vector).with_metadata(doc.metadata);
        new.id = doc.id;
        new.text = doc.text;
        if let Some(bytes) = image {
            // The engine has let go of its reference by now: no copy.
            let bytes = Arc::try_unwrap(bytes).unwrap_or_else(|shared| (*shared).clone());
            new = new.with_content(image_content(bytes));
        }
        self.insert(collection, new)
    }

    /// Embeds a query (text, image, or both) and searches with it.
    pub fn search_content(
        &self,
        engine: &Engine,
        collection: &str,
        request: EmbedRequest,
        k: usize,
        filter: Option<&crate::index::Filter>,
    ) -> Result<Vec<super::Hit>> {
        let query = engine.embed(request)?;
        self.search(collection, &query, k, filter)
    }
}

/// The modality of a document made of text and/or an image: both are one
/// fused vector; `None` when there is neither.
pub fn content_modality(has_text: bool, has_image: bool) -> Option<Modality> {
    match (has_text, has_image) {
        (true, true) => Some(Modality::Fused),
        (false, true) => Some(Modality::Image),
        (true, false) => Some(Modality::Text),
        (false, false) => None,
    }
}

/// Stored image bytes with the content type sniffed from their signature.
pub fn image_content(data: Vec<u8>) -> Content {
    let content_type = image::guess_format(&data)
        .map(|f| f.to_mime_type().to_owned())
        .unwrap_or_else(|_| "application/octet-stream".to_owned());
    Content::Bytes { data, content_type }
}

pub fn content_info_json(c: &ContentInfo) -> Value {
    match c {
        ContentInfo::Stored {
            content_type,
            len,
            hash,
        } => json!({"stored": true, "content_type": content_type, "bytes": len, "blake3": hash}),
        ContentInfo::External { uri, content_type } => {
            json!({"stored": false, "uri": uri, "content_type": content_type})
        }
    }
}

pub fn span_json(s: &Span) -> Value {
    match *s {
        Span::Time { start_s, end_s } => json!({"start_s": start_s, "end_s": end_s}),
        Span::Page { page } => json!({"page": page}),
        Span::Bytes { start, end } => json!({"start": start, "end": end}),
    }
}

/// A stored document as JSON (CLI `get --json`, API `GET …/documents/{id}`).
pub fn document_json(d: &super::Document) -> Value {
    json!({
        "id": d.id, "collection": d.collection, "modality": d.modality.as_str(),
        "text": d.text, "metadata": d.metadata,
        "content": d.content.as_ref().map(content_info_json),
        "segments": d.segments.iter().map(span_json).collect::<Vec<_>>(),
        "created_ms": d.created_ms, "updated_ms": d.updated_ms,
    })
}

/// A search hit as JSON; `segment` is the part of the document that matched
/// (a time range, a page, a text chunk) or null for the whole document.
pub fn hit_json(h: &super::Hit) -> Value {
    let mut v = json!({
        "id": h.id, "score": h.score, "modality": h.modality.as_str(),
        "metadata": h.metadata,
        "segment": h.segment.as_ref().map(|s| segment_json(&s.span, &h.metadata)),
    });
    if let Some(fusion) = &h.fusion {
        v["scores"] = fusion_json(fusion);
    }
    v
}

/// A hybrid hit's place in each list: `{"vector": {"rank", "score"},
/// "lexical": …}` (`null` for a list it was not in).
pub fn fusion_json(f: &crate::index::fusion::Fusion) -> Value {
    let place =
        |p: Option<(u32, f32)>| p.map(|(rank, score)| json!({"rank": rank, "score": score}));
    json!({"vector": place(f.vector), "lexical": place(f.lexical)})
}

/// A hit's segment as JSON: [`span_json`], plus the `page` a text chunk
/// starts on when the document is a PDF (its `media.page_starts`).
pub fn segment_json(span: &Span, metadata: &serde_json::Map<String, Value>) -> Value {
    let mut v = span_json(span);
    let starts = metadata
        .get("media")
        .and_then(|m| m.get("page_starts"))
        .and_then(Value::as_array);
    if let (Span::Bytes { start, .. }, Some(starts)) = (span, starts) {
        let page = starts
            .iter()
            .take_while(|s| s.as_u64().is_some_and(|s| s <= *start))
            .count();
        if page > 0 {
            v["page"] = json!(page);
        }
    }
    v
}

/// The text of a text chunk (a `bytes` span of the document's text).
pub fn chunk_text<'a>(text: &'a str, span: &Span) -> Option<&'a str> {
    match *span {
        Span::Bytes { start, end } => text.get(start as usize..end as usize),
        _ => None,
    }
}
