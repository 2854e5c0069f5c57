//! Paths shared by the harnesses, which are compiled into two crates: the
//! main one (its tests) and the fuzz crate one directory below it.
use std::path::{Path, PathBuf};

/// The repository root (the main crate's directory).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    if here.join("fuzz_targets").is_dir() {
        here.parent().expect("fuzz/ has a parent").to_owned()
    } else {
        here.to_owned()
    }
}

/// The tiny Qwen2-VL test model (weights and tokenizer).
pub fn tiny_model_dir() -> PathBuf {
    repo_root().join("tests/fixtures/qwen2vl-tiny/model")
}
