//! [`Db`]: the vector database — documents with their vectors, content and
//! metadata in collections, searched by vector, text or both — over one of
//! two stores: the embedded one (sled + in-process HNSW and BM25 indexes,
//! [`embedded`]; the default) or PostgreSQL with pgvector ([`postgres`]).
//! Everything above this module is unaware of which is in use.
//!
//! ```no_run
//! use tkr_embed::db::{Db, DbOptions, NewDocument};
//! use tkr_embed::types::Modality;
//!
//! let db = Db::open("/tmp/my-db", DbOptions::new("ops-mm-embedding-v1-2b", 4, "f32"))?;
//! db.create_collection("photos")?;
//! let id = db.insert(
//!     "photos",
//!     NewDocument::new(Modality::Image, vec![0.1, 0.2, 0.3, 0.4])
//!         .with_metadata(serde_json::json!({"place": "Lisbon"})),
//! )?;
//! let hits = db.search("photos", &[0.1, 0.2, 0.3, 0.4], 10, None)?;
//! assert_eq!(hits[0].id, id);
//! # Ok::<(), tkr_embed::db::DbError>(())
//! ```
//!
//! `Db` checks every request once (names, ids, metadata, dimensions, `k`)
//! and normalises vectors; the store behind it ([`backend::Backend`])
//! keeps and ranks them. For both stores:
//! - `insert`, `insert_many` and `delete` return only after their change is
//!   durable (flushed to disk, or committed by PostgreSQL);
//! - when they return, searches see the change;
//! - a store records the model and dimension it was created with and
//!   refuses to open with another.
//!
//! [`Db::backup`] writes a consistent copy of an embedded store while writes
//! go on; [`backup::restore`] brings one back (see [`backup`]).
pub mod backend;
pub mod backup;
mod embed;
pub mod embedded;
pub mod files;
pub mod migrate;
pub mod postgres;
mod search;
pub use search::{combine_query, HybridOptions, SearchMode, MAX_K, MAX_QUERY_PARTS};
mod write;

pub use backend::StoreKind;
pub use embed::{chunk_text, content_modality, image_content, ContentDocument, PreparedContent};

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use thiserror::Error;

use crate::index::{FilterError, IndexParams, IndexStats, PersistError};
use crate::store::StoreError;
use crate::types::{validate_collection_name, Modality, SegmentMatch, Seq, Span, VectorEncoding};
use backend::Backend;
use embedded::Embedded;

