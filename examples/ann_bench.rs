//! ANN benchmark of the index layer: build time, recall@k and single-thread
//! queries/s for several `ef`, plus checkpoint write and reload times.
//!
//! ```text
//! cargo run --release --example ann_bench -- --base B.fvecs --query Q.fvecs --gt G.ivecs --ef 16,32,64,128
//! cargo run --release --example ann_bench -- --synthetic 100000 --dim 128 --ef 16,32,64,128
//! ```
//! Options: `--k 10`, `--m 16`, `--ef-construction 200`, `--queries 1000`
//! (synthetic query count, or a cap on the query file), `--clusters 100`,
//! `--filter-buckets B`: every document gets `{"bucket": i % B}` and the
//! queries run again with the filter `bucket = 0` (selectivity 1/B), scored
//! against a filtered brute force; `--no-checkpoint` skips the checkpoint
//! round trip; `--vectors int8` builds a compressed index (int8 codes in the
//! graph) whose candidates, `--rescore F` per result (default 2), are
//! rescored with float32 vectors read from a sled tree on disk, as the
//! database reads them from its store (one `get` and a decode per
//! candidate).
//!
//! The index compares L2-normalised vectors by cosine similarity. With
//! `--gt`, the ground truth must be for that metric (angular data sets such
//! as GloVe); without `--gt` it is computed exactly here by brute force.
use std::error::Error;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tkr_embed::index::{CollectionIndex, Filter, GroupBy, IndexDoc, IndexParams};
use tkr_embed::types::{dot, l2_normalize, Modality, VectorEncoding};

type Res<T> = Result<T, Box<dyn Error>>;

struct Args {
    base: Option<PathBuf>,
    query: Option<PathBuf>,
    gt: Option<PathBuf>,
    synthetic: Option<usize>,
    dim: usize,
    clusters: usize,
    queries: usize,
    efs: Vec<usize>,
    k: usize,
    m: usize,
    ef_construction: usize,
    filter_buckets: usize,
    checkpoint: bool,
    vectors: VectorEncoding,
    rescore: usize,
}

/// Where the exact vectors of a compressed index come from: a sled tree
/// keyed by document id holding little-endian float32 values, like the
/// store's `vectors` tree. `None` for float32 indexes.
struct ExactVectors(Option<(tempfile::TempDir, sled::Tree)>);

impl ExactVectors {
    fn new(encoding: VectorEncoding, base: &[Vec<f32>]) -> Res<ExactVectors> {
        if !encoding.is_compressed() {
            return Ok(ExactVectors(None));
        }
        let dir = tempfile::tempdir()?;
        let tree = sled::open(dir.path())?.open_tree("vectors")?;
        for (i, v) in base.iter().enumerate() {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            tree.insert(i.to_string().as_bytes(), bytes)?;
        }
        tree.flush()?;
        Ok(ExactVectors(Some((dir, tree))))
    }

