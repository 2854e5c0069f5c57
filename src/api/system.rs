//! Service routes: health, info, metrics, the OpenAPI document, and the
//! JSON 404 for unknown routes.
use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    Json,
};
use serde_json::{json, Value};

use super::{error::ApiError, error::ApiResult, AppState};

/// Liveness: no auth, no database or model work.
pub async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "uptime_s": state.started.elapsed().as_secs_f64(),
    }))
}

pub async fn info(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let engine = state.engine.info().clone();
    let collections = state.with_db(|db| db.list_collections()).await?;
    let documents: u64 = collections.iter().map(|c| c.documents).sum();
    let counts: serde_json::Map<String, Value> = collections
        .iter()
        .map(|c| (c.name.clone(), Value::from(c.documents)))
        .collect();
    Ok(Json(json!({
        "model": {
            "name": state.model_name,
            "id": engine.model_id,
            "dim": engine.dim,
            "dtype": engine.dtype,
            "quantization": engine.quantization,
            "device": engine.device,
            "blas": crate::model::runtime::blas_report(),
        },
        "profile": state.profile,
        "versions": {
            "tkr_embed": env!("CARGO_PKG_VERSION"),
            "mlx_rs": "0.33",
        },
        "documents": documents,
        "collections": counts,
        "auth": !state.config.server.api_keys.is_empty(),
        "limits": {
            "max_body_bytes": state.config.server.max_body_bytes,
            "max_image_pixels": state.config.server.max_image_pixels,
            "max_inputs_per_request": state.config.server.max_inputs_per_request,
        },
        "uptime_s": state.started.elapsed().as_secs_f64(),
    })))
}

pub async fn metrics(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    if !state.config.monitoring.metrics {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "metrics are off (monitoring.metrics)",
        ));
    }
    let text = tokio::task::spawn_blocking(move || super::metrics::render(&state)).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    ))
}

pub async fn openapi() -> Json<Value> {
    Json(super::openapi::document())
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {} (see GET /openapi.json)", uri.path()),
    )
}
