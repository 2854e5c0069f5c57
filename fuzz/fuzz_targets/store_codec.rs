//! libFuzzer entry of the `store_codec` target; the harness (input format,
//! properties) is `fuzz/harness/store_codec.rs`, shared with the corpus replay test.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness/store_codec.rs"]
mod store_codec;

fuzz_target!(|data: &[u8]| store_codec::run(data));
