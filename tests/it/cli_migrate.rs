//! `tkr-embed migrate`: an embedded database of images, a video, a PDF and
//! a text file copied into PostgreSQL and back into a new directory — same
//! collections and ids, documents equal, vectors bit for bit, content byte
//! for byte, the same search results; a second run copies nothing.
use std::process::Command;

use serde_json::Value;
use tkr_embed::db::{Db, StoreLocation};

use crate::media_ingest::media;
use crate::model_parity::fixture_dir;
use crate::pg::PgDatabase;

fn tkr(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tkr-embed"))
        .arg("--model")
        .arg(fixture_dir().join("model"))
        .args(args)
        .env("TKR_PROCESSING_MAX_VIDEO_FRAMES", "4")
        .env("TKR_PROCESSING_PDF_RENDER_MAX_SIDE", "100")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn open(location: &StoreLocation) -> Db {
    let options = Db::stored_options_at(location)
        .unwrap()
        .expect("a database");
    Db::open_at(location, options, 2).unwrap()
}

/// Everything one store holds, compared with another's.
fn assert_same(a: &Db, b: &Db) {
    let collections = a.list_collections().unwrap();
    let names = |c: &[tkr_embed::db::CollectionInfo]| -> Vec<(String, u64, String)> {
        c.iter()
            .map(|c| (c.name.clone(), c.documents, c.vectors.as_str().to_owned()))
            .collect()
    };
    assert_eq!(names(&collections), names(&b.list_collections().unwrap()));
    for c in &collections {
        let (docs, next) = a.list_documents(&c.name, None, 1000).unwrap();
        assert!(next.is_none());
        for doc in &docs {
            let other = b.get(&c.name, &doc.id).unwrap().expect("copied");
            assert_eq!(
                (
                    &other.modality,
                    &other.text,
                    &other.metadata,
                    &other.segments
                ),
                (&doc.modality, &doc.text, &doc.metadata, &doc.segments),
                "{}",
                doc.id
            );
            assert_eq!(other.content, doc.content, "{}", doc.id);
            let bits = |v: Vec<Vec<f32>>| -> Vec<u32> {
                v.into_iter().flatten().map(f32::to_bits).collect()
            };
            let va = a.get_vectors(&c.name, &doc.id).unwrap().unwrap();
            let vb = b.get_vectors(&c.name, &doc.id).unwrap().unwrap();
            assert_eq!(bits(va.clone()), bits(vb), "vectors of {}", doc.id);
            assert_eq!(
                a.get_content(&c.name, &doc.id).unwrap(),
                b.get_content(&c.name, &doc.id).unwrap()
            );
            // The same results for a search with each of its vectors.
            for query in va {
                let ha = a.search(&c.name, &query, 5, None).unwrap();
                let hb = b.search(&c.name, &query, 5, None).unwrap();
                let ids = |h: &[tkr_embed::db::Hit]| -> Vec<String> {
                    h.iter().map(|h| h.id.clone()).collect()
                };
                assert_eq!(ids(&ha), ids(&hb), "search with a vector of {}", doc.id);
                for (x, y) in ha.iter().zip(&hb) {
                    assert!(
                        (x.score - y.score).abs() < 1e-5,
                        "{} vs {}",
                        x.score,
                        y.score
                    );
                    assert_eq!(x.segment, y.segment);
                }
            }
        }
    }
}

#[test]
fn migrate_round_trips_media_through_postgres() {
    let _mlx = crate::mlx_lock();
    let src = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    for (from, to) in [
        (fixture_dir().join("images/img_tiny_20x30.png"), "a.png"),
        (fixture_dir().join("images/img_wide_640x96.png"), "b.png"),
        (media("video.mp4"), "v.mp4"),
        (media("three_pages.pdf"), "doc.pdf"),
    ] {
        std::fs::copy(from, src.path().join(to)).unwrap();
    }
    std::fs::write(
        src.path().join("notes.txt"),
        "Notes about the pictures and the video.",
    )
    .unwrap();
    let first = work.path().join("first");
    let back = work.path().join("back");
    let (ok, _, stderr) = tkr(&[
        "--data-dir",
        first.to_str().unwrap(),
        "import",
        "-c",
        "media",
        src.path().to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = tkr(&[
        "--data-dir",
        first.to_str().unwrap(),
        "collections",
        "create",
        "empty",
        "--vectors",
        "int8",
    ]);
    assert!(ok, "{stderr}");

    let pg = PgDatabase::new("migrate");
    let (ok, stdout, stderr) = tkr(&[
        "migrate",
        "--from",
        first.to_str().unwrap(),
        "--to",
        &pg.url,
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report[1]["name"], "media", "{report}");
    assert_eq!(report[1]["documents"], 5, "{report}");
    assert_eq!(report[1]["copied"], 5, "{report}");

    let sled_dir = format!("sled:{}", back.display());
    let (ok, stdout, stderr) = tkr(&["migrate", "--from", &pg.url, "--to", &sled_dir]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("counts match"), "{stdout}");

    // A second run finds everything there.
    let (ok, stdout, stderr) = tkr(&[
        "migrate",
        "--from",
        first.to_str().unwrap(),
        "--to",
        &pg.url,
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report[1]["copied"], 0, "{report}");
    assert_eq!(report[1]["skipped"], 5, "{report}");

    let first = open(&StoreLocation::Embedded(first));
    let postgres = open(&StoreLocation::Postgres(pg.url.clone()));
    let back = open(&StoreLocation::Embedded(back));
    assert_same(&first, &postgres);
    assert_same(&first, &back);
    let video = first
        .list_documents("media", None, 10)
        .unwrap()
        .0
        .into_iter()
        .find(|d| d.id.ends_with("v.mp4"))
        .expect("the video");
    assert!(!video.segments.is_empty(), "the video has segments");

    // Refusals: the same store twice, a store without a database.
    let (ok, _, stderr) = tkr(&["migrate", "--from", &pg.url, "--to", &pg.url]);
    assert!(!ok && stderr.contains("same store"), "{stderr}");
    let nothing = work.path().join("nothing");
    let (ok, _, stderr) = tkr(&[
        "migrate",
        "--from",
        nothing.to_str().unwrap(),
        "--to",
        &sled_dir,
    ]);
    assert!(!ok && stderr.contains("no database"), "{stderr}");
}
