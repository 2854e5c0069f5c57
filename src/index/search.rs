//! Searching one collection's index: nearest documents through the graph
//! (or by an exact scan when a filter is selective), candidates of
//! compressed encodings rescored with float32 vectors, and lexical (BM25)
//! hits checked against the index's documents and filter.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::atomic::Ordering;

use roaring::RoaringBitmap;

use super::lexical::LexicalError;
use super::state::{DocEntry, State};
use super::{CollectionIndex, Filter, FilterTarget, GroupBy, IndexHit};
use crate::types::dot;

/// Most text units one lexical search looks at (a filter that keeps few
/// of a common word's matches may then return fewer than `k`).
const MAX_LEXICAL_UNITS: usize = 100_000;

impl CollectionIndex {
    /// Nearest documents to a unit `query`, best first, with exact scores.
    /// `exclude` drops one document (search by document). `exact_vectors`
    /// gives a document's float32 vectors (primary, then segments; `None`
    /// when it is gone): called only for compressed encodings, to rescore
    /// the candidates.
    pub fn search<E>(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
        exclude: Option<&str>,
        group: GroupBy,
        exact_vectors: impl FnMut(&str) -> Result<Option<Vec<f32>>, E>,
    ) -> Result<Vec<IndexHit>, E> {
        let ef = self.params.ef_search;
        self.search_ef(query, k, filter, exclude, group, ef, exact_vectors)
    }

    /// [`CollectionIndex::search`] with an explicit search width.
    #[allow(clippy::too_many_arguments)]
    pub fn search_ef<E>(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
        exclude: Option<&str>,
        group: GroupBy,
        ef_search: usize,
        exact_vectors: impl FnMut(&str) -> Result<Option<Vec<f32>>, E>,
    ) -> Result<Vec<IndexHit>, E> {
        if !self.params.encoding.is_compressed() {
            return Ok(self.candidates(query, k, filter, exclude, group, ef_search));
        }
        let wanted = k.saturating_mul(self.params.rescore_factor.max(1));
        let found = self.candidates(query, wanted, filter, exclude, group, ef_search);
        rescore(query, found, k, self.dim, group, exact_vectors)
    }

    /// The `k` best documents for a text `query` by BM25 (each with its
    /// best-matching text unit as `segment`), among those `filter` takes.
    /// Units of replaced or deleted versions are skipped. Empty without a
    /// lexical index.
    pub fn search_lexical(
        &self,
        query: &str,
        k: usize,
        filter: Option<&Filter>,
        exclude: Option<&str>,
        group: GroupBy,
    ) -> Result<Vec<IndexHit>, LexicalError> {
        let Some(lexical) = self.lexical.get() else {
            return Ok(Vec::new());
        };
        if k == 0 {
            return Ok(Vec::new());
        }
        // Fetch more units than wanted: several may belong to one document,
        // others are stale or filtered out. Widen until enough, all, or
        // the cap (a bound on one search's work).
        let mut limit = k.saturating_mul(4).clamp(16, MAX_LEXICAL_UNITS);
        loop {
            let units = lexical.search(query, limit)?;
            let st = self.state.read();
            let mut hits: Vec<IndexHit> = Vec::with_capacity(k);
            let mut seen: HashSet<&str> = HashSet::new();
            let mut seen_units: HashSet<(&str, u32)> = HashSet::new();
            for unit in &units {
                let Some((id, entry)) = st.docs.get_key_value(unit.doc.as_str()) else {
                    continue;
                };
                if entry.seq != unit.seq || exclude == Some(&**id) {
                    continue;
                }
                if group == GroupBy::Document && !seen.insert(id) {
                    continue;
                }
                if !seen_units.insert((id, unit.segment)) {
                    continue;
                }
                if filter.is_some_and(|f| !self.doc_matches(entry, f)) {
                    continue;
                }
                hits.push(IndexHit {
                    doc: id.clone(),
                    seq: entry.seq,
                    segment: unit.segment,
                    score: unit.score,
                });
                if hits.len() == k {
                    break;
                }
            }
            if hits.len() >= k || units.len() < limit || limit >= MAX_LEXICAL_UNITS {
                return Ok(hits);
            }
            limit = limit.saturating_mul(4).min(MAX_LEXICAL_UNITS);
        }
    }

