//! The database commands of the binary: insert (embedded or with a vector),
//! get, search, delete, collections, stats, reindex.
use std::process::{Command, Output};

use serde_json::Value;

use crate::model_parity::fixture_dir;

struct Tkr {
    data: tempfile::TempDir,
}

impl Tkr {
    fn new() -> Self {
        Tkr {
            data: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let model = fixture_dir().join("model");
        Command::new(env!("CARGO_BIN_EXE_tkr-embed"))
            .arg("--data-dir")
            .arg(self.data.path())
            .arg("--model")
            .arg(&model)
            .args(args)
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn image(name: &str) -> String {
    fixture_dir()
        .join(format!("images/{name}.png"))
        .display()
        .to_string()
}

#[test]
fn insert_search_get_delete_through_the_model() {
    let t = Tkr::new();
    let names = ["img_medium_333x250", "img_wide_640x96", "img_tiny_20x30"];
    for name in names {
        let meta = format!(r#"{{"name": "{name}"}}"#);
        let v = t.json(&[
            "insert",
            "-c",
            "pics",
            "--id",
            name,
            "--image",
            &image(name),
            "--metadata",
            &meta,
            "--json",
        ]);
        assert_eq!(v["id"], name);
    }
    t.json(&[
        "insert",
        "-c",
        "pics",
        "--id",
        "note",
        "--text",
        "Describe the shapes in this picture.",
        "--json",
    ]);

    // The same image as the query finds its own document first.
    for name in names {
        let v = t.json(&[
            "search",
            "-c",
            "pics",
            "--image",
            &image(name),
            "--k",
            "3",
            "--json",
        ]);
        let hits = v["hits"].as_array().unwrap();
        assert_eq!(hits[0]["id"], name);
        assert!(hits[0]["score"].as_f64().unwrap() >= 0.99);
        assert_eq!(hits[0]["modality"], "image");
    }
    // Filters apply.
    let v = t.json(&[
        "search",
        "-c",
        "pics",
        "--image",
        &image("img_medium_333x250"),
        "--json",
        "--filter",
        r#"{"field": "name", "eq": "img_wide_640x96"}"#,
    ]);
    let hits = v["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["id"], "img_wide_640x96");

    let doc = t.json(&["get", "-c", "pics", "img_wide_640x96", "--json"]);
    assert_eq!(doc["metadata"]["name"], "img_wide_640x96");
    assert_eq!(doc["content"]["content_type"], "image/png");

    let v = t.json(&["delete", "-c", "pics", "img_wide_640x96", "--json"]);
    assert_eq!(v["deleted"], "img_wide_640x96");
    let v = t.json(&[
        "search",
        "-c",
        "pics",
        "--image",
        &image("img_wide_640x96"),
        "--k",
        "10",
        "--json",
    ]);
    assert!(v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["id"] != "img_wide_640x96"));
    let out = t.run(&["get", "-c", "pics", "img_wide_640x96"]);
    assert!(!out.status.success());

    let stats = t.json(&["stats", "--json"]);
    assert_eq!(stats["documents"], 3);
    assert_eq!(stats["dim"], 64);
    let list = t.json(&["collections", "list", "--json"]);
    assert_eq!(list[0]["name"], "pics");
    assert_eq!(list[0]["documents"], 3);

    let out = t.run(&["reindex"]);
    assert!(out.status.success());
    let v = t.json(&[
        "search",
        "-c",
        "pics",
        "--document",
        "img_medium_333x250",
        "--k",
        "5",
        "--json",
    ]);
    assert!(v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["id"] != "img_medium_333x250"));
    assert_eq!(v["hits"].as_array().unwrap().len(), 2);
}

#[test]
fn vectors_can_be_given_without_a_model() {
    let t = Tkr::new();
    t.json(&["insert", "--id", "a", "--vector", "[1, 0, 0]", "--json"]);
    t.json(&["insert", "--id", "b", "--vector", "[0, 1, 0]", "--json"]);
    let v = t.json(&["search", "--vector", "[0.1, 0.9, 0]", "--k", "1", "--json"]);
    assert_eq!(v["hits"][0]["id"], "b");
    let out = t.run(&["insert", "--vector", "[1, 0]"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dimension"), "{stderr}");
}

#[test]
fn lexical_and_hybrid_search_without_a_model() {
    let t = Tkr::new();
    for (id, v, text) in [
        ("a", "[1, 0, 0]", "invoice QX-48213 overdue"),
        ("b", "[0, 1, 0]", "meeting notes about the invoice"),
        ("c", "[0, 0, 1]", "holiday photos"),
    ] {
        t.json(&[
            "insert", "--id", id, "--vector", v, "--text", text, "--json",
        ]);
    }
    let v = t.json(&[
        "search", "--mode", "lexical", "--text", "qx-48213", "--json",
    ]);
    let hits = v["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["id"], "a");
    let v = t.json(&[
        "search", "--mode", "lexical", "--text", "invoice", "--k", "5", "--json",
    ]);
    assert_eq!(v["hits"].as_array().unwrap().len(), 2);
    // Hybrid with a precomputed vector: c is nearest, a has the code.
    let v = t.json(&[
        "search",
        "--mode",
        "hybrid",
        "--vector",
        "[0, 0.1, 1]",
        "--text",
        "QX-48213",
        "--json",
    ]);
    let hits = v["hits"].as_array().unwrap();
    let a = hits.iter().find(|h| h["id"] == "a").unwrap();
    assert_eq!(a["scores"]["lexical"]["rank"], 1);
    let c = hits.iter().find(|h| h["id"] == "c").unwrap();
    assert_eq!(c["scores"]["vector"]["rank"], 1);
    assert!(c["scores"]["lexical"].is_null());
    // Hybrid search with a stored document has no lexical part: it is a
    // vector search (as over HTTP).
    let v = t.json(&["search", "--mode", "hybrid", "--document", "a", "--json"]);
    assert!(v["hits"].as_array().unwrap().iter().all(|h| h["id"] != "a"));
    // Table output works too.
    let out = t.run(&["search", "--mode", "lexical", "--text", "holiday"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains('c'));
    for (args, message) in [
        (
            vec!["search", "--mode", "lexical", "--vector", "[1,0,0]"],
            "`text` only",
        ),
        (
            vec!["search", "--mode", "fuzzy", "--text", "x"],
            "vector, lexical or hybrid",
        ),
        (vec!["search", "--mode", "hybrid"], "give exactly one query"),
    ] {
        let out = t.run(&args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn int8_collections_from_the_cli() {
    let t = Tkr::new();
    t.json(&["insert", "--id", "a", "--vector", "[1, 0, 0]", "--json"]);
    let out = t.run(&["collections", "create", "q", "--vectors", "int8"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = t.run(&["collections", "create", "r", "--vectors", "int4"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("int8"));
    let list = t.json(&["collections", "list", "--json"]);
    let q = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "q")
        .unwrap();
    assert_eq!(q["vectors"], "int8");
    t.json(&[
        "insert",
        "-c",
        "q",
        "--id",
        "x",
        "--vector",
        "[3, 4, 0]",
        "--json",
    ]);
    t.json(&[
        "insert",
        "-c",
        "q",
        "--id",
        "y",
        "--vector",
        "[0, 0, 1]",
        "--json",
    ]);
    let v = t.json(&[
        "search",
        "-c",
        "q",
        "--vector",
        "[1, 1, 0]",
        "--k",
        "2",
        "--json",
    ]);
    assert_eq!(v["hits"][0]["id"], "x");
    // The exact cosine of (1,1,0) and (3,4,0), not an int8 estimate.
    let score = v["hits"][0]["score"].as_f64().unwrap();
    assert!((score - 7.0 / (5.0 * 2f64.sqrt())).abs() < 1e-6, "{score}");
    let stats = t.json(&["stats", "--json"]);
    let q = stats["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "q")
        .unwrap();
    assert_eq!(q["index"]["vectors"], "int8");
}

#[test]
fn bad_input_fails_cleanly_and_stores_nothing() {
    let t = Tkr::new();
    t.json(&["insert", "--id", "ok", "--text", "fine", "--json"]);
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\ntruncated").unwrap();
    for args in [
        vec!["insert", "--id", "x", "--image", bad.to_str().unwrap()],
        vec!["insert", "--id", "x", "--text", "t", "--metadata", "[1,2]"],
        vec![
            "insert",
            "--id",
            "x",
            "--text",
            "t",
            "--metadata",
            "{not json",
        ],
        vec![
            "search",
            "--text",
            "q",
            "--filter",
            r#"{"field": "a", "between": 1}"#,
        ],
        vec!["search", "-c", "nope", "--text", "q"],
        vec!["get", "missing"],
        vec!["delete", "missing"],
    ] {
        let out = t.run(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.lines().last().unwrap().starts_with("error: "),
            "{stderr}"
        );
    }
    assert_eq!(t.json(&["stats", "--json"])["documents"], 1);
    let out = Tkr::new().run(&["stats"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no database"));
}