/// One error type for the library API.
#[derive(Debug, Error)]
pub enum DbError {
    #[error("unknown collection {0:?}")]
    UnknownCollection(String),
    #[error("collection {0:?} already exists")]
    CollectionExists(String),
    #[error("no document {id:?} in collection {collection:?}")]
    DocumentNotFound { collection: String, id: String },
    #[error("vector has dimension {got}; this database stores dimension {expected}")]
    WrongDimension { expected: usize, got: usize },
    #[error("invalid input: {0}")]
    BadInput(String),
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Index(#[from] PersistError),
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Media(#[from] crate::media::MediaError),
    #[error(transparent)]
    Backup(#[from] backup::BackupError),
    #[error(transparent)]
    Postgres(#[from] postgres::PgError),
}

impl DbError {
    /// True for errors caused by the caller's input (unknown collection or
    /// id, bad filter, wrong dimension, bad id or document, a database made
    /// for another model); false for our own failures (I/O, corruption).
    pub fn is_bad_input(&self) -> bool {
        match self {
            DbError::UnknownCollection(_)
            | DbError::CollectionExists(_)
            | DbError::DocumentNotFound { .. }
            | DbError::WrongDimension { .. }
            | DbError::BadInput(_)
            | DbError::Filter(_) => true,
            DbError::Store(e) => matches!(
                e,
                StoreError::IncompatibleModel { .. } | StoreError::UnsupportedFormat { .. }
            ),
            DbError::Engine(e) => e.is_bad_input(),
            DbError::Media(e) => e.is_bad_input(),
            DbError::Backup(e) => e.is_bad_input(),
            DbError::Postgres(e) => e.is_bad_input(),
            DbError::Index(_) | DbError::Internal(_) => false,
        }
    }
}

impl From<StoreError> for DbError {
    fn from(e: StoreError) -> DbError {
        match e {
            StoreError::UnknownCollection(name) => DbError::UnknownCollection(name),
            StoreError::CollectionExists(name) => DbError::CollectionExists(name),
            other => DbError::Store(other),
        }
    }
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// What the database is opened for. `model_id` and `dim` must match the ones
/// it was created with; `dtype` (e.g. `f32`, `bf16`, `q4`) is recorded and a
/// mismatch only logged.
#[derive(Debug, Clone)]
pub struct DbOptions {
    pub model_id: String,
    pub dim: usize,
    pub dtype: String,
    pub index: IndexParams,
    /// Write index checkpoints when the `Db` is dropped (default true).
    /// Without, the next open catches up from the change log (or rebuilds).
    pub checkpoint_on_close: bool,
    /// Checkpoint (in the writer that crosses the mark) after this many
    /// changes, which also trims the change log; `None`: only on explicit
    /// `checkpoint` and close. Default 100 000.
    pub checkpoint_every_changes: Option<u64>,
    /// Free bytes the data dir's file system must keep; writes that would
    /// go below are refused (`storage.min_free_bytes`).
    pub min_free_bytes: u64,
    /// The embedded store's page cache (sled), bytes at most
    /// (`storage.cache_bytes`).
    pub cache_bytes: u64,
}

impl DbOptions {
    pub fn new(model_id: impl Into<String>, dim: usize, dtype: impl Into<String>) -> DbOptions {
        DbOptions {
            model_id: model_id.into(),
            dim,
            dtype: dtype.into(),
            index: IndexParams::default(),
            checkpoint_on_close: true,
            checkpoint_every_changes: Some(100_000),
            min_free_bytes: crate::store::space::DEFAULT_MIN_FREE_BYTES,
            cache_bytes: crate::store::DEFAULT_CACHE_BYTES,
        }
    }

    pub fn with_index(mut self, index: IndexParams) -> DbOptions {
        self.index = index;
        self
    }

    /// A bad-input error for a dimension or model id no store can hold.
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 || self.dim > u32::MAX as usize {
            return Err(DbError::BadInput(format!("invalid dimension {}", self.dim)));
        }
        if self.model_id.is_empty() {
            return Err(DbError::BadInput("model id is empty".into()));
        }
        Ok(())
    }
}

/// Original content given with a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// Bytes to store (deduplicated by blake3 hash across the database).
    Bytes { data: Vec<u8>, content_type: String },
    /// A reference the caller resolves; nothing is stored but the URI.
    External {
        uri: String,
        content_type: Option<String>,
    },
}

/// An extra vector of a document: a video segment, a PDF page, a text chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSegment {
    pub span: Span,
    pub vector: Vec<f32>,
}

/// A document to insert. Vectors need not be normalised (they are stored
/// normalised). Inserting an existing id replaces that document.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDocument {
    /// `None`: an id is generated (32 hex digits).
    pub id: Option<String>,
    pub modality: Modality,
    pub text: Option<String>,
    pub content: Option<Content>,
    /// A JSON object (or `null` for none).
    pub metadata: Value,
    pub vector: Vec<f32>,
    pub segments: Vec<NewSegment>,
}

impl NewDocument {
    pub fn new(modality: Modality, vector: Vec<f32>) -> NewDocument {
        NewDocument {
            id: None,
            modality,
            text: None,
            content: None,
            metadata: Value::Null,
            vector,
            segments: Vec::new(),
        }
    }

    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Sets the metadata: a JSON object (`null` means none; anything else is
    /// rejected by `insert` as bad input).
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }

    pub fn with_content(mut self, content: Content) -> Self {
        self.content = Some(content);
        self
    }

    pub fn with_segment(mut self, span: Span, vector: Vec<f32>) -> Self {
        self.segments.push(NewSegment { span, vector });
        self
    }
}

/// Where a stored document's content is.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentInfo {
    Stored {
        content_type: String,
        len: u64,
        /// blake3 of the bytes, hex.
        hash: String,
    },
    External {
        uri: String,
        content_type: Option<String>,
    },
}

/// Content fetched by [`Db::get_content`].
#[derive(Debug, Clone, PartialEq)]
pub enum ContentData {
    Bytes {
        data: Vec<u8>,
        content_type: String,
    },
    External {
        uri: String,
        content_type: Option<String>,
    },
}

/// A stored document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: String,
    pub collection: String,
    pub modality: Modality,
    pub text: Option<String>,
    pub content: Option<ContentInfo>,
    pub metadata: Map<String, Value>,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub seq: Seq,
    /// Spans of the extra vectors, in order.
    pub segments: Vec<Span>,
}

