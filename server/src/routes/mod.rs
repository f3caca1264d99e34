//! The HTTP surface: each resource module exposes its routes; this one merges them, adds the
//! cross-cutting layers and serves the OpenAPI document.
use std::path::Path;

use axum::{
    extract::{DefaultBodyLimit, MatchedPath},
    http::{header, HeaderName, HeaderValue, Request},
    routing::{any, get},
    Json, Router,
};
use tower_http::{
    services::{ServeDir, ServeFile},
    set_header::SetResponseHeaderLayer,
    trace::{DefaultOnFailure, TraceLayer},
};
use utoipa::{
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use crate::{error::ApiError, state::AppState};

pub mod auth;
pub mod chats;
pub mod instance;
pub mod privacy;

#[derive(OpenApi)]
#[openapi(
    info(title = "Parley", description = "Self-hostable real-time 1:1 chat. Errors are `{\"error\": {\"code\", \"message\"}}`."),
    paths(
        auth::signup, auth::verify, auth::resend, auth::login, auth::logout, auth::forgot_password, auth::reset_password, auth::me, auth::update_me, auth::change_password, auth::delete_me, auth::export,
        auth::sessions, auth::revoke_session, auth::revoke_others,
        instance::instance, instance::healthz,
        chats::start_chat, chats::list_chats, chats::history, chats::sync, crate::ws::upgrade,
        privacy::block, privacy::unblock, privacy::blocks, privacy::privacy_settings, privacy::set_privacy_settings,
    ),
    modifiers(&SessionAuth, &RejectionResponses),
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

/// The answers every route can give whatever it does: a JSON body that is not JSON, too large or
/// of another media type; a query or path parameter that does not parse; a database in trouble.
/// Documented once here for every operation they apply to.
struct RejectionResponses;

impl Modify for RejectionResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{path::ParameterIn, RefOr, ResponseBuilder};
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        utoipa::openapi::ContentBuilder::new()
                            .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        for item in openapi.paths.paths.values_mut() {
            for operation in
                [&mut item.get, &mut item.post, &mut item.patch, &mut item.put, &mut item.delete].into_iter().flatten()
            {
                let responses = &mut operation.responses.responses;
                if operation.request_body.is_some() {
                    responses.entry("400".into()).or_insert_with(|| error("`malformed_json`"));
                    responses.entry("413".into()).or_insert_with(|| error("`payload_too_large`"));
                    responses.entry("415".into()).or_insert_with(|| error("`unsupported_media_type`"));
                    responses.entry("422".into()).or_insert_with(|| error("`invalid_body` and field rules"));
                }
                responses
                    .entry("503".into())
                    .or_insert_with(|| error("`unavailable`, `storage_full`: the database is away, read-only or full"));
                let parsed_params = operation
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| matches!(p.parameter_in, ParameterIn::Query | ParameterIn::Path));
                if parsed_params {
                    responses.entry("422".into()).or_insert_with(|| error("`invalid_query`, `invalid_path`"));
                }
            }
        }
    }
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// Sent with every response. The policy allows only our own origin: scripts from our files (no
/// inline script), WebAssembly compiled by the browser, and fetch and WebSocket to ourselves.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn security_headers(router: Router) -> Router {
    let header = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(HeaderName::from_static(name), HeaderValue::from_static(value))
    };
    router
        .layer(header("content-security-policy", CONTENT_SECURITY_POLICY))
        .layer(header("x-content-type-options", "nosniff"))
        .layer(header("referrer-policy", "no-referrer"))
        .layer(header("x-frame-options", "DENY"))
}

/// The web UI's files, with `index.html` for any other path (the app routes itself).
fn web_ui(dir: &Path) -> Option<Router<AppState>> {
    let index = dir.join("index.html");
    if !index.is_file() {
        tracing::warn!(dir = %dir.display(), "no web UI here (run scripts/build-ui.sh); serving the API only");
        return None;
    }
    let files = ServeDir::new(dir).fallback(ServeFile::new(index));
    // Files keep their names across releases: make browsers revalidate them.
    let files = tower::ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .service(files);
    Some(Router::new().fallback_service(files))
}

pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let api = Router::new()
        .merge(auth::router())
        .merge(instance::router())
        .merge(chats::router())
        .merge(privacy::router())
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/metrics", get(crate::metrics::serve))
        .route("/api/{*rest}", any(not_found));
    let app = match web_ui(&state.config.ui_dir) {
        Some(ui) => api.merge(ui),
        None => api.fallback(not_found),
    };
    let app = app
        .layer(DefaultBodyLimit::max(max_body))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    // The matched route, never the raw path: it keeps ids and tokens out of logs.
                    let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or("-");
                    tracing::info_span!("http", method = %request.method(), route)
                })
                // `ApiError` logs each failure once, at the level it deserves (a fault of ours at
                // ERROR, the database away at WARN); tower_http would log every 5xx again at
                // ERROR, an unavailable database included.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .with_state(state);
    security_headers(app)
}
