//! On-disk format compatibility: a small database written by the code of
//! each store format version is checked in under
//! `tests/fixtures/format-v<N>/` (see its README.md), and today's code must
//! read a copy of it exactly: documents, metadata, vectors bit for bit,
//! content bytes, index checkpoints and search results. The generator is
//! the ignored test [`generate_format_fixture`].
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tkr_embed::db::{
    CollectionOptions, Content, ContentData, ContentInfo, Db, DbOptions, NewDocument,
};
use tkr_embed::index::{Filter, GroupBy};
use tkr_embed::store::FORMAT_VERSION;
use tkr_embed::types::{Modality, Span, VectorEncoding};

const MODEL: &str = "format-fixture-model";
const DIM: usize = 8;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture_dir(version: u32) -> PathBuf {
    fixtures().join(format!("format-v{version}"))
}

/// A unit vector whose normalisation is exact: ±0.5 at four positions
/// (`pattern`: bit i set = position i, `signs`: bit set = negative).
fn unit(pattern: u8, signs: u8) -> Vec<f32> {
    assert_eq!(pattern.count_ones(), 4);
    (0..DIM)
        .map(|i| match (pattern >> i & 1, signs >> i & 1) {
            (0, _) => 0.0,
            (_, 0) => 0.5,
            _ => -0.5,
        })
        .collect()
}

/// One document of the fixture as written (the final version).
struct FixtureDoc {
    collection: &'static str,
    id: &'static str,
    modality: Modality,
    text: Option<&'static str>,
    metadata: Value,
    content: Option<Content>,
    /// Primary first, then one per segment.
    vectors: Vec<Vec<f32>>,
    segments: Vec<Span>,
    /// Sequence number of the write that produced this version.
    seq: u64,
}

impl FixtureDoc {
    fn new_document(&self) -> NewDocument {
        let mut doc = NewDocument::new(self.modality, self.vectors[0].clone()).with_id(self.id);
        doc.text = self.text.map(str::to_owned);
        doc.metadata = self.metadata.clone();
        doc.content = self.content.clone();
        for (span, v) in self.segments.iter().zip(&self.vectors[1..]) {
            doc = doc.with_segment(span.clone(), v.clone());
        }
        doc
    }
}

/// The content bytes of the picture documents (a 1×1 PNG, checked in).
fn pixel(version: u32) -> Vec<u8> {
    std::fs::read(fixture_dir(version).join("pixel.png")).unwrap()
}

/// The live documents, in write order of their final versions. The
/// generator also writes and deletes `gone`, writes a first version of
/// `dog`, and drops a collection `dropped` with one document.
fn documents(pixel: &[u8]) -> Vec<FixtureDoc> {
    let png = || {
        Some(Content::Bytes {
            data: pixel.to_vec(),
            content_type: "image/png".into(),
        })
    };
    vec![
        FixtureDoc {
            collection: "notes",
            id: "fox",
            modality: Modality::Text,
            text: Some("the quick brown fox jumps over the fence"),
            metadata: json!({"title": "Fox story", "year": 2021, "tags": ["animal", "quick"], "rating": 4.5}),
            content: None,
            vectors: vec![unit(0b0000_1111, 0)],
            segments: vec![],
            seq: 1,
        },
        FixtureDoc {
            collection: "notes",
            id: "pic",
            modality: Modality::Image,
            text: None,
            metadata: json!({"title": "A single pixel"}),
            content: png(),
            vectors: vec![unit(0b1111_0000, 0)],
            segments: vec![],
            seq: 3,
        },
        FixtureDoc {
            collection: "notes",
            id: "pic-copy",
            modality: Modality::Image,
            text: None,
            metadata: json!({"title": "The same pixel", "copy": true}),
            content: png(),
            vectors: vec![unit(0b1111_0000, 0b1000_0000)],
            segments: vec![],
            seq: 4,
        },
        FixtureDoc {
            collection: "notes",
            id: "clip",
            modality: Modality::Video,
            text: Some("a clip about birds"),
            metadata: json!({"title": "Birds", "duration_s": 5.0}),
            content: Some(Content::External {
                uri: "file:///videos/clip.mp4".into(),
                content_type: Some("video/mp4".into()),
            }),
            vectors: vec![
                unit(0b0011_0011, 0),
                unit(0b0011_0011, 0b0000_0001),
                unit(0b0011_0011, 0b0000_0010),
            ],
            segments: vec![
                Span::Time {
                    start_s: 0.0,
                    end_s: 2.5,
                },
                Span::Time {
                    start_s: 2.5,
                    end_s: 5.0,
                },
            ],
            seq: 5,
        },
        FixtureDoc {
            collection: "notes",
            id: "paper",
            modality: Modality::Document,
            text: Some("page one is about rivers. page two is about mountains."),
            metadata: json!({"title": "Two pages", "pages": 2}),
            content: None,
            vectors: vec![
                unit(0b0101_0101, 0),
                unit(0b0101_0101, 0b0000_0100),
                unit(0b0101_0101, 0b0001_0000),
            ],
            segments: vec![Span::Page { page: 1 }, Span::Bytes { start: 26, end: 55 }],
            seq: 6,
        },
        FixtureDoc {
            collection: "notes",
            id: "dog",
            modality: Modality::Text,
            text: Some("a lazy dog sleeps all afternoon"),
            metadata: json!({"title": "Dog", "nested": {"k": [1, 2, {"z": null}]}, "flag": true}),
            content: None,
            vectors: vec![unit(0b1100_0011, 0b0100_0000)],
            segments: vec![],
            seq: 9,
        },
        FixtureDoc {
            collection: "small",
            id: "s1",
            modality: Modality::Text,
            text: Some("first small one"),
            metadata: json!({"n": 1}),
            content: None,
            vectors: vec![unit(0b1010_1010, 0)],
            segments: vec![],
            seq: 10,
        },
        FixtureDoc {
            collection: "small",
            id: "s2",
            modality: Modality::Fused,
            text: Some("second small one"),
            metadata: json!({"n": 2}),
            content: None,
            vectors: vec![unit(0b1010_1010, 0b0000_0010)],
            segments: vec![],
            seq: 11,
        },
        FixtureDoc {
            collection: "small",
            id: "s3",
            modality: Modality::Text,
            text: Some("third small one"),
            metadata: json!({"n": 3}),
            content: None,
            vectors: vec![unit(0b1001_1001, 0b1000_0000)],
            segments: vec![],
            seq: 12,
        },
    ]
}