    /// The `k` nearest documents by the graph's own scores (exact for
    /// float32, approximate for compressed vectors).
    fn candidates(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
        exclude: Option<&str>,
        group: GroupBy,
        ef_search: usize,
    ) -> Vec<IndexHit> {
        let st = self.state.read();
        if k == 0 || st.docs.is_empty() {
            return Vec::new();
        }
        let excluded: &[usize] = exclude
            .and_then(|id| st.docs.get(id))
            .map_or(&[], |d| d.labels.as_slice());
        let mut matched: Option<RoaringBitmap> = None;
        if let Some(filter) = filter {
            let mut keys = st
                .postings
                .matching(filter, &self.name)
                .unwrap_or_else(|| self.scan_filter(&st, filter));
            if let Some(&first) = excluded.first() {
                keys.remove(first as u32);
            }
            let n = keys.len() as usize;
            if n < self.params.exact_max_docs
                || (n as f64) < self.params.exact_max_fraction * st.docs.len() as f64
            {
                self.exact_searches.fetch_add(1, Ordering::Relaxed);
                return exact_scan(&st, query, k, &keys, group);
            }
            self.filtered_graph_searches.fetch_add(1, Ordering::Relaxed);
            matched = Some(keys);
        }
        // Tombstones, the excluded document and the filter are skipped
        // during the walk (which goes on until it has enough accepted nodes).
        let accept = |label: u32| -> bool {
            let Some(entry) = &st.labels[label as usize] else {
                return false;
            };
            match &matched {
                Some(keys) => keys.contains(label - entry.segment),
                None => !excluded.contains(&(label as usize)),
            }
        };
        let wanted = match &matched {
            Some(keys) => k.min(keys.len() as usize),
            None => k.min(st.docs.len() - usize::from(!excluded.is_empty())),
        };
        // A document with several vectors can take several places: widen
        // until `k` distinct documents are found or every label was taken.
        // Without tombstones, exclusion or filter every node is acceptable:
        // no per-node check (it costs a cache miss per candidate).
        let hook: Option<&dyn Fn(u32) -> bool> =
            match matched.is_none() && excluded.is_empty() && st.tombstones == 0 {
                true => None,
                false => Some(&accept),
            };
        let mut fetch = k;
        loop {
            let found = st.graph.search(query, fetch, ef_search.max(fetch), hook);
            let mut hits: Vec<IndexHit> = Vec::with_capacity(k);
            let mut seen: HashSet<&str> = HashSet::new();
            for n in &found {
                let Some(entry) = &st.labels[n.id as usize] else {
                    continue;
                };
                if group == GroupBy::Document && entry.count > 1 && !seen.insert(&entry.doc) {
                    continue;
                }
                hits.push(IndexHit {
                    doc: entry.doc.clone(),
                    seq: entry.seq,
                    segment: entry.segment,
                    score: n.score,
                });
                if hits.len() == k {
                    break;
                }
            }
            if hits.len() >= wanted {
                return hits;
            }
            if found.len() < fetch || fetch >= st.labels.len() {
                if let Some(keys) = &matched {
                    // The walk could not reach enough matching points: be
                    // exact rather than return too few.
                    self.exact_searches.fetch_add(1, Ordering::Relaxed);
                    return exact_scan(&st, query, k, keys, group);
                }
                return hits;
            }
            fetch = (fetch * 2).min(st.labels.len());
        }
    }

    /// The documents (by first label) `filter` matches, evaluated on each:
    /// for the filters postings cannot answer.
    fn scan_filter(&self, st: &State, filter: &Filter) -> RoaringBitmap {
        st.docs
            .values()
            .filter(|entry| self.doc_matches(entry, filter))
            .filter_map(|entry| entry.labels.first().map(|&l| l as u32))
            .collect()
    }

    /// Whether `filter` takes a document (evaluated on what the index holds).
    fn doc_matches(&self, entry: &DocEntry, filter: &Filter) -> bool {
        filter.matches(&FilterTarget {
            collection: &self.name,
            modality: entry.modality,
            metadata: &entry.metadata,
        })
    }
}

/// Scores candidates exactly with their float32 vectors (each document with
/// its best vector, which may be another segment than the candidate's) and
/// keeps the `k` best. Documents gone from the store are dropped.
fn rescore<E>(
    query: &[f32],
    candidates: Vec<IndexHit>,
    k: usize,
    dim: usize,
    group: GroupBy,
    mut exact_vectors: impl FnMut(&str) -> Result<Option<Vec<f32>>, E>,
) -> Result<Vec<IndexHit>, E> {
    let mut hits = Vec::with_capacity(candidates.len());
    for mut hit in candidates {
        let Some(vectors) = exact_vectors(&hit.doc)? else {
            continue;
        };
        let scores = vectors.chunks_exact(dim).map(|v| dot(query, v)).enumerate();
        let best = match group {
            GroupBy::Document => scores.max_by(|a, b| a.1.total_cmp(&b.1)),
            GroupBy::Segment => scores.clone().nth(hit.segment as usize),
        };
        if let Some((segment, score)) = best {
            hit.segment = segment as u32;
            hit.score = score;
            hits.push(hit);
        }
    }
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc)));
    hits.truncate(k);
    Ok(hits)
}

/// Scores every vector of the documents `keys` (first labels) with the
/// graph's vectors (exact for float32): each document with its best
/// segment, the `k` best documents first.
fn exact_scan(
    st: &State,
    query: &[f32],
    k: usize,
    keys: &RoaringBitmap,
    group: GroupBy,
) -> Vec<IndexHit> {
    // (first label scored, labels) runs; per segment, one label per run.
    let mut groups: Vec<(u32, u32)> = Vec::with_capacity(keys.len() as usize);
    for first in keys.iter() {
        let Some(Some(entry)) = st.labels.get(first as usize) else {
            continue;
        };
        match group {
            GroupBy::Document => groups.push((first, entry.count)),
            GroupBy::Segment => groups.extend((first..first + entry.count).map(|l| (l, 1))),
        }
    }
    // The k best so far, worst on top: (score, first label, segment).
    let mut best: BinaryHeap<Reverse<(OrderedScore, u32, u32)>> = BinaryHeap::with_capacity(k + 1);
    st.graph.score_groups(query, &groups, |i, segment, score| {
        let candidate = Reverse((OrderedScore(score), groups[i].0, segment));
        if best.len() < k {
            best.push(candidate);
        } else if best.peek().is_some_and(|worst| candidate < *worst) {
            best.pop();
            best.push(candidate);
        }
    });
    let mut hits: Vec<IndexHit> = best
        .into_iter()
        .filter_map(|Reverse((score, first, segment))| {
            let entry = st.labels[first as usize].as_ref()?;
            Some(IndexHit {
                doc: entry.doc.clone(),
                seq: entry.seq,
                // `first` is a document's first label, or (per segment) the
                // label itself; `segment` counts from it.
                segment: entry.segment + segment,
                score: score.0,
            })
        })
        .collect();
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc)));
    hits
}

/// A score ordered by `total_cmp`, for heaps.
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderedScore(f32);

impl Eq for OrderedScore {}
impl PartialOrd for OrderedScore {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrderedScore {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
