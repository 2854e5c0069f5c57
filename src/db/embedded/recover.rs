//! Index recovery, checkpoints and rebuilds. The store is the truth; an
//! index is loaded from its checkpoint and caught up from the change log, or
//! rebuilt from the store when the checkpoint is missing, corrupt, from
//! another database, stale (older than the trimmed change log, or newer than
//! the store), or disagrees with the store's document count afterwards.
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::{parse_metadata, Embedded};
use crate::db::{DbError, Result};
use crate::index::lexical::{text_units, LexicalIndex};
use crate::index::persist;
use crate::index::{CollectionIndex, IndexDoc};
use crate::store::{CollectionRecord, DocRecord};
use crate::types::Seq;

/// Documents per upsert while rebuilding from the store (bounds memory).
const REBUILD_CHUNK: usize = 4096;

/// How a collection's index came back on open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    Loaded { replayed: usize },
    Rebuilt,
}

impl Embedded {
    /// Brings back every collection's index (on open).
    pub(super) fn recover_indexes(&self) -> Result<()> {
        let collections = self.store.list_collections()?;
        let last_seq = self.store.last_seq()?;
        let trimmed = self.store.changes_trimmed_upto()?;
        let mut changed = false;
        let mut indexes = HashMap::new();
        for record in &collections {
            let started = Instant::now();
            let (index, how) = self.recover_collection(record, last_seq, trimmed)?;
            let lexical = self.recover_lexical(record, last_seq, trimmed, None)?;
            index.attach_lexical(lexical);
            tracing::info!(
                collection = %record.name,
                documents = index.len(),
                how = ?how,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "index ready"
            );
            changed |= how != Recovery::Loaded { replayed: 0 };
            indexes.insert(record.name.clone(), Arc::new(index));
        }
        *self.indexes.write() = indexes;
        self.last_checkpoint_seq.store(trimmed, Ordering::Relaxed);
        self.remove_orphan_checkpoints(&collections);
        if changed {
            // Save the recovery work, so the next open is fast.
            if let Err(e) = self.checkpoint_indexes() {
                tracing::warn!(error = %e, "checkpoint after recovery failed");
            }
        }
        Ok(())
    }

    fn recover_collection(
        &self,
        record: &CollectionRecord,
        last_seq: Seq,
        trimmed: Seq,
    ) -> Result<(CollectionIndex, Recovery)> {
        let loaded = CollectionIndex::load(
            &self.index_dir,
            &self.store.meta().instance_id,
            record.id,
            &record.name,
            self.dim(),
            self.index_params(record),
        );
        match loaded {
            Ok(Some((index, seq))) if seq <= last_seq && seq >= trimmed => {
                let replayed = self.catch_up(&index, seq)?;
                if index.len() as u64 == record.doc_count {
                    index.set_recovery_info(true, replayed);
                    return Ok((index, Recovery::Loaded { replayed }));
                }
                tracing::warn!(
                    collection = %record.name,
                    index = index.len(),
                    store = record.doc_count,
                    "index disagrees with the store after catch-up; rebuilding"
                );
            }
            Ok(Some((_, seq))) => tracing::warn!(
                collection = %record.name,
                checkpoint_seq = seq,
                store_seq = last_seq,
                change_log_from = trimmed,
                "stale index checkpoint; rebuilding"
            ),
            Ok(None) if record.doc_count > 0 => tracing::info!(
                collection = %record.name,
                "no index checkpoint; rebuilding"
            ),
            Ok(None) => {}
            Err(e) => tracing::warn!(
                collection = %record.name,
                error = %e,
                "unusable index checkpoint; rebuilding"
            ),
        }
        Ok((self.build_from_store(record)?, Recovery::Rebuilt))
    }

    /// Re-syncs from the store every document the change log says changed
    /// after `since`. Idempotent. Returns how many documents it looked at.
    fn catch_up(&self, index: &CollectionIndex, since: Seq) -> Result<usize> {
        let touched = self.changed_docs(index.collection_id(), since)?;
        let mut batch = Vec::new();
        for (id, last_change) in &touched {
            match self.store.get_doc_with_vectors(index.collection_id(), id)? {
                Some((record, vectors)) => {
                    if index.doc_seq(id) != Some(record.seq) {
                        batch.extend(index_doc(record, vectors, self.dim()));
                    }
                }
                None => {
                    index.remove(id, *last_change);
                }
            }
            if batch.len() >= REBUILD_CHUNK {
                index.upsert(&std::mem::take(&mut batch));
            }
        }
        index.upsert(&batch);
        Ok(touched.len())
    }

