//! What the service returns, as it goes over the wire: the HTTP API's JSON
//! bodies and the CLI's `--json` output are these types serialized, and
//! `/openapi.json` is generated from their schemas, so the three cannot
//! drift apart. Made from the database's types by `From`.
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::db::{CollectionInfo, ContentInfo, Document, Hit};
use crate::index::fusion::Fusion;
use crate::types::Span;

/// A collection and its document count.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CollectionView {
    pub name: String,
    pub documents: u64,
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// How the index holds vectors: `f32`, or `int8` (rescored exactly).
    #[schema(example = "f32")]
    pub vectors: String,
    /// Metadata fields lexical search matches.
    pub text_fields: Vec<String>,
}

impl From<&CollectionInfo> for CollectionView {
    fn from(c: &CollectionInfo) -> CollectionView {
        CollectionView {
            name: c.name.clone(),
            documents: c.documents,
            created_ms: c.created_ms,
            vectors: c.vectors.as_str().to_owned(),
            text_fields: c.text_fields.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CollectionList {
    pub collections: Vec<CollectionView>,
}

/// The part of a document a vector stands for: a time range of a video
/// (`start_s`, `end_s`), a PDF page (`page`), or a text chunk as a byte
/// range of the document's text (`start`, `end`; with the `page` it starts
/// on when the document is a PDF).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SegmentView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<u64>,
}

impl From<&Span> for SegmentView {
    fn from(span: &Span) -> SegmentView {
        let none = SegmentView {
            start_s: None,
            end_s: None,
            page: None,
            start: None,
            end: None,
        };
        match *span {
            Span::Time { start_s, end_s } => SegmentView {
                start_s: Some(start_s),
                end_s: Some(end_s),
                ..none
            },
            Span::Page { page } => SegmentView {
                page: Some(page),
                ..none
            },
            Span::Bytes { start, end } => SegmentView {
                start: Some(start),
                end: Some(end),
                ..none
            },
        }
    }
}

impl SegmentView {
    /// A hit's segment: the span, plus the `page` a text chunk starts on
    /// when the document is a PDF (its `media.page_starts`).
    pub fn of_hit(span: &Span, metadata: &Map<String, Value>) -> SegmentView {
        let mut view = SegmentView::from(span);
        let starts = metadata
            .get("media")
            .and_then(|m| m.get("page_starts"))
            .and_then(Value::as_array);
        if let (Span::Bytes { start, .. }, Some(starts)) = (span, starts) {
            let page = starts
                .iter()
                .take_while(|s| s.as_u64().is_some_and(|s| s <= *start))
                .count();
            if page > 0 {
                view.page = u32::try_from(page).ok();
            }
        }
        view
    }
}

/// Where a stored document's content is: in the database (`stored`, with
/// type, size and hash) or referenced (`uri`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContentView {
    pub stored: bool,
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

impl From<&ContentInfo> for ContentView {
    fn from(c: &ContentInfo) -> ContentView {
        match c {
            ContentInfo::Stored {
                content_type,
                len,
                hash,
            } => ContentView {
                stored: true,
                content_type: Some(content_type.clone()),
                bytes: Some(*len),
                blake3: Some(hash.clone()),
                uri: None,
            },
            ContentInfo::External { uri, content_type } => ContentView {
                stored: false,
                content_type: content_type.clone(),
                bytes: None,
                blake3: None,
                uri: Some(uri.clone()),
            },
        }
    }
}

/// A stored document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DocumentView {
    pub id: String,
    pub collection: String,
    /// `text`, `image`, `fused`, `video`, `document`, …
    pub modality: String,
    pub text: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub content: Option<ContentView>,
    /// The spans of the document's extra vectors, in order.
    pub segments: Vec<SegmentView>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Where the stored content is served (HTTP API only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_url: Option<String>,
}

impl From<&Document> for DocumentView {
    fn from(d: &Document) -> DocumentView {
        DocumentView {
            id: d.id.clone(),
            collection: d.collection.clone(),
            modality: d.modality.as_str().to_owned(),
            text: d.text.clone(),
            metadata: d.metadata.clone(),
            content: d.content.as_ref().map(ContentView::from),
            segments: d.segments.iter().map(SegmentView::from).collect(),
            created_ms: d.created_ms,
            updated_ms: d.updated_ms,
            content_url: None,
        }
    }
}

/// A hit's rank (1-based) and score in one list of a hybrid search.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RankView {
    pub rank: u32,
    pub score: f32,
}

/// A hybrid hit's place in each list (`null`: not in that list).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FusionView {
    pub vector: Option<RankView>,
    pub lexical: Option<RankView>,
}

