//! Reopen, checkpoints (good, corrupt, stale, missing) and model checks.
use std::fs;
use std::path::{Path, PathBuf};

use tkr_embed::db::{Db, DbError, DbOptions};

use crate::db_common::{
    brute_force, clustered, doc_id, load, new_doc, open, options, random_unit, MODEL,
};

const DIM: usize = 24;

fn results(db: &Db, queries: &[Vec<f32>]) -> Vec<Vec<(String, f32)>> {
    queries
        .iter()
        .map(|q| {
            db.search("c", q, 10, None)
                .unwrap()
                .into_iter()
                .map(|h| (h.id, h.score))
                .collect()
        })
        .collect()
}

/// The vector index's checkpoint files (not the lexical index's directory).
fn checkpoint_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("index"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn manifest(dir: &Path) -> PathBuf {
    dir.join("index").join("c1.ckpt")
}

fn graph_file(dir: &Path) -> PathBuf {
    checkpoint_files(dir)
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".graph"))
        .expect("graph file")
}

/// Every document is found by its own vector and the index matches the store.
fn assert_consistent(db: &Db, data: &[Vec<f32>]) {
    for (i, v) in data.iter().enumerate() {
        let hits = db.search("c", v, 1, None).unwrap();
        assert_eq!(
            hits[0].id,
            doc_id(i),
            "doc {i} not top-1 for its own vector"
        );
    }
    let stats = db.stats().unwrap();
    assert_eq!(stats.collections[0].documents as usize, data.len());
    assert_eq!(stats.collections[0].index.documents, data.len());
}

#[test]
fn reopen_gives_the_same_results() {
    let data = clustered(2000, DIM, 20, 5);
    let queries = clustered(30, DIM, 20, 6);
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let db = open(dir.path(), DIM);
        db.create_collection("c").unwrap();
        load(&db, "c", &data, 1000);
        db.delete("c", &doc_id(3)).unwrap();
        results(&db, &queries)
    };
    let db = open(dir.path(), DIM);
    let index = db.stats().unwrap().collections[0].index.clone();
    assert!(index.loaded_from_checkpoint, "{index:?}");
    assert_eq!(index.replayed_on_open, 0);
    assert_eq!(results(&db, &queries), before);
    // The change log is trimmed behind the checkpoint.
    assert_eq!(db.stats().unwrap().change_log_entries, 0);
}

#[test]
fn catch_up_from_the_change_log() {
    let mut data = clustered(1500, DIM, 20, 8);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(DIM);
    opts.checkpoint_on_close = false;
    {
        let db = Db::open(dir.path(), opts.clone()).unwrap();
        db.create_collection("c").unwrap();
        load(&db, "c", &data[..1000], 500);
        db.checkpoint().unwrap();
        // After the checkpoint: inserts, replacements and deletes that only
        // the change log knows about (no checkpoint on close).
        let docs = (1000..1500).map(|i| new_doc(i, &data[i])).collect();
        db.insert_many("c", docs).unwrap();
        for (i, v) in data.iter_mut().enumerate().take(50) {
            *v = random_unit(DIM, 500 + i as u64);
            db.insert("c", new_doc(i, v)).unwrap();
        }
        for i in 1400..1500 {
            db.delete("c", &doc_id(i)).unwrap();
        }
    }
    data.truncate(1400);
    let db = Db::open(dir.path(), opts).unwrap();
    let index = db.stats().unwrap().collections[0].index.clone();
    assert!(index.loaded_from_checkpoint, "{index:?}");
    assert_eq!(index.replayed_on_open, 500 + 50, "{index:?}");
    assert_consistent(&db, &data);
    let everything = db.search("c", &random_unit(DIM, 1), 2000, None).unwrap();
    assert_eq!(everything.len(), 1400);
    assert!(everything
        .iter()
        .all(|h| crate::db_common::id_index(&h.id) < 1400));
}

