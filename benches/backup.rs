//! Backup and restore figures: size and time of a backup of N documents,
//! idle and while a writer runs (with that writer's worst latency with and
//! without a backup, and how long the snapshot's start held writers off),
//! and the restore (which rebuilds the indexes).
//! Run: `cargo bench --bench backup` (TKR_BENCH_DOCS, TKR_BENCH_DIM).
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tkr_embed::db::backup;
use tkr_embed::db::{Content, Db, DbOptions, NewDocument};
use tkr_embed::types::Modality;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A deterministic pseudo-random vector.
fn vector(dim: usize, seed: u64) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..dim)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

fn doc(i: usize, version: u64, dim: usize) -> NewDocument {
    let mut d = NewDocument::new(Modality::Text, vector(dim, i as u64 * 1000 + version))
        .with_id(format!("d{i}"))
        .with_text(format!("document {i} version {version}"))
        .with_metadata(serde_json::json!({"i": i, "v": version}));
    // One in twenty has 20 KB of content of its own.
    if i.is_multiple_of(20) {
        d = d.with_content(Content::Bytes {
            data: (0..20_000).map(|b| (b as u64 ^ i as u64) as u8).collect(),
            content_type: "application/octet-stream".into(),
        });
    }
    d
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                dir_size(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}

/// Single-document upserts until `stop`; returns the worst latency and count.
fn write_until(db: &Db, n: usize, dim: usize, stop: &AtomicBool) -> (Duration, usize) {
    let mut worst = Duration::ZERO;
    let mut count = 0;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        db.insert("c", doc(count * 7919 % n, 1 + count as u64, dim))
            .unwrap();
        worst = worst.max(started.elapsed());
        count += 1;
    }
    (worst, count)
}

fn main() {
    let n = env("TKR_BENCH_DOCS", 20_000);
    let dim = env("TKR_BENCH_DIM", 512);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("db");
    let mut options = DbOptions::new("bench-model", dim, "f32");
    options.checkpoint_every_changes = None;
    let db = Db::open(&data, options).unwrap();
    db.create_collection("c").unwrap();
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        db.insert_many("c", chunk.iter().map(|&i| doc(i, 0, dim)).collect())
            .unwrap();
    }
    db.checkpoint().unwrap();
    println!(
        "{n} documents of dimension {dim} loaded in {:.1}s; data dir {:.1} MB",
        started.elapsed().as_secs_f64(),
        dir_size(&data) as f64 / 1e6
    );

    let report = db.backup(&tmp.path().join("idle")).unwrap();
    let secs = report.elapsed.as_secs_f64();
    println!(
        "backup, idle:          {:.2}s, {:.1} MB ({:.0} MB/s), snapshot start {:?}",
        secs,
        report.bytes as f64 / 1e6,
        report.bytes as f64 / 1e6 / secs,
        report.start_pause
    );

    // A writer alone for as long as a backup takes, then during one.
    let stop = AtomicBool::new(false);
    let (alone, alone_count) = std::thread::scope(|s| {
        let w = s.spawn(|| write_until(&db, n, dim, &stop));
        std::thread::sleep(report.elapsed.max(Duration::from_millis(500)));
        stop.store(true, Ordering::Relaxed);
        w.join().unwrap()
    });
    stop.store(false, Ordering::Relaxed);
    let (busy, (during, during_count)) = std::thread::scope(|s| {
        let w = s.spawn(|| write_until(&db, n, dim, &stop));
        std::thread::sleep(Duration::from_millis(50));
        let r = db.backup(&tmp.path().join("busy")).unwrap();
        stop.store(true, Ordering::Relaxed);
        (r, w.join().unwrap())
    });
    println!(
        "backup, with a writer: {:.2}s, {} pre-images, snapshot start {:?}",
        busy.elapsed.as_secs_f64(),
        busy.pre_images,
        busy.start_pause
    );
    println!(
        "writer: worst latency {:?} alone ({alone_count} writes), {:?} during the backup ({during_count} writes)",
        alone, during
    );

    let started = Instant::now();
    let restored = backup::restore(&tmp.path().join("busy"), &tmp.path().join("restored")).unwrap();
    println!(
        "restore (store load + checks + index rebuild + checkpoint): {:.2}s, {} documents",
        started.elapsed().as_secs_f64(),
        restored.documents
    );
}
