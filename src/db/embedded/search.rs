//! The embedded read path: index (HNSW, or the exact scan a selective
//! filter asks for; compressed collections rescore candidates with the
//! stored float32 vectors) → fetch records → hits. Queries arrive checked
//! and normalised (see [`crate::db::Db::search`]).

use super::{parse_metadata, Embedded};
use crate::db::search::{hybrid_depth, HybridOptions, MAX_K};
use crate::db::{Hit, Result};
use crate::index::fusion::{fuse, Fusion};
use crate::index::{CollectionIndex, Filter, GroupBy, IndexHit, PersistError};
use crate::types::SegmentMatch;

impl Embedded {
    /// The `k` nearest documents (or segments) to the unit vector `query`.
    pub(super) fn search_vectors(
        &self,
        collection: &str,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
        exclude: Option<&str>,
        group: GroupBy,
    ) -> Result<Vec<Hit>> {
        let index = self.collection_index(collection)?;
        let collection_id = index.collection_id();
        let hits = index.search(query, k, filter, exclude, group, |doc| {
            self.store.get_vectors(collection_id, doc)
        })?;
        self.hits(&index, hits.into_iter().map(|h| (h, None)).collect())
    }

    /// BM25 over the documents' text.
    pub(super) fn search_text(
        &self,
        collection: &str,
        text: &str,
        k: usize,
        filter: Option<&Filter>,
        group: GroupBy,
    ) -> Result<Vec<Hit>> {
        let index = self.collection_index(collection)?;
        let hits = index
            .search_lexical(text, k, filter, None, group)
            .map_err(PersistError::from)?;
        self.hits(&index, hits.into_iter().map(|h| (h, None)).collect())
    }

    /// Where the collection's lexical index matches `query` in `text`.
    pub(super) fn text_highlights(
        &self,
        collection: &str,
        text: &str,
        query: &str,
    ) -> Result<Vec<(usize, usize)>> {
        let index = self.collection_index(collection)?;
        Ok(index
            .lexical()
            .map(|l| l.highlights(text, query))
            .unwrap_or_default())
    }

    /// Both lists fused by reciprocal rank before any record is read.
    #[allow(clippy::too_many_arguments)] // each is one independent choice of the caller
    pub(super) fn search_fused(
        &self,
        collection: &str,
        query: &[f32],
        text: &str,
        k: usize,
        filter: Option<&Filter>,
        options: &HybridOptions,
        group: GroupBy,
    ) -> Result<Vec<Hit>> {
        let index = self.collection_index(collection)?;
        let depth = hybrid_depth(k).min(MAX_K);
        let cid = index.collection_id();
        let vector = index.search(query, depth, filter, None, group, |doc| {
            self.store.get_vectors(cid, doc)
        })?;
        let lexical = index
            .search_lexical(text, depth, filter, None, group)
            .map_err(PersistError::from)?;
        let weights = (options.vector_weight, options.lexical_weight);
        let per_segment = group == GroupBy::Segment;
        let fused = fuse(&vector, &lexical, weights, options.rrf_k, k, per_segment);
        self.hits(
            &index,
            fused.into_iter().map(|(h, f)| (h, Some(f))).collect(),
        )
    }

    /// All of a document's vectors as stored.
    pub(super) fn stored_vectors(&self, collection: &str, id: &str) -> Result<Option<Vec<f32>>> {
        let index = self.collection_index(collection)?;
        Ok(self.store.get_vectors(index.collection_id(), id)?)
    }

    /// Index hits → hits with their records (a document deleted since the
    /// index answered is skipped).
    fn hits(
        &self,
        index: &CollectionIndex,
        hits: Vec<(IndexHit, Option<Fusion>)>,
    ) -> Result<Vec<Hit>> {
        let mut out = Vec::with_capacity(hits.len());
        for (hit, fusion) in hits {
            // A document deleted or replaced since the index answered is
            // skipped (its segment numbers may mean other parts now).
            let Some(record) = self.store.get_doc(index.collection_id(), &hit.doc)? else {
                continue;
            };
            if record.seq != hit.seq {
                continue;
            }
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
                fusion,
            });
        }
        Ok(out)
    }
}
