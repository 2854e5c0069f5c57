//! One integration-test binary (faster to link than one per file).
//!
//! MLX is not thread-safe and `cargo test` runs tests as threads: every test
//! that drives MLX holds [`mlx_lock`] for its whole duration.
mod blas_kernels;
mod cli;
mod cli_backup;
mod cli_db;
mod cli_import;
mod cli_logging;
mod cli_migrate;
mod config;
mod db_api;
mod db_backup;
mod db_blobs;
mod db_common;
mod db_compressed;
mod db_concurrency;
mod db_conformance;
mod db_deletes;
mod db_durability;
mod db_filters;
mod db_lexical;
mod db_persistence;
mod db_recall;
mod engine;
mod format_fixture;
mod fuzz_corpus;
mod http_api;
mod http_auth;
mod http_backup;
mod http_common;
mod http_crash_loop;
mod http_disk_full;
mod http_errors;
mod http_hardening;
mod http_limits;
mod http_media;
mod http_metrics;
mod http_page;
mod http_postgres;
mod http_schema;
mod media_chunk;
mod media_detect;
mod media_document;
mod media_ingest;
mod media_video;
mod mlx_smoke;
mod model_loading;
mod model_parity;
mod pg;
mod preprocess;
mod server_process;

use std::sync::{Mutex, MutexGuard};

static MLX: Mutex<()> = Mutex::new(());

/// Serialises MLX use across test threads (survives a panicked test).
pub fn mlx_lock() -> MutexGuard<'static, ()> {
    MLX.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
