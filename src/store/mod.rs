//! Durable storage in sled: the only module that imports sled.
//!
//! Trees (all keys big-endian where numeric):
//!
//! | tree          | key                                   | value                                   |
//! |---------------|---------------------------------------|-----------------------------------------|
//! | `meta`        | `store_meta`                          | [`StoreMeta`] (format version, model, dim, dtype) |
//! |               | `seq`                                 | last sequence number (u64)              |
//! |               | `next_collection_id`                  | u64                                     |
//! |               | `changes_trimmed_upto`                | change log entries `<=` this are gone   |
//! |               | `dropped/<collection id>`             | a dropped collection still being swept  |
//! | `collections` | collection name                       | [`CollectionRecord`]                    |
//! | `docs`        | collection id (u32) + document id     | [`DocRecord`]                           |
//! | `vectors`     | same key as `docs`                    | raw LE f32: primary vector, then segments |
//! | `blobs`       | blake3 hash of the bytes (32 bytes)   | the bytes                               |
//! | `blob_refs`   | blake3 hash                           | reference count (u64)                   |
//! | `changes`     | sequence number (u64)                 | [`ChangeRecord`]: which document changed |
//! | `snapshot_pre`| tree tag (u8) + key of another tree   | that key's value when a running snapshot began ([`snapshot`]) |
//!
//! Every document write or delete is one sled transaction across these trees
//! (record, vectors, blob references, change log entry, sequence number,
//! collection count). sled only syncs in the background, so durability is
//! [`Store::flush`]: a group commit that lets concurrent writers share one
//! fsync.
//!
//! sled's own `flush` is not an fsync on Linux: it writes its log with
//! `sync_file_range`, which neither flushes the drive's write cache nor
//! persists the file's size, and only its background thread calls
//! `fsync` (every 500 ms). So after sled's flush [`Store::flush`] calls
//! `fdatasync` on sled's log file (`db`) itself. Not covered: sled keeps
//! values over ~128 KiB (large content bytes) in separate files under
//! `blobs/`, which sled never syncs.
pub mod codec;
pub mod snapshot;
pub mod space;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex, RwLock};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
};
use thiserror::Error;

use codec::{
    collection_prefix, decode, decode_collection, decode_seq_key, decode_u64, decode_vectors,
    doc_key, encode, encode_u64, seq_key,
};
pub use codec::{
    ChangeRecord, CodecError, CollectionRecord, ContentRef, DocRecord, StoreMeta, FORMAT_VERSION,
};

use crate::types::{now_ms, Modality, Seq, Span, VectorEncoding};

const KEY_STORE_META: &[u8] = b"store_meta";
const KEY_SEQ: &[u8] = b"seq";
const KEY_NEXT_COLLECTION: &[u8] = b"next_collection_id";
const KEY_CHANGES_TRIMMED: &[u8] = b"changes_trimmed_upto";
const DROPPED_PREFIX: &[u8] = b"dropped/";
/// The tree of a running snapshot's pre-images.
const SNAPSHOT_PRE_TREE: &str = "snapshot_pre";
/// sled 0.34's log file in its directory (`Config::db_path`).
const SLED_LOG_FILE: &str = "db";
/// Documents removed per transaction while sweeping a dropped collection.
const SWEEP_BATCH: usize = 256;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record: {0}")]
    Codec(#[from] CodecError),
    #[error(
        "database at {path} was created for model {stored_model:?} with dimension {stored_dim}; \
         it cannot be opened with model {requested_model:?} with dimension {requested_dim}"
    )]
    IncompatibleModel {
        path: PathBuf,
        stored_model: String,
        stored_dim: u32,
        requested_model: String,
        requested_dim: u32,
    },
    #[error(
        "database at {path} has on-disk format version {found}; this build reads version {supported}"
    )]
    UnsupportedFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("collection {0:?} already exists")]
    CollectionExists(String),
    #[error("unknown collection {0:?}")]
    UnknownCollection(String),
    #[error("generated document id {0:?} collides with an existing document")]
    IdCollision(String),
    #[error("flush to disk failed: {0}")]
    Flush(String),
    #[error("no more {0} available")]
    Exhausted(&'static str),
    #[error("the database in {0} is in use by another process (a running server?)")]
    Locked(PathBuf),
    #[error("a backup of this database is already running")]
    SnapshotRunning,
    #[error("inconsistent data: {0}")]
    Inconsistent(String),
    #[error(
        "the disk holding {} is full: {available} bytes free, this write needs {needed} \
         (storage.min_free_bytes plus the write); free space and writes resume by themselves",
        path.display()
    )]
    DiskFull {
        path: PathBuf,
        available: u64,
        needed: u64,
    },
    #[error("{} is on a read-only file system: writes are refused, reads still work", .0.display())]
    ReadOnly(PathBuf),
    /// Found at open: sled writes while opening (its lock, its log), so a
    /// database on a read-only file system cannot be opened at all.
    #[error(
        "{} is on a read-only file system, and the database cannot be opened there \
         (opening it writes to it): remount it read-write, or copy the data directory \
         to writable storage",
        .0.display()
    )]
    ReadOnlyAtOpen(PathBuf),
    #[error(
        "the store hit an I/O error ({0}); it refuses writes until the server restarts \
         (reads still work, and no acknowledged write is lost)"
    )]
    Failed(String),
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn abort<E: Into<StoreError>>(e: E) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e.into())
}

