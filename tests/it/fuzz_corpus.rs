//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) and the crash
//! regressions (`fuzz/regressions/<target>/`) through the fuzz harnesses,
//! the same code the cargo-fuzz targets run (`fuzz/harness/`), so CI checks
//! every committed input on stable Rust without a fuzzing build.
use std::path::PathBuf;

use crate::mlx_lock;

#[path = "../../fuzz/harness/mod.rs"]
mod harness;

/// Every committed input of a target, corpus and regressions, sorted.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = harness::common::repo_root().join("fuzz");
    let mut files: Vec<PathBuf> = ["corpus", "regressions"]
        .iter()
        .filter_map(|kind| std::fs::read_dir(root.join(kind).join(target)).ok())
        .flat_map(|dir| dir.flatten().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect()
}

/// Runs `run` on every input of `target`, naming the input that fails.
fn replay(target: &str, min_inputs: usize, run: impl Fn(&[u8])) {
    let inputs = inputs(target);
    assert!(
        inputs.len() >= min_inputs,
        "fuzz/corpus/{target} has {} inputs",
        inputs.len()
    );
    for (path, data) in &inputs {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(data)));
        if let Err(panic) = outcome {
            eprintln!("fuzz input {} fails", path.display());
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn image_decode() {
    replay("image_decode", 5, harness::image_decode::run);
}

#[test]
fn store_codec() {
    replay("store_codec", 5, harness::store_codec::run);
}

#[test]
fn filter() {
    replay("filter", 5, harness::filter::run);
}

#[test]
fn media_kind() {
    replay("media_kind", 5, harness::media_kind::run);
}

#[test]
fn chunk_text() {
    replay("chunk_text", 5, harness::chunk_text::run);
}

#[test]
fn api_request() {
    let _mlx = mlx_lock();
    let server = harness::api_request::Server::start();
    replay("api_request", 5, |data| server.run(data));
}
