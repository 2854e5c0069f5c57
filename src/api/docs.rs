//! Collections, documents and search.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::{
    extract::{Path, Request, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{
    error::{ApiError, ApiResult},
    input::{body_bytes, is_json, is_multipart, parse_json_off_thread, Form},
    AppState,
};
use crate::db::{
    content_modality, files::IngestOptions, ContentData, Hit, HybridOptions, NewDocument,
    SearchMode,
};
use crate::engine::{EmbedRequest, ImageData};
use crate::index::fusion::DEFAULT_RRF_K;
use crate::index::Filter;
use crate::index::GroupBy;
use crate::media::{detect_kind, MediaKind};
use crate::types::{Modality, Span};

pub async fn list_collections(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let collections = state.with_db(|db| db.list_collections()).await?;
    let list: Vec<Value> = collections.iter().map(collection_json).collect();
    Ok(Json(json!({"collections": list})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    name: String,
    /// `f32` (default) or `int8`.
    #[serde(default)]
    vectors: Option<String>,
    /// Metadata fields lexical search matches.
    #[serde(default)]
    text_fields: Vec<String>,
}

fn collection_json(c: &crate::db::CollectionInfo) -> Value {
    json!({"name": c.name, "documents": c.documents, "created_ms": c.created_ms,
        "vectors": c.vectors.as_str(), "text_fields": c.text_fields})
}

pub async fn create_collection(
    State(state): State<AppState>,
    super::input::JsonBody(body): super::input::JsonBody<CreateCollection>,
) -> ApiResult<impl IntoResponse> {
    let vectors = match body.vectors.as_deref() {
        None => crate::types::VectorEncoding::default(),
        Some(v) => v
            .parse()
            .map_err(|e: String| crate::db::DbError::BadInput(format!("field `vectors`: {e}")))?,
    };
    let options = crate::db::CollectionOptions {
        vectors,
        text_fields: body.text_fields,
    };
    let info = state
        .with_db(move |db| db.create_collection_with(&body.name, options))
        .await?;
    Ok((StatusCode::CREATED, Json(collection_json(&info))))
}

pub async fn get_collection(
    State(state): State<AppState>,
    Path(collection): Path<String>,
) -> ApiResult<Json<Value>> {
    let name = collection.clone();
    let collections = state.with_db(|db| db.list_collections()).await?;
    let c = collections
        .into_iter()
        .find(|c| c.name == name)
        .ok_or(crate::db::DbError::UnknownCollection(collection))?;
    Ok(Json(collection_json(&c)))
}

pub async fn drop_collection(
    State(state): State<AppState>,
    Path(collection): Path<String>,
) -> ApiResult<Json<Value>> {
    let name = collection.clone();
    let dropped = state.with_db(move |db| db.drop_collection(&name)).await?;
    if !dropped {
        return Err(crate::db::DbError::UnknownCollection(collection).into());
    }
    Ok(Json(json!({"dropped": collection})))
}

/// JSON body of `POST /collections/{c}/documents`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct InsertBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    text: Option<String>,
    /// Data URL, base64 or http(s) URL.
    #[serde(default)]
    image: Option<String>,
    /// Several images, embedded together with the text into one vector.
    #[serde(default)]
    images: Option<Vec<String>>,
    #[serde(default)]
    metadata: Option<Value>,
    /// A precomputed vector: stored as given, the model is not run.
    #[serde(default)]
    vector: Option<Vec<f32>>,
}

/// `POST /collections/{c}/documents`: JSON, or multipart with `file` (an
/// image, video, PDF or text file) and optional `metadata` (JSON), `id` and
/// `text` (with an image: fused) fields. `201 {"id", "modality"}`.
pub async fn insert(
    State(state): State<AppState>,
    Path(collection): Path<String>,
    request: Request,
) -> ApiResult<Response> {
    let body = if is_multipart(&request) {
        let mut form = Form::read(request, &()).await?;
        let file = form.take_file()?;
        let mut metadata: Option<Value> = form.json_field("metadata")?;
        // Remember the uploaded file's name unless the caller set one.
        if let (Some(name), None | Some(Value::Object(_))) = (&file.filename, &metadata) {
            let object = metadata.get_or_insert_with(|| json!({}));
            if let Some(map) = object.as_object_mut() {
                map.entry("filename").or_insert_with(|| json!(name));
            }
        }
        let name = file.filename.clone().unwrap_or_default();
        let kind = detect_kind(std::path::Path::new(&name), &file.data);
        match kind {
            Some(MediaKind::Image) => {}
            Some(_) => {
                if form.fields.contains_key("text") {
                    return Err(ApiError::bad_request(
                        "`text` can only be combined with an image file",
                    ));
                }
                let upload = Upload {
                    name,
                    data: file.data,
                };
                let id = form.fields.remove("id");
                return insert_media(&state, collection, upload, id, metadata).await;
            }
            None => {
                return Err(ApiError::unsupported_media(format!(
                    "{name:?} is not a supported file (images, MP4/MOV/MKV/WebM/AVI video, PDF, .txt, .md, .html)"
                )))
            }
        }
        InsertParts {
            id: form.fields.remove("id"),
            text: form.fields.remove("text"),
            images: vec![file.data],
            metadata,
            vector: None,
        }
    } else if is_json(&request) {
        let bytes = body_bytes(request, &()).await?;
        let body: InsertBody = parse_json_off_thread(bytes).await?;
        let images = state.load_images(body.image, body.images).await?;
        InsertParts {
            id: body.id,
            text: body.text,
            images,
            metadata: body.metadata,
            vector: body.vector,
        }
    } else {
        return Err(ApiError::unsupported_media(
            "expected application/json or multipart/form-data",
        ));
    };
    let metadata = match body.metadata {
        None | Some(Value::Null) => Value::Null,
        Some(m @ Value::Object(_)) => m,
        Some(_) => return Err(ApiError::bad_request("`metadata` must be a JSON object")),
    };
    let has_images = !body.images.is_empty();
    let images: Vec<Arc<Vec<u8>>> = body.images.into_iter().map(Arc::new).collect();
    let (modality, vector) = match body.vector {
        // A bare vector counts as text, as in the CLI.
        Some(vector) => (
            content_modality(body.text.is_some(), has_images).unwrap_or(Modality::Text),
            vector,
        ),
        None => {
            let modality = content_modality(body.text.is_some(), has_images).ok_or_else(|| {
                ApiError::bad_request("a document needs `text`, `image` or `vector`")
            })?;
            // Check the collection before the (expensive) embedding.
            let name = collection.clone();
            state.with_db(move |db| db.check_collection(&name)).await?;
            let mut request = EmbedRequest::text(body.text.clone().unwrap_or_default());
            request
                .images
                .extend(images.iter().map(|b| ImageData::Encoded(Arc::clone(b))));
            (modality, state.embed_one(request).await?)
        }
    };
    let mut doc = NewDocument::new(modality, vector).with_metadata(metadata);
    doc.id = body.id;
    doc.text = body.text;
    // The first image is the stored content (a document holds one blob);
    // the engine has let go of its references by now, so no copy.
    if let Some(bytes) = images.into_iter().next() {
        let bytes = Arc::try_unwrap(bytes).unwrap_or_else(|shared| (*shared).clone());
        doc = doc.with_content(crate::db::image_content(bytes));
    }
    let id = state.with_db(move |db| db.insert(&collection, doc)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "modality": modality.as_str()})),
    )
        .into_response())
}

