//! Writes through [`Db`]: every document is checked and its vectors
//! normalised here, once for both backends, before the backend stores it
//! (durably, visible to searches when it returns).
use serde_json::Value;

use super::backend::ValidDocument;
use super::{Content, Db, DbError, NewDocument, Result};
use crate::types::{l2_normalize, validate_doc_id};

/// Most extra vectors one document may have.
pub const MAX_SEGMENTS: usize = 100_000;

impl Db {
    /// Inserts (or replaces, when the id exists) one document; returns its
    /// id. Returns after the document is on disk and searchable.
    pub fn insert(&self, collection: &str, doc: NewDocument) -> Result<String> {
        let mut ids = self.insert_many(collection, vec![doc])?;
        ids.pop()
            .ok_or_else(|| DbError::Internal("insert produced no id".into()))
    }

    /// Inserts a batch: all or nothing — a bad document fails the whole
    /// batch before anything is written. A repeated id in the batch: the
    /// last one wins.
    pub fn insert_many(&self, collection: &str, docs: Vec<NewDocument>) -> Result<Vec<String>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let valid = docs
            .into_iter()
            .enumerate()
            .map(|(i, doc)| {
                validate_document(doc, self.dim()).map_err(|e| match e {
                    DbError::BadInput(m) => DbError::BadInput(format!("document {i}: {m}")),
                    other => other,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.backend.write(collection, valid)
    }

    /// Deletes a document; false when there was none. Returns after the
    /// deletion is on disk and no search can return the document.
    pub fn delete(&self, collection: &str, id: &str) -> Result<bool> {
        validate_doc_id(id).map_err(DbError::BadInput)?;
        self.backend.delete(collection, id)
    }
}

/// Checks a document and normalises its vectors.
fn validate_document(doc: NewDocument, dim: usize) -> Result<ValidDocument> {
    if let Some(id) = &doc.id {
        validate_doc_id(id).map_err(DbError::BadInput)?;
    }
    let metadata = match doc.metadata {
        Value::Object(m) => m,
        Value::Null => serde_json::Map::new(),
        other => {
            return Err(DbError::BadInput(format!(
                "metadata must be a JSON object, got {other}"
            )))
        }
    };
    if doc.segments.len() > MAX_SEGMENTS {
        return Err(DbError::BadInput(format!(
            "{} segments (at most {MAX_SEGMENTS})",
            doc.segments.len()
        )));
    }
    let mut vectors = Vec::with_capacity(dim * (1 + doc.segments.len()));
    let mut spans = Vec::with_capacity(doc.segments.len());
    let primary = std::iter::once((None, doc.vector));
    let extra = doc
        .segments
        .into_iter()
        .enumerate()
        .map(|(i, s)| (Some((i, s.span)), s.vector));
    for (segment, mut v) in primary.chain(extra) {
        let what = match &segment {
            None => "vector".to_owned(),
            Some((i, _)) => format!("segment {i}"),
        };
        if v.len() != dim {
            return Err(DbError::WrongDimension {
                expected: dim,
                got: v.len(),
            });
        }
        l2_normalize(&mut v).map_err(|e| DbError::BadInput(format!("{what}: {e}")))?;
        vectors.extend_from_slice(&v);
        if let Some((_, span)) = segment {
            span.validate()
                .map_err(|e| DbError::BadInput(format!("{what}: {e}")))?;
            spans.push(span);
        }
    }
    let content = match doc.content {
        Some(Content::Bytes { data, content_type }) => Some(Content::Bytes {
            data,
            content_type: if content_type.is_empty() {
                "application/octet-stream".to_owned()
            } else {
                content_type
            },
        }),
        Some(Content::External { uri, .. }) if uri.is_empty() => {
            return Err(DbError::BadInput("external content URI is empty".into()))
        }
        other => other,
    };
    Ok(ValidDocument {
        id: doc.id,
        modality: doc.modality,
        text: doc.text,
        content,
        metadata,
        spans,
        vectors,
    })
}
