//! Search: one request type for every front end, checked in one place, run
//! as vector, lexical or hybrid search, and answered with the fields the
//! caller asked for.
use std::time::Instant;

use serde_json::Value;

use super::views::{HitView, SearchResults};
use super::{ImageInput, Result, Service, ServiceError};
use crate::db::{Hit, HybridOptions, SearchMode};
use crate::engine::{EmbedRequest, ImageData};
use crate::index::{Filter, GroupBy};
use crate::types::Span;

/// What to search with: text and/or images (embedded), a stored document,
/// a vector — or a multi-part query instead of all of those.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub text: Option<String>,
    pub images: Vec<ImageInput>,
    /// The system-turn instruction the query is embedded with.
    pub instruction: Option<String>,
    /// Search with a stored document's vector (it is left out of the hits).
    pub document_id: Option<String>,
    pub vector: Option<Vec<f32>>,
    /// Weighted parts whose unit vectors are summed (negative weights push
    /// away); replaces the fields above.
    pub parts: Option<Vec<QueryPart>>,
}

/// One part of a multi-part query.
#[derive(Debug, Clone)]
pub struct QueryPart {
    pub text: Option<String>,
    pub image: Option<ImageInput>,
    pub vector: Option<Vec<f32>>,
    pub instruction: Option<String>,
    pub weight: f32,
}

/// Extra fields per hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Include {
    pub metadata: bool,
    /// The document's whole text.
    pub text: bool,
    pub vector: bool,
    /// Hybrid: each list's rank and score.
    pub scores: bool,
    /// The matching text chunk (byte-range segments).
    pub chunk: bool,
    /// Where the query's words occur in the chunk.
    pub highlights: bool,
}

impl Default for Include {
    /// Metadata only.
    fn default() -> Include {
        Include {
            metadata: true,
            ..Include::none()
        }
    }
}

impl Include {
    fn none() -> Include {
        Include {
            metadata: false,
            text: false,
            vector: false,
            scores: false,
            chunk: false,
            highlights: false,
        }
    }

    /// Field names (`metadata`, `text`, `vector`, `scores`, `chunk`,
    /// `highlights`); `None` is the default (metadata).
    pub fn parse<S: AsRef<str>>(list: Option<&[S]>) -> Result<Include> {
        let Some(list) = list else {
            return Ok(Include::default());
        };
        let mut include = Include::none();
        for item in list {
            match item.as_ref().trim() {
                "metadata" => include.metadata = true,
                "text" => include.text = true,
                "vector" => include.vector = true,
                "scores" => include.scores = true,
                "chunk" => include.chunk = true,
                "highlights" => include.highlights = true,
                other => {
                    return Err(ServiceError::Invalid(format!(
                        "include: unknown field {other:?} (metadata, text, vector, scores, chunk, highlights)"
                    )))
                }
            }
        }
        Ok(include)
    }

    /// Whether the hits need the stored documents (text or vectors).
    fn needs_documents(&self) -> bool {
        self.text || self.vector || self.chunk || self.highlights
    }
}

/// A search, as every front end asks it.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub collection: String,
    pub query: SearchQuery,
    pub k: usize,
    /// A filter in the JSON filter language (`null`: none).
    pub filter: Option<Value>,
    pub mode: SearchMode,
    pub group_by: GroupBy,
    pub hybrid: HybridOptions,
    pub include: Include,
}

impl SearchRequest {
    pub fn new(collection: impl Into<String>, query: SearchQuery) -> SearchRequest {
        SearchRequest {
            collection: collection.into(),
            query,
            k: 10,
            filter: None,
            mode: SearchMode::Vector,
            group_by: GroupBy::Document,
            hybrid: HybridOptions::default(),
            include: Include::default(),
        }
    }

    /// Whether answering needs the model (front ends without one can tell
    /// before they load it).
    pub fn needs_model(&self) -> bool {
        let q = &self.query;
        let content = q.text.is_some() || !q.images.is_empty();
        match self.mode {
            SearchMode::Lexical => false,
            _ if q.parts.is_some() => q
                .parts
                .iter()
                .flatten()
                .any(|p| p.text.is_some() || p.image.is_some()),
            SearchMode::Hybrid if q.vector.is_some() && q.images.is_empty() => false,
            _ => content && q.document_id.is_none() && q.vector.is_none(),
        }
    }
}