/// Content to store with a document.
#[derive(Debug, Clone)]
pub enum ContentWrite {
    Blob {
        bytes: Vec<u8>,
        content_type: String,
    },
    External {
        uri: String,
        content_type: Option<String>,
    },
}

/// One document to write (insert or replace).
#[derive(Debug, Clone)]
pub struct DocWrite {
    pub doc_id: String,
    /// The id was generated here, so an existing document under it is a
    /// collision to retry rather than an upsert.
    pub generated_id: bool,
    pub modality: Modality,
    pub text: Option<String>,
    pub content: Option<ContentWrite>,
    pub metadata_json: String,
    pub segments: Vec<Span>,
    /// Encoded vectors (primary, then one per segment), raw LE f32.
    pub vectors: Vec<u8>,
}

impl DocWrite {
    /// About how many bytes writing this document adds to the store.
    fn approx_bytes(&self) -> u64 {
        let content = match &self.content {
            Some(ContentWrite::Blob { bytes, .. }) => bytes.len(),
            Some(ContentWrite::External { uri, .. }) => uri.len(),
            None => 0,
        };
        let text = self.text.as_ref().map_or(0, String::len);
        (content + text + self.metadata_json.len() + self.vectors.len() + 256) as u64
    }
}

/// What a committed write did.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub record: DocRecord,
    /// A previous version existed (so the index must tombstone it).
    pub replaced: bool,
}

/// Totals for `stats`.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub blobs: u64,
    pub blob_bytes: u64,
    pub change_log_entries: u64,
    pub size_on_disk: u64,
}

/// Lets concurrent writers share fsyncs. A writer needs a flush that *starts*
/// after its transaction committed. The first writer to find no flush under
/// way becomes the leader: it waits (briefly, bounded by [`GROUP_WAIT`]) for
/// writers that are already between [`Store::begin_write`] and their commit,
/// then flushes for everybody. Writers arriving while a flush runs wait for it
/// to end and are covered by the next one.
#[derive(Default)]
struct GroupFlush {
    state: Mutex<FlushState>,
    done: Condvar,
    count: AtomicU64,
    /// Writers that announced a write and have not committed yet.
    arriving: AtomicU64,
}

/// Longest a flush leader waits for writers about to commit.
const GROUP_WAIT: std::time::Duration = std::time::Duration::from_millis(2);

#[derive(Default)]
struct FlushState {
    /// A leader is gathering writers or flushing.
    leader: bool,
    /// Flushes started so far (the generation of the latest one); bumped
    /// right before the leader calls sled's flush, under the lock.
    started: u64,
    /// Generation of the latest finished flush.
    finished: u64,
    /// Error of the latest finished flush, if it failed.
    last_error: Option<String>,
}

/// A writer waiting this long for a flush takes the store for failed: sled
/// waits forever for a log it can no longer write (see [`space`]).
const FLUSH_STALL: std::time::Duration = std::time::Duration::from_secs(60);

impl GroupFlush {
    fn flush(
        &self,
        db: &sled::Db,
        log: &File,
        space: &space::SpaceGuard,
    ) -> Result<(), StoreError> {
        // A failed sled's flush never returns.
        if let Some(reason) = space.failed() {
            return Err(StoreError::Failed(reason));
        }
        let mut st = self.state.lock();
        // Any flush that starts from now on covers this writer's commit.
        let needed = st.started + 1;
        let since = std::time::Instant::now();
        loop {
            if st.finished >= needed {
                return match &st.last_error {
                    None => Ok(()),
                    Some(e) => Err(StoreError::Flush(e.clone())),
                };
            }
            if !st.leader {
                st.leader = true;
                drop(st);
                self.gather();
                st = self.state.lock();
                st.started += 1;
                let generation = st.started;
                drop(st);
                let result = match db.flush() {
                    Ok(_) => log.sync_data().map_err(|e| format!("fdatasync: {e}")),
                    Err(e) => Err(space.fail(e).to_string()),
                };
                self.count.fetch_add(1, Ordering::Relaxed);
                st = self.state.lock();
                st.leader = false;
                st.finished = generation;
                st.last_error = result.err();
                self.done.notify_all();
                continue;
            }
            // A leader stuck in a failed sled never wakes us: look at the
            // failed state now and then.
            self.done
                .wait_for(&mut st, std::time::Duration::from_millis(200));
            if st.finished < needed {
                if let Some(reason) = space.failed() {
                    return Err(StoreError::Failed(reason));
                }
                if since.elapsed() > FLUSH_STALL {
                    space.fail_with(format!(
                        "a flush to disk has not finished in {} s",
                        FLUSH_STALL.as_secs()
                    ));
                }
            }
        }
    }