/// Writes the fixture of today's [`FORMAT_VERSION`] (never over an
/// existing one: older fixtures stay as their code wrote them). Run:
/// `cargo test --test it generate_format_fixture -- --ignored`.
#[test]
#[ignore = "writes tests/fixtures/format-v<N>; run by hand for a new format version"]
fn generate_format_fixture() {
    let dir = fixture_dir(FORMAT_VERSION);
    let data = dir.join("db");
    assert!(!data.exists(), "{} exists already", data.display());
    std::fs::create_dir_all(&dir).unwrap();
    let pixel_path = dir.join("pixel.png");
    if !pixel_path.exists() {
        let image = image::RgbImage::from_pixel(1, 1, image::Rgb([200, 40, 90]));
        image.save(&pixel_path).unwrap();
    }
    let docs = documents(&pixel(FORMAT_VERSION));
    let db = Db::open(&data, DbOptions::new(MODEL, DIM, "f32")).unwrap();
    db.create_collection_with(
        "notes",
        CollectionOptions {
            text_fields: vec!["title".into()],
            ..Default::default()
        },
    )
    .unwrap();
    db.create_collection_with(
        "small",
        CollectionOptions {
            vectors: VectorEncoding::Int8,
            ..Default::default()
        },
    )
    .unwrap();
    db.create_collection("dropped").unwrap();
    let by_id = |id: &str| docs.iter().find(|d| d.id == id).unwrap();
    let write = |collection: &str, doc: NewDocument, expected: Option<u64>| {
        let id = db.insert(collection, doc).unwrap();
        if let Some(e) = expected {
            assert_eq!(db.get(collection, &id).unwrap().unwrap().seq, e, "{id}");
        }
    };
    write("notes", by_id("fox").new_document(), Some(1));
    let first_dog = NewDocument::new(Modality::Text, unit(0b1100_0011, 0))
        .with_id("dog")
        .with_text("a lazy dog sleeps all day")
        .with_metadata(json!({"title": "Dog, first version"}));
    write("notes", first_dog, None);
    for id in ["pic", "pic-copy", "clip", "paper"] {
        let d = by_id(id);
        write("notes", d.new_document(), Some(d.seq));
    }
    let gone = NewDocument::new(Modality::Text, unit(0b0110_0110, 0))
        .with_id("gone")
        .with_text("deleted before the fixture was closed");
    write("notes", gone, None);
    assert!(db.delete("notes", "gone").unwrap());
    for id in ["dog", "s1", "s2", "s3"] {
        let d = by_id(id);
        write(d.collection, d.new_document(), Some(d.seq));
    }
    write(
        "dropped",
        NewDocument::new(Modality::Text, unit(0b0110_0110, 0)).with_id("x"),
        Some(13),
    );
    assert!(db.drop_collection("dropped").unwrap());
    // Checkpoints and the lexical indexes' commits are written on close.
    db.close().unwrap();
}

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Path → blake3 of every file under `dir`.
fn tree_hashes(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(tree_hashes(&path));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            out.insert(path, blake3::hash(&bytes).to_hex().to_string());
        }
    }
    out
}

