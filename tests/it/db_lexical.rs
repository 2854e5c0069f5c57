//! Lexical (BM25, tantivy on disk) and hybrid search through `Db`, with
//! precomputed vectors (no model): exact tokens, deletes and replacements
//! (right away, after reopen, after an unclean stop, without the index
//! directory), filters, chunks, metadata text fields.
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use tkr_embed::db::{CollectionOptions, Db, DbOptions, HybridOptions, NewDocument};
use tkr_embed::index::{Filter, GroupBy};
use tkr_embed::types::{Modality, Span};

use crate::db_common::{open, options, random_unit};

const DIM: usize = 16;

/// `n` documents of 30 random words from a 400-word vocabulary, each with
/// one unique code like `QX-48213`.
fn corpus(n: usize, seed: u64) -> Vec<(String, String)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let vocabulary: Vec<String> = (0..400)
        .map(|i| {
            let len = 3 + i % 6;
            (0..len)
                .map(|j| (b'a' + ((i * 7 + j * 13 + i / 26) % 26) as u8) as char)
                .collect::<String>()
                + &i.to_string()
        })
        .collect();
    (0..n)
        .map(|i| {
            let mut words: Vec<String> = (0..30)
                .map(|_| vocabulary[rng.random_range(0..vocabulary.len())].clone())
                .collect();
            let code = format!("QX-{}", 10_000 + i * 37);
            words.insert(rng.random_range(0..words.len()), code.clone());
            (code, words.join(" "))
        })
        .collect()
}

fn text_doc(i: usize, text: &str) -> NewDocument {
    NewDocument::new(Modality::Text, random_unit(DIM, 1000 + i as u64))
        .with_id(format!("doc-{i}"))
        .with_text(text)
        .with_metadata(json!({"group": i % 10}))
}

fn load(db: &Db, docs: &[(String, String)]) {
    for (chunk_no, chunk) in docs.chunks(500).enumerate() {
        let batch = chunk
            .iter()
            .enumerate()
            .map(|(j, (_, text))| text_doc(chunk_no * 500 + j, text))
            .collect();
        db.insert_many("c", batch).unwrap();
    }
}

fn first_id(hits: &[tkr_embed::db::Hit]) -> Option<&str> {
    hits.first().map(|h| h.id.as_str())
}

#[test]
fn codes_and_exact_texts_are_found_first() {
    let docs = corpus(2000, 1);
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), DIM);
    db.create_collection("c").unwrap();
    load(&db, &docs);
    let hybrid = HybridOptions::default();
    let (mut lexical_first, mut hybrid_first, mut vector_first) = (0, 0, 0);
    for i in (0..2000).step_by(10) {
        let (code, _) = &docs[i];
        let want = format!("doc-{i}");
        // The query's vector is unrelated to the document, as a
        // random-weight model's would be.
        let query = random_unit(DIM, 50_000 + i as u64);
        lexical_first += usize::from(
            first_id(
                &db.search_lexical("c", code, 10, None, GroupBy::Document)
                    .unwrap(),
            ) == Some(&want),
        );
        let hits = db
            .search_hybrid("c", &query, code, 10, None, &hybrid, GroupBy::Document)
            .unwrap();
        hybrid_first += usize::from(first_id(&hits) == Some(&want));
        vector_first +=
            usize::from(first_id(&db.search("c", &query, 10, None).unwrap()) == Some(&want));
    }
    assert!(
        lexical_first >= 198,
        "lexical found {lexical_first} of 200 codes first"
    );
    assert!(
        hybrid_first >= 198,
        "hybrid found {hybrid_first} of 200 codes first"
    );
    assert!(
        vector_first <= 5,
        "the vector list alone found {vector_first}"
    );

    // A document's full text finds it first in all three modes (its own
    // vector stands for the embedded text).
    for i in [3usize, 777, 1999] {
        let want = format!("doc-{i}");
        let text = &docs[i].1;
        let vector = random_unit(DIM, 1000 + i as u64);
        assert_eq!(
            first_id(
                &db.search_lexical("c", text, 5, None, GroupBy::Document)
                    .unwrap()
            ),
            Some(want.as_str())
        );
        assert_eq!(
            first_id(&db.search("c", &vector, 5, None).unwrap()),
            Some(want.as_str())
        );
        let hits = db
            .search_hybrid("c", &vector, text, 5, None, &hybrid, GroupBy::Document)
            .unwrap();
        assert_eq!(first_id(&hits), Some(want.as_str()));
        let fusion = hits[0].fusion.unwrap();
        assert_eq!(fusion.vector.map(|p| p.0), Some(1));
        assert_eq!(fusion.lexical.map(|p| p.0), Some(1));
    }
    // Scores: BM25 for lexical, best first.
    let hits = db
        .search_lexical("c", &docs[5].0, 10, None, GroupBy::Document)
        .unwrap();
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(hits[0].score > 0.0);
}

