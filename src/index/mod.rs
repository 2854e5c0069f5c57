//! In-memory HNSW index of one collection ([`hnsw`]), derived from the store.
//!
//! - Vectors are L2-normalised; the distance is `1 - dot` (cosine).
//! - Every vector of a document (primary and segments) gets its own *label*
//!   (its node number in the graph); the label map takes a label back to
//!   (document, segment). Searches return each document once, with its best
//!   segment.
//! - HNSW graphs cannot delete points: a delete or a replacement tombstones
//!   the old labels, which searches skip. When tombstones pass
//!   `rebuild_tombstone_ratio` of the labels, a background thread builds a
//!   fresh graph from the live vectors and swaps it in, replaying the changes
//!   that arrived meanwhile, so the index never grows without bound.
//! - Metadata and modality of each document are kept here, in memory, so
//!   filters are evaluated without touching the store. A filter matching few
//!   documents makes the search exact: every matching document's vectors
//!   are scored (they are in the graph's arena).
//! - Compressed collections ([`VectorEncoding::Int8`], [`codes`]) keep int8
//!   codes in the graph instead of float32 vectors: searches collect
//!   `rescore_factor × k` candidates by approximate score, then score those
//!   exactly with float32 vectors the caller reads from the store.
//! - Text: a collection's lexical (BM25) index ([`lexical`]) is attached
//!   by the database and kept in step with the graph by `upsert`/`remove`.
//! - Checkpoints: see [`persist`].
pub mod codes;
pub mod filter;
pub mod fusion;
pub mod hnsw;
pub mod lexical;
pub mod persist;
pub mod postings;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use hnsw::{Hnsw, HnswConfig};
use lexical::{LexicalError, LexicalIndex, TextUnit};
use parking_lot::RwLock;
use postings::Postings;
use roaring::RoaringBitmap;
use serde_json::{Map, Value};

pub use filter::{Condition, Filter, FilterError, FilterTarget};
pub use persist::PersistError;

use crate::types::{dot, Modality, Seq, VectorEncoding};

/// Batches at least this large are linked on all cores (the write path
/// hands concurrent single inserts over in runs of ~10: measured +23 %
/// inserts/s with 64 writers against a threshold of 64).
const PARALLEL_INSERT_MIN: usize = 8;

/// Most text units one lexical search looks at (a filter that keeps few
/// of a common word's matches may then return fewer than `k`).
const MAX_LEXICAL_UNITS: usize = 100_000;

/// Tuning of the index. The defaults suit dimensions from 64 to a few
/// thousand and collections up to about a million vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexParams {
    /// HNSW `M`: links per node on upper layers, twice that on layer 0
    /// (2 to 256).
    pub max_connections: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
    /// Candidate list size while searching (raised to `k` when smaller).
    pub ef_search: usize,
    /// Rebuild when tombstones exceed this fraction of all labels...
    pub rebuild_tombstone_ratio: f64,
    /// ...and there are at least this many of them.
    pub rebuild_min_tombstones: usize,
    /// A filter matching fewer documents than this is searched exactly...
    pub exact_max_docs: usize,
    /// ...and so is one matching less than this fraction of the collection.
    pub exact_max_fraction: f64,
    /// How the graph holds vectors (per collection; the store always keeps
    /// float32).
    pub encoding: VectorEncoding,
    /// Compressed encodings: candidates rescored exactly per result wanted.
    pub rescore_factor: usize,
    /// Metadata fields (dotted paths) whose strings the lexical index
    /// matches as part of the document (per collection).
    pub text_fields: Vec<String>,
}

impl Default for IndexParams {
    fn default() -> Self {
        IndexParams {
            max_connections: 16,
            // 200 rather than 100: measured on 100k × 256 (README), the
            // better graph reaches recall@10 0.95 at ef 16 instead of ~20,
            // for less than twice the build time.
            ef_construction: 200,
            ef_search: 100,
            rebuild_tombstone_ratio: 0.2,
            rebuild_min_tombstones: 16,
            exact_max_docs: 2000,
            exact_max_fraction: 0.05,
            encoding: VectorEncoding::F32,
            // Measured on 100k × 256 (README): 2 candidates per result
            // reach the float32 graph's recall@10 (0.97 at ef 16, 0.999 at
            // 64); each costs a read from the store, so more is slower.
            rescore_factor: 2,
            text_fields: Vec::new(),
        }
    }
}