fn bits(vectors: &[Vec<f32>]) -> Vec<Vec<u32>> {
    vectors
        .iter()
        .map(|v| v.iter().map(|x| x.to_bits()).collect())
        .collect()
}

/// Today's code reads a copy of the fixture of `version` exactly.
fn check_fixture(version: u32) {
    let fixture = fixture_dir(version).join("db");
    let before = tree_hashes(&fixture);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("db");
    copy_tree(&fixture, &data);
    let pixel = pixel(version);
    let docs = documents(&pixel);

    let options = Db::stored_options(&data).unwrap().unwrap();
    assert_eq!((options.model_id.as_str(), options.dim), (MODEL, DIM));
    let db = Db::open(&data, options).unwrap();
    let stats = db.stats().unwrap();
    // Opened by today's code (after any migration).
    assert_eq!(stats.format_version, FORMAT_VERSION);
    assert_eq!(stats.last_seq, 13);
    assert_eq!(stats.documents, 9);
    assert_eq!(stats.blobs, 1, "the two pictures share one blob");
    assert_eq!(stats.blob_bytes, pixel.len() as u64);
    for c in &stats.collections {
        assert!(
            c.index.loaded_from_checkpoint,
            "{}: the checkpoint was rebuilt instead of loaded. If the checkpoint \
             format changed on purpose (old checkpoints are rebuilt), this \
             expectation may change for old fixtures; the data must still match.",
            c.name
        );
    }
    let collections: Vec<(String, u64, VectorEncoding, Vec<String>)> = db
        .list_collections()
        .unwrap()
        .into_iter()
        .map(|c| (c.name, c.documents, c.vectors, c.text_fields))
        .collect();
    assert_eq!(
        collections,
        [
            ("notes".into(), 6, VectorEncoding::F32, vec!["title".into()]),
            ("small".into(), 3, VectorEncoding::Int8, vec![]),
        ]
    );

    for d in &docs {
        let got = db.get(d.collection, d.id).unwrap().unwrap();
        let what = format!("{}/{}", d.collection, d.id);
        assert_eq!(got.modality, d.modality, "{what}");
        assert_eq!(got.text.as_deref(), d.text, "{what}");
        assert_eq!(Value::Object(got.metadata.clone()), d.metadata, "{what}");
        assert_eq!(got.segments, d.segments, "{what}");
        assert_eq!(got.seq, d.seq, "{what}");
        // Written in 2025 or later, and before 2100.
        assert!(got.created_ms > 1_735_000_000_000 && got.created_ms < 4_102_444_800_000);
        assert!(got.created_ms <= got.updated_ms, "{what}");
        let vectors = db.get_vectors(d.collection, d.id).unwrap().unwrap();
        assert_eq!(bits(&vectors), bits(&d.vectors), "{what}: vectors");
        let content = db.get_content(d.collection, d.id).unwrap();
        match &d.content {
            None => {
                assert!(got.content.is_none() && content.is_none(), "{what}");
            }
            Some(Content::Bytes { data, content_type }) => {
                assert_eq!(
                    got.content,
                    Some(ContentInfo::Stored {
                        content_type: content_type.clone(),
                        len: data.len() as u64,
                        hash: blake3::hash(data).to_hex().to_string(),
                    }),
                    "{what}"
                );
                assert_eq!(
                    content,
                    Some(ContentData::Bytes {
                        data: data.clone(),
                        content_type: content_type.clone()
                    }),
                    "{what}"
                );
            }
            Some(Content::External { uri, content_type }) => {
                let external = ContentInfo::External {
                    uri: uri.clone(),
                    content_type: content_type.clone(),
                };
                assert_eq!(got.content, Some(external), "{what}");
            }
        }
        // Found first by its own vector, exactly.
        let hits = db.search(d.collection, &d.vectors[0], 1, None).unwrap();
        assert_eq!(hits[0].id, d.id, "{what}");
        assert!(
            (hits[0].score - 1.0).abs() < 1e-5,
            "{what}: {}",
            hits[0].score
        );
    }
    let dog = db.get("notes", "dog").unwrap().unwrap();
    assert!(dog.created_ms <= dog.updated_ms);
    assert!(db.get("notes", "gone").unwrap().is_none());
    assert!(db.get("notes", "x").unwrap().is_none());

    // Whole result lists: vector, by segment, lexical (text and the title
    // field), filtered.
    let ids = |hits: Vec<tkr_embed::db::Hit>| hits.into_iter().map(|h| h.id).collect::<Vec<_>>();
    // Exact nearest documents (best of primary and segment vectors) from
    // the vectors the fixture was written with.
    let query: Vec<f32> = {
        let mut q = vec![0.9f32, 0.1, 0.3, -0.2, 0.05, 0.4, -0.6, 0.25];
        tkr_embed::types::l2_normalize(&mut q).unwrap();
        q
    };
    for collection in ["notes", "small"] {
        let mut exact: Vec<(f32, &str)> = docs
            .iter()
            .filter(|d| d.collection == collection)
            .map(|d| {
                let best = d
                    .vectors
                    .iter()
                    .map(|v| tkr_embed::types::dot(v, &query))
                    .fold(f32::MIN, f32::max);
                (best, d.id)
            })
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let hits = db.search(collection, &query, 10, None).unwrap();
        assert_eq!(
            hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
            exact.iter().map(|e| e.1).collect::<Vec<_>>(),
            "{collection}"
        );
        for (h, (score, _)) in hits.iter().zip(&exact) {
            assert!((h.score - score).abs() < 1e-4, "{collection}/{}", h.id);
        }
    }
    let hits = db
        .search_grouped(
            "notes",
            &unit(0b0011_0011, 0b0000_0010),
            2,
            None,
            GroupBy::Segment,
        )
        .unwrap();
    assert_eq!(hits[0].id, "clip");
    assert_eq!(
        hits[0].segment.as_ref().map(|s| s.span.clone()),
        Some(Span::Time {
            start_s: 2.5,
            end_s: 5.0
        })
    );
    let lexical = |q: &str| {
        ids(db
            .search_lexical("notes", q, 10, None, GroupBy::Document)
            .unwrap())
    };
    assert_eq!(lexical("fox"), ["fox"]);
    let mut pixel_hits = lexical("pixel");
    pixel_hits.sort();
    assert_eq!(pixel_hits, ["pic", "pic-copy"]);
    assert_eq!(lexical("mountains"), ["paper"]);
    assert_eq!(
        lexical("day"),
        Vec::<String>::new(),
        "the first dog is gone"
    );
    let filter = Filter::from_json(&json!({"field": "n", "gte": 2})).unwrap();
    assert_eq!(
        ids(db
            .search("small", &unit(0b1010_1010, 0), 10, Some(&filter))
            .unwrap()),
        ["s2", "s3"]
    );
    drop(db);
    assert_eq!(
        tree_hashes(&fixture),
        before,
        "the fixture itself was changed"
    );
}

