//! libFuzzer entry of the `media_kind` target; the harness (input format,
//! properties) is `fuzz/harness/media_kind.rs`, shared with the corpus replay test.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness/media_kind.rs"]
mod media_kind;

fuzz_target!(|data: &[u8]| media_kind::run(data));
