//! Copying a database into another store (`tkr-embed migrate`): every
//! collection with its options, every document with its vectors (as
//! stored: nothing is embedded again, and vectors arrive bit for bit),
//! segments, metadata, text and content.
//!
//! Resumable: documents are copied in id order, a page at a time, each page
//! in one write, and a document the target already holds is skipped — so a
//! run cut short is finished by running it again. Writers to the source
//! should be stopped meanwhile (a document changed after it was copied is
//! not copied again). The copy ends with a count check per collection.
use super::{Content, ContentData, Db, DbError, NewDocument, NewSegment, Result};

/// Documents read and written per page.
const PAGE: usize = 128;

/// What a copy did, per collection.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CollectionCopy {
    pub name: String,
    /// Documents in the source.
    pub documents: u64,
    /// Copied by this run.
    pub copied: u64,
    /// Already in the target (an earlier run).
    pub skipped: u64,
}

/// Copies every collection of `from` into `to` (same model and dimension).
/// `progress(done, total)` is called after every page. Fails when a count
/// differs at the end.
pub fn copy(from: &Db, to: &Db, progress: &dyn Fn(u64, u64)) -> Result<Vec<CollectionCopy>> {
    let (a, b) = (from.options(), to.options());
    if a.model_id != b.model_id || a.dim != b.dim {
        return Err(DbError::BadInput(format!(
            "the source is for model {:?} (dimension {}), the target for {:?} (dimension {})",
            a.model_id, a.dim, b.model_id, b.dim
        )));
    }
    let collections = from.list_collections()?;
    let total: u64 = collections.iter().map(|c| c.documents).sum();
    let existing: Vec<String> = to.list_collections()?.into_iter().map(|c| c.name).collect();
    let mut done = 0;
    let mut report = Vec::new();
    for info in collections {
        if !existing.contains(&info.name) {
            to.create_collection_with(
                &info.name,
                super::CollectionOptions {
                    vectors: info.vectors,
                    text_fields: info.text_fields.clone(),
                },
            )?;
        }
        let mut copy = CollectionCopy {
            name: info.name.clone(),
            documents: 0,
            copied: 0,
            skipped: 0,
        };
        let mut after: Option<String> = None;
        loop {
            let (page, next) = from.list_documents(&info.name, after.as_deref(), PAGE)?;
            let ids: Vec<String> = page.iter().map(|d| d.id.clone()).collect();
            let present = to.contains(&info.name, &ids)?;
            let mut batch = Vec::new();
            for (document, present) in page.into_iter().zip(present) {
                copy.documents += 1;
                if present {
                    copy.skipped += 1;
                    continue;
                }
                batch.push(full_document(from, &info.name, document)?);
            }
            copy.copied += batch.len() as u64;
            done += ids.len() as u64;
            to.insert_many(&info.name, batch)?;
            progress(done, total);
            match next {
                Some(id) => after = Some(id),
                None => break,
            }
        }
        let target = to
            .list_collections()?
            .into_iter()
            .find(|c| c.name == info.name)
            .map_or(0, |c| c.documents);
        if target != copy.documents {
            return Err(DbError::Internal(format!(
                "collection {:?}: the source has {} documents, the target {target} after the copy \
                 (did the source change meanwhile, or did the target hold other documents?)",
                info.name, copy.documents
            )));
        }
        report.push(copy);
    }
    Ok(report)
}

/// A stored document with its vectors and content, ready to insert.
fn full_document(from: &Db, collection: &str, document: super::Document) -> Result<NewDocument> {
    let id = document.id;
    let missing = || DbError::Internal(format!("the vectors of {id:?} are missing"));
    let mut vectors = from
        .get_vectors(collection, &id)?
        .ok_or_else(missing)?
        .into_iter();
    let vector = vectors.next().ok_or_else(missing)?;
    if vectors.len() != document.segments.len() {
        return Err(DbError::Internal(format!(
            "{id:?} has {} segments and {} extra vectors",
            document.segments.len(),
            vectors.len()
        )));
    }
    let segments = document
        .segments
        .into_iter()
        .zip(vectors)
        .map(|(span, vector)| NewSegment { span, vector })
        .collect();
    let content = match from.get_content(collection, &id)? {
        None => None,
        Some(ContentData::Bytes { data, content_type }) => {
            Some(Content::Bytes { data, content_type })
        }
        Some(ContentData::External { uri, content_type }) => {
            Some(Content::External { uri, content_type })
        }
    };
    Ok(NewDocument {
        id: Some(id),
        modality: document.modality,
        text: document.text,
        content,
        metadata: serde_json::Value::Object(document.metadata),
        vector,
        segments,
    })
}