/// A checked query, ready to run.
enum Query {
    /// To embed (text and/or images, or the parts of a multi-part query).
    Content(SearchQuery),
    Document(String),
    Vector(Vec<f32>),
}

/// The request's one validation: k within the limit, the query's fields in
/// a combination the mode can answer, the filter and fusion settings.
fn check(
    request: &mut SearchRequest,
    max_k: usize,
    max_parts: usize,
) -> Result<(Query, Option<Filter>, Option<String>)> {
    let k = request.k;
    if k == 0 || k > max_k {
        return Err(ServiceError::Invalid(format!(
            "k must be 1 to {max_k}, got {k}"
        )));
    }
    request.hybrid.validate()?;
    let filter = request
        .filter
        .take()
        .filter(|f| !f.is_null())
        .map(|f| Filter::from_json(&f))
        .transpose()
        .map_err(crate::db::DbError::from)?;
    let mode = request.mode;
    let q = &mut request.query;
    if let Some(parts) = &q.parts {
        if mode == SearchMode::Lexical {
            return Err(ServiceError::Invalid(
                "mode `lexical` searches with `text`, not `queries`".into(),
            ));
        }
        if q.text.is_some() || !q.images.is_empty() || q.vector.is_some() || q.document_id.is_some()
        {
            return Err(ServiceError::Invalid(
                "`queries` replaces `text`, `image`, `vector` and `document_id`: give one or the other".into(),
            ));
        }
        if parts.is_empty() || parts.len() > max_parts {
            return Err(ServiceError::Invalid(format!(
                "`queries` holds 1 to {max_parts} parts"
            )));
        }
        for (i, part) in parts.iter().enumerate() {
            let content = part.text.is_some() || part.image.is_some();
            if content == part.vector.is_some() {
                return Err(ServiceError::Invalid(format!(
                    "queries[{i}]: give `text` and/or `image`, or `vector`"
                )));
            }
        }
        // The lexical list of a hybrid search takes the texts of the parts
        // that pull (positive weight).
        let texts: Vec<&str> = parts
            .iter()
            .filter(|p| p.weight > 0.0)
            .filter_map(|p| p.text.as_deref())
            .collect();
        let text = (mode == SearchMode::Hybrid && !texts.is_empty()).then(|| texts.join(" "));
        return Ok((Query::Content(std::mem::take(q)), filter, text));
    }
    let text = q.text.clone();
    let content = q.text.is_some() || !q.images.is_empty();
    // The text a lexical list searches with (none: no lexical list).
    let lexical_text = text.clone().filter(|t| !t.trim().is_empty());
    match mode {
        SearchMode::Lexical => {
            if lexical_text.is_none()
                || !q.images.is_empty()
                || q.vector.is_some()
                || q.document_id.is_some()
            {
                return Err(ServiceError::Invalid(
                    "mode `lexical` searches with a non-empty `text` only".into(),
                ));
            }
            return Ok((Query::Content(std::mem::take(q)), filter, lexical_text));
        }
        // Hybrid search may pair a precomputed vector with its text.
        SearchMode::Hybrid
            if q.vector.is_some()
                && text.is_some()
                && q.images.is_empty()
                && q.document_id.is_none() =>
        {
            let vector = q.vector.take().expect("checked");
            return Ok((Query::Vector(vector), filter, lexical_text));
        }
        // Otherwise hybrid is vector search: an image or a stored document
        // has no lexical part.
        SearchMode::Hybrid | SearchMode::Vector => {}
    }
    let given = [content, q.document_id.is_some(), q.vector.is_some()];
    if given.iter().filter(|&&g| g).count() != 1 {
        return Err(ServiceError::Invalid(
            "give exactly one query: `text` and/or `image`, `document_id`, or `vector` (hybrid: `vector` with `text`)".into(),
        ));
    }
    let query = if let Some(id) = q.document_id.take() {
        Query::Document(id)
    } else if let Some(v) = q.vector.take() {
        Query::Vector(v)
    } else {
        Query::Content(std::mem::take(q))
    };
    // Only hybrid searches have a lexical list; an image alone has none.
    let lexical_text = lexical_text.filter(|_| mode == SearchMode::Hybrid);
    Ok((query, filter, lexical_text))
}