#[test]
fn filters_restrict_both_lists() {
    let docs = corpus(300, 2);
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), DIM);
    db.create_collection("c").unwrap();
    load(&db, &docs);
    let filter = Filter::from_json(&json!({"field": "group", "eq": 4})).unwrap();
    // A word every document has ("qx") matches many; the filter keeps group 4.
    let hits = db
        .search_lexical("c", "qx", 50, Some(&filter), GroupBy::Document)
        .unwrap();
    assert_eq!(hits.len(), 30);
    assert!(hits.iter().all(|h| h.metadata["group"] == 4));
    // The code of a document outside the filter: not returned.
    assert!(db
        .search_lexical("c", &docs[5].0, 10, Some(&filter), GroupBy::Document)
        .unwrap()
        .iter()
        .all(|h| h.id != "doc-5"));
    let q = random_unit(DIM, 9);
    let hits = db
        .search_hybrid(
            "c",
            &q,
            &docs[14].0,
            10,
            Some(&filter),
            &HybridOptions::default(),
            GroupBy::Document,
        )
        .unwrap();
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| h.metadata["group"] == 4));
    assert_eq!(hits[0].id, "doc-14");
}

fn ids(db: &Db, text: &str) -> Vec<String> {
    db.search_lexical("c", text, 10, None, GroupBy::Document)
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect()
}

#[test]
fn deleted_and_replaced_documents_never_match_again() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DbOptions {
        checkpoint_on_close: false,
        ..options(DIM)
    };
    {
        let db = Db::open(dir.path(), opts.clone()).unwrap();
        db.create_collection("c").unwrap();
        db.insert("c", text_doc(1, "alpha bravo charlie")).unwrap();
        db.insert("c", text_doc(2, "delta echo foxtrot")).unwrap();
        db.insert("c", text_doc(3, "golf hotel india")).unwrap();
        assert_eq!(ids(&db, "echo"), ["doc-2"]);
        // Right away: the delete and the replacement are seen at once.
        db.delete("c", "doc-2").unwrap();
        assert!(ids(&db, "echo").is_empty());
        db.insert("c", text_doc(3, "juliet kilo")).unwrap();
        assert!(ids(&db, "hotel").is_empty());
        assert_eq!(ids(&db, "kilo"), ["doc-3"]);
        db.checkpoint().unwrap();
        // After the checkpoint, changes only the change log knows.
        db.delete("c", "doc-1").unwrap();
        db.insert("c", text_doc(4, "lima mike")).unwrap();
        // Dropped without a checkpoint: like a stop with no clean close.
    }
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    assert!(ids(&db, "alpha").is_empty());
    assert!(ids(&db, "echo").is_empty());
    assert!(ids(&db, "hotel").is_empty());
    assert_eq!(ids(&db, "kilo"), ["doc-3"]);
    assert_eq!(ids(&db, "mike"), ["doc-4"]);
    db.checkpoint().unwrap();
    drop(db);
    // Without its directory the lexical index is rebuilt from the store.
    let lexical_dir = std::fs::read_dir(dir.path().join("index"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-lexical"))
        .expect("lexical index directory");
    std::fs::remove_dir_all(&lexical_dir).unwrap();
    let db = Db::open(dir.path(), opts).unwrap();
    assert_eq!(ids(&db, "kilo"), ["doc-3"]);
    assert_eq!(ids(&db, "mike"), ["doc-4"]);
    assert!(ids(&db, "echo").is_empty());
    // Reindex rebuilds it too, in place.
    db.reindex(Some("c")).unwrap();
    assert_eq!(ids(&db, "mike"), ["doc-4"]);
    assert!(ids(&db, "alpha").is_empty());
}

#[test]
fn chunks_match_on_their_own_and_metadata_fields_count_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), DIM);
    let options = CollectionOptions {
        text_fields: vec!["title".into(), "tags".into()],
        ..CollectionOptions::default()
    };
    db.create_collection_with("c", options).unwrap();
    let text = "the first part talks about whales. the second part is about volcanoes.";
    let split = text.find(" the second").unwrap();
    let doc = NewDocument::new(Modality::Text, random_unit(DIM, 1))
        .with_id("long")
        .with_text(text)
        .with_metadata(json!({"title": "Nature notes", "tags": ["ocean", "geology"]}))
        .with_segment(
            Span::Bytes {
                start: 0,
                end: split as u64,
            },
            random_unit(DIM, 2),
        )
        .with_segment(
            Span::Bytes {
                start: split as u64 + 1,
                end: text.len() as u64,
            },
            random_unit(DIM, 3),
        );
    db.insert("c", doc).unwrap();
    db.insert("c", text_doc(9, "nothing to see")).unwrap();
    let hits = db
        .search_lexical("c", "volcanoes", 5, None, GroupBy::Document)
        .unwrap();
    assert_eq!(hits.len(), 1);
    let segment = hits[0].segment.as_ref().expect("a chunk matched");
    assert_eq!(segment.index, 1);
    assert_eq!(
        tkr_embed::db::chunk_text(text, &segment.span),
        Some("the second part is about volcanoes.")
    );
    let hits = db
        .search_lexical("c", "whales", 5, None, GroupBy::Document)
        .unwrap();
    assert_eq!(hits[0].segment.as_ref().map(|s| s.index), Some(0));
    // Title and tags match the document itself.
    for word in ["nature", "geology"] {
        let hits = db
            .search_lexical("c", word, 5, None, GroupBy::Document)
            .unwrap();
        assert_eq!(first_id(&hits), Some("long"), "{word}");
        assert!(hits[0].segment.is_none());
    }
    let listed = db.list_collections().unwrap();
    assert_eq!(listed[0].text_fields, ["title", "tags"]);
    // k = 0 asks for nothing.
    assert!(db
        .search_lexical("c", "nature", 0, None, GroupBy::Document)
        .unwrap()
        .is_empty());
    // Bad input: k too large, empty or wordless text, bad weights.
    assert!(db
        .search_lexical("c", "x", 1_000_000, None, GroupBy::Document)
        .is_err());
    assert!(db
        .search_lexical("c", "", 5, None, GroupBy::Document)
        .unwrap()
        .is_empty());
    assert!(db
        .search_lexical("c", "!!", 5, None, GroupBy::Document)
        .unwrap()
        .is_empty());
    let bad = HybridOptions {
        lexical_weight: f32::NAN,
        ..HybridOptions::default()
    };
    assert!(db
        .search_hybrid(
            "c",
            &random_unit(DIM, 1),
            "x",
            5,
            None,
            &bad,
            GroupBy::Document
        )
        .is_err());
    assert!(db
        .search_lexical("nope", "x", 5, None, GroupBy::Document)
        .is_err());
}

