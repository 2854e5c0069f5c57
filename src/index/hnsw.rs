//! Our HNSW graph (Malkov & Yashunin) over unit vectors, compared by inner
//! product. Written for this index because hnsw_rs, profiled on 100k × 256
//! vectors, spent half of each search in its own bookkeeping (a `HashMap` of
//! visited points holding `Arc` clones, an `Arc` allocation per candidate, a
//! `RwLock` per neighbour list) on top of the distances: 6× fewer queries/s
//! than hnswlib at equal recall (see README, Benchmarks).
//!
//! Layout, chosen for the search loop:
//! - vectors in one contiguous arena (`dim` values per node, float32 or
//!   int8 codes: [`codes`](super::codes));
//! - links of layer 0 in one flat array, `1 + 2M` slots per node (count,
//!   then neighbour ids); upper-layer links of the few nodes that have them
//!   in a second flat array;
//! - link slots are atomics: readers (searches, also while inserts run) load
//!   them without locks; a writer holds the node's mutex while it rewrites a
//!   list. Every value ever stored is a valid node id, so a reader racing a
//!   writer sees an old or a new neighbour, never garbage;
//! - the arena only grows under the write side of `nodes`; linking and
//!   searching hold its read side, so several inserts link at once;
//! - visited sets are epoch-tagged arrays reused across searches.
//!
//! Nodes are numbered from 0 in the order they are added; the index uses
//! these numbers as its labels.
use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};

use super::codes::{Arena, Probe};
use crate::types::VectorEncoding;

/// Highest layer a node can get (the chance of reaching it is M^-16).
const MAX_LEVEL: usize = 16;
/// Marks "no upper layers" in `upper_start`.
const NO_UPPER: u32 = u32::MAX;
/// Format tag of [`Hnsw::write_to`].
const MAGIC: &[u8; 8] = b"TKRHNSW2";
/// The format before vector encodings (always float32), still read.
const MAGIC_F32: &[u8; 8] = b"TKRHNSW1";

/// Graph shape: `m` links per node on upper layers, `2m` on layer 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HnswConfig {
    pub dim: usize,
    pub m: usize,
    pub ef_construction: usize,
    pub encoding: VectorEncoding,
}

/// A search result: a node and its inner product with the query
/// (approximate when the graph's vectors are compressed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    pub id: u32,
    pub score: f32,
}

/// A node id with its distance (`1 - dot`) to the point being searched.
#[derive(Debug, Clone, Copy)]
struct Scored {
    dist: f32,
    id: u32,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.dist
            .total_cmp(&other.dist)
            .then(self.id.cmp(&other.id))
    }
}

/// Nearest-first view of a [`Scored`] for the candidate queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Nearest(std::cmp::Reverse<Scored>);

/// Everything that grows with the graph.
struct Nodes {
    vectors: Arena,
    levels: Vec<u8>,
    /// Layer 0: per node `1 + m0` slots (count, then ids).
    links0: Vec<AtomicU32>,
    /// Per node: where its upper-layer lists start in `upper`, or `NO_UPPER`.
    upper_start: Vec<u32>,
    /// Upper layers: per node with level `l > 0`, `l` lists of `1 + m` slots.
    upper: Vec<AtomicU32>,
    /// Held while a node's lists are rewritten.
    locks: Vec<Mutex<()>>,
}

impl Nodes {
    fn len(&self) -> usize {
        self.levels.len()
    }

    /// The slots (count first) of `id`'s list on `layer`.
    fn slots(&self, m: usize, id: u32, layer: usize) -> &[AtomicU32] {
        if layer == 0 {
            let start = id as usize * (2 * m + 1);
            &self.links0[start..start + 2 * m + 1]
        } else {
            let start = self.upper_start[id as usize] as usize + (layer - 1) * (m + 1);
            &self.upper[start..start + m + 1]
        }
    }
}

/// How many neighbours ahead of the distance loop vectors are prefetched.
const PREFETCH_AHEAD: usize = 4;

/// Copies a list's ids into `out` (cleared first).
fn read_list(slots: &[AtomicU32], out: &mut Vec<u32>) {
    out.clear();
    let n = (slots[0].load(Ordering::Acquire) as usize).min(slots.len() - 1);
    out.extend(slots[1..=n].iter().map(|s| s.load(Ordering::Relaxed)));
}

