//! Crash loop over HTTP: the real `tkr-embed serve` (the binary, as a child
//! process) on one data directory, 16 client tasks inserting, replacing and
//! deleting documents through the API, a SIGKILL at a random moment, a
//! restart, and a check of every write against a ledger of what the server
//! acknowledged:
//!
//! - an acknowledged write (a 2xx answer) is never lost: the document is
//!   there with its latest acknowledged version (metadata, text, and for a
//!   sample of documents the stored vector), and an acknowledged delete
//!   stays deleted (404, never found by a search);
//! - a write whose request was cut off by the kill is uncertain: afterwards
//!   the document is exactly its old or its new version, nothing else;
//! - index == store: the collection's document count equals the documents
//!   listed and the ledger's live documents, a search with a document's own
//!   vector finds that document first, and no search hit is a deleted or
//!   unknown id.
//!
//! `TKR_CRASH_CYCLES` (default 6) sets the number of kills; `TKR_CRASH_SEED`
//! repeats a run's choices (the kill moments depend on timing as well).
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::server_process::{log_tail, start_server};

/// The tiny fixture model's embedding dimension (`hidden_size`).
const DIM: usize = 64;
const CLIENTS: usize = 16;
const COLLECTION: &str = "crash";
/// Documents a client keeps alive at most: past this it replaces and
/// deletes instead of inserting, so the collection stays small.
const MAX_LIVE_PER_CLIENT: usize = 120;
/// Documents searched for with their own vector per restart (and as many
/// deleted documents searched for with their last vector).
const SEARCH_SAMPLE: usize = 50;
/// Documents fetched one by one per restart besides the ones written in the
/// last cycle.
const GET_SAMPLE: usize = 50;
/// Stored vectors are the sent ones normalised to unit length.
const VECTOR_TOLERANCE: f32 = 1e-5;

#[derive(Clone, Debug, PartialEq)]
enum Payload {
    Vector(Vec<f32>),
    Text(String),
}

/// What a document id holds: nothing, or one written version.
#[derive(Clone, Debug, PartialEq)]
enum State {
    Absent,
    Doc { v: u64, payload: Payload },
}

struct Entry {
    /// The last acknowledged state (or the one found after a restart).
    confirmed: State,
    /// States of writes that got no answer: each may or may not have
    /// happened (only the last of them can be visible, but any is allowed).
    pending: Vec<State>,
    /// Written to since the last check.
    dirty: bool,
    /// The last vector the document had (to search for it once deleted).
    last_vector: Option<Vec<f32>>,
}

#[derive(Default, Clone, Copy)]
struct Stats {
    inserts: u64,
    text_inserts: u64,
    upserts: u64,
    deletes: u64,
    uncertain: u64,
    uncertain_applied: u64,
    uncertain_not_applied: u64,
    refused: u64,
    overloaded: u64,
    lost: u64,
    resurrected: u64,
    mismatched: u64,
    searches: u64,
    gets: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.inserts += o.inserts;
        self.text_inserts += o.text_inserts;
        self.upserts += o.upserts;
        self.deletes += o.deletes;
        self.uncertain += o.uncertain;
        self.uncertain_applied += o.uncertain_applied;
        self.uncertain_not_applied += o.uncertain_not_applied;
        self.refused += o.refused;
        self.overloaded += o.overloaded;
        self.lost += o.lost;
        self.resurrected += o.resurrected;
        self.mismatched += o.mismatched;
        self.searches += o.searches;
        self.gets += o.gets;
    }
}

/// One client's documents: only that client writes them, so each id's
/// writes are ordered.
struct Ledger {
    client: usize,
    next_id: u64,
    next_v: u64,
    entries: BTreeMap<String, Entry>,
    /// Ids whose confirmed state is a document and that have no pending
    /// write: the ones a client may replace or delete.
    clean_live: Vec<String>,
    stats: Stats,
    /// Wrong answers seen while writing (a 404 deleting a live document,
    /// an unexpected status).
    problems: Vec<String>,
}

fn metadata_of(client: usize, v: u64, payload: &Payload) -> Value {
    let kind = match payload {
        Payload::Vector(_) => "vector",
        Payload::Text(_) => "text",
    };
    json!({"client": client, "v": v, "kind": kind, "note": "crash loop ✓"})
}