#[test]
fn multi_part_queries_pull_and_push() {
    use tkr_embed::db::{combine_query, MAX_QUERY_PARTS};
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), 3);
    db.create_collection("c").unwrap();
    // "red" along x, "formal" along y; a red formal and a red casual dress.
    let put = |id: &str, v: [f32; 3]| {
        db.insert(
            "c",
            NewDocument::new(Modality::Image, v.to_vec()).with_id(id),
        )
        .unwrap()
    };
    put("red-formal", [1.0, 0.8, 0.1]);
    put("red-casual", [1.0, -0.2, 0.1]);
    put("blue-formal", [0.1, 0.8, 1.0]);
    let red = vec![1.0, 0.0, 0.0];
    let formal = vec![0.0, 1.0, 0.0];
    let score = |q: &[f32], id: &str| {
        db.search("c", q, 3, None)
            .unwrap()
            .into_iter()
            .find(|h| h.id == id)
            .unwrap()
            .score
    };
    let plain = combine_query(&[(red.clone(), 1.0)], 3).unwrap();
    let away = combine_query(&[(red.clone(), 1.0), (formal.clone(), -0.5)], 3).unwrap();
    let toward = combine_query(&[(red.clone(), 1.0), (formal.clone(), 0.5)], 3).unwrap();
    // Pushing away from "formal" lowers the formal dress and ranks the
    // casual one first; pulling toward it does the opposite.
    assert!(score(&away, "red-formal") < score(&plain, "red-formal"));
    assert_eq!(db.search("c", &away, 1, None).unwrap()[0].id, "red-casual");
    assert_eq!(
        db.search("c", &toward, 1, None).unwrap()[0].id,
        "red-formal"
    );
    let norm: f32 = away.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-6);
    // Limits.
    assert!(combine_query(&[], 3).is_err());
    let many: Vec<(Vec<f32>, f32)> = (0..=MAX_QUERY_PARTS).map(|_| (red.clone(), 1.0)).collect();
    assert!(combine_query(&many, 3).is_err());
    assert!(combine_query(&[(red.clone(), 1.0), (red.clone(), -1.0)], 3).is_err());
    assert!(combine_query(&[(red.clone(), 0.0)], 3).is_err());
    assert!(combine_query(&[(red.clone(), f32::NAN)], 3).is_err());
    assert!(combine_query(&[(vec![1.0, 0.0], 1.0)], 3).is_err());
}

