//! Content in, vectors out: a document given by its content (text and/or
//! images, or a precomputed vector) turned into a storable document in one
//! place, for the library, the CLI and the HTTP API alike.
use std::sync::Arc;

use serde_json::Value;

use super::{Content, Db, DbError, NewDocument, Result};
use crate::{
    engine::{EmbedRequest, Engine, ImageData},
    types::{Modality, Span},
};

/// A document given by its content; the engine computes its vector unless
/// one is given.
#[derive(Debug, Clone, Default)]
pub struct ContentDocument {
    /// `None`: generated.
    pub id: Option<String>,
    pub text: Option<String>,
    /// Encoded image files (PNG, JPEG, WebP, …), embedded together with the
    /// text into one vector; the first is stored as the document's content.
    pub images: Vec<Vec<u8>>,
    /// A JSON object or `null`.
    pub metadata: Value,
    /// A precomputed vector: stored as given, the model is not run.
    pub vector: Option<Vec<f32>>,
    /// The system-turn instruction to embed with (default: the engine's).
    pub instruction: Option<String>,
}

/// A [`ContentDocument`] checked and split into what the engine needs and
/// what is stored once the vector is known.
pub struct PreparedContent {
    pub modality: Modality,
    /// `None` when the document brought its own vector.
    pub request: Option<EmbedRequest>,
    vector: Option<Vec<f32>>,
    document: NewDocument,
    images: Vec<Arc<Vec<u8>>>,
}

impl ContentDocument {
    /// Checks the document (metadata an object or null; text, an image or a
    /// vector) and builds its embedding request.
    pub fn prepare(self) -> Result<PreparedContent> {
        let metadata = match self.metadata {
            Value::Null | Value::Object(_) => self.metadata,
            _ => return Err(DbError::BadInput("`metadata` must be a JSON object".into())),
        };
        let has_images = !self.images.is_empty();
        let modality = match content_modality(self.text.is_some(), has_images) {
            Some(m) => m,
            // A bare vector: nothing the model saw.
            None if self.vector.is_some() => Modality::Vector,
            None => {
                return Err(DbError::BadInput(
                    "a document needs `text`, `image` or `vector`".into(),
                ))
            }
        };
        let images: Vec<Arc<Vec<u8>>> = self.images.into_iter().map(Arc::new).collect();
        let request = self.vector.is_none().then(|| {
            let mut request = EmbedRequest::text(self.text.clone().unwrap_or_default());
            request.instruction = self.instruction;
            request.images = images
                .iter()
                .map(|b| ImageData::Encoded(Arc::clone(b)))
                .collect();
            request
        });
        let mut document = NewDocument::new(modality, Vec::new()).with_metadata(metadata);
        document.id = self.id;
        document.text = self.text;
        Ok(PreparedContent {
            modality,
            request,
            vector: self.vector,
            document,
            images,
        })
    }
}

impl PreparedContent {
    /// The document to store, with the engine's vector (`None` when the
    /// document brought its own). The first image becomes the content; the
    /// engine has let go of its references by now, so it is not copied.
    pub fn into_document(self, embedded: Option<Vec<f32>>) -> Result<NewDocument> {
        let vector = self.vector.or(embedded).ok_or_else(|| {
            DbError::Internal("a content document was stored without its vector".into())
        })?;
        let mut document = self.document;
        document.vector = vector;
        if let Some(bytes) = self.images.into_iter().next() {
            let bytes = Arc::try_unwrap(bytes).unwrap_or_else(|shared| (*shared).clone());
            document = document.with_content(image_content(bytes));
        }
        Ok(document)
    }
}

impl Db {
    /// Embeds the document (text, images, or both fused into one vector)
    /// and inserts it. Nothing is stored when embedding fails.
    pub fn insert_content(
        &self,
        engine: &Engine,
        collection: &str,
        doc: ContentDocument,
    ) -> Result<String> {
        let mut prepared = doc.prepare()?;
        self.check_collection(collection)?;
        let vector = match prepared.request.take() {
            Some(request) => Some(engine.embed(request)?),
            None => None,
        };
        self.insert(collection, prepared.into_document(vector)?)
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

/// The modality of a document made of text and/or images: both are one
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

/// The text of a text chunk (a `bytes` span of the document's text).
pub fn chunk_text<'a>(text: &'a str, span: &Span) -> Option<&'a str> {
    match *span {
        Span::Bytes { start, end } => text.get(start as usize..end as usize),
        _ => None,
    }
}
