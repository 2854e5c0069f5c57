//! Consistent snapshots of a live store, and loading one into a new store.
//!
//! sled 0.34 has no snapshot reads, so a snapshot is made at the
//! application level, copy-on-write:
//!
//! 1. [`Store::begin_snapshot`] takes the store's snapshot lock exclusively
//!    (every transaction holds it shared, so none is under way), reads the
//!    last sequence number `S` and marks the snapshot running. That is the
//!    only pause for writers, and it lasts as long as the longest
//!    transaction in flight, whatever the size of the database.
//! 2. From then on, every transaction that changes a key of a snapshotted
//!    tree for the first time since `S` also saves the key's previous value
//!    (or its absence) in the `snapshot_pre` tree, in the same transaction.
//!    sled makes a transaction's writes visible all at once to other
//!    readers, so nobody can see the new value without its pre-image.
//! 3. The caller reads every tree as it is now ([`Snapshot::records`]):
//!    keys nobody changed since `S` have their value at `S`; the others may
//!    not, but all of those have a pre-image by the time they were read.
//! 4. Then the caller reads the pre-images ([`Snapshot::pre_images`]):
//!    applied over the records (a value replaces, an absence removes), they
//!    turn them into the database exactly as it was at `S`.
//!
//! Dropping the [`Snapshot`] ends it and discards the pre-images (as does
//! opening the store, for a snapshot whose process died).
//!
//! Document, collection, blob and reference-count changes all go through
//! transactions, so blob garbage collection and collection drops during a
//! snapshot are covered. Not snapshotted: the change log and its trim mark
//! (a restored store starts with its change log empty and trimmed at `S`:
//! its indexes are rebuilt).
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use super::codec::{
    decode, decode_collection, decode_u64, encode_u64, CollectionRecord, ContentRef, DocRecord,
    StoreMeta, FORMAT_VERSION,
};
use super::{
    open_sled, Store, StoreError, DROPPED_PREFIX, KEY_CHANGES_TRIMMED, KEY_NEXT_COLLECTION,
    KEY_SEQ, KEY_STORE_META, SLED_LOG_FILE,
};
use crate::types::Seq;

/// The trees a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotTree {
    Meta,
    Collections,
    Docs,
    Vectors,
    Blobs,
    BlobRefs,
}

impl SnapshotTree {
    pub const ALL: [SnapshotTree; 6] = [
        SnapshotTree::Meta,
        SnapshotTree::Collections,
        SnapshotTree::Docs,
        SnapshotTree::Vectors,
        SnapshotTree::Blobs,
        SnapshotTree::BlobRefs,
    ];

    /// The sled tree's name.
    pub fn name(self) -> &'static str {
        match self {
            SnapshotTree::Meta => "meta",
            SnapshotTree::Collections => "collections",
            SnapshotTree::Docs => "docs",
            SnapshotTree::Vectors => "vectors",
            SnapshotTree::Blobs => "blobs",
            SnapshotTree::BlobRefs => "blob_refs",
        }
    }

    /// A stable one-byte tag (pre-image keys, backup files).
    pub fn tag(self) -> u8 {
        match self {
            SnapshotTree::Meta => 1,
            SnapshotTree::Collections => 2,
            SnapshotTree::Docs => 3,
            SnapshotTree::Vectors => 4,
            SnapshotTree::Blobs => 5,
            SnapshotTree::BlobRefs => 6,
        }
    }

    pub fn from_tag(tag: u8) -> Option<SnapshotTree> {
        SnapshotTree::ALL.into_iter().find(|t| t.tag() == tag)
    }

    fn tree(self, store: &Store) -> &sled::Tree {
        match self {
            SnapshotTree::Meta => &store.meta_tree,
            SnapshotTree::Collections => &store.collections,
            SnapshotTree::Docs => &store.docs,
            SnapshotTree::Vectors => &store.vectors,
            SnapshotTree::Blobs => &store.blobs,
            SnapshotTree::BlobRefs => &store.blob_refs,
        }
    }
}

/// Key of a pre-image: the tree's tag, then the key.
pub(super) fn pre_key(tag: u8, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + key.len());
    out.push(tag);
    out.extend_from_slice(key);
    out
}

/// `0`: the key was absent; `1` + bytes: its value.
pub(super) fn encode_pre_image(old: Option<&[u8]>) -> Vec<u8> {
    match old {
        None => vec![0],
        Some(v) => {
            let mut out = Vec::with_capacity(1 + v.len());
            out.push(1);
            out.extend_from_slice(v);
            out
        }
    }
}

fn decode_pre_image(bytes: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    match bytes.split_first() {
        Some((0, [])) => Ok(None),
        Some((1, value)) => Ok(Some(value.to_vec())),
        _ => Err(StoreError::Inconsistent(
            "malformed snapshot pre-image".into(),
        )),
    }
}

/// A running snapshot of the store at sequence number [`Snapshot::seq`].
pub struct Snapshot<'a> {
    store: &'a Store,
    seq: Seq,
}

