//! The embedded store: sled for the documents (see [`crate::store`]) and,
//! per collection, an HNSW and a lexical index derived from it (see
//! [`crate::index`]). On disk, `dir/` holds `sled/` and `index/` (the
//! indexes' checkpoints: see [`crate::index::persist`]).
//!
//! Guarantees:
//! - writes return only after their change is flushed to disk (group
//!   commit: concurrent writers share fsyncs);
//! - when they return, searches see the change (the index is updated in
//!   commit order, after the flush);
//! - the index is rebuilt or caught up from sled on open, so it always
//!   matches the store, whatever happened to the checkpoint files;
//! - reads through `get` may see a change slightly before its writer is
//!   acknowledged (sled makes committed transactions readable at once).
mod recover;
mod search;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value};

use super::backend::{Backend, StoreKind, ValidDocument};
use super::backup::{backup_store, BackupProgress, BackupReport};
use super::search::HybridOptions;
use super::{
    not_found, Change, CollectionInfo, CollectionOptions, CollectionStats, ContentData,
    ContentInfo, DbError, DbOptions, DbStats, Document, Hit, Result,
};
use crate::index::lexical::LexicalIndex;
use crate::index::{CollectionIndex, IndexParams, PersistError};
use crate::index::{Filter, GroupBy};
use crate::store::{CollectionRecord, ContentRef, DocRecord, Store};
use crate::types::Seq;
use write::ApplySequencer;

