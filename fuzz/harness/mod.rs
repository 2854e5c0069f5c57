//! The fuzz harnesses, one module per target. Each is the single place
//! where its target's input is interpreted and its properties are checked;
//! the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and the corpus replay
//! test (`tests/it/fuzz_corpus.rs`) both include these files with `#[path]`,
//! so CI checks the committed corpora against exactly what was fuzzed.
//!
//! A property violation is a panic (libFuzzer reports it as a crash; the
//! replay test fails).
pub mod api_request;
pub mod chunk_text;
pub mod common;
pub mod filter;
pub mod image_decode;
pub mod media_kind;
pub mod store_codec;
