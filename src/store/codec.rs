//! Record encoding: one record-version byte, then postcard. Vectors are raw
//! little-endian f32 (no framing: the count follows from the length and the
//! database dimension). Keys are big-endian so sled's byte order is numeric
//! order.
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::types::{Modality, Seq, Span, VectorEncoding};

/// On-disk format of the whole database (stored in the `meta` tree). Bump it
/// when a tree's layout changes in a way old code cannot read.
pub const FORMAT_VERSION: u32 = 1;

/// Version byte in front of every postcard record. Bump it (and keep a decoder
/// for the old one) when a record struct changes shape.
pub const RECORD_VERSION: u8 = 1;

#[derive(Debug, Error)]
pub enum CodecError {
    #[error("empty record")]
    Empty,
    #[error("record version {found} is not supported (this build reads version {RECORD_VERSION})")]
    UnknownVersion { found: u8 },
    #[error("malformed record: {0}")]
    Postcard(#[from] postcard::Error),
    #[error("vector blob of {0} bytes is not a whole number of f32 values")]
    BadVectorLength(usize),
    #[error("malformed key of {0} bytes")]
    BadKey(usize),
}

/// What the database was created for; checked on every open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreMeta {
    pub format_version: u32,
    pub model_id: String,
    pub dim: u32,
    /// Free-form label of the embedding dtype / quantization (`f32`, `bf16`, `q4`...).
    pub dtype: String,
    /// Random id of this database, written into index checkpoints so a
    /// checkpoint from another database is never loaded.
    pub instance_id: [u8; 16],
    pub created_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionRecord {
    /// Internal id, never reused: the key prefix of the collection's documents.
    pub id: u32,
    pub name: String,
    pub created_ms: u64,
    /// Number of live documents (maintained in the write transactions).
    pub doc_count: u64,
    /// How the collection's index holds vectors (chosen at creation).
    pub vectors: VectorEncoding,
    /// Metadata fields the lexical index matches as document text.
    pub text_fields: Vec<String>,
}

/// [`CollectionRecord`] as written before `vectors` and `text_fields`
/// existed: such collections hold float32 vectors and index no metadata text.
#[derive(Deserialize)]
struct CollectionRecordV1 {
    id: u32,
    name: String,
    created_ms: u64,
    doc_count: u64,
}

/// Decodes a collection record of either shape. Postcard has no field
/// names: an old record runs out of bytes where `vectors` would start,
/// which is how it is told apart.
pub fn decode_collection(bytes: &[u8]) -> Result<CollectionRecord, CodecError> {
    match decode::<CollectionRecord>(bytes) {
        Err(CodecError::Postcard(postcard::Error::DeserializeUnexpectedEnd)) => {
            let old: CollectionRecordV1 = decode(bytes)?;
            Ok(CollectionRecord {
                id: old.id,
                name: old.name,
                created_ms: old.created_ms,
                doc_count: old.doc_count,
                vectors: VectorEncoding::F32,
                text_fields: Vec::new(),
            })
        }
        other => other,
    }
}

/// Where a document's original content lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ContentRef {
    /// Bytes in the `blobs` tree, keyed by their blake3 hash (shared between
    /// documents with the same bytes, reference counted).
    Blob {
        hash: [u8; 32],
        len: u64,
        content_type: String,
    },
    /// Not stored here: a URI the caller resolves.
    External {
        uri: String,
        content_type: Option<String>,
    },
}

/// A stored document. Its vectors live in the `vectors` tree under the same
/// key: the primary vector first, then one per entry of `segments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocRecord {
    pub id: String,
    pub modality: Modality,
    pub text: Option<String>,
    pub content: Option<ContentRef>,
    /// The metadata object as JSON text (postcard cannot encode
    /// `serde_json::Value`, which needs a self-describing format).
    pub metadata_json: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Sequence number of the write that produced this version.
    pub seq: Seq,
    /// Spans of the extra vectors, in vector order.
    pub segments: Vec<Span>,
}

/// One entry of the change log: which document a sequence number touched.
/// Index recovery replays these after its checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub collection_id: u32,
    pub doc_id: String,
    pub deleted: bool,
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![RECORD_VERSION];
    out.extend(postcard::to_stdvec(value)?);
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&RECORD_VERSION, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((&found, _)) => Err(CodecError::UnknownVersion { found }),
    }
}

pub fn encode_vectors(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn decode_vectors(bytes: &[u8]) -> Result<Vec<f32>, CodecError> {
    if !bytes.len().is_multiple_of(4) {
        return Err(CodecError::BadVectorLength(bytes.len()));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Key of a document (and of its vectors): collection id (4 bytes BE) + id bytes.
pub fn doc_key(collection_id: u32, doc_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + doc_id.len());
    key.extend_from_slice(&collection_id.to_be_bytes());
    key.extend_from_slice(doc_id.as_bytes());
    key
}

pub fn collection_prefix(collection_id: u32) -> [u8; 4] {
    collection_id.to_be_bytes()
}

pub fn seq_key(seq: Seq) -> [u8; 8] {
    seq.to_be_bytes()
}

pub fn decode_seq_key(bytes: &[u8]) -> Result<Seq, CodecError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| CodecError::BadKey(bytes.len()))?;
    Ok(Seq::from_be_bytes(arr))
}

pub fn encode_u64(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

pub fn decode_u64(bytes: &[u8]) -> Result<u64, CodecError> {
    decode_seq_key(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_records_of_both_shapes_decode() {
        let rec = CollectionRecord {
            id: 7,
            name: "pics".into(),
            created_ms: 123,
            doc_count: 9,
            vectors: VectorEncoding::Int8,
            text_fields: vec!["title".into()],
        };
        assert_eq!(decode_collection(&encode(&rec).unwrap()).unwrap(), rec);
        // Bytes written before `vectors` existed: the same fields, no more.
        #[derive(Serialize)]
        struct Old<'a>(u32, &'a str, u64, u64);
        let old = encode(&Old(7, "pics", 123, 9)).unwrap();
        let back = decode_collection(&old).unwrap();
        assert_eq!(back.vectors, VectorEncoding::F32);
        assert_eq!(
            (back.id, back.name.as_str(), back.doc_count),
            (7, "pics", 9)
        );
        // A cut record is still an error.
        assert!(decode_collection(&old[..old.len() - 3]).is_err());
    }

    #[test]
    fn record_roundtrip_and_version_check() {
        let rec = DocRecord {
            id: "a".into(),
            modality: Modality::Video,
            text: Some("hello".into()),
            content: Some(ContentRef::External {
                uri: "file:///x.mp4".into(),
                content_type: None,
            }),
            metadata_json: r#"{"k":1}"#.into(),
            created_ms: 1,
            updated_ms: 2,
            seq: 3,
            segments: vec![Span::Time {
                start_s: 0.0,
                end_s: 1.5,
            }],
        };
        let bytes = encode(&rec).unwrap();
        assert_eq!(decode::<DocRecord>(&bytes).unwrap(), rec);
        let mut wrong = bytes.clone();
        wrong[0] = 99;
        assert!(matches!(
            decode::<DocRecord>(&wrong),
            Err(CodecError::UnknownVersion { found: 99 })
        ));
        assert!(decode::<DocRecord>(&bytes[..bytes.len() / 2]).is_err());
    }

    #[test]
    fn vectors_are_little_endian() {
        let v = [1.0f32, -2.5];
        let b = encode_vectors(&v);
        assert_eq!(&b[..4], &1.0f32.to_le_bytes());
        assert_eq!(decode_vectors(&b).unwrap(), v);
        assert!(decode_vectors(&b[..5]).is_err());
    }
}