    /// Opens (or takes over) a collection's lexical index and brings it up
    /// to `last_seq`: from the change log when its last commit is not older
    /// than `trimmed` (where the log starts), else from a scan of the store.
    /// A damaged index directory is removed and rebuilt.
    pub(super) fn recover_lexical(
        &self,
        record: &CollectionRecord,
        last_seq: Seq,
        trimmed: Seq,
        open: Option<Arc<LexicalIndex>>,
    ) -> Result<Arc<LexicalIndex>> {
        let (lexical, committed) = match open {
            Some(lexical) => (lexical, 0),
            None => {
                let dir = persist::lexical_dir(&self.index_dir, record.id);
                let instance = &self.store.meta().instance_id;
                let (lexical, committed) = match LexicalIndex::open(&dir, instance) {
                    Ok(opened) => opened,
                    Err(e) => {
                        tracing::warn!(collection = %record.name, error = %e, "unusable lexical index; rebuilding");
                        let _ = std::fs::remove_dir_all(&dir);
                        LexicalIndex::open(&dir, instance).map_err(persist::PersistError::from)?
                    }
                };
                (Arc::new(lexical), committed)
            }
        };
        if committed == last_seq {
            return Ok(lexical);
        }
        let started = Instant::now();
        // Ahead of the store (a store restored from an older copy): its
        // sequence numbers may have been reused, so nothing in it is trusted.
        let count = if committed >= trimmed && committed < last_seq {
            self.catch_up_lexical(&lexical, record, committed)?
        } else {
            lexical.clear().map_err(persist::PersistError::from)?;
            let mut count = 0;
            for item in self.store.scan_collection(record.id) {
                let (doc, _) = item?;
                self.lexical_upsert(&lexical, record, doc)?;
                count += 1;
            }
            count
        };
        lexical
            .commit(last_seq)
            .map_err(persist::PersistError::from)?;
        if count > 0 {
            tracing::info!(
                collection = %record.name,
                documents = count,
                from_log = committed >= trimmed && committed < last_seq,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "lexical index caught up"
            );
        }
        Ok(lexical)
    }

    /// Re-applies to the lexical index every document of this collection
    /// the change log names after `since`. Returns how many.
    fn catch_up_lexical(
        &self,
        lexical: &LexicalIndex,
        record: &CollectionRecord,
        since: Seq,
    ) -> Result<usize> {
        let touched = self.changed_docs(record.id, since)?;
        for (id, seq) in &touched {
            match self.store.get_doc(record.id, id)? {
                Some(doc) => self.lexical_upsert(lexical, record, doc)?,
                None => lexical.remove(id, *seq),
            }
        }
        Ok(touched.len())
    }

    /// Every document of a collection the change log names after `since`,
    /// once, in first-change order, with the sequence number of its last
    /// change.
    fn changed_docs(&self, collection_id: u32, since: Seq) -> Result<Vec<(String, Seq)>> {
        let mut touched: Vec<(String, Seq)> = Vec::new();
        let mut position: HashMap<String, usize> = HashMap::new();
        for change in self.store.changes_after(since) {
            let (seq, change) = change?;
            if change.collection_id != collection_id {
                continue;
            }
            match position.get(&change.doc_id) {
                Some(&i) => touched[i].1 = seq,
                None => {
                    position.insert(change.doc_id.clone(), touched.len());
                    touched.push((change.doc_id, seq));
                }
            }
        }
        Ok(touched)
    }

    fn lexical_upsert(
        &self,
        lexical: &LexicalIndex,
        record: &CollectionRecord,
        doc: DocRecord,
    ) -> Result<()> {
        // Damaged metadata costs its text fields, not the document's text.
        let metadata = parse_metadata(&doc).unwrap_or_default();
        let units = text_units(
            doc.text.as_deref(),
            &doc.segments,
            &metadata,
            &record.text_fields,
        );
        lexical
            .upsert(&doc.id, doc.seq, &units)
            .map_err(persist::PersistError::from)?;
        Ok(())
    }

