//! Backups: a consistent online snapshot of the store written to a
//! directory with a checksummed manifest, and restoring one into a new
//! data directory.
//!
//! A backup directory holds:
//!
//! - one record file per store tree (`meta.rec`, `collections.rec`,
//!   `docs.rec`, `vectors.rec`, `blobs.rec` — the content bytes —,
//!   `blob_refs.rec`) with the records as they were read while writers
//!   went on, then `pre_images.rec`: the value at the snapshot of every key
//!   changed since it began (see [`crate::store::snapshot`]). Applied in
//!   that order they give the store exactly as it was at the manifest's
//!   sequence number;
//! - `manifest.json`, written last (a backup without one is unfinished):
//!   backup and store format versions, model id, dimension, dtype, the
//!   snapshot's sequence number, the collections with their document counts
//!   at that point, and each file's size, record count and blake3 hash;
//!   its own `checksum` is the blake3 of the manifest serialized compactly
//!   with `checksum` empty.
//!
//! A record file is `FILE_MAGIC`, then records: tree tag (u8), key length
//! (u32 LE), key, presence (u8: 1 = set, 0 = removed), and when present the
//! value's length (u64 LE) and the value.
//!
//! Indexes are not backed up: they are derived from the store, and restore
//! rebuilds them (then checkpoints them), so they match the store.
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{Db, DbError, DbOptions, Result};
use crate::store::codec::decode_collection;
use crate::store::snapshot::{SnapshotTree, StoreLoader};
use crate::store::{Store, StoreError, FORMAT_VERSION};
use crate::types::{now_ms, Seq};

/// Version of the backup directory's layout (files and record format).
pub const BACKUP_FORMAT: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
const PRE_IMAGES: &str = "pre_images.rec";
const FILE_MAGIC: &[u8; 8] = b"TKRBAK\x00\x01";
/// Longest key a record file may hold (store keys are ids, short).
const MAX_KEY: usize = 1 << 20;

