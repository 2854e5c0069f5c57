//! The database contract, run against both stores: the embedded one (sled +
//! HNSW in a temporary directory) and PostgreSQL with pgvector (a real
//! server, a fresh database per test; see `pg.rs`). Each test is written
//! once and instantiated per store by `both_stores!`.
use std::collections::BTreeSet;

use serde_json::{json, Value};
use tkr_embed::db::{
    Content, ContentData, ContentInfo, Db, DbError, DbOptions, HybridOptions, NewDocument,
    StoreKind, StoreLocation,
};
use tkr_embed::index::{Filter, FilterTarget, GroupBy};
use tkr_embed::types::{Modality, Span};

use crate::db_common::random_unit;
use crate::pg::PgDatabase;

const DIM: usize = 8;
const MODEL: &str = "conformance-model";

/// Where one test's database lives; reopened as often as the test likes.
enum TestStore {
    Embedded(tempfile::TempDir),
    Postgres(PgDatabase),
}

impl TestStore {
    fn location(&self) -> StoreLocation {
        match self {
            TestStore::Embedded(dir) => StoreLocation::Embedded(dir.path().to_owned()),
            TestStore::Postgres(db) => StoreLocation::Postgres(db.url.clone()),
        }
    }

    fn open_with(&self, options: DbOptions) -> Result<Db, DbError> {
        Db::open_at(&self.location(), options, 4)
    }

    fn open(&self) -> Db {
        self.open_with(DbOptions::new(MODEL, DIM, "f32"))
            .expect("open the database")
    }
}

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[test]
                fn $name() {
                    let store = super::TestStore::Embedded(tempfile::tempdir().unwrap());
                    super::$name(&store);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    let store = super::TestStore::Postgres(crate::pg::PgDatabase::new(stringify!($name)));
                    super::$name(&store);
                }
            )*
        }
    };
}

both_stores!(
    collections_lifecycle,
    documents_insert_get_replace_delete,
    bad_input_is_refused_and_nothing_is_stored,
    search_ranks_by_cosine_and_excludes,
    filters_select_exactly_the_matching_documents,
    segments_are_searched_and_returned,
    content_blobs_are_shared_and_released,
    lexical_and_hybrid_search,
    stats_and_paging,
    another_model_is_refused,
    compressed_and_high_dimensional_collections_score_exactly,
);

fn doc(seed: u64) -> NewDocument {
    NewDocument::new(Modality::Text, random_unit(DIM, seed))
}

fn ids(hits: &[tkr_embed::db::Hit]) -> Vec<String> {
    hits.iter().map(|h| h.id.clone()).collect()
}

fn collections_lifecycle(store: &TestStore) {
    let db = store.open();
    db.create_collection("one").unwrap();
    db.create_collection("two").unwrap();
    let e = db.create_collection("one").unwrap_err();
    assert!(matches!(e, DbError::CollectionExists(_)) && e.is_bad_input());
    assert!(db.create_collection("../evil").unwrap_err().is_bad_input());
    for i in 0..5 {
        db.insert("one", doc(i)).unwrap();
    }
    let counts: Vec<(String, u64)> = db
        .list_collections()
        .unwrap()
        .into_iter()
        .map(|c| (c.name, c.documents))
        .collect();
    assert_eq!(counts, vec![("one".into(), 5), ("two".into(), 0)]);
    assert!(db.drop_collection("one").unwrap());
    assert!(!db.drop_collection("one").unwrap());
    let e = db.search("one", &random_unit(DIM, 1), 3, None).unwrap_err();
    assert!(matches!(e, DbError::UnknownCollection(_)) && e.is_bad_input());
    assert!(matches!(
        db.insert("one", doc(1)).unwrap_err(),
        DbError::UnknownCollection(_)
    ));
    // A new collection with a dropped one's name starts empty.
    db.create_collection("one").unwrap();
    assert!(db
        .search("one", &random_unit(DIM, 1), 3, None)
        .unwrap()
        .is_empty());
    // Reopened after a plain drop (the embedded store checkpoints in Drop).
    drop(db);
    let db = store.open();
    let names: Vec<String> = db
        .list_collections()
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["one", "two"]);
    assert_eq!(db.stats().unwrap().documents, 0);
}