    /// Lets writers that are about to commit do so before the flush.
    fn gather(&self) {
        let deadline = std::time::Instant::now() + GROUP_WAIT;
        while self.arriving.load(Ordering::Acquire) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }
}

/// Marks a writer between "about to commit" and "committed" (see
/// [`Store::begin_write`]).
pub struct WriteIntent<'a>(&'a AtomicU64);

impl Drop for WriteIntent<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A tree inside a transaction. While a snapshot runs (see [`snapshot`]),
/// the first change to each key after the snapshot began saves the key's
/// previous value (or its absence) in `snapshot_pre`, in the same
/// transaction, so the snapshot can still read the database as it was.
struct TxTree<'a> {
    tree: &'a TransactionalTree,
    /// Tag of the tree in `snapshot_pre`; `None`: not part of snapshots.
    tag: Option<u8>,
    /// `snapshot_pre` while a snapshot runs.
    pre: Option<&'a TransactionalTree>,
}

impl TxTree<'_> {
    fn get(&self, key: &[u8]) -> TxResult<Option<sled::IVec>> {
        Ok(self.tree.get(key)?)
    }

    fn insert(&self, key: &[u8], value: impl Into<sled::IVec>) -> TxResult<()> {
        let old = self.tree.insert(key, value.into())?;
        self.keep_pre_image(key, old.as_deref())
    }

    fn remove(&self, key: &[u8]) -> TxResult<Option<sled::IVec>> {
        let old = self.tree.remove(key)?;
        self.keep_pre_image(key, old.as_deref())?;
        Ok(old)
    }

    /// Saves `old` as the key's value at the snapshot, unless an earlier
    /// change since the snapshot began saved it already.
    fn keep_pre_image(&self, key: &[u8], old: Option<&[u8]>) -> TxResult<()> {
        let (Some(tag), Some(pre)) = (self.tag, self.pre) else {
            return Ok(());
        };
        let pre_key = snapshot::pre_key(tag, key);
        if pre.get(&pre_key)?.is_none() {
            pre.insert(pre_key, snapshot::encode_pre_image(old))?;
        }
        Ok(())
    }
}

/// Transactional views of every tree, handed to write closures.
struct Tx<'a> {
    meta: TxTree<'a>,
    collections: TxTree<'a>,
    docs: TxTree<'a>,
    vectors: TxTree<'a>,
    blobs: TxTree<'a>,
    blob_refs: TxTree<'a>,
    changes: TxTree<'a>,
}

impl Tx<'_> {
    fn collection(&self, name: &str) -> TxResult<CollectionRecord> {
        let bytes = self
            .collections
            .get(name.as_bytes())?
            .ok_or_else(|| abort(StoreError::UnknownCollection(name.to_owned())))?;
        decode_collection(&bytes).map_err(abort)
    }

    fn put_collection(&self, record: &CollectionRecord) -> TxResult<()> {
        self.collections
            .insert(record.name.as_bytes(), encode(record).map_err(abort)?)?;
        Ok(())
    }

    fn next_seq(&self) -> TxResult<Seq> {
        let last = match self.meta.get(KEY_SEQ)? {
            Some(b) => decode_u64(&b).map_err(abort)?,
            None => 0,
        };
        self.meta.insert(KEY_SEQ, &encode_u64(last + 1))?;
        Ok(last + 1)
    }

    fn log_change(&self, seq: Seq, change: &ChangeRecord) -> TxResult<()> {
        self.changes
            .insert(&seq_key(seq), encode(change).map_err(abort)?)?;
        Ok(())
    }

    /// Adds a reference to a blob, storing the bytes on first use.
    fn retain_blob(&self, hash: &[u8; 32], bytes: &[u8]) -> TxResult<()> {
        let count = match self.blob_refs.get(hash)? {
            Some(b) => decode_u64(&b).map_err(abort)?,
            None => 0,
        };
        if count == 0 {
            self.blobs.insert(hash, bytes)?;
        }
        self.blob_refs.insert(hash, &encode_u64(count + 1))?;
        Ok(())
    }

    /// Drops a reference; the last one removes the bytes.
    fn release_blob(&self, hash: &[u8; 32]) -> TxResult<()> {
        let count = match self.blob_refs.get(hash)? {
            Some(b) => decode_u64(&b).map_err(abort)?,
            None => 0,
        };
        if count <= 1 {
            self.blob_refs.remove(hash)?;
            self.blobs.remove(hash)?;
        } else {
            self.blob_refs.insert(hash, &encode_u64(count - 1))?;
        }
        Ok(())
    }

    /// Removes a document with its vectors and blob reference; returns it.
    fn remove_doc(&self, key: &[u8]) -> TxResult<Option<DocRecord>> {
        let Some(bytes) = self.docs.remove(key)? else {
            return Ok(None);
        };
        let old: DocRecord = decode(&bytes).map_err(abort)?;
        self.vectors.remove(key)?;
        if let Some(ContentRef::Blob { hash, .. }) = &old.content {
            self.release_blob(hash)?;
        }
        Ok(Some(old))
    }
}