fn random_vector(rng: &mut StdRng) -> Vec<f32> {
    (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    v.iter().map(|x| (f64::from(*x) / norm) as f32).collect()
}

/// How a write ended.
enum Outcome {
    /// 2xx: acknowledged.
    Acked,
    /// Certainly not applied: the connection was refused, or the server
    /// refused the request (`overloaded`; a refused request stores nothing).
    NotApplied,
    /// Cut off (the kill), or an answer that does not say whether it
    /// happened (a timeout): either outcome is allowed.
    Uncertain,
    /// Any other answer: `(status, body)`.
    Other(StatusCode, String),
}

async fn send(rb: reqwest::RequestBuilder, stats: &mut Stats) -> Outcome {
    match rb.send().await {
        Err(e) if e.is_connect() => {
            stats.refused += 1;
            Outcome::NotApplied
        }
        Err(_) => Outcome::Uncertain,
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                // The status line is sent after the commit: acknowledged even
                // if the body is cut off.
                return Outcome::Acked;
            }
            let body = response.text().await.unwrap_or_default();
            let code = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                .unwrap_or_default();
            match (status.as_u16(), code.as_str()) {
                (503, "overloaded") => {
                    stats.overloaded += 1;
                    Outcome::NotApplied
                }
                (503, "timeout") | (500, _) => Outcome::Uncertain,
                _ => Outcome::Other(status, body),
            }
        }
    }
}

impl Ledger {
    fn new(client: usize) -> Ledger {
        Ledger {
            client,
            next_id: 0,
            next_v: 1,
            entries: BTreeMap::new(),
            clean_live: Vec::new(),
            stats: Stats::default(),
            problems: Vec::new(),
        }
    }

