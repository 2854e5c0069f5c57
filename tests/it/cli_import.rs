//! `tkr-embed import DIR`: every kind of file, a summary of failures, and
//! resuming (unchanged files skipped, changed ones re-embedded).
use std::process::Command;

use serde_json::Value;

use crate::media_ingest::media;
use crate::model_parity::fixture_dir;

fn import(data: &std::path::Path, dir: &std::path::Path) -> (bool, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tkr-embed"))
        .arg("--model")
        .arg(fixture_dir().join("model"))
        .arg("--data-dir")
        .arg(data)
        .args(["import", "-c", "lib", "--json", "--jobs", "2"])
        .arg(dir)
        .env("TKR_PROCESSING_MAX_VIDEO_FRAMES", "4")
        .env("TKR_PROCESSING_PDF_RENDER_MAX_SIDE", "100")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (
        out.status.success(),
        summary,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn import_a_tree_of_media_then_resume() {
    let _mlx = crate::mlx_lock();
    let src = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let root = src.path();
    std::fs::create_dir_all(root.join("clips/deeper")).unwrap();
    std::fs::create_dir_all(root.join(".hidden")).unwrap();
    for (from, to) in [
        (fixture_dir().join("images/img_tiny_20x30.png"), "a.png"),
        (
            fixture_dir().join("images/img_wide_640x96.png"),
            "clips/b.png",
        ),
        (media("video.mp4"), "clips/deeper/v.mp4"),
        (media("three_pages.pdf"), "doc.pdf"),
        (media("truncated_mid.mp4"), "clips/broken.mp4"),
        (media("not_a_video.mp4"), "fake.mp4"),
        (media("video.mp4"), ".hidden/skipped.mp4"),
    ] {
        std::fs::copy(from, root.join(to)).unwrap();
    }
    std::fs::write(root.join("notes.txt"), "Some notes about the pictures.").unwrap();

    let (ok, summary, stderr) = import(data.path(), root);
    assert!(!ok, "a failed file makes the exit code non-zero");
    assert!(stderr.contains("1 of 6 files failed"), "{stderr}");
    assert_eq!(summary["imported"], 5, "{summary}");
    assert_eq!(
        summary["by_kind"],
        serde_json::json!({"image": 2, "pdf": 1, "text": 1, "video": 1})
    );
    assert_eq!(summary["unsupported"], serde_json::json!(["fake.mp4"]));
    let failed = summary["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["path"], "clips/broken.mp4");
    let error = failed[0]["error"].as_str().unwrap();
    assert!(
        error.contains("corrupt") || error.contains("truncated"),
        "{error}"
    );

    // Documents are named by their relative path.
    let get = |id: &str| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_tkr-embed"))
            .arg("--data-dir")
            .arg(data.path())
            .args(["get", "-c", "lib", id, "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let video = get("clips/deeper/v.mp4");
    assert_eq!(video["modality"], "video");
    assert_eq!(video["segments"].as_array().unwrap().len(), 4);
    assert_eq!(video["metadata"]["path"], "clips/deeper/v.mp4");
    assert_eq!(get("doc.pdf")["metadata"]["media"]["pages"], 3);

    // Again: nothing new to do.
    let (_, summary, _) = import(data.path(), root);
    assert_eq!(summary["imported"], 0);
    assert_eq!(summary["unchanged"], 5);
    // A changed file and a repaired one are imported; the rest skipped.
    std::fs::write(root.join("notes.txt"), "Different notes now.").unwrap();
    std::fs::copy(media("video.mp4"), root.join("clips/broken.mp4")).unwrap();
    let (ok, summary, stderr) = import(data.path(), root);
    assert!(ok, "{stderr}");
    assert_eq!(summary["imported"], 2, "{summary}");
    assert_eq!(summary["unchanged"], 4);
    assert_eq!(get("notes.txt")["text"], "Different notes now.");
    assert_eq!(get("clips/broken.mp4")["modality"], "video");
    let out = Command::new(env!("CARGO_BIN_EXE_tkr-embed"))
        .arg("--data-dir")
        .arg(data.path())
        .args(["collections", "list", "--json"])
        .output()
        .unwrap();
    let collections: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        collections.to_string().contains("\"documents\":6"),
        "{collections}"
    );
}