/// Overwrites a list (the caller holds the node's lock).
fn write_list(slots: &[AtomicU32], ids: &[u32]) {
    debug_assert!(ids.len() < slots.len());
    // Shrink the count first so readers never read past the valid ids.
    let old = slots[0].load(Ordering::Relaxed) as usize;
    if ids.len() < old {
        slots[0].store(ids.len() as u32, Ordering::Release);
    }
    for (slot, &id) in slots[1..].iter().zip(ids) {
        slot.store(id, Ordering::Relaxed);
    }
    slots[0].store(ids.len() as u32, Ordering::Release);
}

/// Per-search working memory, pooled so searches do not allocate.
#[derive(Default)]
struct Scratch {
    /// `visited[i] == epoch` marks node `i` as seen in this search (16
    /// bits: half the cache footprint of 32, a reset every 65,535 searches).
    visited: Vec<u16>,
    epoch: u16,
    candidates: BinaryHeap<Nearest>,
    results: BinaryHeap<Scored>,
    list: Vec<u32>,
}

impl Scratch {
    fn start(&mut self, len: usize) {
        if self.visited.len() < len {
            self.visited.resize(len, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.visited.iter_mut().for_each(|v| *v = 0);
            self.epoch = 1;
        }
        self.candidates.clear();
        self.results.clear();
    }

    /// Marks `id` visited; false if it already was.
    fn visit(&mut self, id: u32) -> bool {
        let slot = &mut self.visited[id as usize];
        if *slot == self.epoch {
            false
        } else {
            *slot = self.epoch;
            true
        }
    }
}

/// The graph. All methods take `&self`; see the module docs for locking.
pub struct Hnsw {
    config: HnswConfig,
    level_scale: f64,
    nodes: RwLock<Nodes>,
    /// Entry point and its level; `None` while the graph is empty.
    entry: Mutex<Option<(u32, usize)>>,
    rng: AtomicU64,
    scratch: Mutex<Vec<Scratch>>,
}

impl Hnsw {
    pub fn new(config: HnswConfig) -> Hnsw {
        let config = HnswConfig {
            m: config.m.clamp(2, 256),
            ef_construction: config.ef_construction.max(config.m),
            ..config
        };
        Hnsw {
            level_scale: 1.0 / (config.m as f64).ln(),
            config,
            nodes: RwLock::new(Nodes {
                vectors: Arena::new(config.encoding),
                levels: Vec::new(),
                links0: Vec::new(),
                upper_start: Vec::new(),
                upper: Vec::new(),
                locks: Vec::new(),
            }),
            entry: Mutex::new(None),
            rng: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            scratch: Mutex::new(Vec::new()),
        }
    }

    pub fn config(&self) -> HnswConfig {
        self.config
    }