fn documents_insert_get_replace_delete(store: &TestStore) {
    let db = store.open();
    db.create_collection("docs").unwrap();
    let id = db
        .insert(
            "docs",
            doc(1)
                .with_id("a")
                .with_text("first version")
                .with_metadata(json!({"lang": "en", "n": 1})),
        )
        .unwrap();
    assert_eq!(id, "a");
    let first = db.get("docs", "a").unwrap().unwrap();
    assert_eq!(first.text.as_deref(), Some("first version"));
    assert_eq!(first.metadata["lang"], "en");
    assert_eq!(first.modality, Modality::Text);
    assert_eq!(first.collection, "docs");
    // The vector comes back normalised, exactly as computed here.
    let stored = db.get_vector("docs", "a").unwrap().unwrap();
    assert_eq!(stored, random_unit(DIM, 1));

    // Inserting the id again replaces the document.
    db.insert(
        "docs",
        NewDocument::new(Modality::Image, random_unit(DIM, 2))
            .with_id("a")
            .with_metadata(json!({"lang": "pt"})),
    )
    .unwrap();
    let second = db.get("docs", "a").unwrap().unwrap();
    assert_eq!(second.modality, Modality::Image);
    assert_eq!(second.text, None);
    assert_eq!(second.metadata.get("n"), None);
    assert!(second.seq > first.seq);
    assert_eq!(second.created_ms, first.created_ms);
    let hits = db.search("docs", &random_unit(DIM, 2), 10, None).unwrap();
    assert_eq!(ids(&hits), vec!["a"]);
    assert!((hits[0].score - 1.0).abs() < 1e-5, "{}", hits[0].score);

    // Generated ids: 32 hex digits, all different.
    let generated = db.insert_many("docs", (10..20).map(doc).collect()).unwrap();
    let unique: BTreeSet<&String> = generated.iter().collect();
    assert_eq!(unique.len(), 10);
    assert!(generated
        .iter()
        .all(|id| id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())));

    assert!(db.delete("docs", "a").unwrap());
    assert!(!db.delete("docs", "a").unwrap());
    assert!(db.get("docs", "a").unwrap().is_none());
    assert!(db.get_vector("docs", "a").unwrap().is_none());
    let hits = db.search("docs", &random_unit(DIM, 2), 20, None).unwrap();
    assert!(!ids(&hits).contains(&"a".to_owned()));
    assert_eq!(hits.len(), 10);

    // Durable: all there after reopening.
    db.close().unwrap();
    let db = store.open();
    assert_eq!(db.list_collections().unwrap()[0].documents, 10);
    assert!(db.get("docs", &generated[3]).unwrap().is_some());
}

fn bad_input_is_refused_and_nothing_is_stored(store: &TestStore) {
    let db = store.open();
    db.create_collection("c").unwrap();
    let bad = [
        NewDocument::new(Modality::Text, vec![1.0; DIM + 1]),
        NewDocument::new(Modality::Text, vec![0.0; DIM]),
        NewDocument::new(Modality::Text, vec![f32::NAN; DIM]),
        doc(1).with_metadata(json!([1, 2])),
        doc(1).with_id(""),
        doc(1).with_id("x".repeat(10_000)),
        doc(1).with_segment(
            Span::Time {
                start_s: 2.0,
                end_s: 1.0,
            },
            random_unit(DIM, 2),
        ),
    ];
    for (i, bad) in bad.into_iter().enumerate() {
        // A bad document fails its whole batch.
        let e = db
            .insert_many("c", vec![doc(100).with_id("good"), bad])
            .err()
            .unwrap_or_else(|| panic!("case {i} was accepted"));
        assert!(e.is_bad_input(), "case {i}: {e}");
    }
    assert_eq!(db.list_collections().unwrap()[0].documents, 0);
    assert!(db.get("c", "good").unwrap().is_none());
    let e = db.search("c", &[1.0; DIM + 2], 3, None).unwrap_err();
    assert!(matches!(e, DbError::WrongDimension { .. }));
    assert!(db
        .search("c", &[0.0; DIM], 3, None)
        .unwrap_err()
        .is_bad_input());
    assert!(db
        .search("c", &random_unit(DIM, 1), 100_000, None)
        .unwrap_err()
        .is_bad_input());
    assert!(db.delete("c", "").unwrap_err().is_bad_input());
    assert!(matches!(
        db.get_content("c", "nope").unwrap_err(),
        DbError::DocumentNotFound { .. }
    ));
}

