//! The read path: normalise the query → index (HNSW, or the exact scan a
//! selective filter asks for; compressed collections rescore candidates
//! with the stored float32 vectors) → fetch records → hits.

use super::{not_found, parse_metadata, Db, DbError, Hit, Result};
use crate::index::{CollectionIndex, Filter};
use crate::types::{l2_normalize, SegmentMatch};

/// Largest `k` a search may ask for.
pub const MAX_K: usize = 10_000;

impl Db {
    /// The `k` documents nearest to `query` (any length-`dim` vector; it is
    /// normalised here), best first, each once with its best segment.
    pub fn search(
        &self,
        collection: &str,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<Hit>> {
        let index = self.collection_index(collection)?;
        let query = self.normalized_query(query)?;
        self.search_index(&index, &query, k, filter, None)
    }

    /// The `k` documents nearest to a stored document's primary vector,
    /// excluding that document.
    pub fn search_by_document(
        &self,
        collection: &str,
        id: &str,
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<Hit>> {
        let index = self.collection_index(collection)?;
        let query = self
            .get_vector(collection, id)?
            .ok_or_else(|| not_found(collection, id))?;
        self.search_index(&index, &query, k, filter, Some(id))
    }

    /// `Ok` when the collection exists, else [`DbError::UnknownCollection`]
    /// (lets callers fail before expensive work such as embedding).
    pub fn check_collection(&self, collection: &str) -> Result<()> {
        self.collection_index(collection).map(|_| ())
    }

    /// All of a stored document's vectors: the primary first, then one per
    /// segment in the order of `Document::segments` (unit length).
    pub fn get_vectors(&self, collection: &str, id: &str) -> Result<Option<Vec<Vec<f32>>>> {
        let index = self.collection_index(collection)?;
        let Some(flat) = self.store.get_vectors(index.collection_id(), id)? else {
            return Ok(None);
        };
        if flat.is_empty() || flat.len() % self.dim() != 0 {
            return Err(DbError::Internal(format!(
                "stored vectors of {id:?} have {} values, not a multiple of {}",
                flat.len(),
                self.dim()
            )));
        }
        Ok(Some(flat.chunks(self.dim()).map(<[f32]>::to_vec).collect()))
    }

    /// A stored document's primary vector (unit length).
    pub fn get_vector(&self, collection: &str, id: &str) -> Result<Option<Vec<f32>>> {
        let index = self.collection_index(collection)?;
        let Some(mut vectors) = self.store.get_vectors(index.collection_id(), id)? else {
            return Ok(None);
        };
        if vectors.len() < self.dim() {
            return Err(DbError::Internal(format!(
                "stored vectors of {id:?} are truncated"
            )));
        }
        vectors.truncate(self.dim());
        Ok(Some(vectors))
    }

    fn normalized_query(&self, query: &[f32]) -> Result<Vec<f32>> {
        if query.len() != self.dim() {
            return Err(DbError::WrongDimension {
                expected: self.dim(),
                got: query.len(),
            });
        }
        let mut q = query.to_vec();
        l2_normalize(&mut q).map_err(|e| DbError::BadInput(format!("query vector: {e}")))?;
        Ok(q)
    }

    fn search_index(
        &self,
        index: &CollectionIndex,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
        exclude: Option<&str>,
    ) -> Result<Vec<Hit>> {
        if k > MAX_K {
            return Err(DbError::BadInput(format!("k = {k} is above {MAX_K}")));
        }
        let collection_id = index.collection_id();
        let hits = index.search(query, k, filter, exclude, |doc| {
            self.store.get_vectors(collection_id, doc)
        })?;
        let mut out = Vec::with_capacity(hits.len());
        for hit in hits {
            // A document deleted since the index answered is skipped.
            let Some(record) = self.store.get_doc(index.collection_id(), &hit.doc)? else {
                continue;
            };
            let segment = match hit.segment {
                0 => None,
                s => record
                    .segments
                    .get(s as usize - 1)
                    .map(|span| SegmentMatch {
                        index: s - 1,
                        span: span.clone(),
                    }),
            };
            out.push(Hit {
                metadata: parse_metadata(&record)?,
                id: record.id,
                score: hit.score,
                modality: record.modality,
                segment,
            });
        }
        Ok(out)
    }
}