/// A document as the index sees it.
#[derive(Debug, Clone)]
pub struct IndexDoc {
    pub id: String,
    pub seq: Seq,
    pub modality: Modality,
    pub metadata: Arc<Map<String, Value>>,
    /// Unit vectors, flattened: the primary first, then one per segment.
    pub vectors: Vec<f32>,
    /// What the lexical index matches ([`lexical::text_units`]).
    pub text_units: Vec<TextUnit>,
}

/// A search result before the store is consulted. `segment` 0 is the
/// primary vector, `i > 0` is the document's segment `i - 1`.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexHit {
    pub doc: Arc<str>,
    pub seq: Seq,
    pub segment: u32,
    /// Cosine similarity (higher is closer).
    pub score: f32,
}

/// What one hit stands for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GroupBy {
    /// One hit per document, with its best segment (the default).
    #[default]
    Document,
    /// One hit per segment (vector or text chunk): a document may come
    /// back several times, once per matching part (RAG chunks).
    Segment,
}

impl std::str::FromStr for GroupBy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "document" => Ok(GroupBy::Document),
            "segment" => Ok(GroupBy::Segment),
            _ => Err(format!(
                "unknown grouping {s:?} (expected document or segment)"
            )),
        }
    }
}

/// Counters for `stats`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexStats {
    pub documents: usize,
    /// Labels in the graph, live and tombstoned.
    pub points: usize,
    pub tombstones: usize,
    /// Background compactions done since open.
    pub rebuilds: u64,
    pub rebuilding: bool,
    pub applied_seq: Seq,
    /// Searches answered by an exact scan (selective filter).
    pub exact_searches: u64,
    /// Filtered searches answered through the graph.
    pub filtered_graph_searches: u64,
    /// The index came from a checkpoint on open (rather than a rebuild).
    pub loaded_from_checkpoint: bool,
    /// Changed documents replayed from the change log after the checkpoint.
    pub replayed_on_open: usize,
    /// How the graph holds vectors.
    pub vectors: VectorEncoding,
    /// Bytes the graph holds (vectors, links, bookkeeping).
    pub memory_bytes: usize,
}

/// What a live label stands for. A document's labels are consecutive, its
/// first (`label - segment`) is its key in the metadata postings.
#[derive(Debug, Clone)]
struct LabelEntry {
    doc: Arc<str>,
    segment: u32,
    /// Vectors of the document (its labels from the first on).
    count: u32,
    seq: Seq,
}

#[derive(Debug, Clone)]
struct DocEntry {
    seq: Seq,
    labels: Vec<usize>,
    modality: Modality,
    metadata: Arc<Map<String, Value>>,
}

/// A change that arrived while a rebuild was running.
enum PendingOp {
    Upsert(IndexDoc),
    Remove(String, Seq),
}

struct State {
    graph: Arc<Hnsw>,
    labels: Vec<Option<LabelEntry>>,
    docs: HashMap<Arc<str>, DocEntry>,
    tombstones: usize,
    applied_seq: Seq,
    /// Metadata values and modalities → documents (by first label).
    postings: Postings,
    /// `Some` while a rebuild runs: changes to replay onto the new graph.
    pending: Option<Vec<PendingOp>>,
}

impl State {
    fn empty(params: &IndexParams, dim: usize) -> State {
        State {
            graph: Arc::new(new_graph(params, dim)),
            labels: Vec::new(),
            docs: HashMap::new(),
            tombstones: 0,
            applied_seq: 0,
            postings: Postings::default(),
            pending: None,
        }
    }

