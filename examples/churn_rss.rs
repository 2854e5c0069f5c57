//! Memory under insert/delete churn at a constant population (the soak's
//! text-document load without HTTP or a model): `--live` documents, then
//! `--ops` operations alternating "insert a new one" and "delete the
//! oldest", with a lexical search every `--search-every` operations (each
//! search commits the lexical index when changes are pending, as in the
//! soak). Prints VmRSS / RssAnon (KiB) and the lexical index's segment count
//! every `--report` operations; with `--trim`, also RssAnon after
//! `malloc_trim(0)` (what glibc keeps free but mapped). `--checkpoint-every
//! N` / `--no-checkpoint`: the automatic index checkpoint (default every
//! 100,000 changes); `--cache-mb M`: sled's page cache (default 1 GiB).
//!
//! ```text
//! cargo run --release --example churn_rss -- --ops 40000            # text docs through Db
//! cargo run --release --example churn_rss -- --ops 40000 --no-text  # vector-only docs
//! cargo run --release --example churn_rss -- --lex-only --ops 40000 # the LexicalIndex alone
//! ```
#![allow(unsafe_code)] // malloc_trim only
use std::error::Error;
use std::path::Path;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tkr_embed::db::{DbOptions, NewDocument};
use tkr_embed::index::lexical::{LexicalIndex, TextUnit};
use tkr_embed::index::GroupBy;
use tkr_embed::types::{l2_normalize, Modality};
use tkr_embed::Db;

type Res<T> = Result<T, Box<dyn Error>>;

fn status(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn segments(dir: &Path) -> usize {
    // Count `.idx` files (one per tantivy segment) anywhere under `dir`.
    fn walk(d: &Path, n: &mut usize) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, n);
                } else if p.extension().is_some_and(|x| x == "idx") {
                    *n += 1;
                }
            }
        }
    }
    let mut n = 0;
    walk(dir, &mut n);
    n
}

fn text(rng: &mut StdRng) -> String {
    (0..rng.random_range(20..80))
        .map(|_| format!("w{}", rng.random_range(0..5000u32)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn unit(rng: &mut StdRng, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    l2_normalize(&mut v).expect("non-zero");
    v
}

fn main() -> Res<()> {
    let mut ops = 40_000usize;
    let mut live = 2_000usize;
    let mut search_every = 8usize;
    let mut report = 5_000usize;
    let mut use_text = true;
    let mut lex_only = false;
    let mut trim = false;
    let mut checkpoint_every: Option<u64> = Some(100_000);
    let mut cache_mb: Option<u64> = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--ops" => ops = value()?.parse()?,
            "--live" => live = value()?.parse()?,
            "--search-every" => search_every = value()?.parse()?,
            "--report" => report = value()?.parse()?,
            "--checkpoint-every" => checkpoint_every = Some(value()?.parse()?),
            "--no-checkpoint" => checkpoint_every = None,
            "--cache-mb" => cache_mb = Some(value()?.parse()?),
            "--no-text" => use_text = false,
            "--lex-only" => lex_only = true,
            "--trim" => trim = true,
            "--bench" => {}
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    let dim = 64;
    let mut rng = StdRng::seed_from_u64(11);
    let tmp = tempfile::tempdir()?;
    let print = |done: usize, started: Instant, dir: &Path| {
        let anon = status("RssAnon:");
        let trimmed = if trim {
            unsafe { libc::malloc_trim(0) };
            format!("  anon_after_trim {:>7}", status("RssAnon:"))
        } else {
            String::new()
        };
        println!(
            "ops {done:>7}  {:>6.1}s  VmRSS {:>7} KiB  RssAnon {anon:>7}{trimmed}  segments {}",
            started.elapsed().as_secs_f64(),
            status("VmRSS:"),
            segments(dir)
        );
    };
    println!(
        "churn_rss: live {live}, ops {ops}, text {use_text}, lex_only {lex_only}, search every {search_every}, checkpoint {checkpoint_every:?}"
    );
    let started = Instant::now();
    if lex_only {
        let (lex, _) = LexicalIndex::open(tmp.path(), &[0; 16])?;
        let mut seq = 0u64;
        for i in 0..live {
            seq += 1;
            lex.upsert(
                &format!("d{i}"),
                seq,
                &[TextUnit {
                    segment: 0,
                    text: text(&mut rng),
                }],
            )?;
        }
        lex.commit(seq)?;
        print(0, started, tmp.path());
        for op in 0..ops {
            seq += 1;
            let n = live + op / 2;
            if op % 2 == 0 {
                lex.upsert(
                    &format!("d{n}"),
                    seq,
                    &[TextUnit {
                        segment: 0,
                        text: text(&mut rng),
                    }],
                )?;
            } else {
                lex.remove(&format!("d{}", n - live), seq);
            }
            if search_every > 0 && op % search_every == 0 {
                lex.search("w1 w2 w3", 10)?;
            }
            if (op + 1) % report == 0 {
                print(op + 1, started, tmp.path());
            }
        }
        return Ok(());
    }
    let mut options = DbOptions::new("churn", dim, "f32");
    options.checkpoint_every_changes = checkpoint_every;
    if let Some(mb) = cache_mb {
        options.cache_bytes = mb << 20;
    }
    let db = Db::open(tmp.path(), options)?;
    db.create_collection("c")?;
    let doc = |rng: &mut StdRng, i: usize| {
        let d = NewDocument::new(Modality::Text, unit(rng, dim)).with_id(format!("d{i}"));
        if use_text {
            d.with_text(text(rng))
        } else {
            d
        }
    };
    for chunk in (0..live).collect::<Vec<_>>().chunks(500) {
        let docs = chunk.iter().map(|&i| doc(&mut rng, i)).collect();
        db.insert_many("c", docs)?;
    }
    print(0, started, tmp.path());
    for op in 0..ops {
        let n = live + op / 2;
        if op % 2 == 0 {
            let d = doc(&mut rng, n);
            db.insert("c", d)?;
        } else {
            db.delete("c", &format!("d{}", n - live))?;
        }
        if search_every > 0 && op % search_every == 0 {
            db.search_lexical("c", "w1 w2 w3", 10, None, GroupBy::Document)?;
        }
        if (op + 1) % report == 0 {
            print(op + 1, started, tmp.path());
        }
    }
    let stats = db.stats()?;
    let c = &stats.collections[0];
    println!(
        "documents {}  index: points {} tombstones {} rebuilds {}  change_log {}",
        c.documents, c.index.points, c.index.tombstones, c.index.rebuilds, stats.change_log_entries
    );
    Ok(())
}
