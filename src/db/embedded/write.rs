//! The embedded write path: one sled transaction → group-commit flush →
//! index update in commit order → acknowledge.
//!
//! Ordering: transactions commit under the sequencer's commit lock and get a
//! ticket; after their (shared) flush, the changes are applied to the index
//! strictly in ticket order. So the index sees changes in the order the
//! store committed them (a delete racing an insert of the same id ends the
//! same way in both), while the expensive parts are shared: the fsync by
//! group commit, the index update by combining the changes that are ready
//! into one batch (see [`ApplySequencer`]).
use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, MutexGuard};
use serde_json::Value;

use super::super::backend::ValidDocument;
use super::Embedded;
use crate::db::{Content, DbError, Result};
use crate::index::lexical::text_units;
use crate::index::{CollectionIndex, IndexDoc};
use crate::store::codec::encode_vectors;
use crate::store::{ContentWrite, DocWrite, StoreError};
use crate::types::Seq;

/// Attempts at a generated id that does not collide with an existing one.
const ID_ATTEMPTS: usize = 4;

/// Hands out tickets in commit order and applies the committed changes to
/// the indexes in that order. A writer hands its change in with its ticket
/// and waits until it is applied; whoever finds the next change in line
/// handed in (and nobody applying) applies it together with every change
/// handed in right after it, consecutive inserts into one collection as one
/// `upsert`. So concurrent single-document writers are combined into
/// batches (which the index may insert in parallel) and are woken once per
/// batch rather than once per document.
#[derive(Default)]
pub(super) struct ApplySequencer {
    next_ticket: Mutex<u64>,
    state: Mutex<ApplyState>,
    turn: Condvar,
}

#[derive(Default)]
struct ApplyState {
    /// First ticket whose change is not applied yet.
    next_to_apply: u64,
    /// A writer is applying a run of changes (without holding the lock).
    applying: bool,
    /// Changes handed in and not applied yet, and outcomes not yet collected.
    slots: BTreeMap<u64, Slot>,
}

enum Slot {
    /// Handed in (`None`: nothing to apply); `true` if its writer waits.
    Ready(Option<IndexChange>, bool),
    /// Being applied.
    Taken,
    /// Applied; `false` if applying its run panicked.
    Done(bool),
}

/// A committed change for an index.
pub(super) enum IndexChange {
    Upsert(Arc<CollectionIndex>, Vec<IndexDoc>),
    Remove(Arc<CollectionIndex>, String, Seq),
}

impl ApplySequencer {
    /// Runs `commit` (a store transaction) and takes a ticket, atomically.
    pub(super) fn commit<T>(&self, commit: impl FnOnce() -> Result<T>) -> Result<(T, Ticket<'_>)> {
        let mut next = self.next_ticket.lock();
        let value = commit()?;
        let number = *next;
        *next += 1;
        Ok((
            value,
            Ticket {
                sequencer: self,
                number,
                handed_in: false,
            },
        ))
    }

    /// Hands in ticket `number`'s change; with `wait`, returns once it is
    /// applied (applying runs of changes meanwhile, its own or others').
    fn hand_in(&self, number: u64, change: Option<IndexChange>, wait: bool) -> Result<()> {
        let mut st = self.state.lock();
        st.slots.insert(number, Slot::Ready(change, wait));
        if !wait {
            // Somebody waiting (or the next writer) applies it.
            self.turn.notify_all();
            return Ok(());
        }
        loop {
            if let Some(Slot::Done(ok)) = st.slots.get(&number) {
                let ok = *ok;
                st.slots.remove(&number);
                return if ok {
                    Ok(())
                } else {
                    Err(DbError::Internal(
                        "updating the index panicked; reopen the database to rebuild it".into(),
                    ))
                };
            }
            let first = st.next_to_apply;
            if st.applying || !matches!(st.slots.get(&first), Some(Slot::Ready(..))) {
                self.turn.wait(&mut st);
                continue;
            }
            let mut run = Vec::new();
            let mut end = first;
            while let Some(slot) = st.slots.get_mut(&end) {
                let Slot::Ready(change, waiting) = std::mem::replace(slot, Slot::Taken) else {
                    unreachable!("tickets past next_to_apply are never taken or done");
                };
                if !waiting {
                    st.slots.remove(&end);
                }
                run.push(change);
                end += 1;
            }
            st.applying = true;
            let outcome = MutexGuard::unlocked(&mut st, || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| apply_run(run)))
            });
            st.applying = false;
            st.next_to_apply = end;
            for t in first..end {
                if let Some(slot @ Slot::Taken) = st.slots.get_mut(&t) {
                    *slot = Slot::Done(outcome.is_ok());
                }
            }
            self.turn.notify_all();
            if let Err(panic) = outcome {
                st.slots.remove(&number);
                drop(st);
                std::panic::resume_unwind(panic);
            }
        }
    }
}

/// Applies changes in order, consecutive inserts into the same index as one
/// `upsert` (which allocates labels in order, so a later version of a
/// document still replaces an earlier one).
fn apply_run(run: Vec<Option<IndexChange>>) {
    let mut batch: Option<(Arc<CollectionIndex>, Vec<IndexDoc>)> = None;
    for change in run.into_iter().flatten() {
        match change {
            IndexChange::Upsert(index, docs) => match &mut batch {
                Some((current, pending)) if Arc::ptr_eq(current, &index) => pending.extend(docs),
                _ => {
                    if let Some((current, pending)) = batch.replace((index, docs)) {
                        current.upsert(&pending);
                    }
                }
            },
            IndexChange::Remove(index, id, seq) => {
                if let Some((current, pending)) = batch.take() {
                    current.upsert(&pending);
                }
                index.remove(&id, seq);
            }
        }
    }
    if let Some((current, pending)) = batch {
        current.upsert(&pending);
    }
}