    fn tombstone_doc(&mut self, id: &str) {
        if let Some(old) = self.docs.remove(id) {
            if let Some(&first) = old.labels.first() {
                self.postings
                    .remove(first as u32, old.modality, &old.metadata);
            }
            for l in old.labels {
                if self.labels[l].take().is_some() {
                    self.tombstones += 1;
                }
            }
        }
    }

    /// Updates the maps for `doc` and adds its vectors to the graph (not yet
    /// linked: see [`link`]); returns their labels, or `None` when the index
    /// already has this or a newer version.
    fn allocate(&mut self, doc: &IndexDoc, dim: usize) -> Option<std::ops::Range<u32>> {
        self.applied_seq = self.applied_seq.max(doc.seq);
        if self
            .docs
            .get(doc.id.as_str())
            .is_some_and(|d| d.seq >= doc.seq)
        {
            return None;
        }
        self.tombstone_doc(&doc.id);
        let id: Arc<str> = Arc::from(doc.id.as_str());
        let n = doc.vectors.len() / dim;
        let first = self.graph.add(&doc.vectors);
        debug_assert_eq!(first as usize, self.labels.len(), "labels are node ids");
        let labels: Vec<usize> = (self.labels.len()..self.labels.len() + n).collect();
        self.labels.extend((0..n).map(|segment| {
            Some(LabelEntry {
                doc: id.clone(),
                segment: segment as u32,
                count: n as u32,
                seq: doc.seq,
            })
        }));
        self.postings.insert(first, doc.modality, &doc.metadata);
        self.docs.insert(
            id,
            DocEntry {
                seq: doc.seq,
                labels: labels.clone(),
                modality: doc.modality,
                metadata: doc.metadata.clone(),
            },
        );
        Some(first..first + n as u32)
    }

    fn remove(&mut self, id: &str, seq: Seq) -> bool {
        self.applied_seq = self.applied_seq.max(seq);
        match self.docs.get(id) {
            Some(d) if d.seq < seq => {
                self.tombstone_doc(id);
                true
            }
            _ => false,
        }
    }
}

fn new_graph(params: &IndexParams, dim: usize) -> Hnsw {
    Hnsw::new(HnswConfig {
        dim,
        m: params.max_connections,
        ef_construction: params.ef_construction,
        encoding: params.encoding,
    })
}

/// Links added nodes into the graph, on all cores for big batches.
fn link(graph: &Hnsw, labels: std::ops::Range<u32>) {
    let threads = if labels.len() >= PARALLEL_INSERT_MIN {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        1
    };
    graph.link(labels, threads);
}

/// The index of one collection. Cheap to share (`Arc`); all methods take
/// `&self`.
pub struct CollectionIndex {
    collection_id: u32,
    name: String,
    dim: usize,
    params: IndexParams,
    state: RwLock<State>,
    /// Held shared from label allocation until the graph insert finished,
    /// exclusively by a rebuild while it snapshots or swaps, so that every
    /// allocated label is in the graph it reads.
    insert_gate: RwLock<()>,
    rebuilding: AtomicBool,
    rebuilds: AtomicU64,
    exact_searches: AtomicU64,
    filtered_graph_searches: AtomicU64,
    loaded_from_checkpoint: AtomicBool,
    replayed_on_open: AtomicUsize,
    /// The collection's lexical index, once the database attached it.
    lexical: OnceLock<Arc<LexicalIndex>>,
}

impl CollectionIndex {
    pub fn new(collection_id: u32, name: &str, dim: usize, params: IndexParams) -> CollectionIndex {
        let state = State::empty(&params, dim);
        CollectionIndex {
            collection_id,
            name: name.to_owned(),
            dim,
            params,
            state: RwLock::new(state),
            insert_gate: RwLock::new(()),
            rebuilding: AtomicBool::new(false),
            rebuilds: AtomicU64::new(0),
            exact_searches: AtomicU64::new(0),
            filtered_graph_searches: AtomicU64::new(0),
            loaded_from_checkpoint: AtomicBool::new(false),
            replayed_on_open: AtomicUsize::new(0),
            lexical: OnceLock::new(),
        }
    }

