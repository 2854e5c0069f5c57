//! Lexical and hybrid search benchmark: N text chunks of random words (a
//! Zipf-like vocabulary of 20,000 words, 60 words each) with precomputed
//! random vectors, through the public `Db` API on disk.
//!
//! ```text
//! cargo run --release --example lexical_bench -- --chunks 100000 --queries 1000
//! ```
//! Prints: the lexical index's own indexing rate (chunks/s into tantivy,
//! commit included), the durable insert rate through `Db` (vectors and text:
//! sled, HNSW and tantivy), then single-thread latency p50/p99 and
//! queries/s of vector, lexical and hybrid search with 3-word queries
//! (a query's vector is given, as a cached query embedding would be).
//! Options: `--chunks N`, `--queries Q`, `--dim D` (64), `--k K` (10),
//! `--dir PARENT` (where the temporary databases go).
use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tkr_embed::db::{DbOptions, HybridOptions, NewDocument};
use tkr_embed::index::lexical::{LexicalIndex, TextUnit};
use tkr_embed::index::GroupBy;
use tkr_embed::types::{l2_normalize, Modality};
use tkr_embed::Db;

type Res<T> = Result<T, Box<dyn Error>>;

const WORDS: usize = 20_000;
const WORDS_PER_CHUNK: usize = 60;

struct Args {
    chunks: usize,
    queries: usize,
    dim: usize,
    k: usize,
    dir: PathBuf,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        chunks: 100_000,
        queries: 1000,
        dim: 64,
        k: 10,
        dir: std::env::temp_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--chunks" => a.chunks = value()?.parse()?,
            "--queries" => a.queries = value()?.parse()?,
            "--dim" => a.dim = value()?.parse()?,
            "--k" => a.k = value()?.parse()?,
            "--dir" => a.dir = value()?.into(),
            "--bench" => {}
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(a)
}

/// A word of the vocabulary, rank `r` (0 = most frequent).
fn word(r: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "ve", "xu", "ba", "de", "fo", "gi", "ho",
        "ju",
    ];
    let mut w = String::new();
    let mut n = r + 16;
    while n > 0 {
        w.push_str(SYLLABLES[n % 16]);
        n /= 16;
    }
    w
}

/// A Zipf-like draw: rank ≈ WORDS^u − 1, frequent words far more likely.
fn draw(rng: &mut StdRng) -> usize {
    let u: f64 = rng.random_range(0.0..1.0);
    ((WORDS as f64).powf(u) - 1.0) as usize
}

fn text(rng: &mut StdRng, words: usize) -> String {
    (0..words)
        .map(|_| word(draw(rng)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn unit(rng: &mut StdRng, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    l2_normalize(&mut v).expect("non-zero");
    v
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn timed(name: &str, queries: usize, mut run: impl FnMut(usize)) {
    let mut times = Vec::with_capacity(queries);
    let started = Instant::now();
    for i in 0..queries {
        let t = Instant::now();
        run(i);
        times.push(t.elapsed());
    }
    let total = started.elapsed().as_secs_f64();
    times.sort();
    println!(
        "{name:<8} p50 {:>7.3} ms  p99 {:>7.3} ms  {:>8.0} queries/s",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        queries as f64 / total
    );
}

fn main() -> Res<()> {
    let args = parse_args()?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    println!(
        "lexical_bench: {} chunks of {WORDS_PER_CHUNK} words ({WORDS}-word Zipf vocabulary), dim {}, k {}; {cpu}",
        args.chunks, args.dim, args.k
    );
    let mut rng = StdRng::seed_from_u64(7);
    let texts: Vec<String> = (0..args.chunks)
        .map(|_| text(&mut rng, WORDS_PER_CHUNK))
        .collect();

    // 1. The lexical index alone.
    let dir = tempfile::tempdir_in(&args.dir)?;
    let (lexical, _) = LexicalIndex::open(dir.path(), &[0; 16])?;
    let started = Instant::now();
    for (i, t) in texts.iter().enumerate() {
        let unit = [TextUnit {
            segment: 0,
            text: t.clone(),
        }];
        lexical.upsert(&format!("c{i}"), i as u64 + 1, &unit)?;
    }
    lexical.commit(args.chunks as u64)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "lexical index alone: {} chunks in {secs:.2} s ({:.0} chunks/s, commit included)",
        args.chunks,
        args.chunks as f64 / secs
    );
    drop(lexical);

    // 2. Durable inserts through Db, then searches.
    let dir = tempfile::tempdir_in(&args.dir)?;
    let db = Db::open(dir.path(), DbOptions::new("bench", args.dim, "f32"))?;
    db.create_collection("c")?;
    let vectors: Vec<Vec<f32>> = (0..args.chunks).map(|_| unit(&mut rng, args.dim)).collect();
    let started = Instant::now();
    for (start, chunk) in texts.chunks(1000).enumerate() {
        let docs = chunk
            .iter()
            .enumerate()
            .map(|(j, t)| {
                let i = start * 1000 + j;
                NewDocument::new(Modality::Text, vectors[i].clone())
                    .with_id(format!("c{i}"))
                    .with_text(t.clone())
            })
            .collect();
        db.insert_many("c", docs)?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "Db inserts (batches of 1000; sled + HNSW + tantivy, durable): {:.0} chunks/s",
        args.chunks as f64 / secs
    );
    let queries: Vec<(String, Vec<f32>)> = (0..args.queries)
        .map(|_| (text(&mut rng, 3), unit(&mut rng, args.dim)))
        .collect();
    // The first lexical search commits the pending changes: not timed.
    db.search_lexical("c", "warm", 1, None, GroupBy::Document)?;
    let hybrid = HybridOptions::default();
    let k = args.k;
    timed("vector", args.queries, |i| {
        db.search("c", &queries[i].1, k, None).expect("search");
    });
    timed("lexical", args.queries, |i| {
        db.search_lexical("c", &queries[i].0, k, None, GroupBy::Document)
            .expect("search");
    });
    timed("hybrid", args.queries, |i| {
        let (text, vector) = &queries[i];
        db.search_hybrid("c", vector, text, k, None, &hybrid, GroupBy::Document)
            .expect("search");
    });
    Ok(())
}
