//! Content blobs: deduplicated by hash, removed with their last document.
use tkr_embed::db::{Content, ContentData, ContentInfo, Db, DbError, NewDocument};
use tkr_embed::types::Modality;

use crate::db_common::{open, random_unit};

fn with_bytes(id: &str, bytes: &[u8], seed: u64) -> NewDocument {
    NewDocument::new(Modality::Image, random_unit(8, seed))
        .with_id(id)
        .with_content(Content::Bytes {
            data: bytes.to_vec(),
            content_type: "image/png".into(),
        })
}

fn blobs(db: &Db) -> (u64, u64) {
    let s = db.stats().unwrap();
    (s.blobs, s.blob_bytes)
}

#[test]
fn blobs_are_shared_and_collected() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), 8);
    db.create_collection("a").unwrap();
    db.create_collection("b").unwrap();
    let png = vec![7u8; 1000];
    db.insert("a", with_bytes("x", &png, 1)).unwrap();
    db.insert("a", with_bytes("y", &png, 2)).unwrap();
    db.insert("b", with_bytes("x", &png, 3)).unwrap();
    assert_eq!(blobs(&db), (1, 1000), "one copy for three documents");
    match db.get_content("a", "y").unwrap() {
        Some(ContentData::Bytes { data, content_type }) => {
            assert_eq!(data, png);
            assert_eq!(content_type, "image/png");
        }
        other => panic!("{other:?}"),
    }
    let doc = db.get("a", "x").unwrap().unwrap();
    match doc.content {
        Some(ContentInfo::Stored { len, hash, .. }) => {
            assert_eq!(len, 1000);
            // The content hash as 64 lowercase hex digits, no separators.
            assert_eq!(hash, blake3::hash(&png).to_hex().as_str());
        }
        other => panic!("{other:?}"),
    }

    assert!(db.delete("a", "x").unwrap());
    assert_eq!(blobs(&db), (1, 1000));
    // Replacing with other bytes releases the old blob reference.
    db.insert("a", with_bytes("y", b"other", 2)).unwrap();
    assert_eq!(blobs(&db), (2, 1005));
    // Re-inserting the same bytes under the same id keeps one reference.
    db.insert("a", with_bytes("y", b"other", 2)).unwrap();
    assert_eq!(blobs(&db), (2, 1005));
    assert!(db.drop_collection("b").unwrap());
    assert_eq!(
        blobs(&db),
        (1, 5),
        "dropping a collection releases its blobs"
    );
    assert!(db.delete("a", "y").unwrap());
    assert_eq!(blobs(&db), (0, 0), "last reference gone, blob gone");

    // External references store no bytes.
    let doc = NewDocument::new(Modality::Video, random_unit(8, 9))
        .with_id("v")
        .with_content(Content::External {
            uri: "s3://bucket/v.mp4".into(),
            content_type: Some("video/mp4".into()),
        });
    db.insert("a", doc).unwrap();
    assert_eq!(blobs(&db), (0, 0));
    assert_eq!(
        db.get_content("a", "v").unwrap(),
        Some(ContentData::External {
            uri: "s3://bucket/v.mp4".into(),
            content_type: Some("video/mp4".into())
        })
    );
    db.insert(
        "a",
        NewDocument::new(Modality::Text, random_unit(8, 10)).with_id("t"),
    )
    .unwrap();
    assert_eq!(db.get_content("a", "t").unwrap(), None);
    let missing = db.get_content("a", "nope").unwrap_err();
    assert!(matches!(missing, DbError::DocumentNotFound { .. }) && missing.is_bad_input());
}

#[test]
fn blob_refcounts_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path(), 8);
        db.create_collection("a").unwrap();
        let docs = (0..10)
            .map(|i| with_bytes(&format!("d{i}"), b"same", i))
            .collect();
        db.insert_many("a", docs).unwrap();
        assert_eq!(blobs(&db), (1, 4));
    }
    let db = open(dir.path(), 8);
    for i in 0..9 {
        db.delete("a", &format!("d{i}")).unwrap();
    }
    assert_eq!(blobs(&db), (1, 4));
    db.delete("a", "d9").unwrap();
    assert_eq!(blobs(&db), (0, 0));
}
