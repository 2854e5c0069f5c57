//! libFuzzer entry of the `chunk_text` target; the harness (input format,
//! properties) is `fuzz/harness/chunk_text.rs`, shared with the corpus replay test.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness/chunk_text.rs"]
mod chunk_text;
#[path = "../harness/common.rs"]
mod common;

fuzz_target!(|data: &[u8]| chunk_text::run(data));
