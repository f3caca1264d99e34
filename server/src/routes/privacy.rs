//! `/api/v1/blocks`: thin adapters from HTTP to `privacy`.
use axum::{
    extract::State,
    http::StatusCode,
    routing::{delete, get},
    Router,
};
use parley_common::{BlockList, BlockRequest, ErrorBody};

use crate::{
    error::{ApiJson, ApiPath, ApiResult},
    privacy,
    state::{AppState, Session},
};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/blocks", get(blocks).post(block)).route("/api/v1/blocks/{user_id}", delete(unblock))
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
