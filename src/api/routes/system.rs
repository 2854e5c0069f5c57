//! Service routes: health, info, metrics, the OpenAPI document, and the
//! JSON 404 for unknown routes.
use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::Value;

use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::wire::{Health, Info, InfoLimits, ModelInfo, Versions};
use crate::api::AppState;

/// Liveness: no auth, no database or model work.
#[utoipa::path(get, path = "/health", tag = "system", security(()),
    responses((status = 200, body = Health)))]
pub async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        uptime_s: state.started.elapsed().as_secs_f64(),
    })
}

/// The model, versions, document counts and limits.
#[utoipa::path(get, path = "/info", tag = "system",
    responses((status = 200, body = Info), (status = "4XX", body = ErrorBody)))]
pub async fn info(State(state): State<AppState>) -> ApiResult<Json<Info>> {
    let engine = state.engine.info().clone();
    let collections = state.service.list_collections().await?;
    let server = &state.config.server;
    Ok(Json(Info {
        model: ModelInfo {
            name: state.service.model_name().to_owned(),
            id: engine.model_id,
            dim: engine.dim,
            dtype: engine.dtype,
            quantization: engine.quantization,
            device: engine.device,
            blas: crate::model::runtime::blas_report(),
        },
        profile: state.profile.clone(),
        versions: Versions {
            tkr_embed: env!("CARGO_PKG_VERSION"),
            mlx_rs: "0.33",
        },
        documents: collections.iter().map(|c| c.documents).sum(),
        collections: collections
            .iter()
            .map(|c| (c.name.clone(), Value::from(c.documents)))
            .collect(),
        auth: !server.api_keys.is_empty(),
        limits: InfoLimits {
            max_body_bytes: server.max_body_bytes,
            max_image_pixels: server.max_image_pixels,
            max_inputs_per_request: server.max_inputs_per_request,
            max_k: server.max_k,
            max_document_text_bytes: state.config.processing.max_document_text_bytes,
        },
        uptime_s: state.started.elapsed().as_secs_f64(),
    }))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain",
        body = String), (status = "4XX", body = ErrorBody)))]
pub async fn metrics(State(state): State<AppState>) -> ApiResult<Response> {
    if !state.config.monitoring.metrics {
        return Err(ApiError::metrics_off());
    }
    let text = tokio::task::spawn_blocking(move || crate::api::metrics::render(&state)).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "system",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API",
        content_type = "application/json", body = Object)))]
pub async fn openapi() -> Json<Value> {
    Json(crate::api::openapi::document())
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::no_route(uri.path())
}