/// A search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: String,
    /// Cosine similarity to the query (1 is identical).
    pub score: f32,
    pub modality: Modality,
    pub metadata: Map<String, Value>,
    /// The segment that matched best, `None` for the primary vector.
    pub segment: Option<SegmentMatch>,
    /// Hybrid search: the hit's rank and score in each list.
    pub fusion: Option<crate::index::fusion::Fusion>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CollectionInfo {
    pub name: String,
    pub documents: u64,
    pub created_ms: u64,
    /// How the collection's index holds vectors.
    pub vectors: VectorEncoding,
    /// Metadata fields matched by lexical search.
    pub text_fields: Vec<String>,
}

/// Choices made when a collection is created (fixed for its lifetime).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectionOptions {
    /// `int8`: a quarter of the index memory, candidates rescored exactly
    /// from the stored float32 vectors.
    pub vectors: VectorEncoding,
    /// Metadata fields (dotted paths to strings or lists of strings) that
    /// lexical search matches as part of each document's text.
    pub text_fields: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CollectionStats {
    pub name: String,
    /// Documents in the store.
    pub documents: u64,
    pub index: IndexStats,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DbStats {
    /// Which store holds the database.
    pub store: StoreKind,
    pub model_id: String,
    pub dim: usize,
    pub dtype: String,
    pub format_version: u32,
    pub documents: u64,
    pub collections: Vec<CollectionStats>,
    pub blobs: u64,
    pub blob_bytes: u64,
    pub change_log_entries: u64,
    pub last_seq: Seq,
    /// fsyncs performed by group commit since open.
    pub flushes: u64,
    pub size_on_disk: u64,
}

/// An entry of the change log: which document a sequence number touched.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub seq: Seq,
    /// The collection's name; `None` when it has been dropped since.
    pub collection: Option<String>,
    pub id: String,
    pub deleted: bool,
}

/// Where a database lives (`--store`, `storage.url`, `TKR_STORE`; the data
/// directory by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// The embedded store in a directory.
    Embedded(PathBuf),
    /// A PostgreSQL database (a `postgres://` URL).
    Postgres(String),
}

impl StoreLocation {
    /// `postgres://…` or `postgresql://…` is PostgreSQL; `sled:DIR` or any
    /// other text a directory.
    pub fn parse(text: &str) -> StoreLocation {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return StoreLocation::Postgres(text.to_owned());
        }
        let dir = text.strip_prefix("sled:").unwrap_or(text);
        StoreLocation::Embedded(PathBuf::from(dir))
    }
}

impl std::fmt::Display for StoreLocation {
    /// The directory, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Embedded(dir) => write!(f, "{}", dir.display()),
            StoreLocation::Postgres(url) => f.write_str(&postgres::redact(url)),
        }
    }
}

/// The database. `Send + Sync`: share it through an `Arc`. Dropping it
/// saves the embedded store's index checkpoints (use [`Db::close`] to see
/// errors).
pub struct Db {
    backend: Box<dyn Backend>,
}

impl Db {
    /// Opens or creates the embedded database in `dir`, recovering its
    /// indexes (see [`crate::index::persist`]). Fails with a bad-input error
    /// naming both models when it was created for another model or
    /// dimension.
    pub fn open(dir: impl AsRef<Path>, options: DbOptions) -> Result<Db> {
        let location = StoreLocation::Embedded(dir.as_ref().to_path_buf());
        Db::open_at(&location, options, postgres::DEFAULT_POOL_SIZE)
    }

    /// Opens or creates the database at `location`; `pool_size`:
    /// connections kept at most (PostgreSQL).
    pub fn open_at(location: &StoreLocation, options: DbOptions, pool_size: usize) -> Result<Db> {
        options.validate()?;
        let backend: Box<dyn Backend> = match location {
            StoreLocation::Embedded(dir) => Box::new(Embedded::open(dir, options)?),
            StoreLocation::Postgres(url) => {
                Box::new(postgres::Postgres::open(url, options, pool_size)?)
            }
        };
        Ok(Db::with_backend(backend))
    }

    /// The options an existing database at `location` was created with;
    /// `None` if there is none.
    pub fn stored_options_at(location: &StoreLocation) -> Result<Option<DbOptions>> {
        match location {
            StoreLocation::Embedded(dir) => Embedded::stored_options(dir),
            StoreLocation::Postgres(url) => postgres::Postgres::stored_options(url),
        }
    }

    /// A database over any store.
    pub fn with_backend(backend: Box<dyn Backend>) -> Db {
        Db { backend }
    }