    fn get(&self, doc: &str) -> Result<Option<Vec<f32>>, sled::Error> {
        let Some((_, tree)) = &self.0 else {
            return Ok(None);
        };
        Ok(tree.get(doc.as_bytes())?.map(|bytes| {
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        }))
    }
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        base: None,
        query: None,
        gt: None,
        synthetic: None,
        dim: 128,
        clusters: 100,
        queries: 1000,
        efs: vec![16, 32, 64, 128],
        k: 10,
        m: 16,
        ef_construction: IndexParams::default().ef_construction,
        filter_buckets: 0,
        checkpoint: true,
        vectors: VectorEncoding::F32,
        rescore: IndexParams::default().rescore_factor,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--base" => a.base = Some(value()?.into()),
            "--query" => a.query = Some(value()?.into()),
            "--gt" => a.gt = Some(value()?.into()),
            "--synthetic" => a.synthetic = Some(value()?.parse()?),
            "--dim" => a.dim = value()?.parse()?,
            "--clusters" => a.clusters = value()?.parse()?,
            "--queries" => a.queries = value()?.parse()?,
            "--k" => a.k = value()?.parse()?,
            "--m" => a.m = value()?.parse()?,
            "--ef-construction" => a.ef_construction = value()?.parse()?,
            "--filter-buckets" => a.filter_buckets = value()?.parse()?,
            "--no-checkpoint" => a.checkpoint = false,
            "--vectors" => a.vectors = value()?.parse()?,
            "--rescore" => a.rescore = value()?.parse()?,
            "--ef" => {
                a.efs = value()?
                    .split(',')
                    .map(|s| s.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "-h" | "--help" => {
                println!("see the header of examples/ann_bench.rs");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if a.synthetic.is_none() && (a.base.is_none() || a.query.is_none()) {
        return Err("give --base and --query (and --gt), or --synthetic N".into());
    }
    Ok(a)
}

/// Reads `.fvecs` (or `.ivecs` with `T = i32`): per vector an i32 LE
/// dimension, then that many 4-byte LE values.
fn read_vecs<T>(path: &PathBuf, limit: usize, parse: fn([u8; 4]) -> T) -> Res<Vec<Vec<T>>> {
    let mut r = BufReader::new(File::open(path).map_err(|e| format!("{}: {e}", path.display()))?);
    let mut out = Vec::new();
    let mut word = [0u8; 4];
    while out.len() < limit {
        match r.read_exact(&mut word) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
        let d = i32::from_le_bytes(word);
        if d <= 0 || d > 1 << 20 {
            return Err(format!("{}: bad dimension {d}", path.display()).into());
        }
        let mut v = Vec::with_capacity(d as usize);
        for _ in 0..d {
            r.read_exact(&mut word)?;
            v.push(parse(word));
        }
        out.push(v);
    }
    Ok(out)
}

fn normalize_all(vs: &mut [Vec<f32>]) -> usize {
    let mut off_unit = 0;
    for v in vs.iter_mut() {
        let n: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if (n - 1.0).abs() > 1e-3 {
            off_unit += 1;
        }
        if l2_normalize(v).is_err() {
            v.iter_mut().for_each(|x| *x = 0.0);
            v[0] = 1.0;
        }
    }
    off_unit
}

fn clustered(n: usize, clusters: usize, rng: &mut StdRng, centres: &[Vec<f32>]) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| {
            let c = &centres[rng.random_range(0..clusters)];
            let mut v: Vec<f32> = c
                .iter()
                .map(|x| x + rng.random_range(-0.35f32..0.35))
                .collect();
            l2_normalize(&mut v).expect("non-zero");
            v
        })
        .collect()
}

fn exact_gt(base: &[Vec<f32>], queries: &[Vec<f32>], k: usize) -> Vec<Vec<usize>> {
    queries
        .iter()
        .map(|q| {
            let mut s: Vec<(usize, f32)> = base
                .iter()
                .enumerate()
                .map(|(i, v)| (i, dot(q, v)))
                .collect();
            let k = k.min(s.len());
            s.select_nth_unstable_by(k.saturating_sub(1), |a, b| b.1.total_cmp(&a.1));
            s.truncate(k);
            s.sort_by(|a, b| b.1.total_cmp(&a.1));
            s.into_iter().map(|(i, _)| i).collect()
        })
        .collect()
}

fn top_ids(
    index: &CollectionIndex,
    exact: &ExactVectors,
    q: &[f32],
    k: usize,
    ef: usize,
) -> Vec<usize> {
    index
        .search_ef(q, k, None, None, GroupBy::Document, ef, |doc| {
            exact.get(doc)
        })
        .expect("reading exact vectors")
        .iter()
        .map(|h| h.doc.parse().unwrap_or(usize::MAX))
        .collect()
}

fn main() -> Res<()> {
    let args = parse_args()?;
    let t = Instant::now();
    let (base, queries, gt) = if let Some(n) = args.synthetic {
        let mut rng = StdRng::seed_from_u64(20240601);
        let centres: Vec<Vec<f32>> = (0..args.clusters)
            .map(|_| {
                (0..args.dim)
                    .map(|_| rng.random_range(-1.0f32..1.0))
                    .collect()
            })
            .collect();
        let base = clustered(n, args.clusters, &mut rng, &centres);
        let queries = clustered(args.queries, args.clusters, &mut rng, &centres);
        let gt = exact_gt(&base, &queries, args.k);
        println!(
            "synthetic: {n} x {} in {} clusters, {} queries, exact ground truth ({:.1?})",
            args.dim,
            args.clusters,
            queries.len(),
            t.elapsed()
        );
        (base, queries, gt)
    } else {
        let mut base = read_vecs(args.base.as_ref().unwrap(), usize::MAX, f32::from_le_bytes)?;
        let mut queries = read_vecs(
            args.query.as_ref().unwrap(),
            args.queries,
            f32::from_le_bytes,
        )?;
        let off = normalize_all(&mut base) + normalize_all(&mut queries);
        let gt = match &args.gt {
            Some(p) => {
                if off > 0 {
                    eprintln!(
                        "warning: {off} vectors were not unit length; the index uses cosine, so the file's ground truth is only right for angular data"
                    );
                }
                read_vecs(p, queries.len(), i32::from_le_bytes)?
                    .into_iter()
                    .map(|row| row.into_iter().map(|i| i as usize).collect())
                    .collect()
            }
            None => exact_gt(&base, &queries, args.k),
        };
        println!(
            "loaded {} base and {} query vectors of dim {} ({:.1?})",
            base.len(),
            queries.len(),
            base[0].len(),
            t.elapsed()
        );
        (base, queries, gt)
    };
    let dim = base[0].len();
    let params = IndexParams {
        max_connections: args.m,
        ef_construction: args.ef_construction,
        encoding: args.vectors,
        rescore_factor: args.rescore,
        ..IndexParams::default()
    };
    println!(
        "M = {}, ef_construction = {}, k = {}, threads = {}, vectors {}{}",
        args.m,
        args.ef_construction,
        args.k,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        args.vectors,
        match args.vectors.is_compressed() {
            true => format!(
                " ({} candidates per result rescored from sled)",
                args.rescore
            ),
            false => String::new(),
        }
    );
    let exact = ExactVectors::new(args.vectors, &base)?;

    let bucket_of = |i: usize| i % args.filter_buckets.max(1);
    let buckets: Vec<Arc<serde_json::Map<String, serde_json::Value>>> =
        (0..args.filter_buckets.max(1))
            .map(|b| match args.filter_buckets {
                0 => Arc::new(serde_json::Map::new()),
                _ => Arc::new(
                    serde_json::json!({ "bucket": b })
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
            })
            .collect();
    let docs: Vec<IndexDoc> = base
        .iter()
        .enumerate()
        .map(|(i, v)| IndexDoc {
            id: i.to_string(),
            seq: i as u64 + 1,
            modality: Modality::Text,
            metadata: buckets[bucket_of(i)].clone(),
            vectors: v.clone(),
            text_units: Vec::new(),
        })
        .collect();
    let index = CollectionIndex::new(1, "bench", dim, params.clone());
    let t = Instant::now();
    for chunk in docs.chunks(10_000) {
        index.upsert(chunk);
    }
    let build = t.elapsed();
    println!(
        "build: {} vectors in {:.2?} ({:.0} vectors/s, parallel insert)",
        base.len(),
        build,
        base.len() as f64 / build.as_secs_f64()
    );
    drop(docs);
    let memory = index.memory_bytes();
    let vector_bytes = match args.vectors {
        VectorEncoding::F32 => 4 * dim,
        VectorEncoding::Int8 => dim + 4,
    };
    println!(
        "memory: {:.1} MiB in the graph ({:.0} bytes per vector: {vector_bytes} of vector data, the rest links and bookkeeping)",
        memory as f64 / (1 << 20) as f64,
        memory as f64 / base.len() as f64,
    );

    println!(
        "{:>6} {:>10} {:>12} {:>10}",
        "ef", "recall@k", "queries/s", "ms/query"
    );
    let mut results_at_64 = Vec::new();
    for &ef in &args.efs {
        let t = Instant::now();
        let mut hit = 0usize;
        let mut total = 0usize;
        for (q, truth) in queries.iter().zip(&gt) {
            let found = top_ids(&index, &exact, q, args.k, ef);
            let truth = &truth[..args.k.min(truth.len())];
            hit += truth.iter().filter(|i| found.contains(i)).count();
            total += truth.len();
            if ef == 64 {
                results_at_64.push(found);
            }
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{ef:>6} {:>10.4} {:>12.0} {:>10.3}",
            hit as f64 / total.max(1) as f64,
            queries.len() as f64 / secs,
            secs * 1000.0 / queries.len() as f64
        );
    }

    if args.filter_buckets > 0 {
        filtered_queries(&args, &index, &exact, &base, &queries, bucket_of)?;
    }
    if !args.checkpoint {
        return Ok(());
    }

    // Checkpoint write and reload, as on close and open.
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    index.checkpoint(dir.path(), [7; 16], base.len() as u64)?;
    let write = t.elapsed();
    let size: u64 = std::fs::read_dir(dir.path())?
        .map(|e| {
            e.map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .unwrap_or(0)
        })
        .sum();
    let t = Instant::now();
    let (reloaded, _) = CollectionIndex::load(dir.path(), &[7; 16], 1, "bench", dim, params)?
        .ok_or("checkpoint missing")?;
    let reload = t.elapsed();
    let same = if results_at_64.is_empty() {
        true
    } else {
        queries
            .iter()
            .zip(&results_at_64)
            .all(|(q, before)| top_ids(&reloaded, &exact, q, args.k, 64) == *before)
    };
    println!(
        "checkpoint: write {write:.2?}, {:.1} MiB; reload {reload:.2?} (vs {build:.2?} to rebuild); same results after reload: {same}",
        size as f64 / (1 << 20) as f64
    );
    Ok(())
}

/// Queries with the filter `bucket = 0` against a brute force over the
/// matching documents; prints recall, queries/s and the path taken.
fn filtered_queries(
    args: &Args,
    index: &CollectionIndex,
    exact: &ExactVectors,
    base: &[Vec<f32>],
    queries: &[Vec<f32>],
    bucket_of: impl Fn(usize) -> usize,
) -> Res<()> {
    let filter = Filter::from_json(&serde_json::json!({"field": "bucket", "eq": 0}))?;
    let matching: Vec<usize> = (0..base.len()).filter(|&i| bucket_of(i) == 0).collect();
    let subset: Vec<Vec<f32>> = matching.iter().map(|&i| base[i].clone()).collect();
    let truth: Vec<Vec<usize>> = exact_gt(&subset, queries, args.k)
        .into_iter()
        .map(|row| row.into_iter().map(|j| matching[j]).collect())
        .collect();
    let before = index.stats();
    let t = Instant::now();
    let (mut hit, mut total) = (0usize, 0usize);
    for (q, truth) in queries.iter().zip(&truth) {
        let found: Vec<usize> = index
            .search(q, args.k, Some(&filter), None, GroupBy::Document, |doc| {
                exact.get(doc)
            })?
            .iter()
            .map(|h| h.doc.parse().unwrap_or(usize::MAX))
            .collect();
        hit += truth.iter().filter(|i| found.contains(i)).count();
        total += truth.len();
    }
    let secs = t.elapsed().as_secs_f64();
    let after = index.stats();
    println!(
        "filtered (bucket = 0: {} of {} documents, {:.2} %): recall@k {:.4}, {:.0} queries/s, {:.3} ms/query; {} exact scans, {} graph walks",
        matching.len(),
        base.len(),
        100.0 * matching.len() as f64 / base.len() as f64,
        hit as f64 / total.max(1) as f64,
        queries.len() as f64 / secs,
        secs * 1000.0 / queries.len() as f64,
        after.exact_searches - before.exact_searches,
        after.filtered_graph_searches - before.filtered_graph_searches
    );
    Ok(())
}