/// The sled database with its trees.
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    meta_tree: sled::Tree,
    collections: sled::Tree,
    docs: sled::Tree,
    vectors: sled::Tree,
    blobs: sled::Tree,
    blob_refs: sled::Tree,
    changes: sled::Tree,
    /// Pre-images for a running snapshot (see [`snapshot`]).
    snapshot_pre: sled::Tree,
    /// A snapshot is running: transactions save pre-images. Transactions
    /// hold it shared; a snapshot's start and end take it exclusively.
    snapshot_running: RwLock<bool>,
    meta: StoreMeta,
    group: GroupFlush,
    /// sled's log file, for the `fdatasync` that sled's flush leaves out.
    log_file: File,
    /// Free space checks before writes, and the failed state after an I/O
    /// error (see [`space`]).
    space: space::SpaceGuard,
}

impl Drop for Store {
    fn drop(&mut self) {
        // A failed sled's background flusher waits forever for its log, and
        // dropping the last handle joins it: keep one handle alive instead,
        // so that closing a failed store (and the process) can finish.
        if self.space.failed().is_some() {
            std::mem::forget(self.db.clone());
        }
    }
}

/// Opens sled, waiting up to [`LOCK_WAIT`] for its file lock: sled's
/// background threads release the lock a little after the last handle of
/// the same database was dropped (a reopen in the same process, a quick
/// restart). After that, the lock error stands (another process has it).
fn open_sled(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    space::refuse_read_only(dir)?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()
        {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                return Err(StoreError::Locked(
                    dir.parent().unwrap_or(dir).to_path_buf(),
                ));
            }
            other => return Ok(other?),
        }
    }
}

/// sled's page cache by default (`storage.cache_bytes`): sled's own default.
pub const DEFAULT_CACHE_BYTES: u64 = 1 << 30;