    pub fn len(&self) -> usize {
        self.nodes.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the graph's nodes occupy: vectors, links and bookkeeping
    /// (what is in use; growth reserves more address space, untouched).
    pub fn memory_bytes(&self) -> usize {
        let n = self.nodes.read();
        n.vectors.bytes()
            + n.levels.len()
            + n.links0.len() * 4
            + n.upper_start.len() * 4
            + n.upper.len() * 4
            + n.locks.len() * std::mem::size_of::<Mutex<()>>()
    }

    /// Bytes the vectors alone occupy (part of [`Hnsw::memory_bytes`]).
    pub fn vector_bytes(&self) -> usize {
        self.nodes.read().vectors.bytes()
    }

    /// Appends the vector of node `id` to `out` (decoded when compressed).
    pub fn copy_vector(&self, id: u32, out: &mut Vec<f32>) {
        self.nodes.read().vectors.copy_f32(self.config.dim, id, out);
    }

    /// Scores of groups of consecutive nodes `(first, count)` (exact for
    /// float32): calls `f(group index, offset of the best node in the group,
    /// its score)`. Vectors are requested from memory a few groups ahead.
    pub fn score_groups(
        &self,
        query: &[f32],
        groups: &[(u32, u32)],
        mut f: impl FnMut(usize, u32, f32),
    ) {
        const AHEAD: usize = 8;
        let dim = self.config.dim;
        let nodes = self.nodes.read();
        let arena = &nodes.vectors;
        let prepared = arena.prepare(query);
        let query = prepared.probe();
        for &(first, _) in groups.iter().take(AHEAD) {
            arena.prefetch(dim, first);
        }
        for (i, &(first, count)) in groups.iter().enumerate() {
            if let Some(&(ahead, _)) = groups.get(i + AHEAD) {
                arena.prefetch(dim, ahead);
            }
            let mut best = (0, f32::NEG_INFINITY);
            for offset in 0..count {
                let score = arena.score(dim, &query, first + offset);
                if score > best.1 {
                    best = (offset, score);
                }
            }
            f(i, best.0, best.1);
        }
    }

    /// A random level with P(level >= l) = m^-l (splitmix64 stream: a graph
    /// built the same way twice is the same graph when built by one thread).
    fn random_level(&self) -> usize {
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let uniform = ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        ((-uniform.ln() * self.level_scale) as usize).min(MAX_LEVEL)
    }

    /// Adds nodes without links (unreachable until [`Hnsw::link`]);
    /// returns the id of the first. `vectors` holds whole vectors.
    pub fn add(&self, vectors: &[f32]) -> u32 {
        let (dim, m) = (self.config.dim, self.config.m);
        assert_eq!(vectors.len() % dim, 0, "vectors of the wrong dimension");
        let count = vectors.len() / dim;
        let levels: Vec<usize> = (0..count).map(|_| self.random_level()).collect();
        let mut nodes = self.nodes.write();
        let first = nodes.len() as u32;
        nodes.vectors.push(dim, vectors);
        for &level in &levels {
            nodes.levels.push(level as u8);
            nodes
                .links0
                .extend((0..2 * m + 1).map(|_| AtomicU32::new(0)));
            if level > 0 {
                let start = nodes.upper.len() as u32;
                nodes.upper_start.push(start);
                nodes
                    .upper
                    .extend((0..level * (m + 1)).map(|_| AtomicU32::new(0)));
            } else {
                nodes.upper_start.push(NO_UPPER);
            }
            nodes.locks.push(Mutex::new(()));
        }
        first
    }

    /// Links the added nodes `ids` into the graph on `threads` threads.
    pub fn link(&self, ids: std::ops::Range<u32>, threads: usize) {
        if ids.is_empty() {
            return;
        }
        let next = AtomicUsize::new(ids.start as usize);
        let work = || loop {
            let id = next.fetch_add(1, Ordering::Relaxed);
            if id >= ids.end as usize {
                break;
            }
            self.link_one(id as u32);
        };
        let threads = threads.clamp(1, ids.len());
        if threads == 1 {
            work();
        } else {
            std::thread::scope(|s| {
                for _ in 1..threads {
                    s.spawn(work);
                }
                work();
            });
        }
    }

    fn take_scratch(&self) -> Scratch {
        self.scratch.lock().pop().unwrap_or_default()
    }

    fn give_scratch(&self, scratch: Scratch) {
        self.scratch.lock().push(scratch);
    }

    /// Adds and links whole vectors; returns the first new id.
    pub fn insert(&self, vectors: &[f32], threads: usize) -> u32 {
        let first = self.add(vectors);
        self.link(
            first..first + (vectors.len() / self.config.dim) as u32,
            threads,
        );
        first
    }

    /// Connects node `id` (already in the arena) into the graph.
    fn link_one(&self, id: u32) {
        let (dim, m) = (self.config.dim, self.config.m);
        let nodes = self.nodes.read();
        let level = nodes.levels[id as usize] as usize;
        let entry = {
            let mut entry = self.entry.lock();
            match *entry {
                None => {
                    *entry = Some((id, level));
                    return;
                }
                Some(e) => e,
            }
        };
        let query = nodes.vectors.probe(dim, id);
        let mut scratch = self.take_scratch();
        let (mut ep, top) = entry;
        let mut ep_dist = nodes.vectors.dist(dim, &query, ep);
        for layer in (level + 1..=top).rev() {
            (ep, ep_dist) = self.greedy(&nodes, &query, ep, ep_dist, layer, &mut scratch.list);
        }
        let mut entry_points = vec![Scored {
            dist: ep_dist,
            id: ep,
        }];
        // Search every layer top-down first, then write the links bottom-up:
        // a node reachable on a layer must already have its lists below it,
        // or a concurrent insert descending through it finds a dead end.
        let mut chosen_per_layer: Vec<Vec<u32>> = Vec::with_capacity(level.min(top) + 1);
        let mut chosen = Vec::with_capacity(2 * m);
        for layer in (0..=level.min(top)).rev() {
            self.search_layer(
                &nodes,
                &query,
                &entry_points,
                self.config.ef_construction,
                layer,
                None,
                &mut scratch,
            );
            let mut found: Vec<Scored> = scratch.results.drain().collect();
            found.sort_unstable();
            self.select_neighbours(&nodes, &found, m, &mut chosen);
            chosen_per_layer.push(chosen.iter().map(|s| s.id).collect());
            entry_points = found;
        }
        for (layer, ids) in chosen_per_layer.iter().rev().enumerate() {
            // Merged, not overwritten: lists are shared with other inserts.
            self.add_links(&nodes, id, ids, layer, &mut scratch.list);
            for &neighbour in ids {
                self.add_links(&nodes, neighbour, &[id], layer, &mut scratch.list);
            }
        }
        self.give_scratch(scratch);
        if level > top {
            let mut entry = self.entry.lock();
            if entry.is_none_or(|(_, l)| level > l) {
                *entry = Some((id, level));
            }
        }
    }

    /// Adds links from `from` to `new` on `layer`; when the list would
    /// overflow, the neighbour heuristic chooses what stays.
    fn add_links(&self, nodes: &Nodes, from: u32, new: &[u32], layer: usize, list: &mut Vec<u32>) {
        let (dim, m) = (self.config.dim, self.config.m);
        let cap = if layer == 0 { 2 * m } else { m };
        let _lock = nodes.locks[from as usize].lock();
        let slots = nodes.slots(m, from, layer);
        read_list(slots, list);
        let before = list.len();
        for &id in new {
            if id != from && !list.contains(&id) {
                list.push(id);
            }
        }
        if list.len() == before {
            return;
        }
        if list.len() <= cap {
            // Append: new ids first, then the count that publishes them.
            for (slot, &id) in slots[before + 1..].iter().zip(&list[before..]) {
                slot.store(id, Ordering::Relaxed);
            }
            slots[0].store(list.len() as u32, Ordering::Release);
            return;
        }
        let base = nodes.vectors.probe(dim, from);
        let mut pool: Vec<Scored> = list
            .iter()
            .map(|&id| Scored {
                dist: nodes.vectors.dist(dim, &base, id),
                id,
            })
            .collect();
        pool.sort_unstable();
        let mut kept = Vec::with_capacity(cap);
        self.select_neighbours(nodes, &pool, cap, &mut kept);
        list.clear();
        list.extend(kept.iter().map(|s| s.id));
        // Slots the heuristic left free go to the nearest of the pruned:
        // more paths into each node (fewer that no search reaches) at no
        // memory cost.
        for s in &pool {
            if list.len() >= cap {
                break;
            }
            if !list.contains(&s.id) {
                list.push(s.id);
            }
        }
        write_list(slots, list);
    }

    /// The neighbour-selection heuristic: walking `sorted` nearest first,
    /// keep a candidate unless it is closer to one already kept than to the
    /// base point (so links spread in all directions). At most `cap` kept.
    fn select_neighbours(
        &self,
        nodes: &Nodes,
        sorted: &[Scored],
        cap: usize,
        out: &mut Vec<Scored>,
    ) {
        out.clear();
        let dim = self.config.dim;
        for &candidate in sorted {
            if out.len() >= cap {
                break;
            }
            let v = nodes.vectors.probe(dim, candidate.id);
            let diverse = out
                .iter()
                .all(|kept| nodes.vectors.dist(dim, &v, kept.id) >= candidate.dist);
            if diverse {
                out.push(candidate);
            }
        }
    }

    /// Greedy descent on an upper layer: the closest node reachable.
    fn greedy(
        &self,
        nodes: &Nodes,
        query: &Probe<'_>,
        mut best: u32,
        mut best_dist: f32,
        layer: usize,
        list: &mut Vec<u32>,
    ) -> (u32, f32) {
        let (dim, m) = (self.config.dim, self.config.m);
        loop {
            let mut improved = false;
            read_list(nodes.slots(m, best, layer), list);
            for &n in list.iter() {
                let d = nodes.vectors.dist(dim, query, n);
                if d < best_dist {
                    (best, best_dist) = (n, d);
                    improved = true;
                }
            }
            if !improved {
                return (best, best_dist);
            }
        }
    }

    /// Best-first search of one layer from `entry_points`, keeping the `ef`
    /// nearest nodes that `accept` takes (all without it) in
    /// `scratch.results`. Rejected nodes are still walked through, and the
    /// walk goes on until `ef` accepted ones are found or nothing is left.
    #[allow(clippy::too_many_arguments)]
    fn search_layer(
        &self,
        nodes: &Nodes,
        query: &Probe<'_>,
        entry_points: &[Scored],
        ef: usize,
        layer: usize,
        accept: Option<&dyn Fn(u32) -> bool>,
        scratch: &mut Scratch,
    ) {
        let (dim, m) = (self.config.dim, self.config.m);
        let accepted = |id: u32| accept.is_none_or(|f| f(id));
        scratch.start(nodes.len());
        let mut bound = f32::INFINITY;
        for &ep in entry_points {
            if !scratch.visit(ep.id) {
                continue;
            }
            scratch.candidates.push(Nearest(std::cmp::Reverse(ep)));
            if accepted(ep.id) {
                scratch.results.push(ep);
                if scratch.results.len() > ef {
                    scratch.results.pop();
                }
            }
        }
        if scratch.results.len() >= ef {
            bound = scratch.results.peek().map_or(f32::INFINITY, |s| s.dist);
        }
        let mut list = std::mem::take(&mut scratch.list);
        while let Some(Nearest(std::cmp::Reverse(current))) = scratch.candidates.pop() {
            if current.dist > bound {
                break;
            }
            read_list(nodes.slots(m, current.id, layer), &mut list);
            // Unvisited neighbours only, their vectors requested from memory
            // a few ahead of use so the cache misses overlap (all at once
            // stalls on the CPU's outstanding-miss buffers; 1 line 4 ahead
            // measured best on 100k × 256).
            list.retain(|&n| scratch.visit(n));
            let ahead = PREFETCH_AHEAD;
            for &n in list.iter().take(ahead) {
                nodes.vectors.prefetch(dim, n);
            }
            for (j, &n) in list.iter().enumerate() {
                if let Some(&next) = list.get(j + ahead) {
                    nodes.vectors.prefetch(dim, next);
                }
                let dist = nodes.vectors.dist(dim, query, n);
                if dist < bound {
                    scratch
                        .candidates
                        .push(Nearest(std::cmp::Reverse(Scored { dist, id: n })));
                    if accepted(n) {
                        scratch.results.push(Scored { dist, id: n });
                        if scratch.results.len() > ef {
                            scratch.results.pop();
                        }
                        if scratch.results.len() >= ef {
                            bound = scratch.results.peek().map_or(bound, |s| s.dist);
                        }
                    }
                }
            }
        }
        scratch.list = list;
    }

    /// The `k` nodes nearest to unit `query` among those `accept` takes,
    /// best first, searching with width `ef` (at least `k`).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<Neighbour> {
        let Some((entry, top)) = *self.entry.lock() else {
            return Vec::new();
        };
        if k == 0 {
            return Vec::new();
        }
        let dim = self.config.dim;
        assert_eq!(query.len(), dim, "query of the wrong dimension");
        let nodes = self.nodes.read();
        let prepared = nodes.vectors.prepare(query);
        let query = prepared.probe();
        let mut scratch = self.take_scratch();
        let mut ep = entry;
        let mut ep_dist = nodes.vectors.dist(dim, &query, ep);
        for layer in (1..=top).rev() {
            (ep, ep_dist) = self.greedy(&nodes, &query, ep, ep_dist, layer, &mut scratch.list);
        }
        let start = [Scored {
            dist: ep_dist,
            id: ep,
        }];
        self.search_layer(&nodes, &query, &start, ef.max(k), 0, accept, &mut scratch);
        let mut found: Vec<Scored> = scratch.results.drain().collect();
        self.give_scratch(scratch);
        found.sort_unstable();
        found.truncate(k);
        found
            .into_iter()
            .map(|s| Neighbour {
                id: s.id,
                score: 1.0 - s.dist,
            })
            .collect()
    }