impl From<&Fusion> for FusionView {
    fn from(f: &Fusion) -> FusionView {
        let place = |p: Option<(u32, f32)>| p.map(|(rank, score)| RankView { rank, score });
        FusionView {
            vector: place(f.vector),
            lexical: place(f.lexical),
        }
    }
}

/// One search result. Fields named in the request's `include` are present
/// (possibly `null`); `segment` is present when a part of the document
/// matched (a time range, a page, a text chunk).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HitView {
    pub id: String,
    /// Cosine similarity (vector), BM25 (lexical) or fused score (hybrid).
    pub score: f32,
    pub modality: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// Where the stored content is served (HTTP API only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<SegmentView>,
    /// The text chunk that matched (`include: chunk`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub chunk: Option<Option<String>>,
    /// Byte ranges `[start, end)` of the query's words in the chunk
    /// (`include: highlights`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Vec<u64>>>)]
    pub highlights: Option<Option<Vec<(usize, usize)>>>,
    /// The document's whole text (`include: text`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub text: Option<Option<String>>,
    /// Hybrid: the hit's place in each list (`include: scores`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<FusionView>)]
    pub scores: Option<Option<FusionView>>,
    /// The document's vector (`include: vector`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<f32>>)]
    pub vector: Option<Option<Vec<f32>>>,
}

impl HitView {
    /// The hit's id, score, modality, metadata and segment; the fields a
    /// request may add are left out.
    pub fn new(hit: Hit) -> HitView {
        HitView {
            segment: hit
                .segment
                .as_ref()
                .map(|s| SegmentView::of_hit(&s.span, &hit.metadata)),
            scores: hit.fusion.as_ref().map(|f| Some(FusionView::from(f))),
            id: hit.id,
            score: hit.score,
            modality: hit.modality.as_str().to_owned(),
            metadata: Some(hit.metadata),
            content_url: None,
            chunk: None,
            highlights: None,
            text: None,
            vector: None,
        }
    }
}

/// The hits of a search, best first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchResults {
    pub hits: Vec<HitView>,
    /// Time the search took, in milliseconds.
    pub took_ms: f64,
}

/// A page of a collection's documents, in id order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DocumentPage {
    pub documents: Vec<DocumentView>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A document was stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Inserted {
    pub id: String,
    pub modality: String,
}

/// Vectors from the model, all of one dimension.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Embeddings {
    pub embeddings: Vec<Vec<f32>>,
    /// `[number of vectors, dimension]`.
    pub shape: Vec<usize>,
    pub model: String,
}

/// One sampled part of a video with its own vector.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VideoSegment {
    pub start_s: f64,
    pub end_s: f64,
    /// Time of the frame that was embedded.
    pub time_s: Option<f64>,
    pub embedding: Vec<f32>,
}

/// A video's pooled vector and one vector per sampled segment.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VideoEmbeddings {
    /// One pooled vector.
    pub embeddings: Vec<Vec<f32>>,
    pub shape: Vec<usize>,
    pub model: String,
    pub segments: Vec<VideoSegment>,
    pub duration_s: Option<f64>,
    /// How the segment vectors were pooled: `mean`, `max` or `first`.
    pub pooling: Option<String>,
}

