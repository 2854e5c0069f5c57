//! [`Db`]: the embedded vector database (store + indexes).
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
//! On disk, `dir/` holds `sled/` (the documents: see [`crate::store`]) and
//! `index/` (checkpoints of the derived HNSW indexes: see
//! [`crate::index::persist`]). [`Db::backup`] writes a consistent copy of
//! the store while writes go on; [`backup::restore`] brings one back (see
//! [`backup`]).
//!
//! Guarantees:
//! - `insert`, `insert_many` and `delete` return only after their change is
//!   flushed to disk (group commit: concurrent writers share fsyncs).
//! - When they return, searches see the change (the index is updated in
//!   commit order, after the flush).
//! - The index is rebuilt or caught up from sled on open, so it always
//!   matches the store, whatever happened to the checkpoint files.
//! - Reads through `get` may see a change slightly before its writer is
//!   acknowledged (sled makes committed transactions readable at once).
pub mod backup;
mod embed;
pub mod files;
mod recover;
mod search;
pub use search::{combine_query, HybridOptions, SearchMode, MAX_K, MAX_QUERY_PARTS};
mod write;

pub use embed::{chunk_text, content_modality, image_content, ContentDocument, PreparedContent};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::index::lexical::LexicalIndex;
use crate::index::{CollectionIndex, FilterError, IndexParams, IndexStats, PersistError};
use crate::store::{CollectionRecord, ContentRef, DocRecord, Store, StoreError};
use crate::types::{validate_collection_name, Modality, SegmentMatch, Seq, Span, VectorEncoding};
use write::ApplySequencer;

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
        }
    }

    pub fn with_index(mut self, index: IndexParams) -> DbOptions {
        self.index = index;
        self
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

/// The database. `Send + Sync`: share it through an `Arc`. Dropping it
/// writes index checkpoints (use [`Db::close`] to see errors).
pub struct Db {
    dir: PathBuf,
    index_dir: PathBuf,
    options: DbOptions,
    store: Store,
    indexes: RwLock<HashMap<String, Arc<CollectionIndex>>>,
    /// Writers hold it shared from commit to index update; checkpoint,
    /// reindex and drop_collection hold it exclusively, so they never see a
    /// change committed to the store but not yet in the index.
    gate: RwLock<()>,
    sequencer: ApplySequencer,
    background: Mutex<Vec<JoinHandle<()>>>,
    /// Sequence number the last successful checkpoint covers.
    last_checkpoint_seq: AtomicU64,
    /// A writer is running an automatic checkpoint.
    auto_checkpointing: AtomicBool,
    closed: AtomicBool,
}

impl Db {
    /// Opens or creates the database in `dir`, recovering the indexes (see
    /// [`crate::index::persist`]). Fails with a bad-input error naming both
    /// models when the database was created for another model or dimension.
    pub fn open(dir: impl AsRef<Path>, options: DbOptions) -> Result<Db> {
        let dir = dir.as_ref().to_path_buf();
        if options.dim == 0 || options.dim > u32::MAX as usize {
            return Err(DbError::BadInput(format!(
                "invalid dimension {}",
                options.dim
            )));
        }
        if options.model_id.is_empty() {
            return Err(DbError::BadInput("model id is empty".into()));
        }
        crate::store::space::refuse_read_only(&dir)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| DbError::Internal(format!("creating {}: {e}", dir.display())))?;
        let store = Store::open(
            &dir.join("sled"),
            &options.model_id,
            options.dim as u32,
            &options.dtype,
        )?;
        store.set_min_free_bytes(options.min_free_bytes);
        let index_dir = dir.join("index");
        let db = Db {
            dir,
            index_dir,
            options,
            store,
            indexes: RwLock::new(HashMap::new()),
            gate: RwLock::new(()),
            sequencer: ApplySequencer::default(),
            background: Mutex::new(Vec::new()),
            last_checkpoint_seq: AtomicU64::new(0),
            auto_checkpointing: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        };
        db.recover_indexes()?;
        Ok(db)
    }

    /// The options an existing database in `dir` was created with, so it
    /// can be opened without loading a model; `None` if there is none.
    pub fn stored_options(dir: impl AsRef<Path>) -> Result<Option<DbOptions>> {
        let meta = Store::read_meta(&dir.as_ref().join("sled"))?;
        Ok(meta.map(|m| DbOptions::new(m.model_id, m.dim as usize, m.dtype)))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &DbOptions {
        &self.options
    }

    pub fn dim(&self) -> usize {
        self.options.dim
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
        let _gate = self.gate.read();
        let record = self
            .store
            .create_collection(name, options.vectors, &options.text_fields)?;
        self.store.flush()?;
        let index = CollectionIndex::new(record.id, name, self.dim(), self.index_params(&record));
        // A new, empty lexical index covers every change so far. Without
        // it the collection would be unusable: take the record back.
        let lexical = self.new_lexical_index(record.id).inspect_err(|_| {
            if let Err(e) = self.store.drop_collection(name) {
                tracing::error!(collection = name, error = %e, "could not undo a half-created collection");
            }
        })?;
        index.attach_lexical(Arc::new(lexical));
        self.indexes
            .write()
            .insert(name.to_owned(), Arc::new(index));
        Ok(CollectionInfo {
            name: record.name,
            documents: 0,
            created_ms: record.created_ms,
            vectors: record.vectors,
            text_fields: record.text_fields,
        })
    }

    fn new_lexical_index(&self, collection_id: u32) -> Result<LexicalIndex> {
        let dir = crate::index::persist::lexical_dir(&self.index_dir, collection_id);
        let instance = &self.store.meta().instance_id;
        let (lexical, _) = LexicalIndex::open(&dir, instance).map_err(PersistError::from)?;
        lexical
            .commit(self.store.last_seq()?)
            .map_err(PersistError::from)?;
        Ok(lexical)
    }

    /// The database's index tuning with the collection's own choices.
    fn index_params(&self, record: &CollectionRecord) -> IndexParams {
        IndexParams {
            encoding: record.vectors,
            text_fields: record.text_fields.clone(),
            ..self.options.index.clone()
        }
    }

    /// Collections with their document counts, by name.
    pub fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        Ok(self
            .store
            .list_collections()?
            .into_iter()
            .map(|c| CollectionInfo {
                name: c.name,
                documents: c.doc_count,
                created_ms: c.created_ms,
                vectors: c.vectors,
                text_fields: c.text_fields,
            })
            .collect())
    }

    /// Deletes a collection with all its documents; false if there was none.
    pub fn drop_collection(&self, name: &str) -> Result<bool> {
        let _gate = self.gate.write();
        let Some(record) = self.store.drop_collection(name)? else {
            return Ok(false);
        };
        self.indexes.write().remove(name);
        crate::index::persist::remove_checkpoint(&self.index_dir, record.id);
        Ok(true)
    }

    /// A document, or `None` when the collection has no such id.
    pub fn get(&self, collection: &str, id: &str) -> Result<Option<Document>> {
        let index = self.collection_index(collection)?;
        match self.store.get_doc(index.collection_id(), id)? {
            Some(record) => Ok(Some(to_document(collection, record)?)),
            None => Ok(None),
        }
    }

    /// A page of a collection's documents in id order: up to `limit` after
    /// the id `after`, and the id to continue after when there may be more.
    pub fn list_documents(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Document>, Option<String>)> {
        let index = self.collection_index(collection)?;
        // One more than asked tells whether another page exists.
        let mut records =
            self.store
                .list_docs(index.collection_id(), after, limit.saturating_add(1))?;
        let more = records.len() > limit;
        records.truncate(limit);
        let documents = records
            .into_iter()
            .map(|r| to_document(collection, r))
            .collect::<Result<Vec<_>>>()?;
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
        let index = self.collection_index(collection)?;
        let record = self
            .store
            .get_doc(index.collection_id(), id)?
            .ok_or_else(|| not_found(collection, id))?;
        match record.content {
            None => Ok(None),
            Some(ContentRef::External { uri, content_type }) => {
                Ok(Some(ContentData::External { uri, content_type }))
            }
            Some(ContentRef::Blob {
                hash, content_type, ..
            }) => {
                let data = self.store.get_blob(&hash)?.ok_or_else(|| {
                    DbError::Internal(format!("blob of document {id:?} is missing"))
                })?;
                Ok(Some(ContentData::Bytes { data, content_type }))
            }
        }
    }

    /// Counters of the store and of every index.
    pub fn stats(&self) -> Result<DbStats> {
        let store_stats = self.store.stats()?;
        let indexes = self.indexes.read().clone();
        let mut collections = Vec::new();
        let mut documents = 0;
        for record in self.store.list_collections()? {
            documents += record.doc_count;
            let index = indexes
                .get(&record.name)
                .map(|i| i.stats())
                .unwrap_or_default();
            collections.push(CollectionStats {
                name: record.name,
                documents: record.doc_count,
                index,
            });
        }
        let meta = self.store.meta();
        Ok(DbStats {
            model_id: meta.model_id.clone(),
            dim: meta.dim as usize,
            dtype: meta.dtype.clone(),
            format_version: meta.format_version,
            documents,
            collections,
            blobs: store_stats.blobs,
            blob_bytes: store_stats.blob_bytes,
            change_log_entries: store_stats.change_log_entries,
            last_seq: self.store.last_seq()?,
            flushes: self.store.flush_count(),
            size_on_disk: store_stats.size_on_disk,
        })
    }

    /// Up to `limit` entries of the change log after sequence number
    /// `after`, in order. The log only reaches back to the last checkpoint
    /// (entries at or below it are trimmed).
    pub fn changes_after(&self, after: Seq, limit: usize) -> Result<Vec<Change>> {
        let names: HashMap<u32, String> = self
            .store
            .list_collections()?
            .into_iter()
            .map(|c| (c.id, c.name))
            .collect();
        self.store
            .changes_after(after)
            .take(limit)
            .map(|item| {
                let (seq, change) = item?;
                Ok(Change {
                    seq,
                    collection: names.get(&change.collection_id).cloned(),
                    id: change.doc_id,
                    deleted: change.deleted,
                })
            })
            .collect()
    }

    /// fsyncs performed by group commit since open.
    pub fn flush_count(&self) -> u64 {
        self.store.flush_count()
    }

    /// Waits for background index rebuilds to finish.
    pub fn wait_background(&self) {
        let handles: Vec<_> = std::mem::take(&mut *self.background.lock());
        for h in handles {
            if h.join().is_err() {
                tracing::error!("a background index rebuild panicked");
            }
        }
    }

    /// Checkpoints the indexes and flushes; reports errors that `Drop` would
    /// only log.
    pub fn close(self) -> Result<()> {
        self.closed.store(true, Ordering::SeqCst);
        self.wait_background();
        // Flush even when the checkpoint fails (a full disk): the next open
        // recovers the index from the store.
        let checkpoint = self.checkpoint();
        self.store.flush()?;
        checkpoint
    }

    fn collection_index(&self, name: &str) -> Result<Arc<CollectionIndex>> {
        self.indexes
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| DbError::UnknownCollection(name.to_owned()))
    }

    /// Checkpoints when `checkpoint_every_changes` changes have piled up
    /// since the last checkpoint. Called by writers after they released the
    /// gate; errors are logged (the write itself succeeded).
    fn maybe_checkpoint(&self) {
        let Some(every) = self.options.checkpoint_every_changes else {
            return;
        };
        let Ok(last) = self.store.last_seq() else {
            return;
        };
        if last.saturating_sub(self.last_checkpoint_seq.load(Ordering::Relaxed)) < every
            || self.auto_checkpointing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        if let Err(e) = self.checkpoint() {
            tracing::warn!(error = %e, "automatic checkpoint failed");
        }
        self.auto_checkpointing.store(false, Ordering::Release);
    }

    /// Starts a background compaction of `index` when its tombstones are
    /// past the threshold.
    fn maybe_rebuild(&self, index: &Arc<CollectionIndex>) {
        if !index.needs_rebuild() || !index.try_start_rebuild() {
            return;
        }
        let index = index.clone();
        let spawned = std::thread::Builder::new()
            .name("tkr-index-rebuild".into())
            .spawn(move || index.rebuild_compact());
        match spawned {
            Ok(handle) => {
                let mut bg = self.background.lock();
                bg.retain(|h| !h.is_finished());
                bg.push(handle);
            }
            Err(e) => tracing::error!(error = %e, "could not start an index rebuild thread"),
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        self.wait_background();
        if !self.options.checkpoint_on_close {
            if let Err(e) = self.store.flush() {
                tracing::error!(error = %e, "final flush failed");
            }
            return;
        }
        if let Err(e) = self.checkpoint() {
            tracing::warn!(error = %e, "index checkpoint on close failed; the next open recovers from the store");
        }
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "final flush failed");
        }
    }
}

fn not_found(collection: &str, id: &str) -> DbError {
    DbError::DocumentNotFound {
        collection: collection.to_owned(),
        id: id.to_owned(),
    }
}

fn parse_metadata(record: &DocRecord) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(&record.metadata_json) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(DbError::Internal(format!(
            "stored metadata of {:?} is not a JSON object",
            record.id
        ))),
    }
}

fn to_document(collection: &str, record: DocRecord) -> Result<Document> {
    let metadata = parse_metadata(&record)?;
    let content = record.content.map(|c| match c {
        ContentRef::Blob {
            hash,
            len,
            content_type,
        } => ContentInfo::Stored {
            content_type,
            len,
            hash: hex::encode(hash),
        },
        ContentRef::External { uri, content_type } => ContentInfo::External { uri, content_type },
    });
    Ok(Document {
        id: record.id,
        collection: collection.to_owned(),
        modality: record.modality,
        text: record.text,
        content,
        metadata,
        created_ms: record.created_ms,
        updated_ms: record.updated_ms,
        seq: record.seq,
        segments: record.segments,
    })
}