#[test]
fn bad_checkpoints_lead_to_a_rebuild() {
    let data = clustered(800, DIM, 10, 9);
    let queries = clustered(10, DIM, 10, 10);
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let db = open(dir.path(), DIM);
        db.create_collection("c").unwrap();
        load(&db, "c", &data, 800);
        results(&db, &queries)
    };
    let truth: Vec<Vec<String>> = queries
        .iter()
        .map(|q| {
            brute_force(&data, q, 10, |_| true)
                .into_iter()
                .map(doc_id)
                .collect()
        })
        .collect();
    type Damage = Box<dyn Fn(&Path)>;
    let damages: Vec<(&str, Damage)> = vec![
        (
            "truncated manifest",
            Box::new(|d| {
                let b = fs::read(manifest(d)).unwrap();
                fs::write(manifest(d), &b[..b.len() / 2]).unwrap();
            }),
        ),
        (
            "garbage manifest",
            Box::new(|d| fs::write(manifest(d), b"\x00garbage\xff".repeat(100)).unwrap()),
        ),
        (
            "flipped byte in the manifest payload",
            Box::new(|d| {
                let mut b = fs::read(manifest(d)).unwrap();
                let n = b.len();
                b[n - 3] ^= 0x55;
                fs::write(manifest(d), b).unwrap();
            }),
        ),
        (
            "truncated graph",
            Box::new(|d| {
                let p = graph_file(d);
                let b = fs::read(&p).unwrap();
                fs::write(&p, &b[..b.len() - 100]).unwrap();
            }),
        ),
        (
            "flipped byte in the graph",
            Box::new(|d| {
                let p = graph_file(d);
                let mut b = fs::read(&p).unwrap();
                b[60] ^= 0x10;
                fs::write(&p, b).unwrap();
            }),
        ),
        (
            "missing manifest",
            Box::new(|d| fs::remove_file(manifest(d)).unwrap()),
        ),
        (
            "empty manifest",
            Box::new(|d| fs::write(manifest(d), b"").unwrap()),
        ),
    ];
    for (what, damage) in damages {
        damage(dir.path());
        let db = open(dir.path(), DIM);
        let index = db.stats().unwrap().collections[0].index.clone();
        assert!(!index.loaded_from_checkpoint, "{what}: {index:?}");
        let after = results(&db, &queries);
        let mut total = 0.0;
        for (a, t) in after.iter().zip(&truth) {
            let found: Vec<String> = a.iter().map(|(id, _)| id.clone()).collect();
            total += t.iter().filter(|id| found.contains(id)).count() as f64 / 10.0;
        }
        assert!(total / truth.len() as f64 >= 0.95, "{what}");
        assert_consistent(&db, &data);
        drop(db);
        // The rebuild was checkpointed: the next open loads it.
        let db = open(dir.path(), DIM);
        assert!(
            db.stats().unwrap().collections[0]
                .index
                .loaded_from_checkpoint,
            "{what}"
        );
        assert_eq!(results(&db, &queries).len(), before.len());
    }
}

#[test]
fn stale_checkpoint_is_not_trusted() {
    let data = clustered(600, DIM, 10, 12);
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path(), DIM);
        db.create_collection("c").unwrap();
        load(&db, "c", &data[..300], 300);
    }
    // Keep the old checkpoint, write more (the change log is trimmed on
    // close), then put the old checkpoint back.
    for f in checkpoint_files(dir.path()) {
        fs::copy(&f, saved.path().join(f.file_name().unwrap())).unwrap();
    }
    {
        let db = open(dir.path(), DIM);
        load(&db, "c", &data, 300);
        db.delete("c", &doc_id(0)).unwrap();
        db.insert("c", new_doc(0, &data[0])).unwrap();
    }
    for f in checkpoint_files(dir.path()) {
        fs::remove_file(f).unwrap();
    }
    for f in fs::read_dir(saved.path()).unwrap() {
        let f = f.unwrap().path();
        fs::copy(&f, dir.path().join("index").join(f.file_name().unwrap())).unwrap();
    }
    let db = open(dir.path(), DIM);
    assert!(
        !db.stats().unwrap().collections[0]
            .index
            .loaded_from_checkpoint
    );
    assert_consistent(&db, &data);
}

#[test]
fn incompatible_model_or_dimension_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path(), DIM);
        db.create_collection("c").unwrap();
    }
    let err = Db::open(dir.path(), DbOptions::new("other-model", DIM, "f32"))
        .err()
        .expect("other model refused");
    let msg = err.to_string();
    assert!(err.is_bad_input(), "{msg}");
    assert!(msg.contains(MODEL) && msg.contains("other-model"), "{msg}");
    let err = Db::open(dir.path(), DbOptions::new(MODEL, DIM * 2, "f32"))
        .err()
        .expect("other dimension refused");
    let msg = err.to_string();
    assert!(
        msg.contains(&DIM.to_string()) && msg.contains(&(DIM * 2).to_string()),
        "{msg}"
    );
    assert!(matches!(err, DbError::Store(_)));
    // Another dtype of the same model is accepted (with a warning).
    let db = Db::open(dir.path(), DbOptions::new(MODEL, DIM, "q4")).unwrap();
    assert_eq!(db.stats().unwrap().dtype, "f32");
}

#[test]
fn reindex_rebuilds_from_the_store() {
    let data = clustered(700, DIM, 10, 13);
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), DIM);
    db.create_collection("c").unwrap();
    db.create_collection("empty").unwrap();
    load(&db, "c", &data, 700);
    db.reindex(Some("c")).unwrap();
    assert_consistent(&db, &data);
    db.reindex(None).unwrap();
    assert_consistent(&db, &data);
    let e = db.reindex(Some("nope")).unwrap_err();
    assert!(matches!(e, DbError::UnknownCollection(_)));
}

#[test]
fn automatic_checkpoints_bound_the_change_log() {
    let data = clustered(500, DIM, 10, 14);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(DIM);
    opts.checkpoint_every_changes = Some(100);
    opts.checkpoint_on_close = false;
    {
        let db = Db::open(dir.path(), opts.clone()).unwrap();
        db.create_collection("c").unwrap();
        load(&db, "c", &data, 10);
        let entries = db.stats().unwrap().change_log_entries;
        assert!(entries < 100, "{entries} change log entries");
    }
    // No checkpoint on close, but the automatic one is recent: a short replay.
    let db = Db::open(dir.path(), opts).unwrap();
    let index = db.stats().unwrap().collections[0].index.clone();
    assert!(
        index.loaded_from_checkpoint && index.replayed_on_open < 100,
        "{index:?}"
    );
    assert_consistent(&db, &data);
}
