//! `/collections/{c}/documents/{id}/content`: a document's stored bytes;
//! `…/thumbnail`: small pictures of it and of its pages and video segments.
use axum::{
    extract::{Path, Query, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};

use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::range::{self, RangeAnswer};
use crate::api::AppState;
use crate::service::{StoredContent, ThumbnailOf};
use serde::Deserialize;
use utoipa::IntoParams;

/// The stored content (image, video, PDF, text), or a redirect to the URL
/// it was imported from. A single `Range: bytes=…` is answered with 206 and
/// those bytes (what lets a browser seek in a video).
#[utoipa::path(get, path = "/collections/{collection}/documents/{id}/content", tag = "documents",
    params(("collection" = String, Path), ("id" = String, Path),
        ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=0-1023`")),
    responses(
        (status = 200, description = "The stored bytes, with their content type",
            content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The requested bytes (Content-Range)",
            content_type = "application/octet-stream", body = Vec<u8>),
        (status = 416, description = "The range starts past the end", body = ErrorBody),
        (status = 307, description = "Imported from this URL (Location)"),
        (status = 404, body = ErrorBody), (status = "4XX", body = ErrorBody)))]
pub async fn get_content(
    State(state): State<AppState>,
    Path((collection, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    match state.service.content(&collection, &id).await? {
        StoredContent::Bytes { data, content_type } => {
            // Stored bytes come from clients: never let a browser run them
            // as a page of this origin (HTML, SVG, …).
            let inline = content_type.starts_with("image/")
                || content_type.starts_with("video/")
                || content_type.starts_with("text/plain")
                || content_type == "application/pdf";
            let disposition = if inline { "inline" } else { "attachment" };
            let headers_out = [
                (header::CONTENT_TYPE, content_type),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
                (header::CONTENT_SECURITY_POLICY, "sandbox".to_owned()),
                (header::CONTENT_DISPOSITION, disposition.to_owned()),
                (header::ACCEPT_RANGES, "bytes".to_owned()),
            ];
            let asked = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
            match range::answer(asked, data.len()) {
                RangeAnswer::Whole => Ok((headers_out, data).into_response()),
                RangeAnswer::Part(part) => {
                    let content_range =
                        format!("bytes {}-{}/{}", part.start, part.end - 1, data.len());
                    Ok((
                        StatusCode::PARTIAL_CONTENT,
                        headers_out,
                        [(header::CONTENT_RANGE, content_range)],
                        data[part].to_vec(),
                    )
                        .into_response())
                }
                RangeAnswer::Unsatisfiable => Err(ApiError::range_not_satisfiable(data.len())),
            }
        }
        StoredContent::Url(uri) => {
            let location = HeaderValue::try_from(uri).map_err(|_| ApiError::bad_stored_uri())?;
            Ok((
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
            )
                .into_response())
        }
    }
}

/// Which picture `/thumbnail` shows: a PDF page (`page`), a video segment
/// (`start_s` and `end_s`, as listed in the document's segments), or with
/// neither, the document itself (an image, a PDF's first page, a video's
/// first segment).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ThumbnailQuery {
    /// A page of a PDF document (1-based).
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// Start of a video segment, in seconds.
    pub start_s: Option<f64>,
    /// End of that video segment, in seconds.
    pub end_s: Option<f64>,
}

/// A small JPEG of the document or of one of its segments (longer side
/// 320 px), for the web page: made on first request, then cached.
#[utoipa::path(get, path = "/collections/{collection}/documents/{id}/thumbnail", tag = "documents",
    params(("collection" = String, Path), ("id" = String, Path), ThumbnailQuery),
    responses(
        (status = 200, description = "The picture", content_type = "image/jpeg", body = Vec<u8>),
        (status = 404, body = ErrorBody), (status = "4XX", body = ErrorBody)))]
pub async fn get_thumbnail(
    State(state): State<AppState>,
    Path((collection, id)): Path<(String, String)>,
    Query(query): Query<ThumbnailQuery>,
) -> ApiResult<Response> {
    let of = match (query.page, query.start_s, query.end_s) {
        (None, None, None) => ThumbnailOf::Document,
        (Some(page), None, None) => ThumbnailOf::Page(page),
        (None, Some(start_s), Some(end_s)) => ThumbnailOf::Time { start_s, end_s },
        _ => {
            return Err(ApiError::bad_request(
                "ask for `page`, or for `start_s` with `end_s`, or for neither",
            ))
        }
    };
    let thumbnail = state.service.thumbnail(&collection, &id, of).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        thumbnail.jpeg.as_ref().clone(),
    )
        .into_response())
}