/// What an insert request carries, from JSON or a form.
struct InsertParts {
    id: Option<String>,
    text: Option<String>,
    images: Vec<Vec<u8>>,
    metadata: Option<Value>,
    vector: Option<Vec<f32>>,
}

/// An uploaded file: FFmpeg and poppler read files, so it goes to a
/// temporary file (named like the upload, for the text kinds' extension).
pub struct Upload {
    pub name: String,
    pub data: Vec<u8>,
}

impl Upload {
    pub fn to_temp_file(&self) -> ApiResult<tempfile::NamedTempFile> {
        let suffix = std::path::Path::new(&self.name)
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let mut file = tempfile::Builder::new()
            .prefix("tkr-upload-")
            .suffix(&suffix)
            .tempfile()
            .map_err(|e| ApiError::internal(format!("temporary file: {e}")))?;
        std::io::Write::write_all(&mut file, &self.data)
            .map_err(|e| ApiError::internal(format!("temporary file: {e}")))?;
        Ok(file)
    }

    /// Error messages name the file they are about; for an upload that is
    /// the client's file name, not our temporary copy.
    pub fn rename_in(&self, mut error: ApiError, temp: &std::path::Path) -> ApiError {
        let name = if self.name.is_empty() {
            "the upload"
        } else {
            &self.name
        };
        error.message = error.message.replace(&temp.display().to_string(), name);
        error
    }
}

