//! Durable-insert benchmark: precomputed vectors through the public
//! [`Db`] API by 1, 8, 64 … concurrent writer threads, one document per
//! call (`insert`) or batches (`insert_many`), printing inserts/s.
//!
//! ```text
//! cargo run --release --example insert_bench -- --base B.fvecs --writers 1,8,64 --batch 1,100
//! cargo run --release --example insert_bench -- --synthetic 20000 --dim 256 --metadata --json
//! ```
//! Options: `--docs 20000` (documents per configuration; the first N of the
//! file), `--writers 1,8,64`, `--batch 1,100` (1 = `insert`, B > 1 =
//! `insert_many` with B documents per call), `--metadata` (a small object
//! per document: `{"i": n, "tag": "a".."d"}`), `--dir PARENT` (where each
//! configuration's fresh database is made and removed afterwards; default
//! the system temp dir: use real disk, a tmpfs makes fsync free; the file
//! system is printed), `--dim 256` (synthetic only), `--json` (one JSON line
//! per configuration on stdout instead of the table).
//!
//! Acknowledged = durable. `insert` and `insert_many` return only after
//! their sled transaction is on disk: `Db::write_prepared`
//! (src/db/write.rs) commits the transaction, then calls `Store::flush`
//! (src/store/mod.rs), a group commit that returns once a `sled::Db::flush`
//! (write-out plus fsync) that *started after* the commit has finished, and
//! only then updates the index and returns. So each timed call below ends
//! with its documents flushed; concurrent writers share fsyncs, counted by
//! `Db::flush_count` ("fsyncs" in the table). Each configuration starts from
//! an empty database; documents have explicit ids (`doc-N`), no text and no
//! content. The time runs from all writers starting to the last one's last
//! acknowledgement; closing the database (index checkpoint) is timed apart.
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use tkr_embed::db::{DbOptions, NewDocument};
use tkr_embed::types::Modality;
use tkr_embed::Db;

type Res<T> = Result<T, Box<dyn Error>>;

const COLLECTION: &str = "bench";

struct Args {
    base: Option<PathBuf>,
    synthetic: Option<usize>,
    dim: usize,
    docs: usize,
    writers: Vec<usize>,
    batches: Vec<usize>,
    metadata: bool,
    dir: PathBuf,
    json: bool,
}

fn list(s: &str) -> Res<Vec<usize>> {
    let v = s
        .split(',')
        .map(|x| x.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()?;
    if v.contains(&0) {
        return Err(format!("0 in {s:?}").into());
    }
    Ok(v)
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        base: None,
        synthetic: None,
        dim: 256,
        docs: 20_000,
        writers: vec![1, 8, 64],
        batches: vec![1, 100],
        metadata: false,
        dir: std::env::temp_dir(),
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--base" => a.base = Some(value()?.into()),
            "--synthetic" => a.synthetic = Some(value()?.parse()?),
            "--dim" => a.dim = value()?.parse()?,
            "--docs" => a.docs = value()?.parse()?,
            "--writers" => a.writers = list(&value()?)?,
            "--batch" => a.batches = list(&value()?)?,
            "--metadata" => a.metadata = true,
            "--dir" => a.dir = value()?.into(),
            "--json" => a.json = true,
            "-h" | "--help" => {
                println!("see the header of examples/insert_bench.rs");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if a.base.is_some() == a.synthetic.is_some() {
        return Err("give exactly one of --base PATH and --synthetic N".into());
    }
    Ok(a)
}

/// The first `limit` vectors of an `.fvecs` file (per vector an i32 LE
/// dimension, then that many f32 LE); all must have the same dimension.
fn read_fvecs(path: &Path, limit: usize) -> Res<Vec<Vec<f32>>> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let word = |at: usize| -> Option<[u8; 4]> { bytes.get(at..at + 4)?.try_into().ok() };
    let dim = word(0).map(i32::from_le_bytes).unwrap_or(0);
    if dim <= 0 || dim > 1 << 20 {
        return Err(format!("{}: bad dimension {dim}", path.display()).into());
    }
    let record = 4 + 4 * dim as usize;
    if bytes.len() % record != 0 {
        return Err(format!("{}: not a whole number of {dim}-d vectors", path.display()).into());
    }
    bytes
        .chunks_exact(record)
        .take(limit)
        .map(|r| {
            if r[..4] != dim.to_le_bytes() {
                return Err(format!("{}: mixed dimensions", path.display()).into());
            }
            Ok(r[4..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        })
        .collect()
}

/// Uniform random vectors (the database normalises them on insert).
fn synthetic(n: usize, dim: usize) -> Vec<Vec<f32>> {
    let mut rng = StdRng::seed_from_u64(20250611);
    (0..n)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect()
}

/// File system type and device of the mount holding `dir` (Linux), to show
/// that the benchmark ran on a disk and not on a tmpfs.
fn file_system(dir: &Path) -> String {
    let Ok(dir) = dir.canonicalize() else {
        return "unknown".into();
    };
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && dir.starts_with(f[1]))
                .then(|| (f[1].len(), format!("{} ({})", f[2], f[0])))
        })
        .max()
        .map_or_else(|| "unknown".into(), |(_, s)| s)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

struct Outcome {
    writers: usize,
    batch: usize,
    docs: usize,
    secs: f64,
    fsyncs: u64,
    p50_ms: f64,
    p99_ms: f64,
    close_secs: f64,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.docs as f64 / self.secs
    }

    fn docs_per_fsync(&self) -> f64 {
        self.docs as f64 / self.fsyncs.max(1) as f64
    }
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// One configuration on a fresh database under `parent`.
fn run(args: &Args, vectors: &[Vec<f32>], writers: usize, batch: usize) -> Res<Outcome> {
    let dim = vectors[0].len();
    let tmp = tempfile::Builder::new()
        .prefix("insert-bench-")
        .tempdir_in(&args.dir)?;
    let db = Db::open(tmp.path(), DbOptions::new("insert-bench", dim, "f32"))?;
    db.create_collection(COLLECTION)?;

    // Documents built before the clock starts; writer w gets the w-th
    // contiguous share, split into calls of `batch`.
    let mut shares: Vec<Vec<NewDocument>> = (0..writers).map(|_| Vec::new()).collect();
    let per_writer = vectors.len().div_ceil(writers);
    for (n, v) in vectors.iter().enumerate() {
        let mut doc = NewDocument::new(Modality::Text, v.clone()).with_id(format!("doc-{n}"));
        if args.metadata {
            let tag = ["a", "b", "c", "d"][n % 4];
            doc = doc.with_metadata(json!({"i": n, "tag": tag}));
        }
        shares[n / per_writer].push(doc);
    }

    let fsyncs_before = db.flush_count();
    let start = Barrier::new(writers + 1);
    let (secs, latencies) = std::thread::scope(|s| -> Res<(f64, Vec<Duration>)> {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|mut share| {
                let (db, start) = (&db, &start);
                s.spawn(move || -> Result<Vec<Duration>, String> {
                    let mut calls = Vec::with_capacity(share.len().div_ceil(batch));
                    start.wait();
                    while !share.is_empty() {
                        let rest = share.split_off(share.len().min(batch));
                        let call = std::mem::replace(&mut share, rest);
                        let t = Instant::now();
                        if batch == 1 {
                            let doc = call.into_iter().next().expect("one document");
                            db.insert(COLLECTION, doc).map_err(|e| e.to_string())?;
                        } else {
                            db.insert_many(COLLECTION, call)
                                .map_err(|e| e.to_string())?;
                        }
                        calls.push(t.elapsed());
                    }
                    Ok(calls)
                })
            })
            .collect();
        start.wait();
        let t = Instant::now();
        let mut latencies = Vec::new();
        for h in handles {
            latencies.extend(h.join().map_err(|_| "a writer panicked")??);
        }
        Ok((t.elapsed().as_secs_f64(), latencies))
    })?;
    let fsyncs = db.flush_count() - fsyncs_before;

    let stored = db.stats()?.documents as usize;
    if stored != vectors.len() {
        return Err(format!("{stored} documents stored, {} inserted", vectors.len()).into());
    }
    let t = Instant::now();
    db.close()?;
    let close_secs = t.elapsed().as_secs_f64();
    drop(tmp);

    let mut latencies = latencies;
    latencies.sort_unstable();
    Ok(Outcome {
        writers,
        batch,
        docs: vectors.len(),
        secs,
        fsyncs,
        p50_ms: percentile_ms(&latencies, 0.5),
        p99_ms: percentile_ms(&latencies, 0.99),
        close_secs,
    })
}

