//! tkr-embed: an embedded multimodal vector database with a built-in
//! Ops-MM-embedding-v1 (Qwen2-VL) embedder running on MLX.
//!
//! Layers (dependencies point one way): `types`, `config`; `model` (the
//! only module importing mlx-rs); `engine`; `store` (sled); `index`
//! (HNSW); `db`; `service` (what the front ends do, typed); `api` (axum, the
//! only module serving HTTP) and `cli` on top.
pub mod api;
pub mod cli;
pub mod config;
pub mod db;
pub mod engine;
pub mod index;
pub mod media;
pub mod model;
pub mod service;
pub mod store;
pub mod types;

pub use db::Db;
