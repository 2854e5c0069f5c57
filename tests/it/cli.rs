//! The `tkr-embed` binary as a user runs it.
use std::process::{Command, Output};

use serde_json::Value;

use crate::model_parity::{case, fixture_dir, floats, max_abs_diff};

fn tkr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tkr-embed"))
        .args(args)
        .env_remove("TKR_LOG")
        .output()
        .unwrap()
}

fn model_dir() -> String {
    fixture_dir().join("model").display().to_string()
}

fn image(name: &str) -> String {
    fixture_dir()
        .join(format!("images/{name}.png"))
        .display()
        .to_string()
}

fn stdout_lines(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn assert_matches(obj: &Value, id: &str) {
    assert_eq!(obj["dim"], 64);
    let got = floats(&obj["embedding"]);
    let want = floats(&case(id)["embedding_fp32"][0]);
    assert!(max_abs_diff(&got, &want) <= 1e-5, "{id}");
}

#[test]
fn embed_text_and_images_as_json() {
    let m = model_dir();
    let out = tkr(&["--model", &m, "embed", "--text", "Hello world", "--json"]);
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 1);
    assert_matches(&lines[0], "text_short");
    assert_eq!(lines[0]["model"], m);

    let out = tkr(&["--model", &m, "embed", "--text", "", "--json"]);
    assert_matches(&stdout_lines(&out)[0], "text_empty");

    let img = image("img_medium_333x250");
    let out = tkr(&[
        "--model",
        &m,
        "embed",
        "--image",
        &img,
        "--text",
        "Describe the shapes in this picture.",
        "--json",
    ]);
    assert_matches(&stdout_lines(&out)[0], "fused_1");
}

#[test]
fn embed_jsonl_input_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(image("img_wide_640x96"), dir.path().join("wide.png")).unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        [
            r#"{"text": "Hello world"}"#,
            r#"{"images": ["wide.png"]}"#,
            "",
            r#"{"text": "What is the capital of France?", "instruction": "Find an image that matches the given text."}"#,
            r#"{"text": "这是什么图案？", "images": ["wide.png"]}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let out = tkr(&[
        "--model",
        &model_dir(),
        "embed",
        "--input",
        input.to_str().unwrap(),
        "--json",
    ]);
    let lines = stdout_lines(&out);
    let want = [
        "text_short",
        "img_wide_640x96",
        "text_custom_instruction",
        "fused_2",
    ];
    assert_eq!(lines.len(), want.len());
    for (line, id) in lines.iter().zip(want) {
        assert_matches(line, id);
    }
}

fn assert_fails_with(out: &Output, needle: &str) {
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains(needle),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing printed on failure");
}

#[test]
fn embed_errors_are_one_line() {
    let m = model_dir();
    assert_fails_with(
        &tkr(&[
            "--model",
            &m,
            "embed",
            "--image",
            "/nonexistent.png",
            "--json",
        ]),
        "/nonexistent.png",
    );
    assert_fails_with(
        &tkr(&["--model", &m, "embed", "--json"]),
        "nothing to embed",
    );
    assert_fails_with(
        &tkr(&["--model", "/no/such/model", "embed", "--text", "x"]),
        "/no/such/model",
    );
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.jsonl");
    std::fs::write(&input, "{\"text\": \"ok\"}\n{\"txet\": 1}\n").unwrap();
    assert_fails_with(
        &tkr(&["--model", &m, "embed", "--input", input.to_str().unwrap()]),
        "line 2",
    );
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n garbage").unwrap();
    assert_fails_with(
        &tkr(&["--model", &m, "embed", "--image", bad.to_str().unwrap()]),
        "image",
    );
}

#[test]
fn config_show_works_anywhere_and_rejects_bad_values() {
    let out = Command::new(env!("CARGO_BIN_EXE_tkr-embed"))
        .args(["config", "show", "--json"])
        .current_dir(std::env::temp_dir())
        .env("TKR_SERVER_PORT", "9123")
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["config"]["server"]["port"], 9123);
    assert_eq!(v["sources"]["server.port"], "env TKR_SERVER_PORT");
    assert!(v["runtime"]["device"].as_str().unwrap().contains("cpu"));

    let out = Command::new(env!("CARGO_BIN_EXE_tkr-embed"))
        .args(["config", "show"])
        .env("TKR_MODEL_QUANTIZATION", "q5")
        .output()
        .unwrap();
    assert_fails_with(&out, "model.quantization");
}