impl Store {
    /// Starts a snapshot (see the module docs); one at a time.
    pub fn begin_snapshot(&self) -> Result<Snapshot<'_>, StoreError> {
        let mut running = self.snapshot_running.write();
        if *running {
            return Err(StoreError::SnapshotRunning);
        }
        // Left by a snapshot whose cleanup failed: no transaction writes
        // pre-images now, so this cannot race.
        if !self.snapshot_pre.is_empty() {
            self.snapshot_pre.clear()?;
        }
        let seq = self.last_seq()?;
        *running = true;
        Ok(Snapshot { store: self, seq })
    }
}

impl Snapshot<'_> {
    /// The sequence number the snapshot stands at.
    pub fn seq(&self) -> Seq {
        self.seq
    }

    pub fn meta(&self) -> &StoreMeta {
        &self.store.meta
    }

    /// The tree's records as they are now (read them all before
    /// [`Snapshot::pre_images`]). The change log's trim mark is left out.
    pub fn records(
        &self,
        tree: SnapshotTree,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        tree.tree(self.store)
            .iter()
            .filter(move |item| {
                !(tree == SnapshotTree::Meta
                    && matches!(item, Ok((k, _)) if k.as_ref() == KEY_CHANGES_TRIMMED))
            })
            .map(|item| {
                let (k, v) = item?;
                Ok((k.to_vec(), v.to_vec()))
            })
    }

    /// What changed since the snapshot began: (tree, key, value at the
    /// snapshot, `None` for absent). Applied over [`Snapshot::records`] read
    /// before, they give the database at [`Snapshot::seq`].
    #[allow(clippy::type_complexity)]
    pub fn pre_images(
        &self,
    ) -> impl Iterator<Item = Result<(SnapshotTree, Vec<u8>, Option<Vec<u8>>), StoreError>> + '_
    {
        self.store.snapshot_pre.iter().map(|item| {
            let (k, v) = item?;
            let (tag, key) = k
                .split_first()
                .ok_or_else(|| StoreError::Inconsistent("empty pre-image key".into()))?;
            let tree = SnapshotTree::from_tag(*tag).ok_or_else(|| {
                StoreError::Inconsistent(format!("pre-image of unknown tree {tag}"))
            })?;
            Ok((tree, key.to_vec(), decode_pre_image(&v)?))
        })
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        *self.store.snapshot_running.write() = false;
        if let Err(e) = self.store.snapshot_pre.clear() {
            tracing::warn!(error = %e, "could not discard a snapshot's pre-images (the next snapshot or open will)");
        }
    }
}

/// Writes a snapshot's records into a new store directory.
pub struct StoreLoader {
    dir: std::path::PathBuf,
    db: sled::Db,
    trees: HashMap<SnapshotTree, sled::Tree>,
}

/// What [`StoreLoader::finish`] found in the loaded store.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedStore {
    pub meta: StoreMeta,
    pub seq: Seq,
    pub collections: Vec<CollectionRecord>,
    pub documents: u64,
    pub blobs: u64,
}

impl StoreLoader {
    /// Creates an empty store in `dir` (which must not hold one).
    pub fn create(dir: &Path) -> Result<StoreLoader, StoreError> {
        if dir.join("conf").exists() {
            return Err(StoreError::Inconsistent(format!(
                "{} already holds a database",
                dir.display()
            )));
        }
        let db = open_sled(dir, super::DEFAULT_CACHE_BYTES)?;
        let mut trees = HashMap::new();
        for tree in SnapshotTree::ALL {
            trees.insert(tree, db.open_tree(tree.name())?);
        }
        Ok(StoreLoader {
            dir: dir.to_path_buf(),
            db,
            trees,
        })
    }

    /// Sets (`Some`) or removes (`None`) a key.
    pub fn put(
        &self,
        tree: SnapshotTree,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let tree = &self.trees[&tree];
        match value {
            Some(v) => tree.insert(key, v)?,
            None => tree.remove(key)?,
        };
        Ok(())
    }

    /// Checks that the loaded store is whole and stands at `seq` (the
    /// records of every tree agree with each other: counts, vectors,
    /// blob references and hashes), marks its (empty) change log as
    /// trimmed at `seq`, and makes it durable.
    pub fn finish(self, seq: Seq) -> Result<LoadedStore, StoreError> {
        let loaded = self.check(seq)?;
        let meta = &self.trees[&SnapshotTree::Meta];
        meta.insert(KEY_CHANGES_TRIMMED, &encode_u64(seq))?;
        self.db.flush()?;
        let sync = |path: &Path| {
            File::open(path)
                .and_then(|f| f.sync_all())
                .map_err(|e| StoreError::Flush(format!("syncing {}: {e}", path.display())))
        };
        sync(&self.dir.join(SLED_LOG_FILE))?;
        sync(&self.dir)?;
        Ok(loaded)
    }