fn search_ranks_by_cosine_and_excludes(store: &TestStore) {
    let db = store.open();
    db.create_collection("v").unwrap();
    let docs: Vec<NewDocument> = (0..60).map(|i| doc(i).with_id(format!("d{i}"))).collect();
    db.insert_many("v", docs).unwrap();
    for probe in [3u64, 17, 42] {
        let query = random_unit(DIM, probe);
        let hits = db.search("v", &query, 10, None).unwrap();
        assert_eq!(hits.len(), 10);
        assert_eq!(hits[0].id, format!("d{probe}"));
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        // Exact top 10 by brute force (60 vectors: the graph finds all).
        let mut expected: Vec<(f32, String)> = (0..60)
            .map(|i| {
                let v = random_unit(DIM, i);
                (
                    v.iter().zip(&query).map(|(a, b)| a * b).sum(),
                    format!("d{i}"),
                )
            })
            .collect();
        expected.sort_by(|a, b| b.0.total_cmp(&a.0));
        let want: Vec<String> = expected.iter().take(10).map(|e| e.1.clone()).collect();
        assert_eq!(ids(&hits), want);
        for (hit, (score, _)) in hits.iter().zip(&expected) {
            assert!((hit.score - score).abs() < 1e-5, "{} vs {score}", hit.score);
        }
        // By document: the document itself is left out.
        let similar = db
            .search_by_document("v", &format!("d{probe}"), 5, None)
            .unwrap();
        assert_eq!(ids(&similar), want[1..6].to_vec());
    }
}

/// Metadata for document `i` of the filter test.
fn filter_metadata(i: u64) -> Value {
    let lang = ["en", "pt", "de"][i as usize % 3];
    let mut m = json!({
        "lang": lang,
        "year": 2015 + (i % 10),
        "score": (i as f64) / 4.0,
        "tags": if i.is_multiple_of(4) { json!(["a", "b"]) } else { json!(["c"]) },
        "nested": {"level": i % 5},
        "flag": i.is_multiple_of(2),
    });
    if i.is_multiple_of(7) {
        m.as_object_mut().unwrap().remove("lang");
    }
    if i.is_multiple_of(6) {
        m["a.b"] = json!("literal");
    }
    m
}

fn filters_select_exactly_the_matching_documents(store: &TestStore) {
    let db = store.open();
    db.create_collection("f").unwrap();
    let n = 70u64;
    let modality = |i: u64| {
        if i.is_multiple_of(5) {
            Modality::Image
        } else {
            Modality::Text
        }
    };
    let docs: Vec<NewDocument> = (0..n)
        .map(|i| {
            NewDocument::new(modality(i), random_unit(DIM, i))
                .with_id(format!("d{i}"))
                .with_metadata(filter_metadata(i))
        })
        .collect();
    db.insert_many("f", docs).unwrap();
    let filters = [
        json!({"field": "lang", "eq": "en"}),
        json!({"field": "lang", "in": ["pt", "de"]}),
        json!({"not": {"field": "lang", "eq": "en"}}),
        json!({"field": "year", "gte": 2018, "lt": 2021}),
        json!({"field": "year", "eq": 2017.0}),
        json!({"field": "score", "gt": 3.5, "lte": 10}),
        json!({"field": "tags", "eq": "a"}),
        json!({"field": "tags", "in": ["b", "zzz"]}),
        json!({"field": "nested.level", "eq": 3}),
        json!({"field": "nested.level", "lt": 2}),
        json!({"field": "a.b", "eq": "literal"}),
        json!({"field": "flag", "eq": true}),
        json!({"field": "missing", "eq": 1}),
        json!({"not": {"field": "missing", "eq": 1}}),
        json!({"modality": "image"}),
        json!({"collection": "f"}),
        json!({"collection": "other"}),
        json!({"and": [{"field": "lang", "eq": "pt"}, {"field": "flag", "eq": false}]}),
        json!({"or": [{"modality": "image"}, {"field": "year", "gt": 2023}]}),
        json!({"and": [{"not": {"modality": "text"}}, {"or": [{"field": "tags", "eq": "c"}, {"field": "lang", "eq": "de"}]}]}),
    ];
    for f in filters {
        let filter = Filter::from_json(&f).unwrap();
        let expected: BTreeSet<String> = (0..n)
            .filter(|&i| {
                let metadata = filter_metadata(i);
                filter.matches(&FilterTarget {
                    collection: "f",
                    modality: modality(i),
                    metadata: metadata.as_object().unwrap(),
                })
            })
            .map(|i| format!("d{i}"))
            .collect();
        let hits = db
            .search("f", &random_unit(DIM, 999), n as usize, Some(&filter))
            .unwrap();
        let got: BTreeSet<String> = hits.iter().map(|h| h.id.clone()).collect();
        assert_eq!(got, expected, "filter {f}");
        assert_eq!(hits.len(), got.len(), "each document once: {f}");
    }
}

