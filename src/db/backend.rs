//! What a store behind [`super::Db`] does: the one interface both backends
//! implement — the embedded one (sled + HNSW, [`super::embedded`]) and
//! PostgreSQL with pgvector ([`super::postgres`]).
//!
//! `Db` checks its input once (names, ids, metadata, dimensions, `k`) and
//! normalises every vector before it calls a backend, so a backend sees
//! only valid requests and unit vectors. Every method blocks; callers in
//! async code run them on a blocking thread. Every write returns only once
//! it is durable and visible to searches.
use std::path::Path;

use serde_json::{Map, Value};

use super::backup::{BackupProgress, BackupReport};
use super::search::HybridOptions;
use super::{
    Change, CollectionInfo, CollectionOptions, Content, ContentData, DbOptions, DbStats, Document,
    Hit, Result,
};
use crate::index::{Filter, GroupBy};
use crate::types::{Modality, Span};

/// A document checked by `Db`: its id (if the caller chose one) is valid,
/// its metadata an object, its spans valid, and `vectors` holds the primary
/// vector then one per span, each of unit length (`dim` floats each).
#[derive(Debug, Clone)]
pub struct ValidDocument {
    /// `None`: the backend generates one (32 hex digits).
    pub id: Option<String>,
    pub modality: Modality,
    pub text: Option<String>,
    pub content: Option<Content>,
    pub metadata: Map<String, Value>,
    pub spans: Vec<Span>,
    pub vectors: Vec<f32>,
}

/// Which kind of store a backend is, for `stats`, `/info` and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Embedded,
    Postgres,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Embedded => "embedded",
            StoreKind::Postgres => "postgres",
        }
    }
}

/// A store for documents and their vectors. `Send + Sync`: one is shared by
/// every request.
pub trait Backend: Send + Sync {
    fn kind(&self) -> StoreKind;
    /// The model, dimension and tuning the store was opened with.
    fn options(&self) -> &DbOptions;
    /// The data directory of an embedded store.
    fn dir(&self) -> Option<&Path>;

    /// Creates an empty collection (name and options already checked).
    fn create_collection(&self, name: &str, options: &CollectionOptions) -> Result<CollectionInfo>;
    /// Collections with their document counts, by name.
    fn list_collections(&self) -> Result<Vec<CollectionInfo>>;
    /// Deletes a collection with all its documents; false if there was none.
    fn drop_collection(&self, name: &str) -> Result<bool>;
    /// `Ok` when the collection exists, else `DbError::UnknownCollection`.
    fn check_collection(&self, name: &str) -> Result<()>;

    /// Inserts or replaces documents, all or nothing; their ids in order.
    fn write(&self, collection: &str, docs: Vec<ValidDocument>) -> Result<Vec<String>>;
    /// Deletes a document; false when there was none.
    fn delete(&self, collection: &str, id: &str) -> Result<bool>;

    fn get(&self, collection: &str, id: &str) -> Result<Option<Document>>;
    /// Up to `limit` documents after the id `after`, in id order.
    fn list_documents(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Document>>;
    /// The content; `Ok(None)` when the document has none; a missing
    /// document is `DbError::DocumentNotFound`.
    fn get_content(&self, collection: &str, id: &str) -> Result<Option<ContentData>>;
    /// Which of `ids` the collection holds, in order.
    fn contains(&self, collection: &str, ids: &[String]) -> Result<Vec<bool>>;
    /// All of a document's vectors, primary first, as stored (unit length).
    fn get_vectors(&self, collection: &str, id: &str) -> Result<Option<Vec<f32>>>;

    /// The `k` documents (or segments) nearest to the unit vector `query`,
    /// best first, leaving out the document `exclude`.
    fn search(
        &self,
        collection: &str,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
        exclude: Option<&str>,
        group: GroupBy,
    ) -> Result<Vec<Hit>>;
    /// The `k` best matches of `text` over the documents' text.
    fn search_lexical(
        &self,
        collection: &str,
        text: &str,
        k: usize,
        filter: Option<&Filter>,
        group: GroupBy,
    ) -> Result<Vec<Hit>>;
    /// Vector and lexical lists fused by reciprocal rank.
    #[allow(clippy::too_many_arguments)] // each is one independent choice of the caller
    fn search_hybrid(
        &self,
        collection: &str,
        query: &[f32],
        text: &str,
        k: usize,
        filter: Option<&Filter>,
        options: &HybridOptions,
        group: GroupBy,
    ) -> Result<Vec<Hit>>;
    /// Byte ranges of `text` that lexical search matches for `query`.
    fn highlights(&self, collection: &str, text: &str, query: &str) -> Result<Vec<(usize, usize)>>;

    fn stats(&self) -> Result<DbStats>;

    // Maintenance. A backend without the notion answers with a no-op or a
    // clear "not supported by this store" error.

    /// Up to `limit` change-log entries after `after`.
    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>>;
    /// Durable flushes since open (fsyncs of the embedded store).
    fn flush_count(&self) -> u64;
    /// Rebuilds the search index of one collection or all.
    fn reindex(&self, collection: Option<&str>) -> Result<()>;
    /// Saves derived state (index checkpoints) so the next open is fast.
    fn checkpoint(&self) -> Result<()>;
    /// Waits for background work (index rebuilds).
    fn wait_background(&self);
    /// A consistent copy of the store in the directory `dest`.
    fn backup(&self, dest: &Path, progress: &dyn Fn(&BackupProgress)) -> Result<BackupReport>;
    /// Finishes background work and releases the store, reporting errors
    /// that dropping it would only log.
    fn close(self: Box<Self>) -> Result<()>;
}
