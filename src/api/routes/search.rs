//! `/collections/{c}/search`: vector, lexical or hybrid search.
use axum::{
    extract::{Path, Request, State},
    Json,
};

use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::input::{body_bytes, is_json, is_multipart, parse_json_off_thread, Form};
use crate::api::routes::documents::content_url;
use crate::api::wire::{SearchBody, SearchForm};
use crate::api::AppState;
use crate::db::{HybridOptions, SearchMode};
use crate::index::fusion::DEFAULT_RRF_K;
use crate::index::GroupBy;
use crate::service::views::SearchResults;
use crate::service::{ImageInput, Include, SearchQuery, SearchRequest, ServiceError};

/// Search a collection: JSON (text and/or an image, a stored document, a
/// vector, or a multi-part query), or a form with an image `file`.
#[utoipa::path(post, path = "/collections/{collection}/search", tag = "search",
    params(("collection" = String, Path)),
    request_body(content(
        (SearchBody = "application/json"),
        (SearchForm = "multipart/form-data"))),
    responses((status = 200, body = SearchResults), (status = 404, body = ErrorBody),
        (status = "4XX", body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    Path(collection): Path<String>,
    request: Request,
) -> ApiResult<Json<SearchResults>> {
    let request = if is_multipart(&request) {
        let form = Form::read(request, &()).await?;
        form_request(collection.clone(), form)?
    } else if is_json(&request) {
        let bytes = body_bytes(request, &()).await?;
        let body: SearchBody = parse_json_off_thread(bytes).await?;
        json_request(collection.clone(), body)?
    } else {
        return Err(ApiError::unsupported_media(
            "expected application/json or multipart/form-data",
        ));
    };
    let mut results = state.service.search(request).await?;
    for hit in &mut results.hits {
        hit.content_url = Some(content_url(&collection, &hit.id));
    }
    Ok(Json(results))
}

fn parse<T: std::str::FromStr<Err = String>>(value: Option<&str>, default: T) -> ApiResult<T> {
    value.map_or(Ok(default), |v| {
        v.parse().map_err(|e| ServiceError::Invalid(e).into())
    })
}

fn json_request(collection: String, body: SearchBody) -> ApiResult<SearchRequest> {
    let query = SearchQuery {
        text: body.text,
        images: body.image.map(ImageInput::Source).into_iter().collect(),
        instruction: body.instruction,
        document_id: body.document_id,
        vector: body.vector,
        parts: body
            .queries
            .map(|parts| parts.into_iter().map(Into::into).collect()),
    };
    let mut request = SearchRequest::new(collection, query);
    request.k = body.k;
    request.filter = body.filter;
    request.mode = parse(body.mode.as_deref(), SearchMode::Vector)?;
    request.group_by = parse(body.group_by.as_deref(), GroupBy::Document)?;
    let defaults = HybridOptions::default();
    request.hybrid = HybridOptions {
        rrf_k: body.rrf_k.unwrap_or(DEFAULT_RRF_K),
        vector_weight: body
            .weights
            .as_ref()
            .map_or(defaults.vector_weight, |w| w.vector),
        lexical_weight: body
            .weights
            .as_ref()
            .map_or(defaults.lexical_weight, |w| w.lexical),
    };
    request.include = Include::parse(body.include.as_deref())?;
    Ok(request)
}

fn form_request(collection: String, mut form: Form) -> ApiResult<SearchRequest> {
    let file = form.take_file()?;
    let include: Option<Vec<String>> = form
        .fields
        .get("include")
        .map(|s| s.split(',').map(str::to_owned).collect());
    let field = |name: &str| form.fields.get(name).map(String::as_str);
    let query = SearchQuery {
        text: form.fields.get("text").cloned(),
        images: vec![ImageInput::Bytes(file.data)],
        instruction: form.fields.get("instruction").cloned(),
        ..SearchQuery::default()
    };
    let mut request = SearchRequest::new(collection, query);
    request.k = form.parsed_field("k")?.unwrap_or(request.k);
    request.filter = form.json_field("filter")?;
    request.mode = parse(field("mode"), SearchMode::Vector)?;
    request.group_by = parse(field("group_by"), GroupBy::Document)?;
    request.hybrid.rrf_k = form.parsed_field("rrf_k")?.unwrap_or(DEFAULT_RRF_K);
    request.include = Include::parse(include.as_deref())?;
    Ok(request)
}
