//! libFuzzer entry of the `api_request` target; the harness (input format,
//! server setup, properties) is `fuzz/harness/api_request.rs`, shared with
//! the corpus replay test.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[path = "../harness/api_request.rs"]
mod api_request;
#[path = "../harness/common.rs"]
mod common;

static SERVER: OnceLock<api_request::Server> = OnceLock::new();

fuzz_target!(|data: &[u8]| SERVER.get_or_init(api_request::Server::start).run(data));