/// A finished backup.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct BackupView {
    /// The backup directory.
    pub dest: String,
    /// The backup is the database exactly as it was at this sequence number.
    pub seq: u64,
    /// Live documents at `seq`.
    pub documents: u64,
    /// Collections at `seq`.
    pub collections: usize,
    /// Files written besides `manifest.json`.
    pub files: usize,
    /// Bytes written, the manifest included.
    pub bytes: u64,
    /// Keys writers changed while the backup ran (their earlier values were
    /// saved for it).
    pub pre_images: u64,
    pub elapsed_ms: u64,
}

impl From<&crate::db::backup::BackupReport> for BackupView {
    fn from(r: &crate::db::backup::BackupReport) -> BackupView {
        BackupView {
            dest: r.dest.display().to_string(),
            seq: r.manifest.seq,
            documents: r.manifest.documents,
            collections: r.manifest.collections.len(),
            files: r.manifest.files.len(),
            bytes: r.bytes,
            pre_images: r.pre_images,
            elapsed_ms: r.elapsed.as_millis() as u64,
        }
    }
}

/// A finished restore (CLI `restore`).
#[derive(Debug, Clone, Serialize)]
pub struct RestoreView {
    pub data_dir: String,
    /// The restored database stands at this sequence number.
    pub seq: u64,
    pub documents: u64,
    pub collections: usize,
    pub blobs: u64,
    pub model_id: String,
    pub dim: u32,
    pub elapsed_ms: u64,
}

impl From<&crate::db::backup::RestoreReport> for RestoreView {
    fn from(r: &crate::db::backup::RestoreReport) -> RestoreView {
        RestoreView {
            data_dir: r.data_dir.display().to_string(),
            seq: r.manifest.seq,
            documents: r.documents,
            collections: r.manifest.collections.len(),
            blobs: r.blobs,
            model_id: r.manifest.model_id.clone(),
            dim: r.manifest.dim,
            elapsed_ms: r.elapsed.as_millis() as u64,
        }
    }
}

/// Figures of one collection in [`StatsView`].
#[derive(Debug, Clone, Serialize)]
pub struct CollectionStatsView {
    pub name: String,
    pub documents: u64,
    pub index: IndexStatsView,
}

#[derive(Debug, Clone, Serialize)]
pub struct IndexStatsView {
    pub documents: usize,
    pub points: usize,
    pub tombstones: usize,
    pub vectors: String,
    pub memory_bytes: usize,
}

/// Database figures (CLI `stats`).
#[derive(Debug, Clone, Serialize)]
pub struct StatsView {
    /// `embedded` or `postgres`.
    pub store: &'static str,
    /// The data directory, or the PostgreSQL URL without its password.
    pub location: String,
    /// The embedded store's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<std::path::PathBuf>,
    pub model_id: String,
    pub dim: usize,
    pub dtype: String,
    pub format_version: u32,
    pub documents: u64,
    pub collections: Vec<CollectionStatsView>,
    pub blobs: u64,
    pub blob_bytes: u64,
    pub last_seq: u64,
    pub size_on_disk: u64,
}

impl StatsView {
    pub fn new(location: &crate::db::StoreLocation, s: &crate::db::DbStats) -> StatsView {
        StatsView {
            store: s.store.as_str(),
            location: location.to_string(),
            data_dir: match location {
                crate::db::StoreLocation::Embedded(dir) => Some(dir.clone()),
                crate::db::StoreLocation::Postgres(_) => None,
            },
            model_id: s.model_id.clone(),
            dim: s.dim,
            dtype: s.dtype.clone(),
            format_version: s.format_version,
            documents: s.documents,
            collections: s
                .collections
                .iter()
                .map(|c| CollectionStatsView {
                    name: c.name.clone(),
                    documents: c.documents,
                    index: IndexStatsView {
                        documents: c.index.documents,
                        points: c.index.points,
                        tombstones: c.index.tombstones,
                        vectors: c.index.vectors.as_str().to_owned(),
                        memory_bytes: c.index.memory_bytes,
                    },
                })
                .collect(),
            blobs: s.blobs,
            blob_bytes: s.blob_bytes,
            last_seq: s.last_seq,
            size_on_disk: s.size_on_disk,
        }
    }
}
