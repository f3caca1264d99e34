//! The HTTP surface: each resource module exposes its routes; this one merges them, adds the
//! cross-cutting layers and serves the OpenAPI document.
use axum::{
    extract::{DefaultBodyLimit, MatchedPath},
    http::Request,
    routing::get,
    Json, Router,
};
use tower_http::trace::TraceLayer;
use utoipa::{
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use crate::{error::ApiError, state::AppState};

pub mod auth;
pub mod chats;
pub mod instance;

#[derive(OpenApi)]
#[openapi(
    info(title = "Parley", description = "Self-hostable real-time 1:1 chat. Errors are `{\"error\": {\"code\", \"message\"}}`."),
    paths(
        auth::signup, auth::verify, auth::resend, auth::login, auth::logout, auth::me,
        instance::instance, instance::healthz,
        chats::start_chat, chats::list_chats, chats::history, chats::sync, crate::ws::upgrade,
    ),
    modifiers(&SessionAuth),
)]
pub struct ApiDoc;

struct SessionAuth;

impl Modify for SessionAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::state::SESSION_COOKIE))),
        );
    }
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    Router::new()
        .merge(auth::router())
        .merge(instance::router())
        .merge(chats::router())
        .route("/api/v1/openapi.json", get(openapi_json))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            // The matched route, never the raw path: it keeps ids and tokens out of logs.
            let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or("-");
            tracing::info_span!("http", method = %request.method(), route)
        }))
        .with_state(state)
}
