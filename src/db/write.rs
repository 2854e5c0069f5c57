//! The write path: validate → one sled transaction → group-commit flush →
//! index update in commit order → acknowledge.
//!
//! Ordering: transactions commit under the sequencer's commit lock and get a
//! ticket; after their (shared) flush, writers apply their change to the
//! index strictly in ticket order. So the index sees changes in the order
//! the store committed them (a delete racing an insert of the same id ends
//! the same way in both), while the expensive part, the fsync, is shared.
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use serde_json::Value;

use super::{hex, Content, Db, DbError, NewDocument, Result};
use crate::index::IndexDoc;
use crate::store::codec::encode_vectors;
use crate::store::{ContentWrite, DocWrite, StoreError};
use crate::types::{l2_normalize, validate_doc_id};

/// Most extra vectors one document may have.
pub const MAX_SEGMENTS: usize = 100_000;
/// Attempts at a generated id that does not collide with an existing one.
const ID_ATTEMPTS: usize = 4;

/// Hands out tickets in commit order and lets ticket holders apply their
/// change to the index one after the other, in that order.
#[derive(Default)]
pub(super) struct ApplySequencer {
    next_ticket: Mutex<u64>,
    next_to_apply: Mutex<u64>,
    turn: Condvar,
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
                had_turn: false,
            },
        ))
    }
}

/// A committed change's place in the apply order. Dropping it (also on
/// panic or early return) passes the turn on, so nobody waits forever.
pub(super) struct Ticket<'a> {
    sequencer: &'a ApplySequencer,
    number: u64,
    had_turn: bool,
}

impl Ticket<'_> {
    fn wait_turn(&self) {
        let mut next = self.sequencer.next_to_apply.lock();
        while *next != self.number {
            self.sequencer.turn.wait(&mut next);
        }
    }

    /// Waits for the earlier tickets, then runs `apply`.
    pub(super) fn apply<R>(mut self, apply: impl FnOnce() -> R) -> R {
        self.wait_turn();
        self.had_turn = true;
        apply()
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.had_turn {
            self.wait_turn();
        }
        let mut next = self.sequencer.next_to_apply.lock();
        *next = self.number + 1;
        self.sequencer.turn.notify_all();
    }
}

/// A validated document ready for the store and the index.
struct Prepared {
    write: DocWrite,
    vectors: Vec<f32>,
    metadata: Arc<serde_json::Map<String, Value>>,
}

impl Db {
    /// Inserts (or replaces, when the id exists) one document; returns its
    /// id. Returns after the document is on disk and searchable.
    pub fn insert(&self, collection: &str, doc: NewDocument) -> Result<String> {
        let mut ids = self.insert_many(collection, vec![doc])?;
        ids.pop()
            .ok_or_else(|| DbError::Internal("insert produced no id".into()))
    }

    /// Inserts a batch: one transaction, one flush, one (parallel) index
    /// insert. All or nothing: a bad document fails the whole batch before
    /// anything is written. A repeated id in the batch: the last one wins.
    pub fn insert_many(&self, collection: &str, docs: Vec<NewDocument>) -> Result<Vec<String>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let prepared = docs
            .into_iter()
            .enumerate()
            .map(|(i, doc)| {
                self.prepare(doc).map_err(|e| match e {
                    DbError::BadInput(m) => DbError::BadInput(format!("document {i}: {m}")),
                    other => other,
                })
            })
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
            .zip(&prepared)
            .map(|(outcome, p)| IndexDoc {
                id: outcome.record.id.clone(),
                seq: outcome.record.seq,
                modality: outcome.record.modality,
                metadata: p.metadata.clone(),
                vectors: p.vectors.clone(),
            })
            .collect();
        ticket.apply(|| index.upsert(&index_docs));
        self.maybe_rebuild(&index);
        flushed?;
        Ok(outcomes.into_iter().map(|o| o.record.id).collect())
    }

    /// Deletes a document; false when there was none. Returns after the
    /// deletion is on disk and no search can return the document.
    pub fn delete(&self, collection: &str, id: &str) -> Result<bool> {
        validate_doc_id(id).map_err(DbError::BadInput)?;
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
        ticket.apply(|| index.remove(id, seq));
        self.maybe_rebuild(&index);
        flushed?;
        Ok(true)
    }

    fn prepare(&self, doc: NewDocument) -> Result<Prepared> {
        let dim = self.dim();
        let (doc_id, generated_id) = match doc.id {
            Some(id) => {
                validate_doc_id(&id).map_err(DbError::BadInput)?;
                (id, false)
            }
            None => (self.generate_doc_id()?, true),
        };
        let metadata = match doc.metadata {
            Value::Object(m) => m,
            Value::Null => serde_json::Map::new(),
            other => {
                return Err(DbError::BadInput(format!(
                    "metadata must be a JSON object, got {other}"
                )))
            }
        };
        if doc.segments.len() > MAX_SEGMENTS {
            return Err(DbError::BadInput(format!(
                "{} segments (at most {MAX_SEGMENTS})",
                doc.segments.len()
            )));
        }
        let mut vectors = Vec::with_capacity(dim * (1 + doc.segments.len()));
        let mut spans = Vec::with_capacity(doc.segments.len());
        let primary = std::iter::once((None, doc.vector));
        let extra = doc
            .segments
            .into_iter()
            .enumerate()
            .map(|(i, s)| (Some((i, s.span)), s.vector));
        for (segment, mut v) in primary.chain(extra) {
            let what = match &segment {
                None => "vector".to_owned(),
                Some((i, _)) => format!("segment {i}"),
            };
            if v.len() != dim {
                return Err(DbError::WrongDimension {
                    expected: dim,
                    got: v.len(),
                });
            }
            l2_normalize(&mut v).map_err(|e| DbError::BadInput(format!("{what}: {e}")))?;
            vectors.extend_from_slice(&v);
            if let Some((_, span)) = segment {
                span.validate()
                    .map_err(|e| DbError::BadInput(format!("{what}: {e}")))?;
                spans.push(span);
            }
        }
        let content = doc.content.map(|c| match c {
            Content::Bytes { data, content_type } => ContentWrite::Blob {
                bytes: data,
                content_type: if content_type.is_empty() {
                    "application/octet-stream".to_owned()
                } else {
                    content_type
                },
            },
            Content::External { uri, content_type } => ContentWrite::External { uri, content_type },
        });
        if let Some(ContentWrite::External { uri, .. }) = &content {
            if uri.is_empty() {
                return Err(DbError::BadInput("external content URI is empty".into()));
            }
        }
        let metadata_json = Value::Object(metadata.clone()).to_string();
        Ok(Prepared {
            write: DocWrite {
                doc_id,
                generated_id,
                modality: doc.modality,
                text: doc.text,
                content,
                metadata_json,
                segments: spans,
                vectors: encode_vectors(&vectors),
            },
            vectors,
            metadata: Arc::new(metadata),
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
        Ok(hex(&hasher.finalize().as_bytes()[..16]))
    }
}
