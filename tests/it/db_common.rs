//! Shared helpers: seeded data sets, brute force, opening databases.
use std::path::Path;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use tkr_embed::db::{Db, DbOptions, NewDocument};
use tkr_embed::index::IndexParams;
use tkr_embed::types::{dot, l2_normalize, Modality};

pub const MODEL: &str = "test-model";

pub fn options(dim: usize) -> DbOptions {
    DbOptions::new(MODEL, dim, "f32")
}

pub fn open(dir: &Path, dim: usize) -> Db {
    Db::open(dir, options(dim)).expect("open db")
}

pub fn open_with(dir: &Path, dim: usize, index: IndexParams) -> Db {
    Db::open(dir, options(dim).with_index(index)).expect("open db")
}

pub fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    l2_normalize(&mut v).unwrap();
    v
}

/// `n` unit vectors around `clusters` random centres (uniform noise).
pub fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect();
    (0..n)
        .map(|_| {
            let c = &centres[rng.random_range(0..clusters)];
            normalized(
                c.iter()
                    .map(|x| x + rng.random_range(-0.35f32..0.35))
                    .collect(),
            )
        })
        .collect()
}

/// One random unit vector, a pure function of `seed`.
pub fn random_unit(dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    normalized((0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect())
}

/// Indices of the `k` vectors with the highest dot product with `query`
/// among those `keep` accepts.
pub fn brute_force(
    data: &[Vec<f32>],
    query: &[f32],
    k: usize,
    keep: impl Fn(usize) -> bool,
) -> Vec<usize> {
    let mut scored: Vec<(usize, f32)> = data
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(i, v)| (i, dot(query, v)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(k);
    scored.into_iter().map(|(i, _)| i).collect()
}

pub fn doc_id(i: usize) -> String {
    format!("doc-{i}")
}

pub fn id_index(id: &str) -> usize {
    id.strip_prefix("doc-").unwrap().parse().unwrap()
}

pub const LANGS: [&str; 3] = ["en", "fr", "de"];

/// The metadata every data-set document gets: deterministic in `i`.
pub fn metadata(i: usize) -> serde_json::Value {
    json!({
        "i": i,
        "group": i % 10,
        "lang": LANGS[i % 3],
        "year": 2000 + (i % 25),
        "tags": [format!("t{}", i % 7), format!("u{}", i % 5)],
    })
}

pub fn modality(i: usize) -> Modality {
    if i.is_multiple_of(4) {
        Modality::Image
    } else {
        Modality::Text
    }
}

pub fn new_doc(i: usize, vector: &[f32]) -> NewDocument {
    NewDocument::new(modality(i), vector.to_vec())
        .with_id(doc_id(i))
        .with_text(format!("document number {i}"))
        .with_metadata(metadata(i))
}

/// Inserts `data` as `doc-<i>` documents in batches.
pub fn load(db: &Db, collection: &str, data: &[Vec<f32>], batch: usize) {
    for (chunk_no, chunk) in data.chunks(batch).enumerate() {
        let docs = chunk
            .iter()
            .enumerate()
            .map(|(j, v)| new_doc(chunk_no * batch + j, v))
            .collect();
        db.insert_many(collection, docs).unwrap();
    }
}

pub fn ids(hits: &[tkr_embed::db::Hit]) -> Vec<String> {
    hits.iter().map(|h| h.id.clone()).collect()
}

pub fn recall(found: &[String], truth: &[usize]) -> f64 {
    let hit = truth
        .iter()
        .filter(|&&i| found.contains(&doc_id(i)))
        .count();
    hit as f64 / truth.len().max(1) as f64
}
