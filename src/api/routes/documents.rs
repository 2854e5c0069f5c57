//! `/collections/{c}/documents`: insert (JSON or an uploaded file), list
//! a page, read, delete.
use axum::{
    extract::{Path, Query, Request, State},
    http::StatusCode,
    Json,
};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::input::{body_bytes, is_json, is_multipart, parse_json_off_thread, Form};
use crate::api::wire::{Deleted, InsertBody, InsertForm};
use crate::api::AppState;
use crate::service::views::{DocumentPage, DocumentView, Inserted};
use crate::service::{InsertContent, Upload};
use serde::Deserialize;
use utoipa::IntoParams;

/// Insert a document: JSON (text, images, metadata, or a precomputed
/// vector), or a form with a `file` (image, video, PDF, .txt/.md/.html; an
/// image may come with `text`, fused). Video, PDF and long text are stored
/// as one document with a vector per segment.
#[utoipa::path(post, path = "/collections/{collection}/documents", tag = "documents",
    params(("collection" = String, Path)),
    request_body(content(
        (InsertBody = "application/json"),
        (InsertForm = "multipart/form-data"))),
    responses((status = 201, body = Inserted), (status = 404, body = ErrorBody),
        (status = "4XX", body = ErrorBody), (status = 503, body = ErrorBody),
        (status = 507, body = ErrorBody, description = "the disk is full or read-only")))]
pub async fn insert(
    State(state): State<AppState>,
    Path(collection): Path<String>,
    request: Request,
) -> ApiResult<(StatusCode, Json<Inserted>)> {
    let inserted = if is_multipart(&request) {
        let mut form = Form::read(request, &()).await?;
        let file = form.take_file()?;
        let input = InsertContent {
            id: form.fields.remove("id"),
            text: form.fields.remove("text"),
            metadata: form.json_field::<Value>("metadata")?.unwrap_or(Value::Null),
            ..InsertContent::default()
        };
        let upload = Upload {
            name: file.filename.unwrap_or_default(),
            data: file.data,
        };
        state
            .service
            .insert_upload(&collection, upload, input)
            .await?
    } else if is_json(&request) {
        let bytes = body_bytes(request, &()).await?;
        let body: InsertBody = parse_json_off_thread(bytes).await?;
        state.service.insert(&collection, body.into()).await?
    } else {
        return Err(ApiError::unsupported_media(
            "expected application/json or multipart/form-data",
        ));
    };
    Ok((StatusCode::CREATED, Json(inserted)))
}

/// Which page of documents to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Documents per page (1 to 1000).
    #[param(minimum = 1, maximum = 1000, default = 50)]
    pub limit: Option<usize>,
    /// Continue after this id (the previous page's `next`).
    pub after: Option<String>,
}

/// A page of the collection's documents in id order (without vectors);
/// `next` continues the listing. Each page costs the same at any depth.
#[utoipa::path(get, path = "/collections/{collection}/documents", tag = "documents",
    params(("collection" = String, Path), ListQuery),
    responses((status = 200, body = DocumentPage), (status = 404, body = ErrorBody),
        (status = "4XX", body = ErrorBody)))]
pub async fn list_documents(
    State(state): State<AppState>,
    Path(collection): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<DocumentPage>> {
    let limit = query.limit.unwrap_or(50);
    let mut page = state
        .service
        .list_documents(&collection, query.after, limit)
        .await?;
    for view in &mut page.documents {
        link_content(view, &collection);
    }
    Ok(Json(page))
}

/// One document (without its vectors).
#[utoipa::path(get, path = "/collections/{collection}/documents/{id}", tag = "documents",
    params(("collection" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = DocumentView), (status = 404, body = ErrorBody),
        (status = "4XX", body = ErrorBody)))]
pub async fn get_document(
    State(state): State<AppState>,
    Path((collection, id)): Path<(String, String)>,
) -> ApiResult<Json<DocumentView>> {
    let mut view = state.service.document(&collection, &id).await?;
    link_content(&mut view, &collection);
    Ok(Json(view))
}

/// Points a document with stored content at the route that serves it.
fn link_content(view: &mut DocumentView, collection: &str) {
    if view.content.is_some() {
        view.content_url = Some(content_url(collection, &view.id));
    }
}

/// Delete a document.
#[utoipa::path(delete, path = "/collections/{collection}/documents/{id}", tag = "documents",
    params(("collection" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Deleted), (status = 404, body = ErrorBody),
        (status = "4XX", body = ErrorBody), (status = 503, body = ErrorBody),
        (status = 507, body = ErrorBody, description = "the disk is full or read-only")))]
pub async fn delete_document(
    State(state): State<AppState>,
    Path((collection, id)): Path<(String, String)>,
) -> ApiResult<Json<Deleted>> {
    state.service.delete(&collection, &id).await?;
    Ok(Json(Deleted { deleted: id }))
}

/// Characters left as they are in a path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Where a document's stored content is served. Ids may hold any printable
/// characters; the URL has them escaped.
pub fn content_url(collection: &str, id: &str) -> String {
    format!(
        "/collections/{}/documents/{}/content",
        collection,
        utf8_percent_encode(id, SEGMENT)
    )
}