#[derive(Debug, Error)]
pub enum BackupError {
    /// The destination cannot be used (not a directory, no parent).
    #[error("{0}")]
    Destination(String),
    #[error("{} is not empty", .0.display())]
    NotEmpty(PathBuf),
    #[error("a backup of this database is already running")]
    Busy,
    #[error("no database in {}", .0.display())]
    NoDatabase(PathBuf),
    #[error("{} is not a backup: it has no {MANIFEST} (or its backup did not finish)", .0.display())]
    NoManifest(PathBuf),
    #[error("backup {} is damaged: {file} {reason}", .dir.display())]
    Damaged {
        dir: PathBuf,
        file: String,
        reason: String,
    },
    #[error("backup {} cannot be restored by this build: {reason}", .dir.display())]
    Unsupported { dir: PathBuf, reason: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl BackupError {
    /// False only for our own failures (I/O).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, BackupError::Io { .. })
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DbError + '_ {
    move |source| {
        DbError::Backup(BackupError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// What a backup holds; `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub backup_format: u32,
    /// The store's on-disk format version ([`FORMAT_VERSION`]).
    pub store_format: u32,
    /// `tkr-embed <version>` that wrote it.
    pub created_by: String,
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
    pub model_id: String,
    pub dim: u32,
    pub dtype: String,
    /// The database's instance id (hex).
    pub instance_id: String,
    /// The backup is the database exactly as it was at this sequence number.
    pub seq: Seq,
    /// Live documents at `seq`.
    pub documents: u64,
    pub collections: Vec<ManifestCollection>,
    /// In the order restore applies them.
    pub files: Vec<ManifestFile>,
    /// blake3 (hex) of this manifest serialized compactly with `checksum`
    /// empty.
    pub checksum: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestCollection {
    pub name: String,
    pub documents: u64,
    /// `f32` or `int8`.
    pub vectors: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    pub name: String,
    pub bytes: u64,
    pub records: u64,
    /// blake3 of the file (hex).
    pub blake3: String,
}

impl Manifest {
    fn compute_checksum(&self) -> String {
        let unsigned = Manifest {
            checksum: String::new(),
            ..self.clone()
        };
        let bytes = serde_json::to_vec(&unsigned).expect("a manifest serializes");
        blake3::hash(&bytes).to_hex().to_string()
    }
}

/// Progress of a running backup, reported after every record.
#[derive(Debug, Clone, Copy)]
pub struct BackupProgress<'a> {
    /// The file being written.
    pub file: &'a str,
    /// Records written to it so far.
    pub records: u64,
    /// Bytes written to the backup so far (all files).
    pub bytes: u64,
}

/// What a finished backup holds.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupReport {
    pub dest: PathBuf,
    pub manifest: Manifest,
    /// Bytes of all files, the manifest included.
    pub bytes: u64,
    /// Keys changed by writers while the backup ran, saved for it.
    pub pre_images: u64,
    /// How long starting the snapshot held writers off (waiting for the
    /// transactions in flight, reading the sequence number).
    pub start_pause: Duration,
    pub elapsed: Duration,
}

/// What a restore brought back.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreReport {
    pub data_dir: PathBuf,
    pub manifest: Manifest,
    pub documents: u64,
    pub blobs: u64,
    pub elapsed: Duration,
}

impl Db {
    /// Writes a consistent backup of the database into `dest` (absent or
    /// an empty directory) while writes go on; see the module docs.
    pub fn backup(&self, dest: &Path) -> Result<BackupReport> {
        self.backup_with_progress(dest, &|_| {})
    }

    /// [`Db::backup`], calling `progress` after every record written.
    pub fn backup_with_progress(
        &self,
        dest: &Path,
        progress: &dyn Fn(&BackupProgress),
    ) -> Result<BackupReport> {
        self.backend.backup(dest, progress)
    }
}

/// Backs up the database in `data_dir`, which no other process may have
/// open (a running server: back it up through its API). Only the store is
/// opened, not the indexes.
pub fn backup_data_dir(
    data_dir: &Path,
    dest: &Path,
    progress: &dyn Fn(&BackupProgress),
) -> Result<BackupReport> {
    let options = Db::stored_options(data_dir)?
        .ok_or_else(|| BackupError::NoDatabase(data_dir.to_path_buf()))?;
    let store = Store::open(
        &data_dir.join("sled"),
        &options.model_id,
        options.dim as u32,
        &options.dtype,
    )?;
    let report = backup_store(&store, dest, progress)?;
    store.flush()?;
    Ok(report)
}

pub(super) fn backup_store(
    store: &Store,
    dest: &Path,
    progress: &dyn Fn(&BackupProgress),
) -> Result<BackupReport> {
    let started = Instant::now();
    let target = EmptyDir::prepare(dest)?;
    let pause = Instant::now();
    let snapshot = store.begin_snapshot().map_err(|e| match e {
        StoreError::SnapshotRunning => DbError::Backup(BackupError::Busy),
        other => other.into(),
    })?;
    let start_pause = pause.elapsed();
    let mut total = 0u64;
    let mut files = Vec::new();
    // Collections at the snapshot, for the manifest: few, kept in memory.
    let mut collections: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for tree in SnapshotTree::ALL {
        let mut file = RecordWriter::create(dest, &format!("{}.rec", tree.name()))?;
        for item in snapshot.records(tree) {
            let (key, value) = item?;
            file.put(tree, &key, Some(&value))?;
            if tree == SnapshotTree::Collections {
                collections.insert(key, value);
            }
            progress(&file.progress(total));
        }
        let (entry, bytes) = file.finish()?;
        total += bytes;
        files.push(entry);
    }
    // Only now: every change a record above may show has its pre-image.
    let mut file = RecordWriter::create(dest, PRE_IMAGES)?;
    for item in snapshot.pre_images() {
        let (tree, key, value) = item?;
        file.put(tree, &key, value.as_deref())?;
        if tree == SnapshotTree::Collections {
            match value {
                Some(v) => collections.insert(key, v),
                None => collections.remove(&key),
            };
        }
        progress(&file.progress(total));
    }
    let (entry, bytes) = file.finish()?;
    total += bytes;
    let pre_images = entry.records;
    files.push(entry);
    let seq = snapshot.seq();
    let meta = snapshot.meta().clone();
    // Writers stop saving pre-images as soon as the reading is done.
    drop(snapshot);

    let collections = collections
        .values()
        .map(|v| {
            let c = decode_collection(v).map_err(StoreError::from)?;
            Ok(ManifestCollection {
                name: c.name,
                documents: c.doc_count,
                vectors: c.vectors.as_str().to_owned(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut manifest = Manifest {
        backup_format: BACKUP_FORMAT,
        store_format: meta.format_version,
        created_by: format!("tkr-embed {}", env!("CARGO_PKG_VERSION")),
        created_ms: now_ms(),
        model_id: meta.model_id,
        dim: meta.dim,
        dtype: meta.dtype,
        instance_id: hex::encode(meta.instance_id),
        seq,
        documents: collections.iter().map(|c| c.documents).sum(),
        collections,
        files,
        checksum: String::new(),
    };
    manifest.checksum = manifest.compute_checksum();
    total += write_manifest(dest, &manifest)?;
    target.keep();
    Ok(BackupReport {
        dest: dest.to_path_buf(),
        manifest,
        bytes: total,
        pre_images,
        start_pause,
        elapsed: started.elapsed(),
    })
}

/// Writes the manifest atomically (temporary file, fsync, rename, fsync of
/// the directory); returns its size.
fn write_manifest(dest: &Path, manifest: &Manifest) -> Result<u64> {
    let mut text = serde_json::to_vec_pretty(manifest).expect("a manifest serializes");
    text.push(b'\n');
    let tmp = dest.join(format!("{MANIFEST}.tmp"));
    let path = dest.join(MANIFEST);
    let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(&text).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(dest)?;
    Ok(text.len() as u64)
}

fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Reads and checks a backup's manifest and every file it lists (size and
/// blake3), without writing anything.
pub fn verify(src: &Path) -> Result<Manifest> {
    let manifest = read_manifest(src)?;
    for file in &manifest.files {
        let path = src.join(&file.name);
        let (bytes, hash) = hash_file(&path).map_err(|e| match e {
            DbError::Backup(BackupError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                damaged(src, &file.name, "is missing")
            }
            other => other,
        })?;
        check_file(src, file, bytes, &hash)?;
    }
    Ok(manifest)
}

fn damaged(dir: &Path, file: &str, reason: impl Into<String>) -> DbError {
    DbError::Backup(BackupError::Damaged {
        dir: dir.to_path_buf(),
        file: file.to_owned(),
        reason: reason.into(),
    })
}

fn check_file(dir: &Path, file: &ManifestFile, bytes: u64, hash: &blake3::Hash) -> Result<()> {
    if bytes != file.bytes {
        return Err(damaged(
            dir,
            &file.name,
            format!(
                "has {bytes} bytes where the manifest says {} (truncated or altered)",
                file.bytes
            ),
        ));
    }
    if hash.to_hex().as_str() != file.blake3 {
        return Err(damaged(
            dir,
            &file.name,
            "does not match its checksum in the manifest",
        ));
    }
    Ok(())
}

fn read_manifest(src: &Path) -> Result<Manifest> {
    let path = src.join(MANIFEST);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::NoManifest(src.to_path_buf()).into())
        }
        Err(e) => return Err(io_err(&path)(e)),
    };
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| damaged(src, MANIFEST, format!("is not a valid manifest ({e})")))?;
    if manifest.checksum != manifest.compute_checksum() {
        return Err(damaged(
            src,
            MANIFEST,
            "does not match its own checksum (altered or damaged)",
        ));
    }
    let unsupported = |reason: String| {
        DbError::Backup(BackupError::Unsupported {
            dir: src.to_path_buf(),
            reason,
        })
    };
    if manifest.backup_format != BACKUP_FORMAT {
        return Err(unsupported(format!(
            "backup format {} (this build reads {BACKUP_FORMAT})",
            manifest.backup_format
        )));
    }
    if manifest.store_format != FORMAT_VERSION {
        return Err(unsupported(format!(
            "it holds on-disk format {} (this build restores format {FORMAT_VERSION})",
            manifest.store_format
        )));
    }
    for file in &manifest.files {
        let plain = Path::new(&file.name)
            .file_name()
            .is_some_and(|n| n == file.name.as_str());
        if !plain || file.name == MANIFEST {
            return Err(damaged(
                src,
                MANIFEST,
                format!("names a file {:?} outside the backup", file.name),
            ));
        }
    }
    if manifest.files.last().map(|f| f.name.as_str()) != Some(PRE_IMAGES) {
        return Err(damaged(
            src,
            MANIFEST,
            format!("does not end with {PRE_IMAGES}"),
        ));
    }
    Ok(manifest)
}

/// Restores the backup in `src` into `data_dir` (absent or an empty
/// directory): checks every file first, loads the store, checks it (counts,
/// vectors, blob references and hashes, the sequence number), then opens
/// the database, which rebuilds its indexes, and closes it, which
/// checkpoints them. On any failure `data_dir` is left as it was.
pub fn restore(src: &Path, data_dir: &Path) -> Result<RestoreReport> {
    let started = Instant::now();
    EmptyDir::check(data_dir)?;
    let manifest = verify(src)?;
    let target = EmptyDir::prepare(data_dir)?;
    let loader = StoreLoader::create(&data_dir.join("sled"))?;
    for file in &manifest.files {
        // Hashed again while read: the file may have changed since.
        let (bytes, hash) = read_records(src, &file.name, |tree, key, value| {
            Ok(loader.put(tree, key, value)?)
        })
        .map_err(|e| match e {
            DbError::Backup(BackupError::Io { source, .. }) => {
                damaged(src, &file.name, format!("cannot be read ({source})"))
            }
            other => other,
        })?;
        check_file(src, file, bytes, &hash)?;
    }
    let loaded = loader.finish(manifest.seq).map_err(|e| match e {
        StoreError::Inconsistent(reason) => damaged(
            src,
            "(records)",
            format!("restore to an inconsistent store: {reason}"),
        ),
        other => other.into(),
    })?;
    let meta = &loaded.meta;
    if meta.model_id != manifest.model_id
        || meta.dim != manifest.dim
        || hex::encode(meta.instance_id) != manifest.instance_id
        || loaded.documents != manifest.documents
    {
        return Err(damaged(
            src,
            MANIFEST,
            "disagrees with the records (model, dimension, instance or document count)",
        ));
    }
    let options = DbOptions::new(meta.model_id.clone(), meta.dim as usize, meta.dtype.clone());
    let db = Db::open(data_dir, options)?;
    for c in db.stats()?.collections {
        if c.index.documents as u64 != c.documents {
            return Err(DbError::Internal(format!(
                "the rebuilt index of {:?} holds {} documents, the store {}",
                c.name, c.index.documents, c.documents
            )));
        }
    }
    db.close()?;
    target.keep();
    Ok(RestoreReport {
        data_dir: data_dir.to_path_buf(),
        documents: loaded.documents,
        blobs: loaded.blobs,
        manifest,
        elapsed: started.elapsed(),
    })
}

/// A directory that was absent or empty; until [`EmptyDir::keep`], dropping
/// it takes back what was written there (the directory itself too when it
/// was created here).
struct EmptyDir {
    path: PathBuf,
    created: bool,
    keep: bool,
}

impl EmptyDir {
    /// Fails unless `path` is absent or an empty directory.
    fn check(path: &Path) -> Result<bool> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => {
                let mut entries = fs::read_dir(path).map_err(io_err(path))?;
                if entries.next().is_some() {
                    return Err(BackupError::NotEmpty(path.to_path_buf()).into());
                }
                Ok(true)
            }
            Ok(_) => Err(BackupError::Destination(format!(
                "{} exists and is not a directory",
                path.display()
            ))
            .into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(path)(e)),
        }
    }

    fn prepare(path: &Path) -> Result<EmptyDir> {
        let exists = EmptyDir::check(path)?;
        if !exists {
            fs::create_dir(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => DbError::Backup(BackupError::Destination(format!(
                    "the parent directory of {} does not exist",
                    path.display()
                ))),
                _ => io_err(path)(e),
            })?;
        }
        Ok(EmptyDir {
            path: path.to_path_buf(),
            created: !exists,
            keep: false,
        })
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for EmptyDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let result = if self.created {
            fs::remove_dir_all(&self.path)
        } else {
            fs::read_dir(&self.path).and_then(|entries| {
                for entry in entries {
                    let path = entry?.path();
                    if path.is_dir() {
                        fs::remove_dir_all(&path)?;
                    } else {
                        fs::remove_file(&path)?;
                    }
                }
                Ok(())
            })
        };
        if let Err(e) = result {
            tracing::warn!(path = %self.path.display(), error = %e, "could not clean up after a failed backup or restore");
        }
    }
}