    /// Writes the graph (little-endian; see [`Hnsw::read_from`]).
    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let nodes = self.nodes.read();
        let entry = *self.entry.lock();
        let c = self.config;
        out.write_all(MAGIC)?;
        let encoding = encoding_tag(c.encoding);
        for v in [c.dim, c.m, c.ef_construction, nodes.len(), encoding] {
            out.write_all(&(v as u64).to_le_bytes())?;
        }
        let (entry_id, entry_level) = entry.map_or((u32::MAX, 0), |(id, l)| (id, l as u32));
        put_u32s(out, [entry_id, entry_level].into_iter())?;
        out.write_all(&nodes.levels)?;
        match &nodes.vectors {
            Arena::F32(v) => put_u32s(out, v.iter().map(|x| x.to_bits()))?,
            Arena::Int8 { codes, scales } => {
                let bytes: Vec<u8> = codes.iter().map(|&c| c as u8).collect();
                out.write_all(&bytes)?;
                put_u32s(out, scales.iter().map(|x| x.to_bits()))?;
            }
        }
        put_u32s(out, nodes.links0.iter().map(|a| a.load(Ordering::Relaxed)))?;
        out.write_all(&(nodes.upper.len() as u64).to_le_bytes())?;
        put_u32s(out, nodes.upper.iter().map(|a| a.load(Ordering::Relaxed)))?;
        Ok(())
    }