/// A committed change's place in the apply order. Dropping it unused (on
/// an error or a panic) hands in nothing, so nobody waits for it forever.
pub(super) struct Ticket<'a> {
    sequencer: &'a ApplySequencer,
    number: u64,
    handed_in: bool,
}

impl Ticket<'_> {
    /// Applies `change` after every earlier ticket's; returns once it is
    /// applied (so searches see it).
    pub(super) fn apply(mut self, change: IndexChange) -> Result<()> {
        self.handed_in = true;
        self.sequencer.hand_in(self.number, Some(change), true)
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.handed_in {
            // Never fails without waiting.
            let _ = self.sequencer.hand_in(self.number, None, false);
        }
    }
}

/// A validated document ready for the store and the index.
struct Prepared {
    write: DocWrite,
    vectors: Vec<f32>,
    metadata: Arc<serde_json::Map<String, Value>>,
}

impl Embedded {
    /// One transaction, one (shared) flush, one (parallel) index insert.
    pub(super) fn write_documents(
        &self,
        collection: &str,
        docs: Vec<ValidDocument>,
    ) -> Result<Vec<String>> {
        let prepared = docs
            .into_iter()
            .map(|doc| self.prepare(doc))
            .collect::<Result<Vec<_>>>()?;
        let ids = self.write_prepared(collection, prepared)?;
        self.maybe_checkpoint();
        Ok(ids)
    }

    fn write_prepared(&self, collection: &str, mut prepared: Vec<Prepared>) -> Result<Vec<String>> {
        let intent = self.store.begin_write();
        let _gate = self.gate.read();
        let index = self.collection_index(collection)?;
        let mut attempt = 1;
        let ((collection_id, outcomes), ticket) = loop {
            let writes: Vec<DocWrite> = prepared.iter().map(|p| p.write.clone()).collect();
            match self
                .sequencer
                .commit(|| Ok(self.store.write_docs(collection, &writes)?))
            {
                Err(DbError::Store(StoreError::IdCollision(_))) if attempt < ID_ATTEMPTS => {
                    attempt += 1;
                    for p in prepared.iter_mut().filter(|p| p.write.generated_id) {
                        p.write.doc_id = self.generate_doc_id()?;
                    }
                }
                other => break other?,
            }
        };
        drop(intent);
        let flushed = self.store.flush();
        debug_assert_eq!(collection_id, index.collection_id());
        let index_docs: Vec<IndexDoc> = outcomes
            .iter()
            .zip(prepared)
            .map(|(outcome, p)| IndexDoc {
                id: outcome.record.id.clone(),
                seq: outcome.record.seq,
                modality: outcome.record.modality,
                text_units: text_units(
                    outcome.record.text.as_deref(),
                    &outcome.record.segments,
                    &p.metadata,
                    &index.params().text_fields,
                ),
                metadata: p.metadata,
                vectors: p.vectors,
            })
            .collect();
        let applied = ticket.apply(IndexChange::Upsert(index.clone(), index_docs));
        self.maybe_rebuild(&index);
        flushed?;
        applied?;
        Ok(outcomes.into_iter().map(|o| o.record.id).collect())
    }

    /// Deletes a document; false when there was none. Returns after the
    /// deletion is on disk and no search can return the document.
    pub(super) fn delete_document(&self, collection: &str, id: &str) -> Result<bool> {
        let deleted = self.delete_one(collection, id)?;
        if deleted {
            self.maybe_checkpoint();
        }
        Ok(deleted)
    }

    fn delete_one(&self, collection: &str, id: &str) -> Result<bool> {
        let intent = self.store.begin_write();
        let _gate = self.gate.read();
        let index = self.collection_index(collection)?;
        let (deleted, ticket) = self
            .sequencer
            .commit(|| Ok(self.store.delete_doc(collection, id)?))?;
        drop(intent);
        let Some(seq) = deleted else {
            return Ok(false);
        };
        let flushed = self.store.flush();
        let applied = ticket.apply(IndexChange::Remove(index.clone(), id.to_owned(), seq));
        self.maybe_rebuild(&index);
        flushed?;
        applied?;
        Ok(true)
    }

    fn prepare(&self, doc: ValidDocument) -> Result<Prepared> {
        let (doc_id, generated_id) = match doc.id {
            Some(id) => (id, false),
            None => (self.generate_doc_id()?, true),
        };
        let content = doc.content.map(|c| match c {
            Content::Bytes { data, content_type } => ContentWrite::Blob {
                bytes: data,
                content_type,
            },
            Content::External { uri, content_type } => ContentWrite::External { uri, content_type },
        });
        let metadata_json = Value::Object(doc.metadata.clone()).to_string();
        Ok(Prepared {
            write: DocWrite {
                doc_id,
                generated_id,
                modality: doc.modality,
                text: doc.text,
                content,
                metadata_json,
                segments: doc.spans,
                vectors: encode_vectors(&doc.vectors),
            },
            vectors: doc.vectors,
            metadata: Arc::new(doc.metadata),
        })
    }

    /// 32 hex digits from sled's persistent id counter, the database's
    /// instance id and the clock: unique here, and unlikely to equal a
    /// user-chosen id (which the store checks anyway).
    fn generate_doc_id(&self) -> Result<String> {
        let n = self.store.generate_id()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.store.meta().instance_id);
        hasher.update(&n.to_le_bytes());
        hasher.update(&nanos.to_le_bytes());
        Ok(hex::encode(&hasher.finalize().as_bytes()[..16]))
    }
}