/// A video, PDF or text upload: read, embedded part by part and inserted as
/// one document, on the blocking pool.
async fn insert_media(
    state: &AppState,
    collection: String,
    upload: Upload,
    id: Option<String>,
    metadata: Option<Value>,
) -> ApiResult<Response> {
    use crate::db::files::{embed_file, merge_summary};
    let name = collection.clone();
    state.with_db(move |db| db.check_collection(&name)).await?;
    let options = IngestOptions::from_config(&state.config);
    let engine = Arc::clone(&state.engine);
    let metadata = metadata.unwrap_or(Value::Null);
    // Set when this handler is dropped (request timeout, client gone): the
    // ingest on the blocking pool then stops before writing, so a request
    // answered with an error never leaves a document behind.
    let cancelled = CancelOnDrop::default();
    let flag = Arc::clone(&cancelled.0);
    let db = Arc::clone(&state.db);
    let result = tokio::task::spawn_blocking(move || -> ApiResult<(String, Modality)> {
        let file = upload.to_temp_file()?;
        let embedded = embed_file(&engine, file.path(), &options, &|_, _| {})
            .map_err(|e| upload.rename_in(ApiError::from(e), file.path()))?;
        let modality = embedded.document.modality;
        let mut document = embedded
            .document
            .with_metadata(merge_summary(metadata, embedded.summary)?);
        document.id = id;
        if flag.load(Ordering::SeqCst) {
            return Err(ApiError::internal("cancelled before storing"));
        }
        Ok((db.insert(&collection, document)?, modality))
    })
    .await?;
    let (id, modality) = result.map_err(|e| state.with_retry_after(e))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "modality": modality.as_str()})),
    )
        .into_response())
}

/// Raises its flag when dropped.
#[derive(Default)]
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn content_url(collection: &str, id: &str) -> String {
    format!(
        "/collections/{}/documents/{}/content",
        collection,
        percent_encode(id)
    )
}

/// Ids may hold any printable characters; URLs need them escaped.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub async fn get_document(
    State(state): State<AppState>,
    Path((collection, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (c, i) = (collection.clone(), id.clone());
    let doc = state.with_db(move |db| db.get(&c, &i)).await?.ok_or(
        crate::db::DbError::DocumentNotFound {
            collection: collection.clone(),
            id: id.clone(),
        },
    )?;
    let mut value = crate::db::document_json(&doc);
    if doc.content.is_some() {
        value["content_url"] = Value::String(content_url(&collection, &id));
    }
    Ok(Json(value))
}

pub async fn get_content(
    State(state): State<AppState>,
    Path((collection, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (c, i) = (collection.clone(), id.clone());
    let content = state.with_db(move |db| db.get_content(&c, &i)).await?;
    match content {
        Some(ContentData::Bytes { data, content_type }) => {
            // Stored bytes come from clients: never let a browser run them
            // as a page of this origin (HTML, SVG, …).
            let inline = content_type.starts_with("image/")
                || content_type.starts_with("video/")
                || content_type.starts_with("text/plain")
                || content_type == "application/pdf";
            let disposition = if inline { "inline" } else { "attachment" };
            Ok((
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
                    (header::CONTENT_SECURITY_POLICY, "sandbox".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition.to_owned()),
                ],
                data,
            )
                .into_response())
        }
        Some(ContentData::External { uri, .. }) if uri.starts_with("http") => {
            match axum::http::HeaderValue::try_from(uri.as_str()) {
                Ok(location) => Ok((
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, location)],
                )
                    .into_response()),
                Err(_) => Err(ApiError::internal(
                    "the stored content URI is not a valid header",
                )),
            }
        }
        // A file referenced by path (large imports): the path is the
        // server's business, not the client's.
        Some(ContentData::External { .. }) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "content_external",
            format!(
                "the content of {id:?} was imported by reference and is not stored in the database"
            ),
        )),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "content_not_found",
            format!("document {id:?} in {collection:?} has no stored content (or does not exist)"),
        )),
    }
}

