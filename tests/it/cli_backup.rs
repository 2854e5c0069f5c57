//! `tkr-embed backup` of a data directory not in use and `tkr-embed
//! restore` (and `restore --check`), through the binary.
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn run(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tkr-embed"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap()
}

fn json(data_dir: &Path, args: &[&str]) -> Value {
    let out = run(data_dir, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A failed command: exit code 1 and one line on stderr, returned.
fn fails(data_dir: &Path, args: &[&str]) -> String {
    let out = run(data_dir, args);
    assert_eq!(out.status.code(), Some(1), "{args:?} should fail");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    lines[0].to_owned()
}

#[test]
fn backup_and_restore_an_offline_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let docs = [
        ("a", "[1, 0, 0, 0]", r#"{"lang": "en"}"#),
        ("b", "[0, 1, 0, 0]", r#"{"lang": "fr"}"#),
        ("c", "[0, 0, 1, 0]", r#"{"lang": "de"}"#),
    ];
    for (id, v, meta) in docs {
        json(
            &src,
            &[
                "insert",
                "-c",
                "col",
                "--id",
                id,
                "--vector",
                v,
                "--text",
                "some text",
                "--metadata",
                meta,
                "--json",
            ],
        );
    }
    json(&src, &["delete", "-c", "col", "c", "--json"]);

    let dest = dir.path().join("backup");
    let dest_s = dest.to_str().unwrap();
    let report = json(&src, &["backup", dest_s, "--json"]);
    assert_eq!(report["documents"], 2);
    assert_eq!(report["collections"], 1);
    assert_eq!(report["seq"], 4);
    assert_eq!(report["pre_images"], 0);
    assert!(dest.join("manifest.json").is_file());
    // Not over an existing backup.
    let m = fails(&src, &["backup", dest_s]);
    assert!(m.contains("not empty"), "{m}");

    let check = json(&src, &["restore", "--check", dest_s, "--json"]);
    assert_eq!(check["seq"], 4);
    assert!(!check["model_id"].as_str().unwrap().is_empty());

    let new = dir.path().join("new");
    let restored = json(&new, &["restore", dest_s, "--json"]);
    assert_eq!(restored["documents"], 2);
    assert_eq!(restored["seq"], 4);
    for id in ["a", "b"] {
        assert_eq!(
            json(&new, &["get", "-c", "col", id, "--json"]),
            json(&src, &["get", "-c", "col", id, "--json"])
        );
    }
    let m = fails(&new, &["get", "-c", "col", "c", "--json"]);
    assert!(m.contains("\"c\""), "{m}");
    let query = [
        "search",
        "-c",
        "col",
        "--vector",
        "[0.2, 0.9, 0, 0]",
        "--json",
    ];
    assert_eq!(json(&new, &query)["hits"], json(&src, &query)["hits"]);
    let lexical = [
        "search", "-c", "col", "--mode", "lexical", "--text", "text", "--json",
    ];
    assert_eq!(json(&new, &lexical)["hits"].as_array().unwrap().len(), 2);

    // Not into a database that exists.
    let m = fails(&new, &["restore", dest_s]);
    assert!(m.contains("not empty"), "{m}");
    // A damaged backup is refused, naming the file; nothing is created.
    let damaged = dir.path().join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    for entry in std::fs::read_dir(&dest).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), damaged.join(entry.file_name())).unwrap();
    }
    let vectors = damaged.join("vectors.rec");
    let mut bytes = std::fs::read(&vectors).unwrap();
    bytes.truncate(bytes.len() - 1);
    std::fs::write(&vectors, bytes).unwrap();
    let other = dir.path().join("other");
    let m = fails(&other, &["restore", damaged.to_str().unwrap()]);
    assert!(m.contains("vectors.rec"), "{m}");
    assert!(!other.exists());
    let m = fails(&other, &["restore", "--check", damaged.to_str().unwrap()]);
    assert!(m.contains("vectors.rec"), "{m}");

    // A data directory in use is not opened; the message says what to do.
    let db = tkr_embed::db::Db::open(
        &src,
        tkr_embed::db::Db::stored_options(&src).unwrap().unwrap(),
    )
    .unwrap();
    let m = fails(&src, &["backup", dir.path().join("b2").to_str().unwrap()]);
    assert!(m.contains("in use") && m.contains("--server"), "{m}");
    drop(db);
}
