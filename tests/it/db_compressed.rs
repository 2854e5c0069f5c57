//! Collections with int8 vectors in the index: exact scores after
//! rescoring, recall against brute force, segments, filters, deletes,
//! reopen from a checkpoint and from the store.
use serde_json::json;
use tkr_embed::db::{CollectionOptions, Db, NewDocument};
use tkr_embed::index::Filter;
use tkr_embed::types::{dot, Modality, Span, VectorEncoding};

use crate::db_common::{brute_force, clustered, doc_id, ids, load, open, random_unit, recall};

const DIM: usize = 48;
fn int8() -> CollectionOptions {
    CollectionOptions {
        vectors: VectorEncoding::Int8,
        ..CollectionOptions::default()
    }
}

fn create_both(db: &Db, data: &[Vec<f32>]) {
    db.create_collection("f").unwrap();
    db.create_collection_with("q", int8()).unwrap();
    load(db, "f", data, 500);
    load(db, "q", data, 500);
}

#[test]
fn int8_collection_finds_the_same_documents_with_exact_scores() {
    let data = clustered(3000, DIM, 15, 21);
    let queries = clustered(60, DIM, 15, 22);
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), DIM);
    create_both(&db, &data);
    let listed = db.list_collections().unwrap();
    let encoding_of = |name: &str| listed.iter().find(|c| c.name == name).unwrap().vectors;
    assert_eq!(encoding_of("f"), VectorEncoding::F32);
    assert_eq!(encoding_of("q"), VectorEncoding::Int8);

    let mut total = 0.0;
    for q in &queries {
        let hits = db.search("q", q, 10, None).unwrap();
        assert_eq!(hits.len(), 10);
        // Scores are the float32 products, not the int8 estimates.
        for h in &hits {
            let i: usize = h.id.strip_prefix("doc-").unwrap().parse().unwrap();
            let exact = dot(&crate::db_common::normalized(q.clone()), &data[i]);
            assert!((h.score - exact).abs() < 1e-5, "{} vs {exact}", h.score);
        }
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        total += recall(&ids(&hits), &brute_force(&data, q, 10, |_| true));
    }
    let mean = total / queries.len() as f64;
    assert!(mean >= 0.95, "recall@10 of the int8 collection: {mean}");

    // Each vector takes DIM bytes and a scale instead of 4 × DIM bytes;
    // links and bookkeeping are the same.
    let stats = db.stats().unwrap();
    let memory = |name: &str| {
        stats
            .collections
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .index
            .memory_bytes
    };
    assert_eq!(
        memory("f") - memory("q"),
        data.len() * (4 * DIM - (DIM + 4))
    );
}

#[test]
fn int8_rescoring_picks_the_best_segment_and_respects_filters_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), DIM);
    db.create_collection_with("q", int8()).unwrap();
    let others = clustered(400, DIM, 5, 31);
    load(&db, "q", &others, 200);
    // A video whose second segment is the query itself.
    let target = random_unit(DIM, 77);
    let video = NewDocument::new(Modality::Video, random_unit(DIM, 78))
        .with_id("video")
        .with_metadata(json!({"kind": "clip"}))
        .with_segment(
            Span::Time {
                start_s: 0.0,
                end_s: 1.0,
            },
            random_unit(DIM, 79),
        )
        .with_segment(
            Span::Time {
                start_s: 1.0,
                end_s: 2.0,
            },
            target.clone(),
        );
    db.insert("q", video).unwrap();
    let hits = db.search("q", &target, 3, None).unwrap();
    assert_eq!(hits[0].id, "video");
    assert!((hits[0].score - 1.0).abs() < 1e-5);
    assert_eq!(hits[0].segment.as_ref().map(|s| s.index), Some(1));

    // A filter (exact-scan path) also ends in exact scores.
    let filter = Filter::from_json(&json!({"field": "group", "eq": 3})).unwrap();
    let q = &others[5];
    let hits = db.search("q", q, 5, Some(&filter)).unwrap();
    let truth = brute_force(&others, q, 5, |i| i % 10 == 3);
    assert_eq!(
        ids(&hits),
        truth.iter().map(|&i| doc_id(i)).collect::<Vec<_>>()
    );
    for (h, &i) in hits.iter().zip(&truth) {
        assert!((h.score - dot(q, &others[i])).abs() < 1e-5);
    }

    // Deleted documents are never returned.
    db.delete("q", "video").unwrap();
    let hits = db.search("q", &target, 3, None).unwrap();
    assert!(hits.iter().all(|h| h.id != "video"));
}

#[test]
fn int8_collection_survives_reopen_checkpoint_and_reindex() {
    let data = clustered(1500, DIM, 10, 41);
    let queries = clustered(20, DIM, 10, 42);
    let dir = tempfile::tempdir().unwrap();
    let results = |db: &Db| -> Vec<Vec<(String, f32)>> {
        queries
            .iter()
            .map(|q| {
                db.search("q", q, 10, None)
                    .unwrap()
                    .into_iter()
                    .map(|h| (h.id, h.score))
                    .collect()
            })
            .collect()
    };
    let before = {
        let db = open(dir.path(), DIM);
        db.create_collection_with("q", int8()).unwrap();
        load(&db, "q", &data, 500);
        results(&db)
    };
    // The checkpoint holds the int8 graph as it was: the same answers.
    let db = open(dir.path(), DIM);
    let stats = db.stats().unwrap();
    assert!(stats.collections[0].index.loaded_from_checkpoint);
    assert_eq!(stats.collections[0].index.vectors, VectorEncoding::Int8);
    assert_eq!(results(&db), before);
    // Graphs built anew (reindex; no checkpoint) are int8 again, and as
    // good (a parallel build is not the same graph, so not the same list).
    let good = |db: &Db| {
        let total: f64 = queries
            .iter()
            .map(|q| {
                let hits = db.search("q", q, 10, None).unwrap();
                recall(&ids(&hits), &brute_force(&data, q, 10, |_| true))
            })
            .sum();
        let stats = db.stats().unwrap();
        assert_eq!(stats.collections[0].index.vectors, VectorEncoding::Int8);
        assert!(total / queries.len() as f64 >= 0.95);
    };
    db.reindex(Some("q")).unwrap();
    good(&db);
    drop(db);
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let db = open(dir.path(), DIM);
    assert!(
        !db.stats().unwrap().collections[0]
            .index
            .loaded_from_checkpoint
    );
    good(&db);
}
