//! libFuzzer entry of the `filter` target; the harness (input format,
//! properties) is `fuzz/harness/filter.rs`, shared with the corpus replay test.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness/filter.rs"]
mod filter;

fuzz_target!(|data: &[u8]| filter::run(data));