pub async fn delete_document(
    State(state): State<AppState>,
    Path((collection, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (c, i) = (collection.clone(), id.clone());
    let deleted = state.with_db(move |db| db.delete(&c, &i)).await?;
    if !deleted {
        return Err(crate::db::DbError::DocumentNotFound { collection, id }.into());
    }
    Ok(Json(json!({"deleted": id})))
}

/// JSON body of `POST /collections/{c}/search`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchBody {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    document_id: Option<String>,
    #[serde(default)]
    vector: Option<Vec<f32>>,
    #[serde(default = "default_k")]
    k: usize,
    #[serde(default)]
    filter: Option<Value>,
    /// Extra fields per hit: metadata (default), text, vector.
    #[serde(default)]
    include: Option<Vec<String>>,
    #[serde(default)]
    instruction: Option<String>,
    /// `vector` (default), `lexical` or `hybrid`.
    #[serde(default)]
    mode: Option<String>,
    /// Hybrid: reciprocal-rank-fusion constant (60).
    #[serde(default)]
    rrf_k: Option<f32>,
    /// Hybrid: weights of the two lists (1 each).
    #[serde(default)]
    weights: Option<Weights>,
    /// `document` (default: one hit per document) or `segment`.
    #[serde(default)]
    group_by: Option<String>,
    /// A multi-part query instead of the fields above: weighted parts whose
    /// unit vectors are summed (negative weights push away).
    #[serde(default)]
    queries: Option<Vec<QueryPart>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryPart {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    vector: Option<Vec<f32>>,
    #[serde(default)]
    instruction: Option<String>,
    #[serde(default = "one")]
    weight: f32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Weights {
    #[serde(default = "one")]
    vector: f32,
    #[serde(default = "one")]
    lexical: f32,
}

fn one() -> f32 {
    1.0
}

fn default_k() -> usize {
    10
}

/// Most hits one search may ask for.
const MAX_K: usize = 1000;

enum Query {
    Content(EmbedRequest),
    Document(String),
    Vector(Vec<f32>),
}

/// The text a hit matched in: its chunk, or the whole text of a document
/// without chunks (`None` for a segment that is no text chunk).
fn hit_chunk<'a>(text: &'a Option<String>, segment: Option<&Span>) -> Option<&'a str> {
    match (text, segment) {
        (Some(text), Some(span)) => crate::db::chunk_text(text, span),
        (Some(text), None) => Some(text.as_str()),
        (None, _) => None,
    }
}

/// Embeds the parts of a multi-part query and combines them.
async fn combine_parts(state: &AppState, parts: Vec<QueryPart>) -> ApiResult<Vec<f32>> {
    if parts.is_empty() || parts.len() > crate::db::MAX_QUERY_PARTS {
        return Err(ApiError::bad_request(format!(
            "`queries` holds 1 to {} parts",
            crate::db::MAX_QUERY_PARTS
        )));
    }
    let mut vectors = Vec::with_capacity(parts.len());
    for (i, part) in parts.into_iter().enumerate() {
        let vector = match (part.vector, part.text, part.image) {
            (Some(v), None, None) => v,
            (None, text, image) if text.is_some() || image.is_some() => {
                let mut request = EmbedRequest::text(text.unwrap_or_default());
                request.instruction = part.instruction;
                if let Some(source) = &image {
                    let bytes = state.load_image(source).await?;
                    request.images.push(ImageData::Encoded(Arc::new(bytes)));
                }
                state.embed_one(request).await?
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "queries[{i}]: give `text` and/or `image`, or `vector`"
                )))
            }
        };
        vectors.push((vector, part.weight));
    }
    let dim = vectors[0].0.len();
    Ok(crate::db::combine_query(&vectors, dim)?)
}

