//! Searches through [`Db`]: the query is checked and normalised here, once
//! for both backends, then the backend ranks.

use super::{not_found, Db, DbError, Hit, Result};
use crate::index::fusion::DEFAULT_RRF_K;
use crate::index::{Filter, GroupBy};
use crate::types::l2_normalize;

/// What a search ranks by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SearchMode {
    /// Nearest vectors (the default).
    #[default]
    Vector,
    /// BM25 over the documents' text; needs a text query, no model.
    Lexical,
    /// Both lists fused by reciprocal rank.
    Hybrid,
}

impl std::str::FromStr for SearchMode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "vector" => Ok(SearchMode::Vector),
            "lexical" => Ok(SearchMode::Lexical),
            "hybrid" => Ok(SearchMode::Hybrid),
            _ => Err(format!(
                "unknown search mode {s:?} (expected vector, lexical or hybrid)"
            )),
        }
    }
}

/// How hybrid search fuses its two lists (reciprocal-rank fusion).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HybridOptions {
    /// RRF's constant `k` (60 by default): larger flattens the lists' heads.
    pub rrf_k: f32,
    /// Weight of the vector list.
    pub vector_weight: f32,
    /// Weight of the lexical list.
    pub lexical_weight: f32,
}

impl Default for HybridOptions {
    fn default() -> Self {
        HybridOptions {
            rrf_k: DEFAULT_RRF_K,
            vector_weight: 1.0,
            lexical_weight: 1.0,
        }
    }
}

impl HybridOptions {
    pub fn validate(&self) -> Result<()> {
        let ok = |x: f32| x.is_finite() && x >= 0.0;
        if !ok(self.rrf_k) || !ok(self.vector_weight) || !ok(self.lexical_weight) {
            return Err(DbError::BadInput(
                "rrf_k and the weights must be finite and not negative".into(),
            ));
        }
        Ok(())
    }
}

/// Most parts one multi-part query may have.
pub const MAX_QUERY_PARTS: usize = 8;

/// One query vector from several weighted parts: the weighted sum of the
/// parts' unit vectors, normalised again. A negative weight pushes results
/// away from that part. Fails on no or too many parts, a part of the wrong
/// dimension or a zero/non-finite weight, and when the parts cancel out.
pub fn combine_query(parts: &[(Vec<f32>, f32)], dim: usize) -> Result<Vec<f32>> {
    if parts.is_empty() || parts.len() > MAX_QUERY_PARTS {
        return Err(DbError::BadInput(format!(
            "a multi-part query has 1 to {MAX_QUERY_PARTS} parts, not {}",
            parts.len()
        )));
    }
    let mut sum = vec![0f32; dim];
    for (i, (vector, weight)) in parts.iter().enumerate() {
        if !weight.is_finite() || *weight == 0.0 {
            return Err(DbError::BadInput(format!(
                "part {i}: the weight must be a finite non-zero number"
            )));
        }
        if vector.len() != dim {
            return Err(DbError::WrongDimension {
                expected: dim,
                got: vector.len(),
            });
        }
        let mut unit = vector.clone();
        l2_normalize(&mut unit).map_err(|e| DbError::BadInput(format!("part {i}: {e}")))?;
        sum.iter_mut()
            .zip(&unit)
            .for_each(|(s, u)| *s += weight * u);
    }
    // Parts that (nearly) cancel out leave no direction to search in.
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm < 1e-6 {
        return Err(DbError::BadInput(
            "the query parts cancel out: their weighted sum is zero".into(),
        ));
    }
    sum.iter_mut().for_each(|x| *x /= norm);
    Ok(sum)
}

/// How deep each list of a hybrid search goes for `k` results.
pub(super) fn hybrid_depth(k: usize) -> usize {
    (k * 3).max(30)
}

/// Largest `k` a search may ask for.
pub use crate::config::MAX_K;

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
        self.search_grouped(collection, query, k, filter, GroupBy::Document)
    }

    /// [`Db::search`] with a choice of grouping: per segment, a document
    /// comes back once per matching vector (video segment, page, chunk).
    pub fn search_grouped(
        &self,
        collection: &str,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
        group: GroupBy,
    ) -> Result<Vec<Hit>> {
        check_k(k)?;
        let query = self.normalized_query(query)?;
        self.backend
            .search(collection, &query, k, filter, None, group)
    }

    /// The `k` documents whose text best matches `text` (text of text
    /// documents, their chunks, fused documents' text, and the
    /// collection's `text_fields`), best first; `score` is the backend's
    /// text score (BM25 in the embedded store) and `segment` the matching
    /// chunk. Needs no model.
    pub fn search_lexical(
        &self,
        collection: &str,
        text: &str,
        k: usize,
        filter: Option<&Filter>,
        group: GroupBy,
    ) -> Result<Vec<Hit>> {
        check_k(k)?;
        self.backend
            .search_lexical(collection, text, k, filter, group)
    }

    /// Where the words of `query` occur in `text` (byte ranges), as the
    /// collection's lexical search matches them: to highlight a hit's chunk.
    pub fn highlights(
        &self,
        collection: &str,
        text: &str,
        query: &str,
    ) -> Result<Vec<(usize, usize)>> {
        self.backend.highlights(collection, text, query)
    }

    /// Vector and lexical search fused by reciprocal rank: `query` is the
    /// embedded form of `text` (or of whatever the caller searches with).
    /// `score` is the fused score; `fusion` says where each hit ranked.
    #[allow(clippy::too_many_arguments)] // each is one independent choice of the caller
    pub fn search_hybrid(
        &self,
        collection: &str,
        query: &[f32],
        text: &str,
        k: usize,
        filter: Option<&Filter>,
        options: &HybridOptions,
        group: GroupBy,
    ) -> Result<Vec<Hit>> {
        check_k(k)?;
        options.validate()?;
        let query = self.normalized_query(query)?;
        self.backend
            .search_hybrid(collection, &query, text, k, filter, options, group)
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
        check_k(k)?;
        let query = self
            .get_vector(collection, id)?
            .ok_or_else(|| not_found(collection, id))?;
        self.backend
            .search(collection, &query, k, filter, Some(id), GroupBy::Document)
    }

    /// `Ok` when the collection exists, else [`DbError::UnknownCollection`]
    /// (lets callers fail before expensive work such as embedding).
    pub fn check_collection(&self, collection: &str) -> Result<()> {
        self.backend.check_collection(collection)
    }

    /// All of a stored document's vectors: the primary first, then one per
    /// segment in the order of `Document::segments` (unit length).
    pub fn get_vectors(&self, collection: &str, id: &str) -> Result<Option<Vec<Vec<f32>>>> {
        let Some(flat) = self.backend.get_vectors(collection, id)? else {
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
        let Some(mut vectors) = self.backend.get_vectors(collection, id)? else {
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
}

fn check_k(k: usize) -> Result<()> {
    if k > MAX_K {
        return Err(DbError::BadInput(format!("k = {k} is above {MAX_K}")));
    }
    Ok(())
}