/// Longest [`open_sled`] waits for sled's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl Store {
    /// Opens (or creates) the database in `dir`, refusing one made for a
    /// different model id or dimension.
    pub fn open(dir: &Path, model_id: &str, dim: u32, dtype: &str) -> Result<Store, StoreError> {
        Store::open_with_cache(dir, model_id, dim, dtype, DEFAULT_CACHE_BYTES)
    }

    /// [`Store::open`] with sled's page cache capped at `cache_bytes`.
    pub fn open_with_cache(
        dir: &Path,
        model_id: &str,
        dim: u32,
        dtype: &str,
        cache_bytes: u64,
    ) -> Result<Store, StoreError> {
        let db = open_sled(dir, cache_bytes)?;
        let tree = |name: &str| db.open_tree(name);
        let store_trees = (
            tree("meta")?,
            tree("collections")?,
            tree("docs")?,
            tree("vectors")?,
            tree("blobs")?,
            tree("blob_refs")?,
            tree("changes")?,
            tree(SNAPSHOT_PRE_TREE)?,
        );
        let meta = match store_trees.0.get(KEY_STORE_META)? {
            Some(bytes) => {
                let meta: StoreMeta = decode(&bytes)?;
                check_compatible(dir, &meta, model_id, dim, dtype)?;
                meta
            }
            None => {
                let meta = StoreMeta {
                    format_version: FORMAT_VERSION,
                    model_id: model_id.to_owned(),
                    dim,
                    dtype: dtype.to_owned(),
                    instance_id: new_instance_id(dir),
                    created_ms: now_ms(),
                };
                store_trees.0.insert(KEY_STORE_META, encode(&meta)?)?;
                db.flush()?;
                meta
            }
        };
        let (meta_tree, collections, docs, vectors, blobs, blob_refs, changes, snapshot_pre) =
            store_trees;
        // Pre-images of a snapshot that did not finish (the process ended).
        snapshot_pre.clear()?;
        let log_file = File::open(dir.join(SLED_LOG_FILE)).map_err(|e| {
            StoreError::Flush(format!(
                "opening {}: {e}",
                dir.join(SLED_LOG_FILE).display()
            ))
        })?;
        // The entries of sled's files in the directory, durable once.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::Flush(format!("syncing {}: {e}", dir.display())))?;
        let store = Store {
            path: dir.to_path_buf(),
            db,
            meta_tree,
            collections,
            docs,
            vectors,
            blobs,
            blob_refs,
            changes,
            snapshot_pre,
            snapshot_running: RwLock::new(false),
            meta,
            group: GroupFlush::default(),
            log_file,
            space: space::SpaceGuard::new(dir),
        };
        store.finish_pending_drops()?;
        Ok(store)
    }

    /// What an existing database in `dir` was created for, without opening
    /// it for writing; `None` when there is no database there.
    pub fn read_meta(dir: &Path) -> Result<Option<StoreMeta>, StoreError> {
        if !dir.join("conf").is_file() {
            return Ok(None);
        }
        let db = open_sled(dir, DEFAULT_CACHE_BYTES)?;
        let meta = db.open_tree("meta")?.get(KEY_STORE_META)?;
        Ok(meta.map(|bytes| decode(&bytes)).transpose()?)
    }

    pub fn meta(&self) -> &StoreMeta {
        &self.meta
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn transaction<A>(&self, f: impl Fn(&Tx) -> TxResult<A>) -> Result<A, StoreError> {
        // Held for the whole transaction: a snapshot starts (or ends) only
        // between transactions, never during one.
        self.space.check(0)?;
        let snapshot_running = self.snapshot_running.read();
        let trees = (
            &self.meta_tree,
            &self.collections,
            &self.docs,
            &self.vectors,
            &self.blobs,
            &self.blob_refs,
            &self.changes,
            &self.snapshot_pre,
        );
        trees
            .transaction(
                |(meta, collections, docs, vectors, blobs, blob_refs, changes, pre)| {
                    let pre = snapshot_running.then_some(pre);
                    let tree = |tree, which: Option<snapshot::SnapshotTree>| TxTree {
                        tree,
                        tag: which.map(snapshot::SnapshotTree::tag),
                        pre,
                    };
                    use snapshot::SnapshotTree as T;
                    f(&Tx {
                        meta: tree(meta, Some(T::Meta)),
                        collections: tree(collections, Some(T::Collections)),
                        docs: tree(docs, Some(T::Docs)),
                        vectors: tree(vectors, Some(T::Vectors)),
                        blobs: tree(blobs, Some(T::Blobs)),
                        blob_refs: tree(blob_refs, Some(T::BlobRefs)),
                        changes: tree(changes, None),
                    })
                },
            )
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => self.space.fail(e),
            })
    }

    /// Free bytes the file system must keep (`storage.min_free_bytes`):
    /// writes that would go below are refused with [`StoreError::DiskFull`].
    pub fn set_min_free_bytes(&self, bytes: u64) {
        self.space.set_min_free(bytes);
    }

    /// Why the store refuses writes until a restart, if it does.
    pub fn failure(&self) -> Option<String> {
        self.space.failed()
    }

    /// Announces a write about to be committed; drop the guard once it is
    /// (committed or failed). A flush leader waits a little for announced
    /// writers, so that they share its fsync.
    pub fn begin_write(&self) -> WriteIntent<'_> {
        self.group.arriving.fetch_add(1, Ordering::AcqRel);
        WriteIntent(&self.group.arriving)
    }

    /// Makes every committed transaction durable (group commit): sled's
    /// flush, then `fdatasync` of its log file.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.group.flush(&self.db, &self.log_file, &self.space)
    }

    /// Number of fsyncs [`Store::flush`] has performed.
    pub fn flush_count(&self) -> u64 {
        self.group.count.load(Ordering::Relaxed)
    }

    /// Last committed sequence number (0 for an empty database).
    pub fn last_seq(&self) -> Result<Seq, StoreError> {
        Ok(match self.meta_tree.get(KEY_SEQ)? {
            Some(b) => decode_u64(&b)?,
            None => 0,
        })
    }

    /// A fresh, never repeated number (sled's persistent id generator).
    pub fn generate_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }

    // ---- collections ----

    /// Creates a collection (not yet durable: call [`Store::flush`]).
    pub fn create_collection(
        &self,
        name: &str,
        vectors: VectorEncoding,
        text_fields: &[String],
    ) -> Result<CollectionRecord, StoreError> {
        self.transaction(|tx| {
            if tx.collections.get(name.as_bytes())?.is_some() {
                return Err(abort(StoreError::CollectionExists(name.to_owned())));
            }
            let id = match tx.meta.get(KEY_NEXT_COLLECTION)? {
                Some(b) => decode_u64(&b).map_err(abort)?,
                None => 1,
            };
            let id32 =
                u32::try_from(id).map_err(|_| abort(StoreError::Exhausted("collection ids")))?;
            tx.meta.insert(KEY_NEXT_COLLECTION, &encode_u64(id + 1))?;
            let record = CollectionRecord {
                id: id32,
                name: name.to_owned(),
                created_ms: now_ms(),
                doc_count: 0,
                vectors,
                text_fields: text_fields.to_vec(),
            };
            tx.put_collection(&record)?;
            Ok(record)
        })
    }

    pub fn collection(&self, name: &str) -> Result<Option<CollectionRecord>, StoreError> {
        match self.collections.get(name.as_bytes())? {
            Some(b) => Ok(Some(decode_collection(&b)?)),
            None => Ok(None),
        }
    }

    pub fn list_collections(&self) -> Result<Vec<CollectionRecord>, StoreError> {
        self.collections
            .iter()
            .values()
            .map(|v| Ok(decode_collection(&v?)?))
            .collect()
    }

    /// Removes a collection: its record goes in one transaction (so the
    /// name is free at once), then its documents are swept in batches. A
    /// sweep cut short by a crash resumes on the next open.
    pub fn drop_collection(&self, name: &str) -> Result<Option<CollectionRecord>, StoreError> {
        let dropped = self.transaction(|tx| {
            let Some(bytes) = tx.collections.remove(name.as_bytes())? else {
                return Ok(None);
            };
            let record = decode_collection(&bytes).map_err(abort)?;
            tx.meta
                .insert(&dropped_key(record.id), record.name.as_bytes())?;
            Ok(Some(record))
        })?;
        if let Some(record) = &dropped {
            self.flush()?;
            self.sweep_collection(record.id)?;
            self.flush()?;
        }
        Ok(dropped)
    }

    fn sweep_collection(&self, collection_id: u32) -> Result<(), StoreError> {
        let prefix = collection_prefix(collection_id);
        loop {
            let keys = self
                .docs
                .scan_prefix(prefix)
                .keys()
                .take(SWEEP_BATCH)
                .collect::<Result<Vec<_>, _>>()?;
            if keys.is_empty() {
                break;
            }
            self.transaction(|tx| {
                for key in &keys {
                    tx.remove_doc(key)?;
                }
                Ok(())
            })?;
        }
        // In a transaction, like every change a snapshot must see.
        self.transaction(|tx| {
            tx.meta.remove(&dropped_key(collection_id))?;
            Ok(())
        })
    }

    fn finish_pending_drops(&self) -> Result<(), StoreError> {
        let pending = self
            .meta_tree
            .scan_prefix(DROPPED_PREFIX)
            .keys()
            .collect::<Result<Vec<_>, _>>()?;
        for key in pending {
            let id_bytes: [u8; 4] = key[DROPPED_PREFIX.len()..]
                .try_into()
                .map_err(|_| CodecError::BadKey(key.len()))?;
            let id = u32::from_be_bytes(id_bytes);
            tracing::info!(
                collection_id = id,
                "finishing the sweep of a dropped collection"
            );
            self.sweep_collection(id)?;
        }
        self.flush()
    }

    // ---- documents ----

    /// Writes documents into a collection in ONE transaction; each document
    /// gets its own sequence number. Not durable until [`Store::flush`].
    pub fn write_docs(
        &self,
        collection: &str,
        writes: &[DocWrite],
    ) -> Result<(u32, Vec<WriteOutcome>), StoreError> {
        let bytes: u64 = writes.iter().map(DocWrite::approx_bytes).sum();
        self.space.check(bytes)?;
        // Hash blobs outside the transaction (which may be retried).
        let hashes: Vec<Option<[u8; 32]>> = writes
            .iter()
            .map(|w| match &w.content {
                Some(ContentWrite::Blob { bytes, .. }) => Some(*blake3::hash(bytes).as_bytes()),
                _ => None,
            })
            .collect();
        self.transaction(|tx| {
            let mut coll = tx.collection(collection)?;
            let now = now_ms();
            let mut outcomes = Vec::with_capacity(writes.len());
            for (w, hash) in writes.iter().zip(&hashes) {
                let key = doc_key(coll.id, &w.doc_id);
                let content = match (&w.content, hash) {
                    (
                        Some(ContentWrite::Blob {
                            bytes,
                            content_type,
                        }),
                        Some(hash),
                    ) => {
                        tx.retain_blob(hash, bytes)?;
                        Some(ContentRef::Blob {
                            hash: *hash,
                            len: bytes.len() as u64,
                            content_type: content_type.clone(),
                        })
                    }
                    (Some(ContentWrite::External { uri, content_type }), _) => {
                        Some(ContentRef::External {
                            uri: uri.clone(),
                            content_type: content_type.clone(),
                        })
                    }
                    _ => None,
                };
                // Retain the new blob before releasing the old one, so that
                // re-writing the same bytes never deletes and re-adds them.
                let old = tx.remove_doc(&key)?;
                if old.is_some() && w.generated_id {
                    return Err(abort(StoreError::IdCollision(w.doc_id.clone())));
                }
                if old.is_none() {
                    coll.doc_count += 1;
                }
                let seq = tx.next_seq()?;
                let record = DocRecord {
                    id: w.doc_id.clone(),
                    modality: w.modality,
                    text: w.text.clone(),
                    content,
                    metadata_json: w.metadata_json.clone(),
                    created_ms: old.as_ref().map_or(now, |o| o.created_ms),
                    updated_ms: now,
                    seq,
                    segments: w.segments.clone(),
                };
                tx.docs
                    .insert(key.as_slice(), encode(&record).map_err(abort)?)?;
                tx.vectors.insert(key.as_slice(), w.vectors.as_slice())?;
                tx.log_change(
                    seq,
                    &ChangeRecord {
                        collection_id: coll.id,
                        doc_id: w.doc_id.clone(),
                        deleted: false,
                    },
                )?;
                outcomes.push(WriteOutcome {
                    record,
                    replaced: old.is_some(),
                });
            }
            tx.put_collection(&coll)?;
            Ok((coll.id, outcomes))
        })
    }

    /// Deletes a document; returns the sequence number of the deletion, or
    /// `None` when there was no such document. Not durable until flushed.
    pub fn delete_doc(&self, collection: &str, doc_id: &str) -> Result<Option<Seq>, StoreError> {
        self.transaction(|tx| {
            let mut coll = tx.collection(collection)?;
            let key = doc_key(coll.id, doc_id);
            if tx.remove_doc(&key)?.is_none() {
                return Ok(None);
            }
            coll.doc_count = coll.doc_count.saturating_sub(1);
            let seq = tx.next_seq()?;
            tx.log_change(
                seq,
                &ChangeRecord {
                    collection_id: coll.id,
                    doc_id: doc_id.to_owned(),
                    deleted: true,
                },
            )?;
            tx.put_collection(&coll)?;
            Ok(Some(seq))
        })
    }

    pub fn get_doc(
        &self,
        collection_id: u32,
        doc_id: &str,
    ) -> Result<Option<DocRecord>, StoreError> {
        match self.docs.get(doc_key(collection_id, doc_id))? {
            Some(b) => Ok(Some(decode(&b)?)),
            None => Ok(None),
        }
    }

    /// The document's vectors, flattened (primary first).
    pub fn get_vectors(
        &self,
        collection_id: u32,
        doc_id: &str,
    ) -> Result<Option<Vec<f32>>, StoreError> {
        match self.vectors.get(doc_key(collection_id, doc_id))? {
            Some(b) => Ok(Some(decode_vectors(&b)?)),
            None => Ok(None),
        }
    }

    /// Record and vectors read in one transaction (a consistent pair even
    /// while the document is being replaced).
    pub fn get_doc_with_vectors(
        &self,
        collection_id: u32,
        doc_id: &str,
    ) -> Result<Option<(DocRecord, Vec<f32>)>, StoreError> {
        let key = doc_key(collection_id, doc_id);
        let pair = (&self.docs, &self.vectors)
            .transaction(|(docs, vectors)| Ok((docs.get(&key)?, vectors.get(&key)?)))
            .map_err(|e: TransactionError<StoreError>| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => StoreError::Sled(e),
            })?;
        match pair {
            (Some(d), Some(v)) => Ok(Some((decode(&d)?, decode_vectors(&v)?))),
            _ => Ok(None),
        }
    }

    /// Up to `limit` documents of a collection in id order (byte order of
    /// the UTF-8 ids), starting after the id `after` (from the first when
    /// `None`). Reads only those records: a page costs the same at any depth.
    pub fn list_docs(
        &self,
        collection_id: u32,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DocRecord>, StoreError> {
        let prefix = collection_prefix(collection_id);
        let start = match after {
            // The smallest key after `after`'s own.
            Some(id) => {
                let mut key = doc_key(collection_id, id);
                key.push(0);
                key
            }
            None => prefix.to_vec(),
        };
        self.docs
            .range(start..)
            .take_while(|item| item.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
            .take(limit)
            .map(|item| Ok(decode(&item?.1)?))
            .collect()
    }

    /// Every document of a collection with its vectors, in key order.
    pub fn scan_collection(
        &self,
        collection_id: u32,
    ) -> impl Iterator<Item = Result<(DocRecord, Vec<f32>), StoreError>> + '_ {
        self.docs
            .scan_prefix(collection_prefix(collection_id))
            .map(move |item| {
                let (key, value) = item?;
                let record: DocRecord = decode(&value)?;
                let vectors = match self.vectors.get(&key)? {
                    Some(b) => decode_vectors(&b)?,
                    None => Vec::new(),
                };
                Ok((record, vectors))
            })
    }

    pub fn get_blob(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.blobs.get(hash)?.map(|b| b.to_vec()))
    }

    // ---- change log ----

    /// Change log entries with a sequence number above `after`.
    pub fn changes_after(
        &self,
        after: Seq,
    ) -> impl Iterator<Item = Result<(Seq, ChangeRecord), StoreError>> + '_ {
        self.changes
            .range(seq_key(after.saturating_add(1))..)
            .map(|item| {
                let (k, v) = item?;
                Ok((decode_seq_key(&k)?, decode(&v)?))
            })
    }

    /// Entries `<=` this sequence number may have been trimmed away; an index
    /// checkpoint older than it cannot be caught up.
    pub fn changes_trimmed_upto(&self) -> Result<Seq, StoreError> {
        Ok(match self.meta_tree.get(KEY_CHANGES_TRIMMED)? {
            Some(b) => decode_u64(&b)?,
            None => 0,
        })
    }

    /// Forgets change log entries `<= upto` (all indexes are checkpointed
    /// past them). The watermark is made durable before anything is removed.
    pub fn trim_changes(&self, upto: Seq) -> Result<(), StoreError> {
        if upto <= self.changes_trimmed_upto()? {
            return Ok(());
        }
        self.space.check(0)?;
        self.meta_tree
            .insert(KEY_CHANGES_TRIMMED, &encode_u64(upto))?;
        self.flush()?;
        let keys = self
            .changes
            .range(..=seq_key(upto))
            .keys()
            .collect::<Result<Vec<_>, _>>()?;
        for chunk in keys.chunks(1024) {
            let mut batch = sled::Batch::default();
            chunk.iter().for_each(|k| batch.remove(k));
            self.changes.apply_batch(batch)?;
        }
        Ok(())
    }

    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let mut stats = StoreStats {
            change_log_entries: self.changes.len() as u64,
            size_on_disk: self.db.size_on_disk()?,
            ..StoreStats::default()
        };
        for item in self.blobs.iter().values() {
            stats.blobs += 1;
            stats.blob_bytes += item?.len() as u64;
        }
        Ok(stats)
    }
}

