//! Index checkpoints: atomic, checksummed, never trusted blindly.
//!
//! A collection's checkpoint is two files in the index directory:
//!
//! - `c<id>.ckpt` — the manifest, the commit point: `MAGIC` (8 bytes),
//!   payload length (u64 LE), blake3 of the payload (32 bytes), then the
//!   payload, a postcard [`Manifest`]: database instance id, collection id,
//!   dimension, the sequence number the checkpoint covers, the label map
//!   (label → document, segment), per-document seq / modality / metadata, and
//!   the name, length and blake3 hash of the graph file.
//! - `c<id>-<generation>.graph` — the graph with its vectors
//!   ([`Hnsw::write_to`]).
//!
//! Writing: write the graph file under a fresh generation name, fsync it,
//! hash it, write the manifest to a temp file, fsync, rename over
//! `c<id>.ckpt`, fsync the directory, then delete older generations. A crash
//! at any point leaves either the old or the new checkpoint complete.
//!
//! Loading checks the manifest's length and hash and the graph file's length
//! and hash; the graph reader checks every link besides. Any problem is a
//! [`PersistError`] and the caller rebuilds from sled. Checkpoints of older
//! versions (another `MAGIC`) are rejected the same way: rebuilt once.
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::hnsw::Hnsw;
use super::postings::Postings;
use super::state::{DocEntry, LabelEntry};
use super::{CollectionIndex, IndexParams};
use crate::types::{Modality, Seq};

const MAGIC: &[u8; 8] = b"TKRIDX\x00\x02";
const HEADER_LEN: usize = 8 + 8 + 32;

#[derive(Debug, Error)]
pub enum PersistError {
    #[error("checkpoint I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("checkpoint {path} does not fit this database: {reason}")]
    Mismatch { path: PathBuf, reason: String },
    #[error("hnsw graph write/read failed: {0}")]
    Graph(String),
    #[error(transparent)]
    Lexical(#[from] super::lexical::LexicalError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a checkpoint records besides the graph.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub instance_id: [u8; 16],
    pub collection_id: u32,
    pub dim: u32,
    /// Every change with a sequence number `<=` this is in the checkpoint.
    pub seq: Seq,
    /// Label → (index into `docs`, segment); `None` is a tombstone.
    pub labels: Vec<Option<(u32, u32)>>,
    pub docs: Vec<DocSnapshot>,
    pub graph: Option<GraphFiles>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocSnapshot {
    pub id: String,
    pub seq: Seq,
    pub modality: Modality,
    pub metadata_json: String,
    pub labels: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GraphFiles {
    pub basename: String,
    pub graph_len: u64,
    pub graph_hash: [u8; 32],
}

pub fn manifest_path(dir: &Path, collection_id: u32) -> PathBuf {
    dir.join(format!("c{collection_id}.ckpt"))
}

/// The directory of a collection's lexical (tantivy) index.
pub fn lexical_dir(dir: &Path, collection_id: u32) -> PathBuf {
    dir.join(format!("c{collection_id}-lexical"))
}

fn graph_path(dir: &Path, basename: &str) -> PathBuf {
    dir.join(format!("{basename}.graph"))
}

fn hash_file(path: &Path) -> Result<(u64, [u8; 32]), PersistError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        len += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((len, *hasher.finalize().as_bytes()))
}

fn sync_file(path: &Path) -> Result<(), PersistError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(path))
}

fn sync_dir(dir: &Path) -> Result<(), PersistError> {
    // Directories can be fsynced on Unix (makes renames durable); elsewhere
    // opening a directory fails and there is nothing more we can do.
    #[cfg(unix)]
    {
        sync_file(dir)?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes a checkpoint atomically (see the module docs).
pub fn write_checkpoint(
    dir: &Path,
    manifest: &mut Manifest,
    graph: Option<&Hnsw>,
) -> Result<(), PersistError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let id = manifest.collection_id;
    manifest.graph = match graph {
        Some(graph) if !graph.is_empty() => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let basename = format!("c{id}-{}-{nanos}", manifest.seq);
            let path = graph_path(dir, &basename);
            let file = File::create(&path).map_err(io_err(&path))?;
            let mut out = BufWriter::with_capacity(1 << 20, file);
            graph.write_to(&mut out).map_err(io_err(&path))?;
            out.into_inner()
                .map_err(|e| io_err(&path)(e.into_error()))?
                .sync_all()
                .map_err(io_err(&path))?;
            let (graph_len, graph_hash) = hash_file(&path)?;
            Some(GraphFiles {
                basename,
                graph_len,
                graph_hash,
            })
        }
        _ => None,
    };
    let payload = postcard::to_stdvec(&*manifest)
        .map_err(|e| PersistError::Graph(format!("encoding the manifest: {e}")))?;
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(blake3::hash(&payload).as_bytes());
    bytes.extend_from_slice(&payload);

    let final_path = manifest_path(dir, id);
    let tmp_path = dir.join(format!("c{id}.ckpt.tmp"));
    {
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp_path)
            .map_err(io_err(&tmp_path))?;
        f.write_all(&bytes).map_err(io_err(&tmp_path))?;
        f.sync_all().map_err(io_err(&tmp_path))?;
    }
    fs::rename(&tmp_path, &final_path).map_err(io_err(&final_path))?;
    sync_dir(dir)?;
    let keep = manifest.graph.as_ref().map(|g| g.basename.clone());
    remove_graph_files(dir, id, keep.as_deref());
    Ok(())
}

