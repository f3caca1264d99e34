//! What anyone may ask without a session: the instance's description and its health.
use axum::{extract::State, http::StatusCode, routing::get, Router};
use parley_common::{Health, InstanceInfo};

use crate::{error::ApiJson, state::AppState};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/instance", get(instance)).route("/healthz", get(healthz))
}

/// Name, version and signup mode, so a client can show the right screens.
#[utoipa::path(get, path = "/api/v1/instance", tag = "instance",
    responses((status = 200, description = "About this instance", body = InstanceInfo)))]
pub async fn instance(State(state): State<AppState>) -> ApiJson<InstanceInfo> {
    ApiJson(InstanceInfo {
        name: state.config.instance_name.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        signup: state.config.signup,
    })
}

/// 200 when the database answers, 503 when it does not.
#[utoipa::path(get, path = "/healthz", tag = "instance",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "The database does not answer", body = Health),
    ))]
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, ApiJson<Health>) {
    let backend = state.store.backend().to_string();
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, ApiJson(Health { status: "ok".into(), database: backend })),
        Err(err) => {
            tracing::error!(error = %err, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, ApiJson(Health { status: "unavailable".into(), database: backend }))
        }
    }
}
