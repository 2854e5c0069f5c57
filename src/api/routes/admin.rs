//! `/admin/…`: operations on the whole database (backup).
use axum::{extract::State, Json};

use crate::api::error::{ApiResult, ErrorBody};
use crate::api::input::JsonBody;
use crate::api::wire::BackupRequest;
use crate::api::AppState;
use crate::service::views::BackupView;

/// Write a consistent backup of the database into a new directory on the
/// server (under `server.backup_root`) while writes go on. Answers when the
/// backup is complete; not subject to `server.timeout_secs`. Restore it
/// with `tkr-embed restore DIR --data-dir NEW`.
#[utoipa::path(post, path = "/admin/backup", tag = "admin", request_body = BackupRequest,
    responses((status = 200, body = BackupView),
        (status = 403, description = "`server.backup_root` is not set, or `dest` is outside it",
            body = ErrorBody),
        (status = 409, description = "`dest` is not empty, or a backup is already running",
            body = ErrorBody),
        (status = "4XX", body = ErrorBody), (status = "5XX", body = ErrorBody)))]
pub async fn backup(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<BackupRequest>,
) -> ApiResult<Json<BackupView>> {
    Ok(Json(state.service.backup(&body.dest).await?))
}