/// How a search ranks: the mode, the text of its lexical list, fusion.
struct Ranking {
    mode: SearchMode,
    group: GroupBy,
    text: Option<String>,
    hybrid: HybridOptions,
}

fn parse_group(group: Option<&str>) -> ApiResult<GroupBy> {
    group.map_or(Ok(GroupBy::Document), |g| {
        g.parse().map_err(|e: String| ApiError::bad_request(e))
    })
}

fn parse_mode(mode: Option<&str>) -> ApiResult<SearchMode> {
    mode.map_or(Ok(SearchMode::Vector), |m| {
        m.parse().map_err(|e: String| ApiError::bad_request(e))
    })
}

/// `POST /collections/{c}/search`: JSON, or multipart with an image `file`
/// and optional `text`, `k`, `filter`, `include` fields.
pub async fn search(
    State(state): State<AppState>,
    Path(collection): Path<String>,
    request: Request,
) -> ApiResult<Json<Value>> {
    let started = Instant::now();
    let body = if is_multipart(&request) {
        let mut form = Form::read(request, &()).await?;
        let file = form.take_file()?;
        let include = form
            .fields
            .get("include")
            .map(|s| s.split(',').map(|x| x.trim().to_owned()).collect());
        let mut request = EmbedRequest::text(form.fields.get("text").cloned().unwrap_or_default());
        request.images.push(ImageData::Encoded(Arc::new(file.data)));
        request.instruction = form.fields.get("instruction").cloned();
        let k = form.parsed_field("k")?.unwrap_or_else(default_k);
        let ranking = Ranking {
            mode: parse_mode(form.fields.get("mode").map(String::as_str))?,
            group: parse_group(form.fields.get("group_by").map(String::as_str))?,
            text: form.fields.get("text").cloned(),
            hybrid: HybridOptions {
                rrf_k: form.parsed_field("rrf_k")?.unwrap_or(DEFAULT_RRF_K),
                ..HybridOptions::default()
            },
        };
        (
            Query::Content(request),
            k,
            form.json_field("filter")?,
            include,
            ranking,
        )
    } else if is_json(&request) {
        let bytes = body_bytes(request, &()).await?;
        let mut body: SearchBody = parse_json_off_thread(bytes).await?;
        let mode = parse_mode(body.mode.as_deref())?;
        if let Some(parts) = body.queries.take() {
            if mode == SearchMode::Lexical {
                return Err(ApiError::bad_request(
                    "mode `lexical` searches with `text`, not `queries`",
                ));
            }
            if body.text.is_some()
                || body.image.is_some()
                || body.vector.is_some()
                || body.document_id.is_some()
            {
                return Err(ApiError::bad_request(
                    "`queries` replaces `text`, `image`, `vector` and `document_id`: give one or the other",
                ));
            }
            // The lexical list of a hybrid search takes the texts of the
            // parts that pull (positive weight).
            let text: Vec<&str> = parts
                .iter()
                .filter(|p| p.weight > 0.0)
                .filter_map(|p| p.text.as_deref())
                .collect();
            if mode == SearchMode::Hybrid && !text.is_empty() {
                body.text = Some(text.join(" "));
            }
            // Unknown collection: answer before embedding.
            let name = collection.clone();
            state.with_db(move |db| db.check_collection(&name)).await?;
            body.vector = Some(combine_parts(&state, parts).await?);
        }
        // Hybrid search may pair a precomputed vector with its text.
        let vector_with_text = mode == SearchMode::Hybrid
            && body.vector.is_some()
            && body.text.is_some()
            && body.image.is_none()
            && body.document_id.is_none();
        let given = [
            body.text.is_some() || body.image.is_some(),
            body.document_id.is_some(),
            body.vector.is_some(),
        ];
        if given.iter().filter(|&&g| g).count() != 1 && !vector_with_text {
            return Err(ApiError::bad_request(
                "give exactly one query: `text` and/or `image`, `document_id`, or `vector` (hybrid: `vector` with `text`)",
            ));
        }
        let weights = body.weights.unwrap_or(Weights {
            vector: 1.0,
            lexical: 1.0,
        });
        let ranking = Ranking {
            mode,
            group: parse_group(body.group_by.as_deref())?,
            text: body.text.clone(),
            hybrid: HybridOptions {
                rrf_k: body.rrf_k.unwrap_or(DEFAULT_RRF_K),
                vector_weight: weights.vector,
                lexical_weight: weights.lexical,
            },
        };
        let query = if let Some(id) = body.document_id {
            Query::Document(id)
        } else if let Some(v) = body.vector {
            Query::Vector(v)
        } else {
            let mut request = EmbedRequest::text(body.text.unwrap_or_default());
            request.instruction = body.instruction;
            if let Some(source) = &body.image {
                let bytes = state.load_image(source).await?;
                request.images.push(ImageData::Encoded(Arc::new(bytes)));
            }
            Query::Content(request)
        };
        (query, body.k, body.filter, body.include, ranking)
    } else {
        return Err(ApiError::unsupported_media(
            "expected application/json or multipart/form-data",
        ));
    };
    let (query, k, filter, include, ranking) = body;
    if k == 0 || k > MAX_K {
        return Err(ApiError::bad_request(format!(
            "k must be 1 to {MAX_K}, got {k}"
        )));
    }
    let include = Include::parse(include)?;
    let filter = filter
        .filter(|f| !f.is_null())
        .map(|f| Filter::from_json(&f))
        .transpose()
        .map_err(crate::db::DbError::from)?;
    ranking.hybrid.validate()?;
    let coll = collection.clone();
    let group = ranking.group;
    let query_text = ranking.text.clone();
    // The text a lexical list searches with (none: no lexical list).
    let text = ranking.text.filter(|t| !t.trim().is_empty());
    let hits = match (ranking.mode, query, text) {
        (SearchMode::Lexical, Query::Content(request), Some(text)) if request.images.is_empty() => {
            state
                .with_db(move |db| db.search_lexical(&coll, &text, k, filter.as_ref(), group))
                .await?
        }
        (SearchMode::Lexical, _, _) => {
            return Err(ApiError::bad_request(
                "mode `lexical` searches with a non-empty `text` only",
            ))
        }
        (SearchMode::Hybrid, Query::Content(request), Some(text)) => {
            let name = collection.clone();
            state.with_db(move |db| db.check_collection(&name)).await?;
            let vector = state.embed_one(request).await?;
            let hybrid = ranking.hybrid;
            state
                .with_db(move |db| {
                    db.search_hybrid(&coll, &vector, &text, k, filter.as_ref(), &hybrid, group)
                })
                .await?
        }
        (SearchMode::Hybrid, Query::Vector(v), Some(text)) => {
            let hybrid = ranking.hybrid;
            state
                .with_db(move |db| {
                    db.search_hybrid(&coll, &v, &text, k, filter.as_ref(), &hybrid, group)
                })
                .await?
        }
        // Vector search; also hybrid without text (an image or a stored
        // document has no lexical part).
        (_, Query::Content(request), _) => {
            // Unknown collection: answer before embedding.
            let name = collection.clone();
            state.with_db(move |db| db.check_collection(&name)).await?;
            let vector = state.embed_one(request).await?;
            state
                .with_db(move |db| db.search_grouped(&coll, &vector, k, filter.as_ref(), group))
                .await?
        }
        (_, Query::Document(id), _) => {
            state
                .with_db(move |db| db.search_by_document(&coll, &id, k, filter.as_ref()))
                .await?
        }
        (_, Query::Vector(v), _) => {
            state
                .with_db(move |db| db.search_grouped(&coll, &v, k, filter.as_ref(), group))
                .await?
        }
    };
    let hits = hits_json(&state, &collection, hits, include, query_text).await?;
    Ok(Json(json!({
        "hits": hits,
        "took_ms": started.elapsed().as_secs_f64() * 1e3,
    })))
}

