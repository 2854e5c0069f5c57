//! Writers, deleters and searchers at once, with background rebuilds
//! swapping graphs underneath: nothing panics, and the end state is exact.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tkr_embed::db::NewDocument;
use tkr_embed::types::Modality;

use crate::db_common::{open, random_unit};

const DIM: usize = 16;
const IDS: u64 = 400;

#[test]
fn concurrent_writes_searches_and_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(open(dir.path(), DIM));
    db.create_collection("c").unwrap();
    // id → Some(version) live, None deleted. Each writer owns its ids, so
    // the map is exactly the acknowledged state.
    let truth: Arc<Mutex<HashMap<u64, Option<u64>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3u64)
        .map(|w| {
            let (db, truth) = (db.clone(), truth.clone());
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(w);
                let started = Instant::now();
                let mut version = 0;
                while started.elapsed() < Duration::from_millis(2500) {
                    let id = rng.random_range(0..IDS / 3) * 3 + w;
                    if rng.random_range(0..4) == 0 {
                        db.delete("c", &format!("x{id}")).unwrap();
                        truth.lock().unwrap().insert(id, None);
                    } else {
                        version += 1;
                        let batch: Vec<NewDocument> = (0..rng.random_range(1..4u64))
                            .map(|j| (id + 3 * j) % IDS)
                            .filter(|i| i % 3 == w)
                            .map(|i| {
                                NewDocument::new(
                                    Modality::Text,
                                    random_unit(DIM, i * 100_000 + version),
                                )
                                .with_id(format!("x{i}"))
                                .with_metadata(serde_json::json!({ "v": version }))
                            })
                            .collect();
                        let ids: Vec<u64> = batch
                            .iter()
                            .map(|d| d.id.as_ref().unwrap()[1..].parse().unwrap())
                            .collect();
                        db.insert_many("c", batch).unwrap();
                        let mut t = truth.lock().unwrap();
                        ids.into_iter().for_each(|i| {
                            t.insert(i, Some(version));
                        });
                    }
                }
            })
        })
        .collect();
    let searchers: Vec<_> = (0..2u64)
        .map(|s| {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let q = random_unit(DIM, 7_000_000 + s * 1000 + n);
                    let hits = db.search("c", &q, 10, None).unwrap();
                    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
                    n += 1;
                }
                n
            })
        })
        .collect();
    writers.into_iter().for_each(|w| w.join().unwrap());
    stop.store(true, Ordering::Relaxed);
    let searches: u64 = searchers.into_iter().map(|s| s.join().unwrap()).sum();
    db.wait_background();

    let truth = truth.lock().unwrap().clone();
    let check = |db: &tkr_embed::Db| {
        for (id, state) in &truth {
            let got = db.get("c", &format!("x{id}")).unwrap();
            match state {
                None => assert!(got.is_none(), "x{id} should be deleted"),
                Some(v) => {
                    let doc = got.unwrap_or_else(|| panic!("x{id} missing"));
                    assert_eq!(doc.metadata["v"], *v, "x{id}");
                    let hits = db
                        .search("c", &random_unit(DIM, id * 100_000 + v), 1, None)
                        .unwrap();
                    assert_eq!(hits[0].id, format!("x{id}"));
                }
            }
        }
        let stats = db.stats().unwrap();
        let c = &stats.collections[0];
        assert_eq!(
            c.documents as usize,
            truth.values().filter(|s| s.is_some()).count()
        );
        assert_eq!(c.index.documents, c.documents as usize);
        c.index.rebuilds
    };
    let rebuilds = check(&db);
    eprintln!("concurrency: {searches} searches, {rebuilds} background rebuilds");
    assert!(rebuilds >= 1, "the test should exercise rebuilds");
    drop(db);
    let db = open(dir.path(), DIM);
    check(&db);
}

/// Many writers inserting, replacing and deleting the SAME few ids, one
/// document per call (so the index applies their changes combined into
/// runs): afterwards the index holds exactly the store's latest version of
/// each id, whichever writer won each race.
#[test]
fn racing_writers_on_shared_ids_end_like_the_store() {
    const WRITERS: u64 = 24;
    const SHARED: u64 = 12;
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(open(dir.path(), DIM));
    db.create_collection("c").unwrap();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(1000 + w);
                for n in 0..150u64 {
                    let id = rng.random_range(0..SHARED);
                    if rng.random_range(0..5) == 0 {
                        db.delete("c", &format!("s{id}")).unwrap();
                    } else {
                        // The seed of the vector, unique per write, is kept
                        // in the metadata to find the stored version again.
                        let seed = w * 1_000_000 + n * 1000 + id;
                        let doc = NewDocument::new(Modality::Text, random_unit(DIM, seed))
                            .with_id(format!("s{id}"))
                            .with_metadata(serde_json::json!({ "seed": seed }));
                        db.insert("c", doc).unwrap();
                    }
                }
            })
        })
        .collect();
    writers.into_iter().for_each(|w| w.join().unwrap());
    db.wait_background();
    let mut live = 0;
    for id in 0..SHARED {
        let Some(doc) = db.get("c", &format!("s{id}")).unwrap() else {
            continue;
        };
        live += 1;
        let seed = doc.metadata["seed"].as_u64().unwrap();
        let hits = db.search("c", &random_unit(DIM, seed), 1, None).unwrap();
        assert_eq!(hits[0].id, doc.id);
        assert!(
            hits[0].score > 0.999,
            "{}: an older version is indexed",
            doc.id
        );
    }
    let stats = db.stats().unwrap();
    assert_eq!(stats.collections[0].documents, live);
    assert_eq!(stats.collections[0].index.documents, live as usize);
}
