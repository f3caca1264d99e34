//! `/api/v1/blocks` and `/api/v1/me/privacy`: thin adapters from HTTP to `privacy`.
use axum::{
    extract::State,
    http::StatusCode,
    routing::{delete, get},
    Router,
};
use parley_common::{BlockList, BlockRequest, ErrorBody, PrivacySettings};

use crate::{
    error::{ApiJson, ApiPath, ApiResult},
    privacy,
    state::{AppState, Session},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/blocks", get(blocks).post(block))
        .route("/api/v1/blocks/{user_id}", delete(unblock))
        .route("/api/v1/me/privacy", get(privacy_settings).put(set_privacy_settings))
}

/// Block someone you share a chat with. Their messages to you are refused with the same error as
/// a send to a chat they are not in (`chat_not_found`), nothing of them is stored or delivered,
/// and they see you offline with no last seen. Blocking twice is the same as once.
#[utoipa::path(post, path = "/api/v1/blocks", tag = "privacy", request_body = BlockRequest,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Blocked"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`user_not_found` (also for anyone you share no chat with)", body = ErrorBody),
        (status = 422, description = "`cannot_block_self`", body = ErrorBody),
    ))]
pub async fn block(
    State(state): State<AppState>,
    session: Session,
    ApiJson(req): ApiJson<BlockRequest>,
) -> ApiResult<StatusCode> {
    privacy::block(&state, session.user_id, req.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unblock someone; they may write to you again and see your presence as before. Unblocking
/// someone who is not blocked changes nothing.
#[utoipa::path(delete, path = "/api/v1/blocks/{user_id}", tag = "privacy",
    params(("user_id" = i64, Path, description = "The blocked user's id")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Not blocked (any more)"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ))]
pub async fn unblock(
    State(state): State<AppState>,
    session: Session,
    ApiPath(user_id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    privacy::unblock(&state, session.user_id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The people you have blocked, most recent first.
#[utoipa::path(get, path = "/api/v1/blocks", tag = "privacy",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Blocked users", body = BlockList),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ))]
pub async fn blocks(State(state): State<AppState>, session: Session) -> ApiResult<ApiJson<BlockList>> {
    Ok(ApiJson(privacy::blocked_users(&state, session.user_id).await?))
}

/// Your presence setting.
#[utoipa::path(get, path = "/api/v1/me/privacy", tag = "privacy",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The setting", body = PrivacySettings),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ))]
pub async fn privacy_settings(State(state): State<AppState>, session: Session) -> ApiResult<ApiJson<PrivacySettings>> {
    Ok(ApiJson(privacy::privacy_settings(&state, session.user_id).await?))
}

/// Hide your presence and last seen from everyone (and see nobody's while hidden), or show them
/// again. By default they show only to people you have started a chat with or written to. Your
/// friends, and you, get `presence` frames for the change at once.
#[utoipa::path(put, path = "/api/v1/me/privacy", tag = "privacy", request_body = PrivacySettings,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The setting, changed", body = PrivacySettings),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ))]
pub async fn set_privacy_settings(
    State(state): State<AppState>,
    session: Session,
    ApiJson(req): ApiJson<PrivacySettings>,
) -> ApiResult<ApiJson<PrivacySettings>> {
    Ok(ApiJson(privacy::set_privacy_settings(&state, session.user_id, req).await?))
}