fn main() -> Res<()> {
    let args = parse_args()?;
    let (vectors, source) = match (&args.base, args.synthetic) {
        (Some(path), _) => (read_fvecs(path, args.docs)?, path.display().to_string()),
        (None, Some(n)) => (
            synthetic(n.min(args.docs), args.dim),
            "synthetic uniform, seed 20250611".to_owned(),
        ),
        (None, None) => unreachable!("checked in parse_args"),
    };
    if vectors.is_empty() {
        return Err("no vectors".into());
    }
    std::fs::create_dir_all(&args.dir)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!(
        "insert_bench: {} docs x {} ({source}), metadata {}; dir {} on {}; {} ({threads} threads)",
        vectors.len(),
        vectors[0].len(),
        if args.metadata { "yes" } else { "no" },
        args.dir.display(),
        file_system(&args.dir),
        cpu_model(),
    );
    if !args.json {
        println!(
            "{:>7} {:>6} {:>7} {:>8} {:>10} {:>7} {:>10} {:>9} {:>9}",
            "writers",
            "batch",
            "docs",
            "seconds",
            "inserts/s",
            "fsyncs",
            "docs/fsync",
            "p50 ms",
            "p99 ms"
        );
    }
    for &batch in &args.batches {
        for &writers in &args.writers {
            let o = run(&args, &vectors, writers, batch)?;
            if args.json {
                println!(
                    "{}",
                    json!({
                        "bench": "insert", "writers": o.writers, "batch": o.batch,
                        "docs": o.docs, "dim": vectors[0].len(), "metadata": args.metadata,
                        "seconds": o.secs, "inserts_per_s": o.rate(), "fsyncs": o.fsyncs,
                        "docs_per_fsync": o.docs_per_fsync(), "p50_ms": o.p50_ms,
                        "p99_ms": o.p99_ms, "close_seconds": o.close_secs,
                        "source": source, "cpu": cpu_model(), "threads": threads,
                    })
                );
            } else {
                println!(
                    "{:>7} {:>6} {:>7} {:>8.2} {:>10.0} {:>7} {:>10.1} {:>9.2} {:>9.2}",
                    o.writers,
                    o.batch,
                    o.docs,
                    o.secs,
                    o.rate(),
                    o.fsyncs,
                    o.docs_per_fsync(),
                    o.p50_ms,
                    o.p99_ms
                );
            }
        }
    }
    Ok(())
}
