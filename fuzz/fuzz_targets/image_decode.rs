//! libFuzzer entry of the `image_decode` target; the harness (input format,
//! properties) is `fuzz/harness/image_decode.rs`, shared with the corpus replay test.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness/image_decode.rs"]
mod image_decode;

fuzz_target!(|data: &[u8]| image_decode::run(data));