impl Service {
    /// Runs a search and returns its hits with the fields the request's
    /// `include` names.
    pub async fn search(&self, mut request: SearchRequest) -> Result<SearchResults> {
        let started = Instant::now();
        let limits = self.limits();
        let (query, filter, lexical_text) =
            check(&mut request, limits.max_k, limits.max_query_parts)?;
        let SearchRequest {
            collection,
            k,
            mode,
            group_by: group,
            hybrid,
            include,
            ..
        } = request;
        // The text highlights are made for.
        let query_text = lexical_text.clone();
        let coll = collection.clone();
        let hits = match (mode, query, lexical_text) {
            (SearchMode::Lexical, _, Some(text)) => {
                self.with_db(move |db| db.search_lexical(&coll, &text, k, filter.as_ref(), group))
                    .await?
            }
            (_, Query::Document(id), _) => {
                self.with_db(move |db| db.search_by_document(&coll, &id, k, filter.as_ref()))
                    .await?
            }
            (_, query, text) => {
                let vector = match query {
                    Query::Vector(v) => v,
                    Query::Content(content) => {
                        // Unknown collection: answer before embedding.
                        self.check_collection(&collection).await?;
                        self.embed_query(content).await?
                    }
                    Query::Document(_) => unreachable!("answered above"),
                };
                match text {
                    Some(text) if mode == SearchMode::Hybrid => {
                        self.with_db(move |db| {
                            db.search_hybrid(
                                &coll,
                                &vector,
                                &text,
                                k,
                                filter.as_ref(),
                                &hybrid,
                                group,
                            )
                        })
                        .await?
                    }
                    _ => {
                        self.with_db(move |db| {
                            db.search_grouped(&coll, &vector, k, filter.as_ref(), group)
                        })
                        .await?
                    }
                }
            }
        };
        let hits = self
            .hit_views(&collection, hits, include, query_text)
            .await?;
        Ok(SearchResults {
            hits,
            took_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// The query's vector: its text and images embedded together, or its
    /// parts embedded one by one and combined.
    async fn embed_query(&self, query: SearchQuery) -> Result<Vec<f32>> {
        let Some(parts) = query.parts else {
            let mut request = EmbedRequest::text(query.text.unwrap_or_default());
            request.instruction = query.instruction;
            for image in self.load_images(query.images).await? {
                request
                    .images
                    .push(ImageData::Encoded(std::sync::Arc::new(image)));
            }
            return self.embed_one(request).await;
        };
        let mut vectors = Vec::with_capacity(parts.len());
        for part in parts {
            let vector = match part.vector {
                Some(v) => v,
                None => {
                    let part_query = SearchQuery {
                        text: part.text,
                        images: part.image.into_iter().collect(),
                        instruction: part.instruction,
                        ..SearchQuery::default()
                    };
                    Box::pin(self.embed_query(part_query)).await?
                }
            };
            vectors.push((vector, part.weight));
        }
        let dim = vectors[0].0.len();
        Ok(crate::db::combine_query(&vectors, dim)?)
    }

    /// Hits as views, with the text, vectors and highlights `include` asks
    /// for (they live in the store, not the index: one blocking trip).
    async fn hit_views(
        &self,
        collection: &str,
        hits: Vec<Hit>,
        include: Include,
        query_text: Option<String>,
    ) -> Result<Vec<HitView>> {
        let coll = collection.to_owned();
        let wanted: Vec<(String, Option<Span>)> = hits
            .iter()
            .map(|h| (h.id.clone(), h.segment.as_ref().map(|s| s.span.clone())))
            .collect();
        let extras = if include.needs_documents() {
            self.with_db(move |db| {
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
                let span = hit.segment.as_ref().map(|s| s.span.clone());
                let mut view = HitView::new(hit);
                if !include.metadata {
                    view.metadata = None;
                }
                if include.chunk {
                    view.chunk = Some(hit_chunk(&text, span.as_ref()).map(str::to_owned));
                }
                if include.highlights {
                    view.highlights = Some(marks);
                }
                if !include.scores {
                    view.scores = None;
                } else if view.scores.is_none() {
                    view.scores = Some(None);
                }
                if include.text {
                    view.text = Some(text);
                }
                if include.vector {
                    view.vector = Some(vector);
                }
                view
            })
            .collect())
    }
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