    /// Attaches the lexical index (once; caught up to this index's
    /// documents by the caller). From then on writes go to both.
    pub fn attach_lexical(&self, lexical: Arc<LexicalIndex>) {
        if self.lexical.set(lexical).is_err() {
            tracing::warn!(collection = %self.name, "lexical index attached twice; kept the first");
        }
    }

    pub fn lexical(&self) -> Option<&Arc<LexicalIndex>> {
        self.lexical.get()
    }

    pub fn collection_id(&self) -> u32 {
        self.collection_id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn params(&self) -> &IndexParams {
        &self.params
    }

    /// Adds or replaces documents. Versions older than (or equal to) what the
    /// index holds are ignored, so replays are idempotent.
    pub fn upsert(&self, docs: &[IndexDoc]) {
        let _gate = self.insert_gate.read();
        let (graph, planned) = {
            let mut st = self.state.write();
            let mut planned = Vec::with_capacity(docs.len());
            for doc in docs {
                if let Some(labels) = st.allocate(doc, self.dim) {
                    planned.push((doc, labels));
                    if let Some(pending) = st.pending.as_mut() {
                        pending.push(PendingOp::Upsert(doc.clone()));
                    }
                }
            }
            (st.graph.clone(), planned)
        };
        // Labels of one call are consecutive: allocated under one lock.
        if let (Some(first), Some(last)) = (planned.first(), planned.last()) {
            link(&graph, first.1.start..last.1.end);
        }
        if let Some(lexical) = self.lexical.get() {
            // Every version, not only the ones the graph took: the lexical
            // index may be behind the graph (its own checkpoint).
            for doc in docs {
                if let Err(e) = lexical.upsert(&doc.id, doc.seq, &doc.text_units) {
                    tracing::error!(collection = %self.name, error = %e, "lexical index update failed");
                }
            }
        }
    }

    /// Tombstones a document if the index holds a version older than `seq`.
    pub fn remove(&self, id: &str, seq: Seq) -> bool {
        if let Some(lexical) = self.lexical.get() {
            lexical.remove(id, seq);
        }
        let mut st = self.state.write();
        let removed = st.remove(id, seq);
        if removed {
            if let Some(pending) = st.pending.as_mut() {
                pending.push(PendingOp::Remove(id.to_owned(), seq));
            }
        }
        removed
    }

    /// Seq of the version of `id` in the index.
    pub fn doc_seq(&self, id: &str) -> Option<Seq> {
        self.state.read().docs.get(id).map(|d| d.seq)
    }

    pub fn len(&self) -> usize {
        self.state.read().docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids of all documents in the index.
    pub fn doc_ids(&self) -> Vec<Arc<str>> {
        self.state.read().docs.keys().cloned().collect()
    }

    /// Bytes the graph holds (vectors, links, bookkeeping).
    pub fn memory_bytes(&self) -> usize {
        self.state.read().graph.memory_bytes()
    }

    /// How the graph holds vectors.
    pub fn encoding(&self) -> VectorEncoding {
        self.params.encoding
    }

    pub fn stats(&self) -> IndexStats {
        let st = self.state.read();
        IndexStats {
            documents: st.docs.len(),
            points: st.labels.len(),
            tombstones: st.tombstones,
            rebuilds: self.rebuilds.load(Ordering::Relaxed),
            rebuilding: self.rebuilding.load(Ordering::Relaxed),
            applied_seq: st.applied_seq,
            exact_searches: self.exact_searches.load(Ordering::Relaxed),
            filtered_graph_searches: self.filtered_graph_searches.load(Ordering::Relaxed),
            loaded_from_checkpoint: self.loaded_from_checkpoint.load(Ordering::Relaxed),
            replayed_on_open: self.replayed_on_open.load(Ordering::Relaxed),
            vectors: self.params.encoding,
            memory_bytes: st.graph.memory_bytes(),
        }
    }

    /// Records how recovery went (for `stats`).
    pub fn set_recovery_info(&self, loaded_from_checkpoint: bool, replayed: usize) {
        self.loaded_from_checkpoint
            .store(loaded_from_checkpoint, Ordering::Relaxed);
        self.replayed_on_open.store(replayed, Ordering::Relaxed);
    }

    /// Whether tombstones are past the rebuild threshold.
    pub fn needs_rebuild(&self) -> bool {
        let st = self.state.read();
        st.tombstones >= self.params.rebuild_min_tombstones.max(1)
            && st.tombstones as f64 > self.params.rebuild_tombstone_ratio * st.labels.len() as f64
    }

    /// Claims the right to rebuild (false when one is already running).
    pub fn try_start_rebuild(&self) -> bool {
        self.rebuilding
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Rebuilds the graph from the live vectors it holds (no store access)
    /// and swaps it in atomically; writes and searches go on meanwhile. The
    /// caller must have won [`CollectionIndex::try_start_rebuild`].
    pub fn rebuild_compact(&self) {
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _done = Done(&self.rebuilding);
        let started = std::time::Instant::now();
        let docs = {
            let _gate = self.insert_gate.write();
            let mut st = self.state.write();
            st.pending = Some(Vec::new());
            snapshot_docs(&st, self.dim)
        };
        let fresh = self.build_state(&docs);
        let replayed = {
            let _gate = self.insert_gate.write();
            let mut st = self.state.write();
            let mut fresh = fresh;
            let pending = st.pending.take().unwrap_or_default();
            let n = pending.len();
            for op in pending {
                match op {
                    PendingOp::Upsert(doc) => {
                        if let Some(labels) = fresh.allocate(&doc, self.dim) {
                            link(&fresh.graph, labels);
                        }
                    }
                    PendingOp::Remove(id, seq) => {
                        fresh.remove(&id, seq);
                    }
                }
            }
            fresh.applied_seq = fresh.applied_seq.max(st.applied_seq);
            *st = fresh;
            n
        };
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            collection = %self.name,
            documents = docs.len(),
            replayed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "index rebuilt without tombstones"
        );
    }

    fn build_state(&self, docs: &[IndexDoc]) -> State {
        let mut st = State::empty(&self.params, self.dim);
        for doc in docs {
            st.allocate(doc, self.dim);
        }
        link(&st.graph, 0..st.labels.len() as u32);
        st
    }

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

    /// Writes a checkpoint of this index covering changes up to `seq`.
    /// The caller guarantees no writes are applied meanwhile.
    pub fn checkpoint(
        &self,
        dir: &Path,
        instance_id: [u8; 16],
        seq: Seq,
    ) -> Result<(), PersistError> {
        let (mut manifest, graph) = {
            let st = self.state.read();
            let mut index_of: HashMap<&str, u32> = HashMap::with_capacity(st.docs.len());
            let mut docs = Vec::with_capacity(st.docs.len());
            for (i, (id, d)) in st.docs.iter().enumerate() {
                index_of.insert(id, i as u32);
                docs.push(persist::DocSnapshot {
                    id: id.to_string(),
                    seq: d.seq,
                    modality: d.modality,
                    metadata_json: Value::Object((*d.metadata).clone()).to_string(),
                    labels: d.labels.iter().map(|&l| l as u64).collect(),
                });
            }
            let labels = st
                .labels
                .iter()
                .map(|e| e.as_ref().map(|e| (index_of[&*e.doc], e.segment)))
                .collect();
            let manifest = persist::Manifest {
                instance_id,
                collection_id: self.collection_id,
                dim: self.dim as u32,
                seq,
                labels,
                docs,
                graph: None,
            };
            (manifest, st.graph.clone())
        };
        if let Some(lexical) = self.lexical.get() {
            lexical.commit(seq)?;
        }
        persist::write_checkpoint(dir, &mut manifest, Some(&graph))
    }

    /// Loads a checkpoint into a fresh index. `Ok(None)` when there is none.
    /// Returns the sequence number it covers.
    pub fn load(
        dir: &Path,
        instance_id: &[u8; 16],
        collection_id: u32,
        name: &str,
        dim: usize,
        params: IndexParams,
    ) -> Result<Option<(CollectionIndex, Seq)>, PersistError> {
        let Some((manifest, graph)) =
            persist::load_checkpoint(dir, collection_id, instance_id, dim as u32)?
        else {
            return Ok(None);
        };
        let path = persist::manifest_path(dir, collection_id);
        if let Some(g) = &graph {
            if g.config().encoding != params.encoding {
                return Err(PersistError::Corrupt {
                    path: persist::manifest_path(dir, collection_id),
                    reason: format!(
                        "checkpoint holds {} vectors, the collection {}",
                        g.config().encoding,
                        params.encoding
                    ),
                });
            }
        }
        let graph_points = graph.as_ref().map_or(0, |g| g.len());
        if graph_points != manifest.labels.len() {
            return Err(PersistError::Corrupt {
                path,
                reason: format!(
                    "graph has {graph_points} points, label map {}",
                    manifest.labels.len()
                ),
            });
        }
        let mut docs = HashMap::with_capacity(manifest.docs.len());
        let mut ids = Vec::with_capacity(manifest.docs.len());
        let mut postings = Postings::default();
        for d in manifest.docs {
            // Labels of a document are consecutive (the postings and exact
            // scans rely on it).
            if d.labels.windows(2).any(|w| w[1] != w[0] + 1) {
                return Err(PersistError::Corrupt {
                    path,
                    reason: format!("labels of {:?} are not consecutive", d.id),
                });
            }
            let metadata = match serde_json::from_str::<Value>(&d.metadata_json) {
                Ok(Value::Object(m)) => m,
                _ => {
                    return Err(PersistError::Corrupt {
                        path,
                        reason: format!("metadata of {:?} is not a JSON object", d.id),
                    })
                }
            };
            let id: Arc<str> = Arc::from(d.id);
            ids.push((id.clone(), d.labels.len() as u32, d.seq));
            if let Some(&first) = d.labels.first() {
                postings.insert(first as u32, d.modality, &metadata);
            }
            docs.insert(
                id,
                DocEntry {
                    seq: d.seq,
                    labels: d.labels.iter().map(|&l| l as usize).collect(),
                    modality: d.modality,
                    metadata: Arc::new(metadata),
                },
            );
        }
        let labels: Vec<Option<LabelEntry>> = manifest
            .labels
            .iter()
            .map(|e| {
                e.map(|(doc, segment)| {
                    let (id, count, seq) = &ids[doc as usize];
                    LabelEntry {
                        doc: id.clone(),
                        segment,
                        count: *count,
                        seq: *seq,
                    }
                })
            })
            .collect();
        let tombstones = labels.iter().filter(|e| e.is_none()).count();
        let index = CollectionIndex::new(collection_id, name, dim, params);
        {
            let mut st = index.state.write();
            if let Some(graph) = graph {
                st.graph = Arc::new(graph);
            }
            st.labels = labels;
            st.docs = docs;
            st.tombstones = tombstones;
            st.applied_seq = manifest.seq;
            st.postings = postings;
        }
        Ok(Some((index, manifest.seq)))
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

/// Live documents with their vectors copied from the graph's arena.
fn snapshot_docs(st: &State, dim: usize) -> Vec<IndexDoc> {
    st.docs
        .iter()
        .map(|(id, d)| {
            let mut flat = Vec::with_capacity(d.labels.len() * dim);
            for &l in &d.labels {
                st.graph.copy_vector(l as u32, &mut flat);
            }
            IndexDoc {
                id: id.to_string(),
                seq: d.seq,
                modality: d.modality,
                metadata: d.metadata.clone(),
                vectors: flat,
                // The graph's rebuild only: the lexical index is untouched.
                text_units: Vec::new(),
            }
        })
        .collect()
}
