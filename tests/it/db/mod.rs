//! The storage and index layers with precomputed vectors: real sled on disk
//! in temp dirs.
mod api;
mod blobs;
mod common;
mod deletes;
mod durability;
mod filters;
mod persistence;
mod recall;