    /// Reads a graph written by [`Hnsw::write_to`], checking that every
    /// link and count is in range (a damaged file is an error, not a
    /// graph that panics later).
    pub fn read_from(input: &mut impl Read) -> Result<Hnsw, String> {
        let mut magic = [0u8; 8];
        read_exact(input, &mut magic)?;
        if &magic != MAGIC && &magic != MAGIC_F32 {
            return Err("not a tkr-embed HNSW graph".into());
        }
        let dim = get_u64(input)? as usize;
        let m = get_u64(input)? as usize;
        let ef_construction = get_u64(input)? as usize;
        let n = get_u64(input)? as usize;
        if dim == 0 || dim > 1 << 16 || !(2..=256).contains(&m) || n > u32::MAX as usize / 2 {
            return Err(format!("implausible header: dim {dim}, m {m}, {n} nodes"));
        }
        let encoding = match &magic == MAGIC_F32 {
            true => VectorEncoding::F32,
            false => {
                let tag = get_u64(input)?;
                VectorEncoding::ALL
                    .into_iter()
                    .find(|&e| encoding_tag(e) as u64 == tag)
                    .ok_or_else(|| format!("unknown vector encoding {tag}"))?
            }
        };
        let graph = Hnsw::new(HnswConfig {
            dim,
            m,
            ef_construction,
            encoding,
        });
        let head = get_u32s(input, 2)?;
        let mut levels = vec![0u8; n];
        read_exact(input, &mut levels)?;
        let vectors = match encoding {
            VectorEncoding::F32 => Arena::F32(
                get_u32s(input, n * dim)?
                    .into_iter()
                    .map(f32::from_bits)
                    .collect(),
            ),
            VectorEncoding::Int8 => {
                let mut bytes = vec![0u8; n * dim];
                read_exact(input, &mut bytes)?;
                let scales: Vec<f32> = get_u32s(input, n)?
                    .into_iter()
                    .map(f32::from_bits)
                    .collect();
                if scales.iter().any(|s| !s.is_finite() || *s < 0.0) {
                    return Err("a vector scale is not a finite positive number".into());
                }
                Arena::Int8 {
                    codes: bytes.into_iter().map(|b| b as i8).collect(),
                    scales,
                }
            }
        };
        let links0 = get_u32s(input, n * (2 * m + 1))?;
        let upper_len = get_u64(input)? as usize;
        let mut upper_start = Vec::with_capacity(n);
        let mut expected_upper = 0usize;
        for &level in &levels {
            if level as usize > MAX_LEVEL {
                return Err(format!("node level {level} above {MAX_LEVEL}"));
            }
            if level == 0 {
                upper_start.push(NO_UPPER);
            } else {
                upper_start.push(expected_upper as u32);
                expected_upper += level as usize * (m + 1);
            }
        }
        if upper_len != expected_upper {
            return Err(format!(
                "upper layers hold {upper_len} slots, levels need {expected_upper}"
            ));
        }
        let upper = get_u32s(input, upper_len)?;
        let check = |lists: &[u32], cap: usize| -> Result<(), String> {
            for list in lists.chunks_exact(cap + 1) {
                let count = list[0] as usize;
                if count > cap || list[1..=count].iter().any(|&id| id as usize >= n) {
                    return Err("a link list is out of range".into());
                }
            }
            Ok(())
        };
        check(&links0, 2 * m)?;
        check(&upper, m)?;
        let entry = match (n, head[0]) {
            (0, _) => None,
            (_, id) if (id as usize) < n && head[1] as usize == levels[id as usize] as usize => {
                Some((id, head[1] as usize))
            }
            _ => return Err("bad entry point".into()),
        };
        {
            let mut nodes = graph.nodes.write();
            nodes.vectors = vectors;
            nodes.levels = levels;
            nodes.links0 = links0.into_iter().map(AtomicU32::new).collect();
            nodes.upper_start = upper_start;
            nodes.upper = upper.into_iter().map(AtomicU32::new).collect();
            nodes.locks = (0..n).map(|_| Mutex::new(())).collect();
        }
        *graph.entry.lock() = entry;
        Ok(graph)
    }
}

