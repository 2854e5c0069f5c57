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
//! - Checkpoints: see [`persist`] (the file format, and the index to and
//!   from it).
//!
//! This file holds the public types and the write path (upserts, removes,
//! rebuilds); searches are in `search.rs`, the in-memory bookkeeping
//! (labels, documents, tombstones) in `state.rs`.
pub mod codes;
pub mod filter;
pub mod fusion;
pub mod hnsw;
pub mod lexical;
pub mod persist;
pub mod postings;
mod search;
mod state;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use lexical::{LexicalIndex, TextUnit};
use parking_lot::RwLock;
use serde_json::{Map, Value};
use state::{link, snapshot_docs, PendingOp, State};

pub use filter::{Condition, Filter, FilterError, FilterTarget};
pub use persist::PersistError;

use crate::types::{Modality, Seq, VectorEncoding};

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
}