fn dropped_key(collection_id: u32) -> Vec<u8> {
    let mut key = DROPPED_PREFIX.to_vec();
    key.extend_from_slice(&collection_id.to_be_bytes());
    key
}

fn check_compatible(
    dir: &Path,
    meta: &StoreMeta,
    model_id: &str,
    dim: u32,
    dtype: &str,
) -> Result<(), StoreError> {
    if meta.format_version != FORMAT_VERSION {
        return Err(StoreError::UnsupportedFormat {
            path: dir.to_path_buf(),
            found: meta.format_version,
            supported: FORMAT_VERSION,
        });
    }
    if meta.model_id != model_id || meta.dim != dim {
        return Err(StoreError::IncompatibleModel {
            path: dir.to_path_buf(),
            stored_model: meta.model_id.clone(),
            stored_dim: meta.dim,
            requested_model: model_id.to_owned(),
            requested_dim: dim,
        });
    }
    if meta.dtype != dtype {
        // Same model, other precision: vectors stay comparable (slightly
        // noisier), so this is worth a warning, not a refusal.
        tracing::warn!(
            stored = %meta.dtype,
            requested = %dtype,
            "opening a database written with another dtype/quantization of the same model"
        );
    }
    Ok(())
}

/// 16 bytes that differ between databases: a hash of the path, the time and
/// the process id (no need for a random number generator).
fn new_instance_id(dir: &Path) -> [u8; 16] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(dir.as_os_str().as_encoded_bytes());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    hasher.update(&nanos.to_le_bytes());
    hasher.update(&std::process::id().to_le_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    /// There is no migration between store formats yet: a database of
    /// another version is refused by name (see
    /// `tests/fixtures/format-v1/README.md` for what a bump needs).
    #[test]
    fn another_format_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "m", 4, "f32").unwrap();
        let older = StoreMeta {
            format_version: FORMAT_VERSION - 1,
            ..store.meta().clone()
        };
        store
            .meta_tree
            .insert(KEY_STORE_META, encode(&older).unwrap())
            .unwrap();
        store.flush().unwrap();
        drop(store);
        match Store::open(dir.path(), "m", 4, "f32") {
            Err(e @ StoreError::UnsupportedFormat { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&format!("format version {}", FORMAT_VERSION - 1)));
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
}