#[derive(Clone, Copy)]
struct Include {
    metadata: bool,
    text: bool,
    vector: bool,
    /// Hybrid: each list's rank and score.
    scores: bool,
    /// The matching text chunk (byte-range segments).
    chunk: bool,
    /// Where the query's words occur in the chunk.
    highlights: bool,
}

impl Include {
    fn parse(list: Option<Vec<String>>) -> ApiResult<Include> {
        let Some(list) = list else {
            return Ok(Include {
                metadata: true,
                text: false,
                vector: false,
                scores: false,
                chunk: false,
                highlights: false,
            });
        };
        let mut include = Include {
            metadata: false,
            text: false,
            vector: false,
            scores: false,
            chunk: false,
            highlights: false,
        };
        for item in list {
            match item.as_str() {
                "metadata" => include.metadata = true,
                "text" => include.text = true,
                "vector" => include.vector = true,
                "scores" => include.scores = true,
                "chunk" => include.chunk = true,
                "highlights" => include.highlights = true,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "include: unknown field {other:?} (metadata, text, vector, scores, chunk, highlights)"
                    )))
                }
            }
        }
        Ok(include)
    }
}

async fn hits_json(
    state: &AppState,
    collection: &str,
    hits: Vec<Hit>,
    include: Include,
    query_text: Option<String>,
) -> ApiResult<Vec<Value>> {
    let needs_docs = include.text || include.vector || include.chunk || include.highlights;
    let coll = collection.to_owned();
    let wanted: Vec<(String, Option<Span>)> = hits
        .iter()
        .map(|h| (h.id.clone(), h.segment.as_ref().map(|s| s.span.clone())))
        .collect();
    // Text and vectors live in the store, not the index: one blocking trip.
    let extras = if needs_docs {
        state
            .with_db(move |db| {
                wanted
                    .iter()
                    .map(|(id, span)| {
                        let text = if include.text || include.chunk || include.highlights {
                            db.get(&coll, id)?.and_then(|d| d.text)
                        } else {
                            None
                        };
                        let vector = if include.vector {
                            db.get_vector(&coll, id)?
                        } else {
                            None
                        };
                        let marks = match (include.highlights, &query_text) {
                            (true, Some(query)) => hit_chunk(&text, span.as_ref())
                                .map(|chunk| db.highlights(&coll, chunk, query))
                                .transpose()?,
                            _ => None,
                        };
                        Ok((text, vector, marks))
                    })
                    .collect::<crate::db::Result<Vec<_>>>()
            })
            .await?
    } else {
        vec![(None, None, None); hits.len()]
    };
    Ok(hits
        .into_iter()
        .zip(extras)
        .map(|(hit, (text, vector, marks))| {
            let segment = hit
                .segment
                .as_ref()
                .map(|s| crate::db::segment_json(&s.span, &hit.metadata));
            let mut v = Map::new();
            v.insert("id".into(), json!(hit.id));
            v.insert("score".into(), json!(hit.score));
            v.insert("modality".into(), json!(hit.modality.as_str()));
            if include.metadata {
                v.insert("metadata".into(), Value::Object(hit.metadata));
            }
            v.insert(
                "content_url".into(),
                json!(content_url(collection, &hit.id)),
            );
            if let Some(segment) = segment {
                v.insert("segment".into(), segment);
            }
            if include.chunk {
                let span = hit.segment.as_ref().map(|s| &s.span);
                v.insert("chunk".into(), json!(hit_chunk(&text, span)));
            }
            if include.highlights {
                v.insert("highlights".into(), json!(marks));
            }
            if include.text {
                v.insert("text".into(), json!(text));
            }
            if include.scores {
                v.insert(
                    "scores".into(),
                    hit.fusion
                        .as_ref()
                        .map_or(Value::Null, crate::db::fusion_json),
                );
            }
            if include.vector {
                v.insert("vector".into(), json!(vector));
            }
            Value::Object(v)
        })
        .collect())
}
