//! `/collections`: list, create, read, drop.
use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};

use crate::api::error::{ApiResult, ErrorBody};
use crate::api::input::JsonBody;
use crate::api::wire::{CreateCollection, Dropped};
use crate::api::AppState;
use crate::service::views::{CollectionList, CollectionView};

/// List collections with their document counts.
#[utoipa::path(get, path = "/collections", tag = "collections",
    responses((status = 200, body = CollectionList), (status = "4XX", body = ErrorBody)))]
pub async fn list_collections(State(state): State<AppState>) -> ApiResult<Json<CollectionList>> {
    let collections = state.service.list_collections().await?;
    Ok(Json(CollectionList { collections }))
}

/// Create a collection.
#[utoipa::path(post, path = "/collections", tag = "collections", request_body = CreateCollection,
    responses((status = 201, body = CollectionView), (status = 409, body = ErrorBody),
        (status = "4XX", body = ErrorBody),
        (status = 503, body = ErrorBody),
        (status = 507, body = ErrorBody, description = "the disk is full or read-only")))]
pub async fn create_collection(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateCollection>,
) -> ApiResult<(StatusCode, Json<CollectionView>)> {
    let view = state
        .service
        .create_collection(body.name, body.vectors.as_deref(), body.text_fields)
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// One collection.
#[utoipa::path(get, path = "/collections/{collection}", tag = "collections",
    params(("collection" = String, Path)),
    responses((status = 200, body = CollectionView), (status = 404, body = ErrorBody),
        (status = "4XX", body = ErrorBody)))]
pub async fn get_collection(
    State(state): State<AppState>,
    Path(collection): Path<String>,
) -> ApiResult<Json<CollectionView>> {
    Ok(Json(state.service.collection(&collection).await?))
}

/// Drop a collection and all its documents.
#[utoipa::path(delete, path = "/collections/{collection}", tag = "collections",
    params(("collection" = String, Path)),
    responses((status = 200, body = Dropped), (status = 404, body = ErrorBody),
        (status = "4XX", body = ErrorBody),
        (status = 503, body = ErrorBody),
        (status = 507, body = ErrorBody, description = "the disk is full or read-only")))]
pub async fn drop_collection(
    State(state): State<AppState>,
    Path(collection): Path<String>,
) -> ApiResult<Json<Dropped>> {
    state.service.drop_collection(&collection).await?;
    Ok(Json(Dropped {
        dropped: collection,
    }))
}