/// The number an encoding is written as (never reuse one).
fn encoding_tag(encoding: VectorEncoding) -> usize {
    match encoding {
        VectorEncoding::F32 => 0,
        VectorEncoding::Int8 => 1,
    }
}

fn put_u32s(out: &mut impl Write, values: impl Iterator<Item = u32>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1 << 16);
    for v in values {
        buf.extend_from_slice(&v.to_le_bytes());
        if buf.len() >= 1 << 16 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)
}

fn read_exact(input: &mut impl Read, buf: &mut [u8]) -> Result<(), String> {
    input
        .read_exact(buf)
        .map_err(|e| format!("truncated graph: {e}"))
}

fn get_u64(input: &mut impl Read) -> Result<u64, String> {
    let mut b = [0u8; 8];
    read_exact(input, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn get_u32s(input: &mut impl Read, count: usize) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut left = count;
    while left > 0 {
        let take = left.min(buf.len() / 4);
        read_exact(input, &mut buf[..take * 4])?;
        out.extend(
            buf[..take * 4]
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        left -= take;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::dot;

    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut v: Vec<f32> = (0..dim)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }

    fn build(n: usize, dim: usize, threads: usize) -> (Hnsw, Vec<Vec<f32>>) {
        build_encoded(n, dim, threads, VectorEncoding::F32)
    }

    fn build_encoded(
        n: usize,
        dim: usize,
        threads: usize,
        encoding: VectorEncoding,
    ) -> (Hnsw, Vec<Vec<f32>>) {
        let data: Vec<Vec<f32>> = (0..n).map(|i| unit(i as u64, dim)).collect();
        let g = Hnsw::new(HnswConfig {
            dim,
            m: 8,
            ef_construction: 64,
            encoding,
        });
        g.insert(&data.concat(), threads);
        (g, data)
    }

    fn recall(g: &Hnsw, data: &[Vec<f32>], filter: Option<&dyn Fn(u32) -> bool>) -> f64 {
        let mut hit = 0;
        let mut total = 0;
        for qi in 0..50 {
            let q = unit(10_000 + qi, data[0].len());
            let found: Vec<u32> = g.search(&q, 10, 64, filter).iter().map(|n| n.id).collect();
            let truth: Vec<u32> = {
                let mut s: Vec<(f32, u32)> = data
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (dot(&q, v), i as u32))
                    .filter(|(_, l)| filter.is_none_or(|f| f(*l)))
                    .collect();
                s.sort_by(|a, b| b.0.total_cmp(&a.0));
                s.into_iter().take(10).map(|x| x.1).collect()
            };
            total += truth.len();
            hit += found.iter().filter(|l| truth.contains(l)).count();
        }
        hit as f64 / total as f64
    }

    #[test]
    fn finds_the_true_neighbours_single_and_multi_threaded() {
        for threads in [1, 2] {
            let (g, data) = build(3000, 24, threads);
            assert_eq!(g.len(), 3000);
            let r = recall(&g, &data, None);
            assert!(r > 0.95, "recall {r} with {threads} threads");
            // A stored point finds itself first, with score 1.
            let top = g.search(&data[17], 1, 32, None);
            assert_eq!(top[0].id, 17);
            assert!((top[0].score - 1.0).abs() < 1e-5);
        }
    }

    /// Tight clusters make the neighbour heuristic keep few links, so every
    /// path into a node matters; inserts linked in parallel once left some
    /// nodes unreachable (a concurrent insert descended through a node whose
    /// lower lists were not written yet).
    #[test]
    fn every_point_finds_itself_after_a_parallel_build() {
        let dim = 24;
        for seed in 0..8u64 {
            let centres: Vec<Vec<f32>> = (0..10).map(|c| unit(seed * 100 + c, dim)).collect();
            let data: Vec<Vec<f32>> = (0..700u64)
                .map(|i| {
                    let noise = unit(seed * 10_000 + 1000 + i, dim);
                    let c = &centres[(i % 10) as usize];
                    let v: Vec<f32> = c.iter().zip(&noise).map(|(a, b)| a + 0.3 * b).collect();
                    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                    v.iter().map(|x| x / n).collect()
                })
                .collect();
            let g = Hnsw::new(HnswConfig {
                dim,
                m: 16,
                ef_construction: 100,
                encoding: VectorEncoding::F32,
            });
            g.insert(&data.concat(), 4);
            for (i, v) in data.iter().enumerate() {
                assert_eq!(g.search(v, 1, 100, None)[0].id, i as u32, "seed {seed}");
            }
        }
    }

    #[test]
    fn filter_keeps_only_accepted_labels() {
        let (g, data) = build(2000, 16, 1);
        let even = |l: u32| l.is_multiple_of(2);
        let found = g.search(&data[3], 10, 64, Some(&even));
        assert_eq!(found.len(), 10);
        assert!(found.iter().all(|n| n.id.is_multiple_of(2)));
        assert!(recall(&g, &data, Some(&even)) > 0.9);
    }

    #[test]
    fn empty_graph_and_k_zero() {
        let g = Hnsw::new(HnswConfig {
            dim: 4,
            m: 8,
            ef_construction: 16,
            encoding: VectorEncoding::F32,
        });
        assert!(g.search(&[1.0, 0.0, 0.0, 0.0], 5, 10, None).is_empty());
        assert_eq!(g.insert(&[1.0, 0.0, 0.0, 0.0], 1), 0);
        assert!(g.search(&[1.0, 0.0, 0.0, 0.0], 0, 10, None).is_empty());
        assert_eq!(g.search(&[0.0, 1.0, 0.0, 0.0], 5, 10, None)[0].id, 0);
        assert_eq!(g.insert(&[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0], 2), 1);
        assert_eq!(g.search(&[0.0, 0.6, 0.8, 0.0], 1, 10, None)[0].id, 2);
    }

    #[test]
    fn round_trips_through_bytes_and_rejects_damage() {
        let (g, data) = build(500, 8, 2);
        let mut bytes = Vec::new();
        g.write_to(&mut bytes).unwrap();
        let back = Hnsw::read_from(&mut bytes.as_slice()).unwrap();
        assert_eq!(back.len(), 500);
        for q in data.iter().take(20) {
            assert_eq!(g.search(q, 5, 32, None), back.search(q, 5, 32, None));
        }
        // Truncation and an out-of-range link are errors.
        assert!(Hnsw::read_from(&mut &bytes[..bytes.len() - 3]).is_err());
        let links_at = 8 + 40 + 8 + 500 + 500 * 8 * 4;
        let mut bad = bytes.clone();
        bad[links_at + 4..links_at + 8].copy_from_slice(&9999u32.to_le_bytes());
        bad[links_at..links_at + 4].copy_from_slice(&1u32.to_le_bytes());
        assert!(Hnsw::read_from(&mut bad.as_slice()).is_err());
    }

    /// int8 codes: the true 10 nearest are among the 30 best by
    /// approximate score (what the index rescores), the graph survives a
    /// round trip, and its vectors take a quarter of the memory.
    #[test]
    fn int8_graph_searches_round_trips_and_is_smaller() {
        let (g, data) = build_encoded(3000, 24, 2, VectorEncoding::Int8);
        let (f, _) = build(3000, 24, 2);
        // Fraction of the true 10 nearest among a graph's 30 best.
        let found_in_30 = |graph: &Hnsw| {
            let (mut hit, mut total) = (0, 0);
            for qi in 0..50 {
                let q = unit(10_000 + qi, 24);
                let found: Vec<u32> = graph
                    .search(&q, 30, 64, None)
                    .iter()
                    .map(|n| n.id)
                    .collect();
                let mut exact: Vec<(f32, u32)> = data
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (dot(&q, v), i as u32))
                    .collect();
                exact.sort_by(|a, b| b.0.total_cmp(&a.0));
                total += 10;
                hit += exact[..10]
                    .iter()
                    .filter(|(_, i)| found.contains(i))
                    .count();
            }
            hit as f64 / total as f64
        };
        let (r, r_f32) = (found_in_30(&g), found_in_30(&f));
        assert!(r > 0.95 && r >= r_f32 - 0.02, "int8 {r}, f32 {r_f32}");
        let top = g.search(&data[17], 1, 32, None);
        assert_eq!(top[0].id, 17);
        assert!((top[0].score - 1.0).abs() < 0.02, "{}", top[0].score);
        assert_eq!(f.vector_bytes(), 3000 * 24 * 4);
        assert_eq!(g.vector_bytes(), 3000 * 24 + 3000 * 4);
        let mut bytes = Vec::new();
        g.write_to(&mut bytes).unwrap();
        let back = Hnsw::read_from(&mut bytes.as_slice()).unwrap();
        assert_eq!(back.config().encoding, VectorEncoding::Int8);
        for q in data.iter().take(20) {
            assert_eq!(g.search(q, 5, 32, None), back.search(q, 5, 32, None));
        }
        // A graph in the format before encodings reads as float32.
        let (old, _) = build(50, 8, 1);
        let mut bytes = Vec::new();
        old.write_to(&mut bytes).unwrap();
        let mut v1 = b"TKRHNSW1".to_vec();
        v1.extend_from_slice(&bytes[8..8 + 32]);
        v1.extend_from_slice(&bytes[8 + 40..]);
        let back = Hnsw::read_from(&mut v1.as_slice()).unwrap();
        assert_eq!(back.config().encoding, VectorEncoding::F32);
        assert_eq!(
            back.search(&data[0][..8], 3, 16, None),
            old.search(&data[0][..8], 3, 16, None)
        );
    }
}
