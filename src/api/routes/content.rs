//! `/collections/{c}/documents/{id}/content`: a document's stored bytes.
use axum::{
    extract::{Path, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};

use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::AppState;
use crate::service::StoredContent;

/// The stored content (image, video, PDF, text), or a redirect to the URL
/// it was imported from.
#[utoipa::path(get, path = "/collections/{collection}/documents/{id}/content", tag = "documents",
    params(("collection" = String, Path), ("id" = String, Path)),
    responses(
        (status = 200, description = "The stored bytes, with their content type",
            content_type = "application/octet-stream", body = Vec<u8>),
        (status = 307, description = "Imported from this URL (Location)"),
        (status = 404, body = ErrorBody), (status = "4XX", body = ErrorBody)))]
pub async fn get_content(
    State(state): State<AppState>,
    Path((collection, id)): Path<(String, String)>,
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