/// The database. `Send + Sync`: share it through an `Arc`. Dropping it
/// writes index checkpoints (use [`Embedded::close`] to see errors).
pub struct Embedded {
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

impl Embedded {
    /// Opens or creates the database in `dir`, recovering the indexes (see
    /// [`crate::index::persist`]). Fails with a bad-input error naming both
    /// models when the database was created for another model or dimension.
    pub fn open(dir: impl AsRef<Path>, options: DbOptions) -> Result<Embedded> {
        let dir = dir.as_ref().to_path_buf();
        crate::store::space::refuse_read_only(&dir)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| DbError::Internal(format!("creating {}: {e}", dir.display())))?;
        let store = Store::open_with_cache(
            &dir.join("sled"),
            &options.model_id,
            options.dim as u32,
            &options.dtype,
            options.cache_bytes,
        )?;
        store.set_min_free_bytes(options.min_free_bytes);
        let index_dir = dir.join("index");
        let db = Embedded {
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

    pub fn dim(&self) -> usize {
        self.options.dim
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
        if let Err(e) = self.checkpoint_indexes() {
            tracing::warn!(error = %e, "automatic checkpoint failed");
        }
        release_free_memory();
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
            .spawn(move || {
                index.rebuild_compact();
                release_free_memory();
            });
        match spawned {
            Ok(handle) => {
                let mut bg = self.background.lock();
                bg.retain(|h| !h.is_finished());
                bg.push(handle);
            }
            Err(e) => tracing::error!(error = %e, "could not start an index rebuild thread"),
        }
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
}

impl Backend for Embedded {
    fn kind(&self) -> StoreKind {
        StoreKind::Embedded
    }

    fn options(&self) -> &DbOptions {
        &self.options
    }

    fn dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }

    fn create_collection(&self, name: &str, options: &CollectionOptions) -> Result<CollectionInfo> {
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

    /// Collections with their document counts, by name.
    fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
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
    fn drop_collection(&self, name: &str) -> Result<bool> {
        let _gate = self.gate.write();
        let Some(record) = self.store.drop_collection(name)? else {
            return Ok(false);
        };
        self.indexes.write().remove(name);
        crate::index::persist::remove_checkpoint(&self.index_dir, record.id);
        Ok(true)
    }

    fn check_collection(&self, name: &str) -> Result<()> {
        self.collection_index(name).map(|_| ())
    }

    fn write(&self, collection: &str, docs: Vec<ValidDocument>) -> Result<Vec<String>> {
        self.write_documents(collection, docs)
    }

    fn delete(&self, collection: &str, id: &str) -> Result<bool> {
        self.delete_document(collection, id)
    }

    /// A document, or `None` when the collection has no such id.
    fn get(&self, collection: &str, id: &str) -> Result<Option<Document>> {
        let index = self.collection_index(collection)?;
        match self.store.get_doc(index.collection_id(), id)? {
            Some(record) => Ok(Some(to_document(collection, record)?)),
            None => Ok(None),
        }
    }

    /// A page of a collection's documents in id order: up to `limit` after
    /// the id `after`, and the id to continue after when there may be more.
    fn list_documents(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Document>> {
        let index = self.collection_index(collection)?;
        self.store
            .list_docs(index.collection_id(), after, limit)?
            .into_iter()
            .map(|r| to_document(collection, r))
            .collect()
    }

    /// The document's content: its stored bytes with their content type, or
    /// its external reference; `Ok(None)` when it has no content. A missing
    /// document is [`DbError::DocumentNotFound`].
    fn get_content(&self, collection: &str, id: &str) -> Result<Option<ContentData>> {
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

    fn contains(&self, collection: &str, ids: &[String]) -> Result<Vec<bool>> {
        let index = self.collection_index(collection)?;
        ids.iter()
            .map(|id| Ok(self.store.get_doc(index.collection_id(), id)?.is_some()))
            .collect()
    }

    fn get_vectors(&self, collection: &str, id: &str) -> Result<Option<Vec<f32>>> {
        self.stored_vectors(collection, id)
    }

    fn search(
        &self,
        collection: &str,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
        exclude: Option<&str>,
        group: GroupBy,
    ) -> Result<Vec<Hit>> {
        self.search_vectors(collection, query, k, filter, exclude, group)
    }

    fn search_lexical(
        &self,
        collection: &str,
        text: &str,
        k: usize,
        filter: Option<&Filter>,
        group: GroupBy,
    ) -> Result<Vec<Hit>> {
        self.search_text(collection, text, k, filter, group)
    }

    fn search_hybrid(
        &self,
        collection: &str,
        query: &[f32],
        text: &str,
        k: usize,
        filter: Option<&Filter>,
        options: &HybridOptions,
        group: GroupBy,
    ) -> Result<Vec<Hit>> {
        self.search_fused(collection, query, text, k, filter, options, group)
    }

    fn highlights(&self, collection: &str, text: &str, query: &str) -> Result<Vec<(usize, usize)>> {
        self.text_highlights(collection, text, query)
    }

    /// Counters of the store and of every index.
    fn stats(&self) -> Result<DbStats> {
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
            store: StoreKind::Embedded,
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
    fn changes_after(&self, after: Seq, limit: usize) -> Result<Vec<Change>> {
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
    fn flush_count(&self) -> u64 {
        self.store.flush_count()
    }

    fn reindex(&self, collection: Option<&str>) -> Result<()> {
        self.rebuild_indexes(collection)
    }

    fn checkpoint(&self) -> Result<()> {
        self.checkpoint_indexes()
    }

    /// Waits for background index rebuilds to finish.
    fn wait_background(&self) {
        let handles: Vec<_> = std::mem::take(&mut *self.background.lock());
        for h in handles {
            if h.join().is_err() {
                tracing::error!("a background index rebuild panicked");
            }
        }
    }

    fn backup(&self, dest: &Path, progress: &dyn Fn(&BackupProgress)) -> Result<BackupReport> {
        backup_store(&self.store, dest, progress)
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.closed.store(true, Ordering::SeqCst);
        self.wait_background();
        // Flush even when the checkpoint fails (a full disk): the next open
        // recovers the index from the store.
        let checkpoint = self.checkpoint_indexes();
        self.store.flush()?;
        checkpoint
    }
}

impl Drop for Embedded {
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
        if let Err(e) = self.checkpoint_indexes() {
            tracing::warn!(error = %e, "index checkpoint on close failed; the next open recovers from the store");
        }
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "final flush failed");
        }
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

/// Hands memory the allocator holds free back to the system. A checkpoint
/// (the graph and manifest serialised) and a rebuild (a whole new graph on
/// its own thread, whose allocator arena keeps what it freed) release
/// tens of MB at once; glibc returns only the top of its heaps by itself,
/// so without this a long-running server's RSS grows in steps.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and is thread-safe.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}