fn segments_are_searched_and_returned(store: &TestStore) {
    let db = store.open();
    db.create_collection("s").unwrap();
    let pages = [
        Span::Page { page: 1 },
        Span::Time {
            start_s: 1.5,
            end_s: 3.0,
        },
        Span::Bytes { start: 0, end: 5 },
    ];
    let mut video = doc(1).with_id("video").with_text("hello world");
    for (i, span) in pages.iter().enumerate() {
        video = video.with_segment(span.clone(), random_unit(DIM, 10 + i as u64));
    }
    db.insert("s", video).unwrap();
    db.insert("s", doc(2).with_id("plain")).unwrap();
    let got = db.get("s", "video").unwrap().unwrap();
    assert_eq!(got.segments, pages.to_vec());
    let vectors = db.get_vectors("s", "video").unwrap().unwrap();
    assert_eq!(vectors.len(), 4);
    assert_eq!(vectors[2], random_unit(DIM, 11));

    // A segment's vector finds the document, naming the segment.
    let hits = db.search("s", &random_unit(DIM, 11), 2, None).unwrap();
    assert_eq!(hits[0].id, "video");
    let segment = hits[0].segment.as_ref().expect("a segment matched");
    assert_eq!(segment.index, 1);
    assert_eq!(segment.span, pages[1]);
    assert_eq!(ids(&hits), vec!["video", "plain"]);
    // Per segment: the document once per matching vector.
    let per_segment = db
        .search_grouped("s", &random_unit(DIM, 11), 5, None, GroupBy::Segment)
        .unwrap();
    assert_eq!(per_segment.len(), 5);
    assert_eq!(per_segment.iter().filter(|h| h.id == "video").count(), 4);
}