/// Deletes graph files of collection `id` except generation `keep`, and
/// leftover temp manifests. Failures only cost disk space, so they are logged.
pub fn remove_graph_files(dir: &Path, id: u32, keep: Option<&str>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("c{id}-");
    let tmp = format!("c{id}.ckpt.tmp");
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // `.hnsw.data`: the second file of checkpoints written by hnsw_rs.
        let is_graph =
            name.starts_with(&prefix) && (name.ends_with(".graph") || name.ends_with(".hnsw.data"));
        let kept = keep.is_some_and(|k| name == format!("{k}.graph"));
        if (is_graph && !kept) || name == tmp {
            if let Err(e) = fs::remove_file(entry.path()) {
                tracing::warn!(file = %name, error = %e, "could not remove an old checkpoint file");
            }
        }
    }
}

/// Deletes every checkpoint file of a collection (it was dropped).
pub fn remove_checkpoint(dir: &Path, id: u32) {
    let _ = fs::remove_file(manifest_path(dir, id));
    remove_graph_files(dir, id, None);
    let _ = fs::remove_dir_all(lexical_dir(dir, id));
}

/// Reads and verifies a checkpoint. `Ok(None)` when there is none.
pub fn load_checkpoint(
    dir: &Path,
    collection_id: u32,
    instance_id: &[u8; 16],
    dim: u32,
) -> Result<Option<(Manifest, Option<Hnsw>)>, PersistError> {
    let path = manifest_path(dir, collection_id);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let corrupt = |reason: &str| PersistError::Corrupt {
        path: path.clone(),
        reason: reason.to_owned(),
    };
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(corrupt("bad header"));
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default());
    let payload = &bytes[HEADER_LEN..];
    if payload.len() as u64 != len {
        return Err(corrupt(&format!(
            "payload is {} bytes, header says {len}",
            payload.len()
        )));
    }
    if blake3::hash(payload).as_bytes() != &bytes[16..48] {
        return Err(corrupt("checksum mismatch"));
    }
    let manifest: Manifest =
        postcard::from_bytes(payload).map_err(|e| corrupt(&format!("undecodable: {e}")))?;
    let mismatch = |reason: String| PersistError::Mismatch {
        path: path.clone(),
        reason,
    };
    if &manifest.instance_id != instance_id {
        return Err(mismatch("written by another database".into()));
    }
    if manifest.collection_id != collection_id || manifest.dim != dim {
        return Err(mismatch(format!(
            "collection {} dim {}, expected collection {collection_id} dim {dim}",
            manifest.collection_id, manifest.dim
        )));
    }
    if let Err(reason) = check_label_map(&manifest) {
        return Err(corrupt(&reason));
    }
    let graph = match &manifest.graph {
        None => None,
        Some(files) => Some(load_graph(dir, files, dim)?),
    };
    Ok(Some((manifest, graph)))
}

/// The label map must be a bijection between live labels and document labels.
fn check_label_map(m: &Manifest) -> Result<(), String> {
    let mut seen = 0usize;
    for (di, doc) in m.docs.iter().enumerate() {
        for (segment, &label) in doc.labels.iter().enumerate() {
            let entry = usize::try_from(label)
                .ok()
                .and_then(|l| m.labels.get(l))
                .copied()
                .flatten();
            if entry != Some((di as u32, segment as u32)) {
                return Err(format!(
                    "label {label} of document {:?} is inconsistent",
                    doc.id
                ));
            }
            seen += 1;
        }
    }
    if seen != m.labels.iter().flatten().count() {
        return Err("live labels without a document".into());
    }
    Ok(())
}

fn load_graph(dir: &Path, files: &GraphFiles, dim: u32) -> Result<Hnsw, PersistError> {
    let path = graph_path(dir, &files.basename);
    let (actual_len, actual_hash) = hash_file(&path)?;
    if actual_len != files.graph_len || actual_hash != files.graph_hash {
        return Err(PersistError::Corrupt {
            path,
            reason: format!(
                "length {actual_len} (expected {}) or checksum differs",
                files.graph_len
            ),
        });
    }
    let file = File::open(&path).map_err(io_err(&path))?;
    let graph =
        Hnsw::read_from(&mut BufReader::with_capacity(1 << 20, file)).map_err(|reason| {
            PersistError::Corrupt {
                path: path.clone(),
                reason,
            }
        })?;
    if graph.config().dim != dim as usize {
        return Err(PersistError::Corrupt {
            path,
            reason: format!("graph of dimension {}", graph.config().dim),
        });
    }
    Ok(graph)
}