    /// A fresh index of everything the store holds for a collection.
    fn build_from_store(&self, record: &CollectionRecord) -> Result<CollectionIndex> {
        let index = CollectionIndex::new(
            record.id,
            &record.name,
            self.dim(),
            self.index_params(record),
        );
        let mut batch = Vec::with_capacity(REBUILD_CHUNK.min(record.doc_count as usize));
        for item in self.store.scan_collection(record.id) {
            let (doc, vectors) = item?;
            batch.extend(index_doc(doc, vectors, self.dim()));
            if batch.len() >= REBUILD_CHUNK {
                index.upsert(&std::mem::take(&mut batch));
            }
        }
        index.upsert(&batch);
        Ok(index)
    }

    /// Rebuilds the index of one collection (or all, with `None`) from the
    /// store, synchronously, then checkpoints. Writers wait meanwhile.
    pub(super) fn rebuild_indexes(&self, collection: Option<&str>) -> Result<()> {
        {
            let _gate = self.gate.write();
            let records = match collection {
                Some(name) => vec![self
                    .store
                    .collection(name)?
                    .ok_or_else(|| DbError::UnknownCollection(name.to_owned()))?],
                None => self.store.list_collections()?,
            };
            for record in records {
                let fresh = Arc::new(self.build_from_store(&record)?);
                // The lexical index is rebuilt in place (its directory is
                // held open by the old index's writer).
                let old = self.indexes.read().get(&record.name).cloned();
                let lexical = old.as_ref().and_then(|i| i.lexical().cloned());
                let last_seq = self.store.last_seq()?;
                fresh.attach_lexical(self.recover_lexical(&record, last_seq, Seq::MAX, lexical)?);
                self.indexes.write().insert(record.name.clone(), fresh);
            }
        }
        self.checkpoint_indexes()
    }

    /// Writes every index's checkpoint (atomically, with the sequence number
    /// it covers) and trims the change log behind them. Writers wait
    /// meanwhile.
    pub(super) fn checkpoint_indexes(&self) -> Result<()> {
        let _gate = self.gate.write();
        // Everything a checkpoint contains must be durable in the store.
        self.store.flush()?;
        let seq = self.store.last_seq()?;
        let indexes: Vec<Arc<CollectionIndex>> = self.indexes.read().values().cloned().collect();
        let mut first_error = None;
        for index in &indexes {
            if let Err(e) = index.checkpoint(&self.index_dir, self.store.meta().instance_id, seq) {
                tracing::warn!(collection = %index.name(), error = %e, "index checkpoint failed");
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            // Only when every index is checkpointed past `seq` may the
            // change log before it go.
            None => {
                self.store.trim_changes(seq)?;
                self.last_checkpoint_seq.store(seq, Ordering::Relaxed);
                Ok(())
            }
            Some(e) => Err(e.into()),
        }
    }

    fn remove_orphan_checkpoints(&self, collections: &[CollectionRecord]) {
        let live: HashSet<u32> = collections.iter().map(|c| c.id).collect();
        let Ok(entries) = std::fs::read_dir(&self.index_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = name
                .strip_prefix('c')
                .and_then(|rest| rest.split(['.', '-']).next())
                .and_then(|id| id.parse::<u32>().ok());
            if let Some(id) = id {
                if !live.contains(&id) {
                    persist::remove_checkpoint(&self.index_dir, id);
                }
            }
        }
    }
}

/// The index's view of a stored document; `None` (reported) for a malformed
/// record, which is then left out of the index rather than failing the open.
/// A stored document for the graph. No text units: during recovery and
/// reindex the lexical index is attached afterwards and caught up on its
/// own (`recover_lexical`), so they would be computed for nothing.
fn index_doc(record: DocRecord, vectors: Vec<f32>, dim: usize) -> Option<IndexDoc> {
    let metadata = match serde_json::from_str::<Value>(&record.metadata_json) {
        Ok(Value::Object(m)) => m,
        _ => {
            tracing::error!(doc = %record.id, "stored metadata is not a JSON object; not indexed");
            return None;
        }
    };
    if vectors.len() != dim * (1 + record.segments.len()) {
        tracing::error!(
            doc = %record.id,
            floats = vectors.len(),
            segments = record.segments.len(),
            "stored vectors do not match the record; not indexed"
        );
        return None;
    }
    Some(IndexDoc {
        text_units: Vec::new(),
        id: record.id,
        seq: record.seq,
        modality: record.modality,
        metadata: Arc::new(metadata),
        vectors,
    })
}
