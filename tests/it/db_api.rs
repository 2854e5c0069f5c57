//! The library API: collections, documents, segments, errors.
use std::sync::Arc;

use serde_json::json;
use tkr_embed::db::{Db, DbError, NewDocument};
use tkr_embed::types::{Modality, Span};

use crate::db_common::{open, random_unit};

const DIM: usize = 8;

#[test]
fn db_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Db>();
    assert_send_sync::<Arc<Db>>();
}

#[test]
fn insert_get_upsert_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), DIM);
    db.create_collection("c").unwrap();
    let id = db
        .insert(
            "c",
            NewDocument::new(Modality::Text, random_unit(DIM, 1)).with_text("hi"),
        )
        .unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    let other = db
        .insert("c", NewDocument::new(Modality::Text, random_unit(DIM, 2)))
        .unwrap();
    assert_ne!(id, other);

    let doc = NewDocument::new(Modality::Image, vec![1.0; DIM])
        .with_id("fixed")
        .with_metadata(json!({"k": 1}));
    db.insert("c", doc).unwrap();
    let first = db.get("c", "fixed").unwrap().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    let doc = NewDocument::new(Modality::Text, vec![-1.0; DIM])
        .with_id("fixed")
        .with_metadata(json!({"k": 2}));
    db.insert("c", doc).unwrap();
    let second = db.get("c", "fixed").unwrap().unwrap();
    assert_eq!(second.metadata["k"], 2);
    assert_eq!(second.modality, Modality::Text);
    assert_eq!(second.created_ms, first.created_ms);
    assert!(second.updated_ms > first.updated_ms && second.seq > first.seq);
    assert_eq!(
        db.list_collections().unwrap()[0].documents,
        3,
        "upsert, not a new doc"
    );
    assert_eq!(
        db.get("c", &id).unwrap().unwrap().text.as_deref(),
        Some("hi")
    );
    assert!(db.get("c", "nope").unwrap().is_none());

    let bad: Vec<(NewDocument, &str)> = vec![
        (
            NewDocument::new(Modality::Text, vec![1.0; DIM + 1]),
            "dimension",
        ),
        (
            NewDocument::new(Modality::Text, vec![0.0; DIM]),
            "zero length",
        ),
        (
            NewDocument::new(Modality::Text, vec![f32::NAN; DIM]),
            "not finite",
        ),
        (
            NewDocument::new(Modality::Text, vec![1.0; DIM]).with_id(""),
            "empty",
        ),
        (
            NewDocument::new(Modality::Text, vec![1.0; DIM]).with_metadata(json!([1])),
            "JSON object",
        ),
        (
            NewDocument::new(Modality::Text, vec![1.0; DIM]).with_segment(
                Span::Time {
                    start_s: 5.0,
                    end_s: 1.0,
                },
                vec![1.0; DIM],
            ),
            "start_s",
        ),
    ];
    for (doc, needle) in bad {
        let e = db.insert("c", doc).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        assert!(e.to_string().contains(needle), "{e} lacks {needle}");
    }
    // A bad document fails the whole batch, before anything is written.
    let batch = vec![
        NewDocument::new(Modality::Text, vec![1.0; DIM]).with_id("ok"),
        NewDocument::new(Modality::Text, vec![1.0; 3]).with_id("bad"),
    ];
    assert!(db.insert_many("c", batch).unwrap_err().is_bad_input());
    assert!(db.get("c", "ok").unwrap().is_none());
    let e = db
        .insert("nope", NewDocument::new(Modality::Text, vec![1.0; DIM]))
        .unwrap_err();
    assert!(matches!(e, DbError::UnknownCollection(_)));
    let e = db.search("c", &[1.0; 3], 3, None).unwrap_err();
    assert!(matches!(
        e,
        DbError::WrongDimension {
            expected: DIM,
            got: 3
        }
    ));
    let e = db.search_by_document("c", "nope", 3, None).unwrap_err();
    assert!(matches!(e, DbError::DocumentNotFound { .. }) && e.is_bad_input());
}

#[test]
fn segments_are_reported_and_documents_returned_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), DIM);
    db.create_collection("media").unwrap();
    let spans = [
        Span::Time {
            start_s: 0.0,
            end_s: 4.0,
        },
        Span::Time {
            start_s: 4.0,
            end_s: 8.5,
        },
    ];
    let mut video = NewDocument::new(Modality::Video, random_unit(DIM, 100)).with_id("video");
    for (i, span) in spans.iter().enumerate() {
        video = video.with_segment(span.clone(), random_unit(DIM, 101 + i as u64));
    }
    let pdf = NewDocument::new(Modality::Document, random_unit(DIM, 200))
        .with_id("pdf")
        .with_segment(Span::Page { page: 3 }, random_unit(DIM, 201));
    let text = NewDocument::new(Modality::Text, random_unit(DIM, 300))
        .with_id("text")
        .with_segment(Span::Bytes { start: 10, end: 90 }, random_unit(DIM, 301));
    db.insert_many("media", vec![video, pdf, text]).unwrap();

    let hits = db
        .search("media", &random_unit(DIM, 102), 10, None)
        .unwrap();
    assert_eq!(hits.len(), 3, "each document once: {hits:?}");
    assert_eq!(hits[0].id, "video");
    let seg = hits[0].segment.as_ref().unwrap();
    assert_eq!((seg.index, &seg.span), (1, &spans[1]));
    assert!((hits[0].score - 1.0).abs() < 1e-5);

    let hits = db.search("media", &random_unit(DIM, 201), 1, None).unwrap();
    assert_eq!(hits[0].id, "pdf");
    assert_eq!(
        hits[0].segment.as_ref().unwrap().span,
        Span::Page { page: 3 }
    );
    let hits = db.search("media", &random_unit(DIM, 300), 1, None).unwrap();
    assert_eq!(
        (hits[0].id.as_str(), hits[0].segment.as_ref()),
        ("text", None)
    );

    let doc = db.get("media", "video").unwrap().unwrap();
    assert_eq!(doc.segments, spans);

    let similar = db.search_by_document("media", "pdf", 5, None).unwrap();
    assert_eq!(similar.len(), 2);
    assert!(similar.iter().all(|h| h.id != "pdf"));
}