// ---------------------------------------------------------------------------
// The index to and from a checkpoint
// ---------------------------------------------------------------------------

impl CollectionIndex {
    /// Writes a checkpoint of this index covering changes up to `seq`.
    /// The caller guarantees no writes are applied meanwhile.
    pub fn checkpoint(
        &self,
        dir: &Path,
        instance_id: [u8; 16],
        seq: Seq,
    ) -> Result<(), PersistError> {
        let (mut manifest, graph) = {
            let st = self.state.read();
            let mut index_of: HashMap<&str, u32> = HashMap::with_capacity(st.docs.len());
            let mut docs = Vec::with_capacity(st.docs.len());
            for (i, (id, d)) in st.docs.iter().enumerate() {
                index_of.insert(id, i as u32);
                docs.push(DocSnapshot {
                    id: id.to_string(),
                    seq: d.seq,
                    modality: d.modality,
                    metadata_json: Value::Object((*d.metadata).clone()).to_string(),
                    labels: d.labels.iter().map(|&l| l as u64).collect(),
                });
            }
            let labels = st
                .labels
                .iter()
                .map(|e| e.as_ref().map(|e| (index_of[&*e.doc], e.segment)))
                .collect();
            let manifest = Manifest {
                instance_id,
                collection_id: self.collection_id,
                dim: self.dim as u32,
                seq,
                labels,
                docs,
                graph: None,
            };
            (manifest, st.graph.clone())
        };
        if let Some(lexical) = self.lexical.get() {
            lexical.commit(seq)?;
        }
        write_checkpoint(dir, &mut manifest, Some(&graph))
    }

    /// Loads a checkpoint into a fresh index. `Ok(None)` when there is none.
    /// Returns the sequence number it covers.
    pub fn load(
        dir: &Path,
        instance_id: &[u8; 16],
        collection_id: u32,
        name: &str,
        dim: usize,
        params: IndexParams,
    ) -> Result<Option<(CollectionIndex, Seq)>, PersistError> {
        let Some((manifest, graph)) = load_checkpoint(dir, collection_id, instance_id, dim as u32)?
        else {
            return Ok(None);
        };
        let path = manifest_path(dir, collection_id);
        if let Some(g) = &graph {
            if g.config().encoding != params.encoding {
                return Err(PersistError::Corrupt {
                    path: manifest_path(dir, collection_id),
                    reason: format!(
                        "checkpoint holds {} vectors, the collection {}",
                        g.config().encoding,
                        params.encoding
                    ),
                });
            }
        }
        let graph_points = graph.as_ref().map_or(0, |g| g.len());
        if graph_points != manifest.labels.len() {
            return Err(PersistError::Corrupt {
                path,
                reason: format!(
                    "graph has {graph_points} points, label map {}",
                    manifest.labels.len()
                ),
            });
        }
        let mut docs = HashMap::with_capacity(manifest.docs.len());
        let mut ids = Vec::with_capacity(manifest.docs.len());
        let mut postings = Postings::default();
        for d in manifest.docs {
            // Labels of a document are consecutive (the postings and exact
            // scans rely on it).
            if d.labels.windows(2).any(|w| w[1] != w[0] + 1) {
                return Err(PersistError::Corrupt {
                    path,
                    reason: format!("labels of {:?} are not consecutive", d.id),
                });
            }
            let metadata = match serde_json::from_str::<Value>(&d.metadata_json) {
                Ok(Value::Object(m)) => m,
                _ => {
                    return Err(PersistError::Corrupt {
                        path,
                        reason: format!("metadata of {:?} is not a JSON object", d.id),
                    })
                }
            };
            let id: Arc<str> = Arc::from(d.id);
            ids.push((id.clone(), d.labels.len() as u32, d.seq));
            if let Some(&first) = d.labels.first() {
                postings.insert(first as u32, d.modality, &metadata);
            }
            docs.insert(
                id,
                DocEntry {
                    seq: d.seq,
                    labels: d.labels.iter().map(|&l| l as usize).collect(),
                    modality: d.modality,
                    metadata: Arc::new(metadata),
                },
            );
        }
        let labels: Vec<Option<LabelEntry>> = manifest
            .labels
            .iter()
            .map(|e| {
                e.map(|(doc, segment)| {
                    let (id, count, seq) = &ids[doc as usize];
                    LabelEntry {
                        doc: id.clone(),
                        segment,
                        count: *count,
                        seq: *seq,
                    }
                })
            })
            .collect();
        let tombstones = labels.iter().filter(|e| e.is_none()).count();
        let index = CollectionIndex::new(collection_id, name, dim, params);
        {
            let mut st = index.state.write();
            if let Some(graph) = graph {
                st.graph = Arc::new(graph);
            }
            st.labels = labels;
            st.docs = docs;
            st.tombstones = tombstones;
            st.applied_seq = manifest.seq;
            st.postings = postings;
        }
        Ok(Some((index, manifest.seq)))
    }
}
