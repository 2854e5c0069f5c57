//! The two stores side by side on the same data: durable inserts/s, search
//! queries/s and recall@10, embedded (sled + our HNSW) vs PostgreSQL
//! (pgvector HNSW), through the same `Db` API.
//!
//! ```text
//! cargo bench --bench stores                       # 100k x 256, both stores
//! cargo bench --bench stores -- --docs 20000 --dim 2048 --queries 200   # halfvec index
//! ```
//! Options: `--docs N` (100000), `--dim D` (256), `--queries Q` (1000),
//! `--pg URL` (default: `scripts/pg-server start`), `--only embedded|postgres`.
//!
//! Data: unit vectors around 100 random centres (a Gaussian-like mixture),
//! queries drawn the same way, exact top-10 by brute force. Inserts: 8
//! writer threads, `insert_many` of 100 documents (each call returns once
//! its documents are durable: fsync'ed by sled, committed by PostgreSQL),
//! then 16 threads inserting one document per call (5,000 documents).
//! Searches: one thread, k = 10, the default `ef_search` (64) for both.
//! PostgreSQL runs with `synchronous_commit = on` for the bench database
//! (a commit returns after its WAL is flushed), whatever the server's
//! default.
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tkr_embed::db::{Db, DbOptions, NewDocument, StoreLocation};
use tkr_embed::types::{dot, l2_normalize, Modality};

struct Args {
    docs: usize,
    dim: usize,
    queries: usize,
    pg: Option<String>,
    only: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        docs: 100_000,
        dim: 256,
        queries: 1000,
        pg: None,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--docs" => args.docs = value().parse().unwrap(),
            "--dim" => args.dim = value().parse().unwrap(),
            "--queries" => args.queries = value().parse().unwrap(),
            "--pg" => args.pg = Some(value()),
            "--only" => args.only = Some(value()),
            "--bench" => {}
            other => panic!("unknown option {other}"),
        }
    }
    args
}

fn clustered(n: usize, centres: &[Vec<f32>], rng: &mut StdRng) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| {
            let c = &centres[rng.random_range(0..centres.len())];
            let mut v: Vec<f32> = c
                .iter()
                .map(|x| {
                    // Sum of uniforms: roughly Gaussian noise.
                    let noise: f32 = (0..4).map(|_| rng.random_range(-0.25f32..0.25)).sum();
                    x + noise
                })
                .collect();
            l2_normalize(&mut v).unwrap();
            v
        })
        .collect()
}

fn exact_top10(base: &[Vec<f32>], query: &[f32]) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> = base
        .iter()
        .enumerate()
        .map(|(i, v)| (dot(v, query), i))
        .collect();
    scored.select_nth_unstable_by(10, |a, b| b.0.total_cmp(&a.0));
    let mut top: Vec<(f32, usize)> = scored[..10].to_vec();
    top.sort_by(|a, b| b.0.total_cmp(&a.0));
    top.into_iter().map(|(_, i)| i).collect()
}

fn pg_url(given: &Option<String>) -> String {
    if let Some(url) = given {
        return url.clone();
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-server");
    let out = std::process::Command::new(script)
        .arg("start")
        .output()
        .expect("run scripts/pg-server");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let mut client = postgres::Client::connect(&server, postgres::NoTls).unwrap();
    client
        .batch_execute("DROP DATABASE IF EXISTS tkr_bench_stores WITH (FORCE)")
        .unwrap();
    client
        .batch_execute("CREATE DATABASE tkr_bench_stores")
        .unwrap();
    // The test server runs with synchronous_commit off; a durable insert
    // needs it on (the default of a stock PostgreSQL).
    client
        .batch_execute("ALTER DATABASE tkr_bench_stores SET synchronous_commit = on")
        .unwrap();
    format!("{}/tkr_bench_stores", server.rsplit_once('/').unwrap().0)
}

fn run(
    name: &str,
    location: &StoreLocation,
    base: &[Vec<f32>],
    queries: &[Vec<f32>],
    truth: &[Vec<usize>],
) {
    let dim = base[0].len();
    let db = Db::open_at(location, DbOptions::new("bench-model", dim, "f32"), 24).unwrap();
    db.create_collection("bench").unwrap();

    // Batched durable inserts, 8 writers.
    let next = AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| loop {
                let start = next.fetch_add(100, Ordering::Relaxed);
                if start >= base.len() {
                    break;
                }
                let docs: Vec<NewDocument> = (start..(start + 100).min(base.len()))
                    .map(|i| {
                        NewDocument::new(Modality::Image, base[i].clone()).with_id(format!("d{i}"))
                    })
                    .collect();
                db.insert_many("bench", docs).unwrap();
            });
        }
    });
    let batched = base.len() as f64 / t.elapsed().as_secs_f64();

    // Single-document durable inserts, 16 writers.
    let singles = 5000.min(base.len());
    db.create_collection("singles").unwrap();
    let next = AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= singles {
                    break;
                }
                db.insert(
                    "singles",
                    NewDocument::new(Modality::Image, base[i].clone()).with_id(format!("d{i}")),
                )
                .unwrap();
            });
        }
    });
    let single = singles as f64 / t.elapsed().as_secs_f64();

    // Searches, one thread.
    let t = Instant::now();
    let mut found = 0usize;
    for (q, want) in queries.iter().zip(truth) {
        let hits = db.search("bench", q, 10, None).unwrap();
        let want: HashSet<String> = want.iter().map(|i| format!("d{i}")).collect();
        found += hits.iter().filter(|h| want.contains(&h.id)).count();
    }
    let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
    let recall = found as f64 / (10 * queries.len()) as f64;
    println!(
        "| {name} | {} x {dim} | {batched:.0} | {single:.0} | {qps:.0} | {recall:.3} |",
        base.len()
    );
    db.close().unwrap();
}

fn main() {
    let args = parse_args();
    let mut rng = StdRng::seed_from_u64(20261205);
    let centres: Vec<Vec<f32>> = (0..100)
        .map(|_| {
            (0..args.dim)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect()
        })
        .collect();
    let base = clustered(args.docs, &centres, &mut rng);
    let queries = clustered(args.queries, &centres, &mut rng);
    let truth: Vec<Vec<usize>> = queries.iter().map(|q| exact_top10(&base, q)).collect();
    println!("| store | vectors | durable inserts/s (batches of 100, 8 writers) | durable inserts/s (1 per call, 16 writers) | search QPS (1 thread, k 10) | recall@10 |");
    println!("|---|---|---|---|---|---|");
    let wants = |s: &str| args.only.as_deref().is_none_or(|o| o == s);
    if wants("embedded") {
        let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/target")).unwrap();
        run(
            "embedded",
            &StoreLocation::Embedded(dir.path().join("db")),
            &base,
            &queries,
            &truth,
        );
    }
    if wants("postgres") {
        let url = pg_url(&args.pg);
        run(
            "postgres",
            &StoreLocation::Postgres(url),
            &base,
            &queries,
            &truth,
        );
    }
}