#[test]
fn group_by_segment_returns_several_chunks_of_one_document() {
    use tkr_embed::types::VectorEncoding;
    for vectors in [VectorEncoding::F32, VectorEncoding::Int8] {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), DIM);
        let options = CollectionOptions {
            vectors,
            ..CollectionOptions::default()
        };
        db.create_collection_with("c", options).unwrap();
        let chunks = [
            "whales sing in the ocean",
            "volcanoes and whales",
            "quiet forests",
        ];
        let mut text = String::new();
        let mut doc = NewDocument::new(Modality::Document, random_unit(DIM, 100)).with_id("pdf");
        let mut spans = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let start = text.len() as u64;
            text.push_str(chunk);
            let span = Span::Bytes {
                start,
                end: text.len() as u64,
            };
            spans.push(span.clone());
            doc = doc.with_segment(span, random_unit(DIM, 200 + i as u64));
            text.push_str("\n\n");
        }
        db.insert("c", doc.with_text(text.clone())).unwrap();
        db.insert("c", text_doc(1, "whales elsewhere")).unwrap();

        // Lexical: both whale chunks of the PDF, and the other document.
        let hits = db
            .search_lexical("c", "whales", 10, None, GroupBy::Segment)
            .unwrap();
        let pdf: Vec<u32> = hits
            .iter()
            .filter(|h| h.id == "pdf")
            .map(|h| h.segment.as_ref().unwrap().index)
            .collect();
        assert_eq!(pdf.len(), 2, "{vectors}: {hits:?}");
        assert!(pdf.contains(&0) && pdf.contains(&1));
        for h in hits.iter().filter(|h| h.id == "pdf") {
            let s = h.segment.as_ref().unwrap();
            assert_eq!(s.span, spans[s.index as usize]);
            assert!(tkr_embed::db::chunk_text(&text, &s.span)
                .unwrap()
                .contains("whales"));
        }
        let hits = db
            .search_lexical("c", "whales", 10, None, GroupBy::Document)
            .unwrap();
        assert_eq!(hits.iter().filter(|h| h.id == "pdf").count(), 1);

        // Vector: a chunk's own vector finds that chunk first, exact score,
        // and the document's other parts follow as their own hits.
        let q = random_unit(DIM, 201);
        let hits = db
            .search_grouped("c", &q, 10, None, GroupBy::Segment)
            .unwrap();
        assert_eq!(hits[0].id, "pdf");
        assert_eq!(hits[0].segment.as_ref().unwrap().index, 1);
        assert!(
            (hits[0].score - 1.0).abs() < 1e-5,
            "{vectors}: {}",
            hits[0].score
        );
        assert_eq!(
            hits.iter().filter(|h| h.id == "pdf").count(),
            4,
            "primary + 3 chunks"
        );
        let filter = Filter::from_json(&json!({"modality": "document"})).unwrap();
        let hits = db
            .search_grouped("c", &q, 10, Some(&filter), GroupBy::Segment)
            .unwrap();
        assert_eq!(hits.len(), 4, "{vectors}: exact scan per segment");
        assert_eq!(hits[0].segment.as_ref().unwrap().index, 1);

        // Hybrid per segment: the chunk both lists like comes first.
        let hits = db
            .search_hybrid(
                "c",
                &q,
                "volcanoes",
                10,
                None,
                &HybridOptions::default(),
                GroupBy::Segment,
            )
            .unwrap();
        assert_eq!(hits[0].id, "pdf");
        assert_eq!(hits[0].segment.as_ref().unwrap().index, 1);
        let f = hits[0].fusion.unwrap();
        assert_eq!((f.vector.unwrap().0, f.lexical.unwrap().0), (1, 1));
    }
}

#[test]
fn a_lexical_index_from_another_database_is_rebuilt() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (dir, text) in [
        (&a, "apples from the first"),
        (&b, "bananas from the second"),
    ] {
        let db = open(dir.path(), DIM);
        db.create_collection("c").unwrap();
        db.insert("c", text_doc(1, text)).unwrap();
    }
    let lexical = |dir: &std::path::Path| dir.join("index").join("c1-lexical");
    std::fs::remove_dir_all(lexical(b.path())).unwrap();
    let copy = std::process::Command::new("cp")
        .arg("-r")
        .arg(lexical(a.path()))
        .arg(lexical(b.path()))
        .status()
        .unwrap();
    assert!(copy.success());
    let db = open(b.path(), DIM);
    assert!(ids(&db, "apples").is_empty(), "the other database's text");
    assert_eq!(ids(&db, "bananas"), ["doc-1"]);
}