/// A record file being written, hashed as it goes.
struct RecordWriter {
    name: String,
    path: PathBuf,
    out: BufWriter<File>,
    hasher: blake3::Hasher,
    bytes: u64,
    records: u64,
}

impl RecordWriter {
    fn create(dir: &Path, name: &str) -> Result<RecordWriter> {
        let path = dir.join(name);
        let file = File::create_new(&path).map_err(io_err(&path))?;
        let mut writer = RecordWriter {
            name: name.to_owned(),
            path,
            out: BufWriter::with_capacity(1 << 20, file),
            hasher: blake3::Hasher::new(),
            bytes: 0,
            records: 0,
        };
        writer.write(FILE_MAGIC)?;
        Ok(writer)
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.out.write_all(data).map_err(io_err(&self.path))?;
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        Ok(())
    }

    fn put(&mut self, tree: SnapshotTree, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let key_len = u32::try_from(key.len())
            .map_err(|_| DbError::Internal("a store key is over 4 GiB".into()))?;
        self.write(&[tree.tag()])?;
        self.write(&key_len.to_le_bytes())?;
        self.write(key)?;
        match value {
            Some(v) => {
                self.write(&[1])?;
                self.write(&(v.len() as u64).to_le_bytes())?;
                self.write(v)?;
            }
            None => self.write(&[0])?,
        }
        self.records += 1;
        Ok(())
    }