fn content_blobs_are_shared_and_released(store: &TestStore) {
    let db = store.open();
    db.create_collection("c").unwrap();
    let bytes = b"\x89PNG not really an image".to_vec();
    let content = || Content::Bytes {
        data: bytes.clone(),
        content_type: "image/png".into(),
    };
    db.insert("c", doc(1).with_id("one").with_content(content()))
        .unwrap();
    db.insert("c", doc(2).with_id("two").with_content(content()))
        .unwrap();
    db.insert(
        "c",
        doc(3).with_id("ext").with_content(Content::External {
            uri: "file:///somewhere/big.mp4".into(),
            content_type: Some("video/mp4".into()),
        }),
    )
    .unwrap();
    let stats = db.stats().unwrap();
    assert_eq!((stats.blobs, stats.blob_bytes), (1, bytes.len() as u64));
    match db.get("c", "one").unwrap().unwrap().content {
        Some(ContentInfo::Stored {
            content_type, len, ..
        }) => assert_eq!(
            (content_type.as_str(), len),
            ("image/png", bytes.len() as u64)
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        db.get_content("c", "two").unwrap(),
        Some(ContentData::Bytes {
            data: bytes.clone(),
            content_type: "image/png".into()
        })
    );
    assert_eq!(
        db.get_content("c", "ext").unwrap(),
        Some(ContentData::External {
            uri: "file:///somewhere/big.mp4".into(),
            content_type: Some("video/mp4".into())
        })
    );
    db.insert("c", doc(4).with_id("none")).unwrap();
    assert_eq!(db.get_content("c", "none").unwrap(), None);

    // The bytes stay while a document refers to them.
    assert!(db.delete("c", "one").unwrap());
    assert_eq!(db.stats().unwrap().blobs, 1);
    // Replacing a document's content releases the old bytes.
    db.insert(
        "c",
        doc(2).with_id("two").with_content(Content::Bytes {
            data: b"other".to_vec(),
            content_type: "text/plain".into(),
        }),
    )
    .unwrap();
    let stats = db.stats().unwrap();
    assert_eq!((stats.blobs, stats.blob_bytes), (1, 5));
    // Dropping the collection takes its content along.
    db.drop_collection("c").unwrap();
    assert_eq!(db.stats().unwrap().blobs, 0);
}

fn lexical_and_hybrid_search(store: &TestStore) {
    let db = store.open();
    db.create_collection("t").unwrap();
    let texts = [
        ("apple", "apple pie with cinnamon"),
        ("banana", "banana bread recipe"),
        ("both", "apple and banana smoothie"),
        ("car", "a red car on the road"),
    ];
    for (i, (id, text)) in texts.iter().enumerate() {
        db.insert(
            "t",
            doc(i as u64)
                .with_id(*id)
                .with_text(*text)
                .with_metadata(json!({"i": i})),
        )
        .unwrap();
    }
    let hits = db
        .search_lexical("t", "apple", 10, None, GroupBy::Document)
        .unwrap();
    let got: BTreeSet<String> = ids(&hits).into_iter().collect();
    assert_eq!(got, ["apple", "both"].map(String::from).into());
    // Any word may match; both words rank first.
    let hits = db
        .search_lexical("t", "apple banana", 10, None, GroupBy::Document)
        .unwrap();
    assert_eq!(hits[0].id, "both");
    assert_eq!(hits.len(), 3);
    let filter = Filter::from_json(&json!({"field": "i", "gte": 1})).unwrap();
    let hits = db
        .search_lexical("t", "apple", 10, Some(&filter), GroupBy::Document)
        .unwrap();
    assert_eq!(ids(&hits), vec!["both"]);
    assert!(db
        .search_lexical("t", "zeppelin", 10, None, GroupBy::Document)
        .unwrap()
        .is_empty());
    // Hybrid: the vector of "car" plus the word "apple".
    let hits = db
        .search_hybrid(
            "t",
            &random_unit(DIM, 3),
            "apple",
            4,
            None,
            &HybridOptions::default(),
            GroupBy::Document,
        )
        .unwrap();
    assert_eq!(hits.len(), 4);
    assert!(hits.iter().all(|h| h.fusion.is_some()));
    let top2: BTreeSet<String> = ids(&hits[..2]).into_iter().collect();
    assert!(top2.contains("car") || top2.contains("apple"), "{hits:?}");
    let ranges = db.highlights("t", "Apple pie, apple!", "apple").unwrap();
    assert_eq!(ranges, vec![(0, 5), (11, 16)]);
}

fn stats_and_paging(store: &TestStore) {
    let db = store.open();
    db.create_collection("p").unwrap();
    db.create_collection("q").unwrap();
    let docs: Vec<NewDocument> = (0..25)
        .map(|i| doc(i).with_id(format!("id{i:02}")))
        .collect();
    db.insert_many("p", docs).unwrap();
    db.insert("q", doc(99)).unwrap();
    let stats = db.stats().unwrap();
    assert_eq!(stats.documents, 26);
    assert_eq!((stats.model_id.as_str(), stats.dim), (MODEL, DIM));
    let kind = match store {
        TestStore::Embedded(_) => StoreKind::Embedded,
        TestStore::Postgres(_) => StoreKind::Postgres,
    };
    assert_eq!(stats.store, kind);
    let per: Vec<(String, u64)> = stats
        .collections
        .iter()
        .map(|c| (c.name.clone(), c.documents))
        .collect();
    assert_eq!(per, vec![("p".into(), 25), ("q".into(), 1)]);
    // Pages in id order.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, next) = db.list_documents("p", after.as_deref(), 10).unwrap();
        seen.extend(page.into_iter().map(|d| d.id));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let want: Vec<String> = (0..25).map(|i| format!("id{i:02}")).collect();
    assert_eq!(seen, want);
}

fn another_model_is_refused(store: &TestStore) {
    let db = store.open();
    db.create_collection("c").unwrap();
    db.close().unwrap();
    for (model, dim) in [("other-model", DIM), (MODEL, DIM * 2)] {
        let e = store
            .open_with(DbOptions::new(model, dim, "f32"))
            .err()
            .expect("refused");
        let message = e.to_string();
        assert!(e.is_bad_input(), "{message}");
        assert!(
            message.contains(MODEL) && message.contains(model),
            "{message}"
        );
    }
    let stored = Db::stored_options_at(&store.location()).unwrap().unwrap();
    assert_eq!((stored.model_id.as_str(), stored.dim), (MODEL, DIM));
    // The right model still opens it.
    assert_eq!(store.open().list_collections().unwrap().len(), 1);
}

fn compressed_and_high_dimensional_collections_score_exactly(store: &TestStore) {
    // Above 2,000 dimensions pgvector indexes half precision only, as it
    // does for a collection asking for compressed (int8) vectors: scores
    // must still be the exact float32 ones, and the nearest found.
    let dim = 2048;
    let db = store.open_with(DbOptions::new(MODEL, dim, "f32")).unwrap();
    db.create_collection("plain").unwrap();
    db.create_collection_with(
        "small",
        tkr_embed::db::CollectionOptions {
            vectors: tkr_embed::types::VectorEncoding::Int8,
            text_fields: Vec::new(),
        },
    )
    .unwrap();
    for collection in ["plain", "small"] {
        let docs: Vec<NewDocument> = (0..40)
            .map(|i| {
                NewDocument::new(Modality::Image, random_unit(dim, i)).with_id(format!("d{i}"))
            })
            .collect();
        db.insert_many(collection, docs).unwrap();
        for probe in [5u64, 33] {
            let query = random_unit(dim, probe);
            let hits = db.search(collection, &query, 5, None).unwrap();
            assert_eq!(hits[0].id, format!("d{probe}"), "{collection}");
            for hit in &hits {
                let i: u64 = hit.id[1..].parse().unwrap();
                let exact: f32 = random_unit(dim, i)
                    .iter()
                    .zip(&query)
                    .map(|(a, b)| a * b)
                    .sum();
                assert!(
                    (hit.score - exact).abs() < 1e-5,
                    "{collection}: {} vs {exact}",
                    hit.score
                );
            }
        }
        let stored = db.get_vector(collection, "d7").unwrap().unwrap();
        assert_eq!(stored, random_unit(dim, 7));
    }
}

#[test]
fn postgres_tls_follows_sslmode() {
    let pg = PgDatabase::new("tls");
    // The test server offers no TLS: `prefer` (the default) connects in
    // plain text, `require` is refused with a clear error.
    let plain = format!("{}?sslmode=prefer", pg.url);
    let db = Db::open_at(
        &StoreLocation::Postgres(plain),
        DbOptions::new(MODEL, DIM, "f32"),
        1,
    )
    .unwrap();
    db.create_collection("ok").unwrap();
    let required = format!("{}?sslmode=require", pg.url);
    let e = Db::open_at(
        &StoreLocation::Postgres(required),
        DbOptions::new(MODEL, DIM, "f32"),
        1,
    )
    .err()
    .expect("refused without TLS");
    assert!(
        matches!(
            e,
            DbError::Postgres(tkr_embed::db::postgres::PgError::Connect(_))
        ),
        "{e}"
    );
    assert!(e.to_string().to_lowercase().contains("tls"), "{e}");
}

#[test]
fn postgres_servers_starting_together_migrate_once() {
    let pg = PgDatabase::new("migrate_once");
    let location = StoreLocation::Postgres(pg.url.clone());
    std::thread::scope(|s| {
        let opened: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    Db::open_at(&location, DbOptions::new(MODEL, DIM, "f32"), 1)
                        .map(|db| db.list_collections().map(|c| c.len()))
                })
            })
            .collect();
        for handle in opened {
            assert_eq!(handle.join().unwrap().unwrap().unwrap(), 0);
        }
    });
    let mut client = pg.client();
    let versions: Vec<i32> = client
        .query("SELECT version FROM tkr_migrations ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![1]);
    let meta: i64 = client
        .query_one("SELECT count(*) FROM tkr_meta", &[])
        .unwrap()
        .get(0);
    assert_eq!(meta, 3);
}

#[test]
fn postgres_that_cannot_be_reached_is_a_clear_unavailable_error() {
    // A port nobody listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://tkr:secret@127.0.0.1:{port}/nowhere");
    let e = Db::open_at(
        &StoreLocation::Postgres(url.clone()),
        DbOptions::new(MODEL, DIM, "f32"),
        1,
    )
    .err()
    .expect("nothing listens there");
    assert!(
        matches!(
            e,
            DbError::Postgres(tkr_embed::db::postgres::PgError::Connect(_))
        ),
        "{e}"
    );
    assert!(!e.is_bad_input());
    // The password is never shown.
    assert_eq!(
        StoreLocation::parse(&url).to_string(),
        format!("postgres://tkr:***@127.0.0.1:{port}/nowhere")
    );
    assert!(!e.to_string().contains("secret"), "{e}");
}