    /// Writes until `stop`: inserts (vector, sometimes text), replacements
    /// of its own acknowledged documents and deletes of them.
    async fn run(
        mut self,
        client: reqwest::Client,
        base: String,
        stop: Arc<AtomicBool>,
        seed: u64,
    ) -> Ledger {
        let mut rng = StdRng::seed_from_u64(seed);
        while !stop.load(Ordering::Relaxed) {
            let live = self.clean_live.len();
            let roll = rng.random_range(0..100u32);
            let refused_before = self.stats.refused;
            if live == 0 || (roll < 45 && live < MAX_LIVE_PER_CLIENT) {
                self.insert(&client, &base, &mut rng).await;
            } else if roll < 75 {
                self.upsert(&client, &base, &mut rng).await;
            } else {
                self.delete(&client, &base, &mut rng).await;
            }
            if self.stats.refused > refused_before {
                // The server is gone (killed): wait for the stop.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        self
    }

    fn new_payload(&mut self, rng: &mut StdRng, id: &str) -> (u64, Payload) {
        let v = self.next_v;
        self.next_v += 1;
        let payload = if rng.random_range(0..100u32) < 5 {
            Payload::Text(format!(
                "crash loop document {id} version {v}: {} apples",
                rng.random_range(0..1000u32)
            ))
        } else {
            Payload::Vector(random_vector(rng))
        };
        (v, payload)
    }

    fn body(&self, id: &str, v: u64, payload: &Payload) -> Value {
        let metadata = metadata_of(self.client, v, payload);
        match payload {
            Payload::Vector(vector) => json!({"id": id, "vector": vector, "metadata": metadata}),
            Payload::Text(text) => json!({"id": id, "text": text, "metadata": metadata}),
        }
    }

    async fn write(
        &mut self,
        client: &reqwest::Client,
        base: &str,
        id: String,
        v: u64,
        payload: Payload,
        upsert: bool,
    ) {
        let body = self.body(&id, v, &payload);
        let url = format!("{base}/collections/{COLLECTION}/documents");
        let outcome = send(client.post(url).json(&body), &mut self.stats).await;
        let new = State::Doc {
            v,
            payload: payload.clone(),
        };
        let entry = self.entries.entry(id.clone()).or_insert(Entry {
            confirmed: State::Absent,
            pending: Vec::new(),
            dirty: false,
            last_vector: None,
        });
        entry.dirty = true;
        match outcome {
            Outcome::Acked => {
                entry.confirmed = new;
                if let Payload::Vector(vector) = &payload {
                    entry.last_vector = Some(vector.clone());
                }
                if upsert {
                    self.stats.upserts += 1;
                } else {
                    self.stats.inserts += 1;
                    if matches!(payload, Payload::Text(_)) {
                        self.stats.text_inserts += 1;
                    }
                    self.clean_live.push(id);
                }
            }
            Outcome::NotApplied => {
                if upsert {
                    self.clean_live.push(id);
                }
            }
            Outcome::Uncertain => {
                self.stats.uncertain += 1;
                entry.pending.push(new);
            }
            Outcome::Other(status, body) => {
                self.stats.mismatched += 1;
                self.problems
                    .push(format!("POST {id} (v {v}): unexpected {status}: {body}"));
                if upsert {
                    self.clean_live.push(id);
                }
            }
        }
    }

    async fn insert(&mut self, client: &reqwest::Client, base: &str, rng: &mut StdRng) {
        let id = format!("c{:02}-{}", self.client, self.next_id);
        self.next_id += 1;
        let (v, payload) = self.new_payload(rng, &id);
        self.write(client, base, id, v, payload, false).await;
    }

    /// Takes one of its clean live ids out of `clean_live` (the write puts
    /// it back unless it ends uncertain or deleted).
    fn take_live(&mut self, rng: &mut StdRng) -> String {
        let i = rng.random_range(0..self.clean_live.len());
        self.clean_live.swap_remove(i)
    }

    async fn upsert(&mut self, client: &reqwest::Client, base: &str, rng: &mut StdRng) {
        let id = self.take_live(rng);
        let (v, payload) = self.new_payload(rng, &id);
        self.write(client, base, id, v, payload, true).await;
    }

    async fn delete(&mut self, client: &reqwest::Client, base: &str, rng: &mut StdRng) {
        let id = self.take_live(rng);
        let url = format!("{base}/collections/{COLLECTION}/documents/{id}");
        let outcome = send(client.delete(url), &mut self.stats).await;
        let entry = self.entries.get_mut(&id).unwrap();
        entry.dirty = true;
        match outcome {
            Outcome::Acked => {
                self.stats.deletes += 1;
                entry.confirmed = State::Absent;
            }
            Outcome::NotApplied => self.clean_live.push(id),
            Outcome::Uncertain => {
                self.stats.uncertain += 1;
                entry.pending.push(State::Absent);
            }
            Outcome::Other(status, body) => {
                if status == StatusCode::NOT_FOUND {
                    self.stats.lost += 1;
                    self.problems.push(format!(
                        "DELETE {id}: 404 for an acknowledged live document ({:?}): {body}",
                        version(&entry.confirmed)
                    ));
                } else {
                    self.stats.mismatched += 1;
                    self.problems
                        .push(format!("DELETE {id}: unexpected {status}: {body}"));
                }
                self.clean_live.push(id);
            }
        }
    }
}

fn version(state: &State) -> Option<u64> {
    match state {
        State::Absent => None,
        State::Doc { v, .. } => Some(*v),
    }
}

/// Does the stored document `doc` (as listed or fetched) hold `state`?
fn holds(client: usize, doc: &Value, state: &State) -> bool {
    let State::Doc { v, payload } = state else {
        return false;
    };
    if doc["metadata"] != metadata_of(client, *v, payload) {
        return false;
    }
    match payload {
        Payload::Text(text) => doc["text"].as_str() == Some(text),
        Payload::Vector(_) => true,
    }
}

fn describe(doc: Option<&Value>) -> String {
    match doc {
        None => "absent".into(),
        Some(d) => format!("metadata {} text {}", d["metadata"], d["text"]),
    }
}

async fn get_json(client: &reqwest::Client, url: String) -> (StatusCode, Value) {
    let response = client
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

async fn search(client: &reqwest::Client, base: &str, vector: &[f32], k: usize) -> Vec<Value> {
    let url = format!("{base}/collections/{COLLECTION}/search");
    let response = client
        .post(&url)
        .json(&json!({"vector": vector, "k": k, "include": ["metadata", "vector"]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::OK, "search: {body}");
    body["hits"].as_array().cloned().unwrap_or_default()
}

/// After a restart: every ledger entry against the store (listing, GETs),
/// counts, and the index (searches). Resolves uncertain writes to what is
/// there. Returns the problems found (also counted in `stats`).
async fn verify(
    client: &reqwest::Client,
    base: &str,
    ledgers: &mut [Ledger],
    rng: &mut StdRng,
    stats: &mut Stats,
) -> Vec<String> {
    let mut problems = Vec::new();

    // The store, listed.
    let mut stored: HashMap<String, Value> = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}/collections/{COLLECTION}/documents?limit=1000");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let (status, page) = get_json(client, url).await;
        assert_eq!(status, StatusCode::OK, "list: {page}");
        for doc in page["documents"].as_array().unwrap() {
            let id = doc["id"].as_str().unwrap().to_owned();
            assert!(
                stored.insert(id.clone(), doc.clone()).is_none(),
                "{id} listed twice"
            );
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }

    // Every entry: one of its allowed states, exactly.
    let mut known: HashSet<String> = HashSet::new();
    // Ids already reported: not checked again below.
    let mut bad: HashSet<String> = HashSet::new();
    let mut live = 0u64;
    for ledger in ledgers.iter_mut() {
        let client_no = ledger.client;
        for (id, entry) in ledger.entries.iter_mut() {
            known.insert(id.clone());
            let doc = stored.get(id);
            let allowed: Vec<&State> = std::iter::once(&entry.confirmed)
                .chain(entry.pending.iter())
                .collect();
            let found = allowed.iter().position(|s| match doc {
                None => **s == State::Absent,
                Some(d) => holds(client_no, d, s),
            });
            match found {
                Some(i) => {
                    if !entry.pending.is_empty() {
                        if i == 0 {
                            stats.uncertain_not_applied += 1;
                        } else {
                            stats.uncertain_applied += 1;
                        }
                    }
                    let state = allowed[i].clone();
                    if let State::Doc {
                        payload: Payload::Vector(v),
                        ..
                    } = &state
                    {
                        entry.last_vector = Some(v.clone());
                    }
                    entry.confirmed = state;
                    entry.pending.clear();
                }
                None => {
                    let wanted: Vec<Option<u64>> = allowed.iter().map(|s| version(s)).collect();
                    let what = format!(
                        "{id}: expected one of versions {wanted:?} (None = deleted), found {}",
                        describe(doc)
                    );
                    match (&entry.confirmed, doc) {
                        (State::Absent, Some(_)) => {
                            stats.resurrected += 1;
                            problems.push(format!("resurrected {what}"));
                        }
                        (State::Doc { .. }, None) => {
                            stats.lost += 1;
                            problems.push(format!("lost {what}"));
                        }
                        _ => {
                            stats.mismatched += 1;
                            problems.push(format!("mismatched {what}"));
                        }
                    }
                    bad.insert(id.clone());
                    // Go on from what the server has.
                    entry.confirmed = State::Absent;
                    entry.pending.clear();
                    if let Some(d) = doc {
                        entry.confirmed = State::Doc {
                            v: d["metadata"]["v"].as_u64().unwrap_or(0),
                            payload: Payload::Text(String::new()),
                        };
                    }
                }
            }
            if matches!(entry.confirmed, State::Doc { .. }) {
                live += 1;
            }
        }
        ledger.clean_live = ledger
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.confirmed, State::Doc { .. }) && e.pending.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
    }
    for id in stored.keys() {
        if !known.contains(id) {
            stats.mismatched += 1;
            problems.push(format!("{id}: stored but never written"));
        }
    }

    // Counts: the collection's, the listing's and the ledger's.
    let (status, collection) = get_json(client, format!("{base}/collections/{COLLECTION}")).await;
    assert_eq!(status, StatusCode::OK, "{collection}");
    let counted = collection["documents"].as_u64().unwrap();
    if counted != stored.len() as u64 || counted != live {
        stats.mismatched += 1;
        problems.push(format!(
            "count: collection says {counted}, listing has {}, ledger has {live} live",
            stored.len()
        ));
    }

    // One by one: what was written in the last cycle, and a sample of the rest.
    let mut all: Vec<(usize, String)> = Vec::new();
    for (li, ledger) in ledgers.iter().enumerate() {
        for id in ledger.entries.keys() {
            all.push((li, id.clone()));
        }
    }
    let (dirty, mut rest): (Vec<_>, Vec<_>) = all
        .into_iter()
        .filter(|(_, id)| !bad.contains(id))
        .partition(|(li, id)| ledgers[*li].entries[id].dirty);
    shuffle(&mut rest, rng);
    rest.truncate(GET_SAMPLE);
    for (li, id) in dirty.iter().chain(rest.iter()) {
        let ledger = &ledgers[*li];
        let entry = &ledger.entries[id];
        let (status, body) = get_json(
            client,
            format!("{base}/collections/{COLLECTION}/documents/{id}"),
        )
        .await;
        stats.gets += 1;
        let ok = match &entry.confirmed {
            State::Absent => {
                status == StatusCode::NOT_FOUND && body["error"]["code"] == "document_not_found"
            }
            state => status == StatusCode::OK && holds(ledger.client, &body, state),
        };
        if !ok {
            let what = format!(
                "GET {id}: expected version {:?}, got {status} {body}",
                version(&entry.confirmed)
            );
            if entry.confirmed == State::Absent {
                stats.resurrected += 1;
                problems.push(format!("resurrected {what}"));
            } else {
                stats.lost += 1;
                problems.push(format!("lost {what}"));
            }
        }
    }

    // The index: live documents found first by their own vector (those
    // written in the last cycle first), deleted ones never found.
    let mut live_vectors: Vec<(String, u64, Vec<f32>, bool)> = Vec::new();
    let mut deleted_vectors: Vec<(String, Vec<f32>, bool)> = Vec::new();
    for ledger in ledgers.iter() {
        for (id, entry) in ledger.entries.iter().filter(|(id, _)| !bad.contains(*id)) {
            match (&entry.confirmed, &entry.last_vector) {
                (
                    State::Doc {
                        v,
                        payload: Payload::Vector(vector),
                    },
                    _,
                ) => live_vectors.push((id.clone(), *v, vector.clone(), entry.dirty)),
                (State::Absent, Some(vector)) => {
                    deleted_vectors.push((id.clone(), vector.clone(), entry.dirty))
                }
                _ => {}
            }
        }
    }
    shuffle(&mut live_vectors, rng);
    live_vectors.sort_by_key(|x| !x.3); // stable: dirty first, shuffled
    live_vectors.truncate(SEARCH_SAMPLE);
    shuffle(&mut deleted_vectors, rng);
    deleted_vectors.sort_by_key(|x| !x.2);
    deleted_vectors.truncate(SEARCH_SAMPLE);
    let check_hits = |hits: &[Value], problems: &mut Vec<String>, stats: &mut Stats| {
        for hit in hits {
            let hid = hit["id"].as_str().unwrap_or("");
            if !stored.contains_key(hid) {
                stats.resurrected += 1;
                problems.push(format!("resurrected: search hit {hid} is not in the store"));
            }
        }
    };
    for (id, v, vector, _) in &live_vectors {
        let hits = search(client, base, vector, 5).await;
        stats.searches += 1;
        check_hits(&hits, &mut problems, stats);
        let first = hits.first();
        let expected = normalized(vector);
        let ok = first.is_some_and(|h| {
            h["id"] == id.as_str()
                && h["metadata"]["v"] == *v
                && h["vector"].as_array().is_some_and(|got| {
                    got.len() == DIM
                        && got.iter().zip(&expected).all(|(g, e)| {
                            (g.as_f64().unwrap_or(f64::NAN) as f32 - e).abs() <= VECTOR_TOLERANCE
                        })
                })
        });
        if !ok {
            stats.mismatched += 1;
            let ids: Vec<&Value> = hits.iter().map(|h| &h["id"]).collect();
            problems.push(format!(
                "index: search with {id}'s vector (v {v}) gave {ids:?}, first hit {}",
                first.map_or("none".into(), |h| format!(
                    "metadata {} score {}",
                    h["metadata"], h["score"]
                ))
            ));
        }
    }
    for (id, vector, _) in &deleted_vectors {
        let hits = search(client, base, vector, 5).await;
        stats.searches += 1;
        check_hits(&hits, &mut problems, stats);
        if hits.iter().any(|h| h["id"] == id.as_str()) {
            stats.resurrected += 1;
            problems.push(format!(
                "resurrected: deleted {id} found by its last vector"
            ));
        }
    }

    for ledger in ledgers.iter_mut() {
        for entry in ledger.entries.values_mut() {
            entry.dirty = false;
        }
    }
    problems
}

fn shuffle<T>(v: &mut [T], rng: &mut StdRng) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

#[test]
fn acknowledged_http_writes_survive_kill_loop() {
    let cycles: usize = std::env::var("TKR_CRASH_CYCLES")
        .ok()
        .map(|c| c.parse().expect("TKR_CRASH_CYCLES: a number"))
        .unwrap_or(6);
    let seed: u64 = std::env::var("TKR_CRASH_SEED")
        .ok()
        .map(|s| s.parse().expect("TKR_CRASH_SEED: a number"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000_007
        });
    eprintln!("http crash loop: seed {seed} (TKR_CRASH_SEED={seed} repeats the choices)");
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut ledgers: Vec<Ledger> = (0..CLIENTS).map(Ledger::new).collect();
    let mut totals = Stats::default();
    let mut problems: Vec<String> = Vec::new();
    let mut load_time = Duration::ZERO;
    let mut restart_time = Duration::ZERO;

    for cycle in 0..=cycles {
        let t = Instant::now();
        let mut server = start_server(&data, &log);
        restart_time += t.elapsed();
        let base = server.url.clone();
        let mut found = runtime.block_on(async {
            if cycle == 0 {
                let response = http
                    .post(format!("{base}/collections"))
                    .json(&json!({"name": COLLECTION}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::CREATED);
                Vec::new()
            } else {
                verify(&http, &base, &mut ledgers, &mut rng, &mut totals).await
            }
        });
        for ledger in ledgers.iter_mut() {
            found.append(&mut ledger.problems);
        }
        if !found.is_empty() {
            problems.extend(
                found
                    .into_iter()
                    .map(|p| format!("after kill {cycle}: {p}")),
            );
            break;
        }
        if cycle == cycles {
            break;
        }

        // Load, then a kill at a random moment.
        let stop = Arc::new(AtomicBool::new(false));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let tasks: Vec<_> = std::mem::take(&mut ledgers)
            .into_iter()
            .map(|ledger| {
                let s = seed ^ ((cycle as u64) << 32) ^ ledger.client as u64;
                runtime.spawn(ledger.run(client.clone(), base.clone(), stop.clone(), s))
            })
            .collect();
        let load = Duration::from_millis(rng.random_range(300..2500));
        std::thread::sleep(load);
        server.child.kill().unwrap(); // SIGKILL
        stop.store(true, Ordering::Relaxed);
        let status = server.child.wait().unwrap();
        assert!(
            !status.success(),
            "cycle {cycle}: the server ended by itself: {status}"
        );
        load_time += load;
        ledgers = runtime.block_on(async {
            let mut out = Vec::new();
            for task in tasks {
                out.push(task.await.unwrap());
            }
            out
        });
        drop(server);
    }

    for ledger in &ledgers {
        totals.add(&ledger.stats);
    }
    let live: usize = ledgers
        .iter()
        .map(|l| {
            l.entries
                .values()
                .filter(|e| matches!(e.confirmed, State::Doc { .. }))
                .count()
        })
        .sum();
    let t = &totals;
    eprintln!(
        "http crash loop: {cycles} cycles, acknowledged {} inserts ({} text) / {} upserts / {} deletes, \
         {} uncertain ({} applied, {} not), {} refused after kill, {} overloaded, \
         lost {}, resurrected {}, mismatched {}; {} live at end, {} GETs and {} searches checked; \
         load {:.1} s, restarts {:.1} s, wall {:.1} s (seed {seed})",
        t.inserts,
        t.text_inserts,
        t.upserts,
        t.deletes,
        t.uncertain,
        t.uncertain_applied,
        t.uncertain_not_applied,
        t.refused,
        t.overloaded,
        t.lost,
        t.resurrected,
        t.mismatched,
        live,
        t.gets,
        t.searches,
        load_time.as_secs_f64(),
        restart_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        problems.is_empty(),
        "{} problem(s) (seed {seed}):\n{}\nserver log:\n{}",
        problems.len(),
        problems
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        log_tail(&log)
    );
    assert!(
        t.inserts > cycles as u64 && t.deletes > 0 && t.upserts > 0,
        "too few writes to mean anything"
    );
}
