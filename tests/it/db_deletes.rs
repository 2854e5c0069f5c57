//! Deleted or replaced documents never come back: right away, after a
//! tombstone-triggered rebuild, and after reopening.
use std::collections::HashSet;

use tkr_embed::db::Db;
use tkr_embed::types::dot;

use crate::db_common::{clustered, doc_id, load, new_doc, open, random_unit};

const N: usize = 3000;
const DIM: usize = 32;

struct World {
    data: Vec<Vec<f32>>,
    deleted: HashSet<usize>,
    /// index → (old vector, new vector)
    replaced: Vec<(usize, Vec<f32>, Vec<f32>)>,
}

fn check(db: &Db, w: &World) {
    for &i in &w.deleted {
        assert!(db.get("c", &doc_id(i)).unwrap().is_none(), "{i} readable");
        let hits = db.search("c", &w.data[i], 10, None).unwrap();
        assert!(hits.iter().all(|h| h.id != doc_id(i)), "deleted {i} found");
    }
    for (i, old, new) in &w.replaced {
        let doc = db.get("c", &doc_id(*i)).unwrap().unwrap();
        assert_eq!(doc.metadata["version"], 2, "{i}");
        // Searching by the old vector may find the document only through
        // its new vector.
        for h in db.search("c", old, 10, None).unwrap() {
            if h.id == doc_id(*i) {
                assert!(
                    (h.score - dot(old, new)).abs() < 1e-4,
                    "old version of {i} found"
                );
            }
        }
        let top = db.search("c", new, 1, None).unwrap();
        assert_eq!(top[0].id, doc_id(*i));
    }
    let stats = db.stats().unwrap();
    let c = &stats.collections[0];
    assert_eq!(c.documents as usize, N - w.deleted.len());
    assert_eq!(c.index.documents, c.documents as usize);
}

#[test]
fn deleted_and_replaced_documents_never_come_back() {
    let data = clustered(N, DIM, 30, 21);
    let dir = tempfile::tempdir().unwrap();
    let mut w = World {
        data,
        deleted: HashSet::new(),
        replaced: Vec::new(),
    };
    {
        let db = open(dir.path(), DIM);
        db.create_collection("c").unwrap();
        load(&db, "c", &w.data, 1000);
        // 10% deleted, 5% replaced: under the 20% rebuild threshold.
        for i in (0..N).step_by(10) {
            assert!(db.delete("c", &doc_id(i)).unwrap());
            w.deleted.insert(i);
        }
        assert!(!db.delete("c", &doc_id(0)).unwrap(), "second delete");
        for i in (5..N).step_by(20) {
            let new = random_unit(DIM, 1000 + i as u64);
            let mut doc = new_doc(i, &new);
            doc.metadata["version"] = 2.into();
            db.insert("c", doc).unwrap();
            w.replaced.push((i, w.data[i].clone(), new));
        }
        let stats = db.stats().unwrap();
        assert_eq!(stats.collections[0].index.tombstones, 300 + 150);
        assert_eq!(stats.collections[0].index.rebuilds, 0);
        check(&db, &w);

        // Push tombstones past 20%: a background rebuild compacts the graph.
        for i in (1..N).step_by(10) {
            db.delete("c", &doc_id(i)).unwrap();
            w.deleted.insert(i);
        }
        check(&db, &w);
        db.wait_background();
        let stats = db.stats().unwrap();
        let index = &stats.collections[0].index;
        assert!(index.rebuilds >= 1, "{index:?}");
        assert!(index.tombstones * 5 <= index.points, "{index:?}");
        assert_eq!(index.points, index.documents + index.tombstones);
        check(&db, &w);

        // Re-inserting a deleted id brings that id back, with the new data.
        let again = random_unit(DIM, 99);
        db.insert("c", new_doc(1, &again)).unwrap();
        w.deleted.remove(&1);
        w.data[1] = again;
        assert_eq!(
            db.search("c", &w.data[1], 1, None).unwrap()[0].id,
            doc_id(1)
        );
        check(&db, &w);
    }
    let db = open(dir.path(), DIM);
    check(&db, &w);
}