    fn check(&self, seq: Seq) -> Result<LoadedStore, StoreError> {
        let bad = |what: String| StoreError::Inconsistent(what);
        let tree = |t: SnapshotTree| &self.trees[&t];
        let meta_tree = tree(SnapshotTree::Meta);
        let meta: StoreMeta = decode(
            &meta_tree
                .get(KEY_STORE_META)?
                .ok_or_else(|| bad("no store metadata".into()))?,
        )?;
        if meta.format_version != FORMAT_VERSION {
            return Err(StoreError::UnsupportedFormat {
                path: self.dir.clone(),
                found: meta.format_version,
                supported: FORMAT_VERSION,
            });
        }
        let stored_seq = match meta_tree.get(KEY_SEQ)? {
            Some(b) => decode_u64(&b)?,
            None => 0,
        };
        if stored_seq != seq {
            return Err(bad(format!(
                "sequence number is {stored_seq}, expected {seq}"
            )));
        }
        let next_collection = match meta_tree.get(KEY_NEXT_COLLECTION)? {
            Some(b) => decode_u64(&b)?,
            None => 1,
        };
        let mut collections = Vec::new();
        for value in tree(SnapshotTree::Collections).iter().values() {
            let record = decode_collection(&value?)?;
            if u64::from(record.id) >= next_collection {
                return Err(bad(format!(
                    "collection {:?} has id {} past the next id {next_collection}",
                    record.name, record.id
                )));
            }
            collections.push(record);
        }
        // Documents may belong to a live collection, or to a dropped one
        // whose sweep had not finished (the next open finishes it).
        let mut counts: HashMap<u32, u64> = collections.iter().map(|c| (c.id, 0)).collect();
        for key in meta_tree.scan_prefix(DROPPED_PREFIX).keys() {
            let key = key?;
            let id: [u8; 4] = key[DROPPED_PREFIX.len()..]
                .try_into()
                .map_err(|_| bad("malformed dropped-collection key".into()))?;
            counts.entry(u32::from_be_bytes(id)).or_insert(0);
        }
        let dim = meta.dim as usize;
        let vectors = tree(SnapshotTree::Vectors);
        let mut refs: HashMap<[u8; 32], u64> = HashMap::new();
        let mut documents = 0u64;
        for item in tree(SnapshotTree::Docs).iter() {
            let (key, value) = item?;
            let record: DocRecord = decode(&value)?;
            let prefix: [u8; 4] = key
                .get(..4)
                .and_then(|p| p.try_into().ok())
                .ok_or_else(|| bad("malformed document key".into()))?;
            let collection = u32::from_be_bytes(prefix);
            let Some(count) = counts.get_mut(&collection) else {
                return Err(bad(format!(
                    "document {:?} belongs to no collection",
                    record.id
                )));
            };
            *count += 1;
            documents += 1;
            if key[4..] != *record.id.as_bytes() {
                return Err(bad(format!(
                    "document {:?} is under another key",
                    record.id
                )));
            }
            if record.seq > seq {
                return Err(bad(format!(
                    "document {:?} has sequence number {} past {seq}",
                    record.id, record.seq
                )));
            }
            let floats = vectors.get(&key)?.map_or(0, |v| v.len() / 4);
            if floats != dim * (1 + record.segments.len()) {
                return Err(bad(format!(
                    "document {:?} has {floats} vector values, expected {}",
                    record.id,
                    dim * (1 + record.segments.len())
                )));
            }
            if let Some(ContentRef::Blob { hash, .. }) = &record.content {
                *refs.entry(*hash).or_insert(0) += 1;
            }
        }
        if vectors.len() as u64 != documents {
            return Err(bad(format!(
                "{} vector records for {documents} documents",
                vectors.len()
            )));
        }
        for c in &collections {
            let counted = counts.get(&c.id).copied().unwrap_or(0);
            if counted != c.doc_count {
                return Err(bad(format!(
                    "collection {:?} records {} documents but holds {counted}",
                    c.name, c.doc_count
                )));
            }
        }
        let blobs = tree(SnapshotTree::Blobs);
        let blob_refs = tree(SnapshotTree::BlobRefs);
        if blob_refs.len() != refs.len() || blobs.len() != refs.len() {
            return Err(bad(format!(
                "{} blobs and {} reference counts for {} referenced blobs",
                blobs.len(),
                blob_refs.len(),
                refs.len()
            )));
        }
        for (hash, count) in &refs {
            let stored = match blob_refs.get(hash)? {
                Some(b) => decode_u64(&b)?,
                None => 0,
            };
            let bytes = blobs.get(hash)?;
            let intact = bytes
                .as_ref()
                .is_some_and(|b| blake3::hash(b).as_bytes() == hash);
            if stored != *count || !intact {
                return Err(bad(format!(
                    "blob {} is missing, damaged or miscounted ({stored} references recorded, {count} found)",
                    hex::encode(hash)
                )));
            }
        }
        Ok(LoadedStore {
            meta,
            seq,
            documents: collections.iter().map(|c| c.doc_count).sum(),
            collections,
            blobs: refs.len() as u64,
        })
    }
}
