//! Filtered search equals brute force with the same filter, on both paths
//! (graph walk that skips non-matching nodes, and exact scan).
use tkr_embed::db::DbError;
use tkr_embed::index::{Filter, FilterTarget};

use crate::db_common::{
    brute_force, clustered, doc_id, ids, load, metadata, modality, open, recall,
};

const N: usize = 6000;
const DIM: usize = 32;

fn matches(filter: &Filter, i: usize) -> bool {
    let meta = metadata(i);
    filter.matches(&FilterTarget {
        collection: "c",
        modality: modality(i),
        metadata: meta.as_object().unwrap(),
    })
}

#[test]
fn filtered_search_matches_brute_force() {
    let all = clustered(N + 40, DIM, 40, 11);
    let (data, queries) = all.split_at(N);
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), DIM);
    db.create_collection("c").unwrap();
    load(&db, "c", data, 3000);

    // Matches 4000 of 6000 documents: searched through the graph.
    let broad: Filter = r#"{"or":[{"field":"lang","in":["en","fr"]},{"field":"missing","eq":1}]}"#
        .parse()
        .unwrap();
    // Matches ~2% of the documents: exact scan.
    let narrow: Filter = r#"{"and":[{"field":"group","eq":3},{"field":"year","gte":2010},{"not":{"field":"tags","eq":"t2"}},{"modality":"text"}]}"#
        .parse()
        .unwrap();
    // Matches nothing.
    let none: Filter = r#"{"field":"year","gt":3000}"#.parse().unwrap();
    let n_narrow = (0..N).filter(|&i| matches(&narrow, i)).count();
    assert!(n_narrow > 10 && n_narrow < 2000, "{n_narrow}");

    let mut graph_recall = 0.0;
    for q in queries {
        let hits = db.search("c", q, 10, Some(&broad)).unwrap();
        let truth = brute_force(data, q, 10, |i| matches(&broad, i));
        assert_eq!(hits.len(), 10);
        for h in &hits {
            assert!(
                matches(&broad, crate::db_common::id_index(&h.id)),
                "{} leaks",
                h.id
            );
        }
        graph_recall += recall(&ids(&hits), &truth);

        let hits = db.search("c", q, 10, Some(&narrow)).unwrap();
        let truth: Vec<String> = brute_force(data, q, 10, |i| matches(&narrow, i))
            .into_iter()
            .map(doc_id)
            .collect();
        assert_eq!(ids(&hits), truth, "exact path must equal brute force");

        assert!(db.search("c", q, 10, Some(&none)).unwrap().is_empty());
    }
    let graph_recall = graph_recall / queries.len() as f64;
    eprintln!("filtered graph-path recall@10 = {graph_recall:.4}");
    assert!(graph_recall >= 0.95, "{graph_recall}");

    let stats = db.stats().unwrap();
    let index = &stats.collections[0].index;
    assert_eq!(index.filtered_graph_searches, queries.len() as u64);
    assert!(index.exact_searches >= queries.len() as u64);
}

#[test]
fn modality_and_collection_filters() {
    let data = clustered(400, 16, 8, 3);
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), 16);
    db.create_collection("c").unwrap();
    load(&db, "c", &data, 400);
    let images: Filter = r#"{"modality":"image"}"#.parse().unwrap();
    let hits = db.search("c", &data[1], 20, Some(&images)).unwrap();
    assert_eq!(hits.len(), 20);
    assert!(hits
        .iter()
        .all(|h| h.modality == tkr_embed::types::Modality::Image));
    let here: Filter = r#"{"collection":"c"}"#.parse().unwrap();
    assert_eq!(db.search("c", &data[1], 5, Some(&here)).unwrap().len(), 5);
    let elsewhere: Filter = r#"{"collection":["x","y"]}"#.parse().unwrap();
    assert!(db
        .search("c", &data[1], 5, Some(&elsewhere))
        .unwrap()
        .is_empty());
}

#[test]
fn bad_filters_are_bad_input() {
    let e: DbError = "{\"field\":\"x\",\"between\":[1,2]}"
        .parse::<Filter>()
        .unwrap_err()
        .into();
    assert!(e.is_bad_input());
    assert!(e.to_string().contains("between"), "{e}");
    let from_serde = serde_json::from_str::<Filter>(r#"{"and":[{"modality":"smell"}]}"#);
    assert!(from_serde
        .unwrap_err()
        .to_string()
        .contains("unknown modality"));
}