fn fixture_versions() -> Vec<u32> {
    let mut versions: Vec<u32> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().ok()?;
            name.strip_prefix("format-v")?.parse().ok()
        })
        .collect();
    versions.sort();
    versions
}

/// Every fixture, today's format's and older ones, reads exactly.
#[test]
fn the_format_fixtures_read_exactly() {
    let versions = fixture_versions();
    assert!(!versions.is_empty());
    for version in versions {
        check_fixture(version);
    }
}

/// The store format version is pinned to the fixtures: a bump without a new
/// fixture (and a migration from the old one) fails here.
#[test]
fn format_version_is_pinned_to_the_fixtures() {
    let versions = fixture_versions();
    assert!(
        versions.contains(&FORMAT_VERSION),
        "store::FORMAT_VERSION is {FORMAT_VERSION} but tests/fixtures/format-v{FORMAT_VERSION}/ \
         does not exist. A format bump needs: a migration in Store::open from the previous \
         version (today an older version is refused), a new fixture (cargo test --test it \
         generate_format_fixture -- --ignored), and the old fixtures kept and opened by this \
         test through the migration (see tests/fixtures/format-v1/README.md)."
    );
    assert_eq!(
        versions.last(),
        Some(&FORMAT_VERSION),
        "a fixture is newer than store::FORMAT_VERSION"
    );
    // Older fixtures must still open: through a migration, which does not
    // exist yet (there is one version), so any older fixture fails here.
    for &old in versions.iter().filter(|&&v| v < FORMAT_VERSION) {
        let tmp = tempfile::tempdir().unwrap();
        copy_tree(&fixture_dir(old).join("db"), tmp.path());
        let options = Db::stored_options(tmp.path()).unwrap().unwrap();
        Db::open(tmp.path(), options).unwrap_or_else(|e| {
            panic!("the format-v{old} fixture does not open (no migration?): {e}")
        });
    }
}