    /// The options an existing embedded database in `dir` was created with,
    /// so it can be opened without loading a model; `None` if there is none.
    pub fn stored_options(dir: impl AsRef<Path>) -> Result<Option<DbOptions>> {
        Embedded::stored_options(dir)
    }

    /// Which store holds the database.
    pub fn store_kind(&self) -> StoreKind {
        self.backend.kind()
    }

    /// The data directory of an embedded store; `None` for PostgreSQL.
    pub fn dir(&self) -> Option<&Path> {
        self.backend.dir()
    }

    pub fn options(&self) -> &DbOptions {
        self.backend.options()
    }

    pub fn dim(&self) -> usize {
        self.options().dim
    }

    /// Creates an empty collection with default options (durable on return).
    pub fn create_collection(&self, name: &str) -> Result<CollectionInfo> {
        self.create_collection_with(name, CollectionOptions::default())
    }

    /// Creates an empty collection (durable on return).
    pub fn create_collection_with(
        &self,
        name: &str,
        options: CollectionOptions,
    ) -> Result<CollectionInfo> {
        validate_collection_name(name).map_err(DbError::BadInput)?;
        for field in &options.text_fields {
            if field.is_empty() || field.split('.').any(str::is_empty) {
                return Err(DbError::BadInput(format!(
                    "text field {field:?} is not a dotted path of field names"
                )));
            }
        }
        self.backend.create_collection(name, &options)
    }

    /// Collections with their document counts, by name.
    pub fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        self.backend.list_collections()
    }

    /// Deletes a collection with all its documents; false if there was none.
    pub fn drop_collection(&self, name: &str) -> Result<bool> {
        self.backend.drop_collection(name)
    }

    /// A document, or `None` when the collection has no such id.
    pub fn get(&self, collection: &str, id: &str) -> Result<Option<Document>> {
        self.backend.get(collection, id)
    }

    /// A page of a collection's documents in id order: up to `limit` after
    /// the id `after`, and the id to continue after when there may be more.
    pub fn list_documents(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Document>, Option<String>)> {
        // One more than asked tells whether another page exists.
        let mut documents =
            self.backend
                .list_documents(collection, after, limit.saturating_add(1))?;
        let more = documents.len() > limit;
        documents.truncate(limit);
        let next = match more {
            true => documents.last().map(|d| d.id.clone()),
            false => None,
        };
        Ok((documents, next))
    }

    /// The document's content: its stored bytes with their content type, or
    /// its external reference; `Ok(None)` when it has no content. A missing
    /// document is [`DbError::DocumentNotFound`].
    pub fn get_content(&self, collection: &str, id: &str) -> Result<Option<ContentData>> {
        self.backend.get_content(collection, id)
    }

    /// Which of `ids` the collection holds, in order.
    pub fn contains(&self, collection: &str, ids: &[String]) -> Result<Vec<bool>> {
        self.backend.contains(collection, ids)
    }

    /// Counters of the store and of every index.
    pub fn stats(&self) -> Result<DbStats> {
        self.backend.stats()
    }

    /// Up to `limit` entries of the change log after sequence number
    /// `after`, in order (embedded store). The log only reaches back to the
    /// last checkpoint (entries at or below it are trimmed).
    pub fn changes_after(&self, after: Seq, limit: usize) -> Result<Vec<Change>> {
        self.backend.changes_after(after, limit)
    }

    /// fsyncs performed by group commit since open (embedded store).
    pub fn flush_count(&self) -> u64 {
        self.backend.flush_count()
    }

    /// Rebuilds the search index of one collection (or all, with `None`)
    /// from the stored documents. Writers wait meanwhile.
    pub fn reindex(&self, collection: Option<&str>) -> Result<()> {
        self.backend.reindex(collection)
    }

    /// Writes every index's checkpoint and trims the change log behind
    /// them (embedded store; nothing to do for PostgreSQL).
    pub fn checkpoint(&self) -> Result<()> {
        self.backend.checkpoint()
    }

    /// Waits for background index rebuilds to finish.
    pub fn wait_background(&self) {
        self.backend.wait_background()
    }

    /// Finishes background work and releases the store; reports errors
    /// that `Drop` would only log.
    pub fn close(self) -> Result<()> {
        self.backend.close()
    }
}

pub(crate) fn not_found(collection: &str, id: &str) -> DbError {
    DbError::DocumentNotFound {
        collection: collection.to_owned(),
        id: id.to_owned(),
    }
}