    fn progress(&self, before: u64) -> BackupProgress<'_> {
        BackupProgress {
            file: &self.name,
            records: self.records,
            bytes: before + self.bytes,
        }
    }

    /// Flushes and fsyncs; returns the manifest entry and the size.
    fn finish(self) -> Result<(ManifestFile, u64)> {
        let RecordWriter {
            name,
            path,
            out,
            hasher,
            bytes,
            records,
        } = self;
        let file = out
            .into_inner()
            .map_err(|e| io_err(&path)(e.into_error()))?;
        file.sync_all().map_err(io_err(&path))?;
        Ok((
            ManifestFile {
                name,
                bytes,
                records,
                blake3: hasher.finalize().to_hex().to_string(),
            },
            bytes,
        ))
    }
}

/// Counts and hashes what is read through it.
struct Hashing<R> {
    inner: R,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

fn hash_file(path: &Path) -> Result<(u64, blake3::Hash)> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut reader = Hashing {
        inner: BufReader::with_capacity(1 << 20, file),
        hasher: blake3::Hasher::new(),
        bytes: 0,
    };
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(io_err(path))?;
    Ok((reader.bytes, reader.hasher.finalize()))
}

/// Reads a record file, handing each record to `apply`; returns the size
/// and hash of all it read. A malformed file is [`BackupError::Damaged`].
fn read_records(
    dir: &Path,
    name: &str,
    mut apply: impl FnMut(SnapshotTree, &[u8], Option<&[u8]>) -> Result<()>,
) -> Result<(u64, blake3::Hash)> {
    let path = dir.join(name);
    let file = File::open(&path).map_err(io_err(&path))?;
    let len = file.metadata().map_err(io_err(&path))?.len();
    let mut reader = Hashing {
        inner: BufReader::with_capacity(1 << 20, file),
        hasher: blake3::Hasher::new(),
        bytes: 0,
    };
    let malformed = |what: &str| damaged(dir, name, format!("is malformed: {what}"));
    let mut magic = [0u8; 8];
    read_exact(&mut reader, &mut magic, &path)?
        .then_some(())
        .filter(|_| &magic == FILE_MAGIC)
        .ok_or_else(|| malformed("not a record file"))?;
    let mut key = Vec::new();
    let mut value = Vec::new();
    loop {
        let mut tag = [0u8; 1];
        if !read_exact(&mut reader, &mut tag, &path)? {
            break;
        }
        let tree = SnapshotTree::from_tag(tag[0]).ok_or_else(|| malformed("unknown tree"))?;
        let mut head = [0u8; 4];
        let key_len = read_exact(&mut reader, &mut head, &path)?
            .then(|| u32::from_le_bytes(head) as usize)
            .filter(|&n| n <= MAX_KEY)
            .ok_or_else(|| malformed("bad key length"))?;
        key.resize(key_len, 0);
        let mut present = [0u8; 1];
        if !read_exact(&mut reader, &mut key, &path)?
            || !read_exact(&mut reader, &mut present, &path)?
        {
            return Err(malformed("cut short"));
        }
        match present[0] {
            0 => apply(tree, &key, None)?,
            1 => {
                let mut head = [0u8; 8];
                let value_len = read_exact(&mut reader, &mut head, &path)?
                    .then(|| u64::from_le_bytes(head))
                    .filter(|&n| n <= len)
                    .ok_or_else(|| malformed("bad value length"))?;
                value.resize(value_len as usize, 0);
                if !read_exact(&mut reader, &mut value, &path)? {
                    return Err(malformed("cut short"));
                }
                apply(tree, &key, Some(&value))?;
            }
            _ => return Err(malformed("bad presence flag")),
        }
    }
    Ok((reader.bytes, reader.hasher.finalize()))
}

/// Fills `buf`; false when the input ended first (at its start or midway:
/// the caller knows which is fine).
fn read_exact(reader: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Ok(buf.is_empty()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(path)(e)),
        }
    }
    Ok(true)
}
