//! recall@10 of the HNSW index against brute force.
use std::time::Instant;

use crate::db_common::{brute_force, clustered, ids, load, open, recall};

#[test]
fn recall_at_10_on_clustered_data() {
    // Runs beside the model tests on purpose: parallel inserts whose threads
    // are preempted must build as good a graph as on a quiet machine.
    const N: usize = 20_000;
    const DIM: usize = 64;
    const QUERIES: usize = 200;
    let all = clustered(N + QUERIES, DIM, 20, 7);
    let (data, queries) = all.split_at(N);
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), DIM);
    db.create_collection("c").unwrap();
    let started = Instant::now();
    load(&db, "c", data, 2500);
    let build = started.elapsed();

    let started = Instant::now();
    let mut total = 0.0;
    for q in queries {
        let hits = db.search("c", q, 10, None).unwrap();
        assert_eq!(hits.len(), 10);
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        total += recall(&ids(&hits), &brute_force(data, q, 10, |_| true));
    }
    let mean = total / QUERIES as f64;
    eprintln!(
        "recall@10 = {mean:.4} over {QUERIES} queries; insert+index {N} took {build:?}, queries {:?}",
        started.elapsed()
    );
    assert!(mean >= 0.95, "recall@10 = {mean}");
}
