//! `/api/v1/chats`, `/api/v1/sync` and the WebSocket route: thin adapters over `chats` and `ws`.
use axum::{extract::State, http::StatusCode, routing::get, Router};
use parley_common::{Chat, ChatList, ErrorBody, MessagePage, NewChatRequest, SyncBatch};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::{
    chats,
    error::{ApiJson, ApiPath, ApiQuery, ApiResult},
    state::{AppState, Session},
    ws,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/chats", get(list_chats).post(start_chat))
        .route("/api/v1/chats/{id}/messages", get(history))
        .route("/api/v1/sync", get(sync))
        .route("/api/v1/ws", get(ws::upgrade))
}

/// Start a chat with the owner of an email (or get the one you already have).
#[utoipa::path(post, path = "/api/v1/chats", tag = "chats", request_body = NewChatRequest,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Chat created; the friend's connections get `chat_created`", body = Chat),
        (status = 200, description = "The chat already existed", body = Chat),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 422, description = "`invalid_email`, `cannot_chat_with_self`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ))]
pub async fn start_chat(
    State(state): State<AppState>,
    session: Session,
    ApiJson(req): ApiJson<NewChatRequest>,
) -> ApiResult<(StatusCode, ApiJson<Chat>)> {
    let (chat, created) = chats::start_chat(&state, session.user_id, &req.email).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, ApiJson(chat)))
}

/// Your chats, most recent activity first, with the cursor the list is current to.
#[utoipa::path(get, path = "/api/v1/chats", tag = "chats",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Your chats", body = ChatList),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ))]
pub async fn list_chats(State(state): State<AppState>, session: Session) -> ApiResult<ApiJson<ChatList>> {
    Ok(ApiJson(chats::list_chats(&state, session.user_id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct HistoryParams {
    /// Only messages with a smaller `seq` (the oldest `seq` you have).
    pub before: Option<i64>,
    /// 1 to 100; 50 by default.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// A page of a chat's history, newest first. Only the chat's members may read it.
#[utoipa::path(get, path = "/api/v1/chats/{id}/messages", tag = "chats",
    params(("id" = i64, Path, description = "Chat id"), HistoryParams),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Messages, newest first", body = MessagePage),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`chat_not_found` (also for chats you are not in)", body = ErrorBody),
        (status = 422, description = "`invalid_limit`", body = ErrorBody),
    ))]
pub async fn history(
    State(state): State<AppState>,
    session: Session,
    ApiPath(chat_id): ApiPath<i64>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> ApiResult<ApiJson<MessagePage>> {
    Ok(ApiJson(chats::history(&state, session.user_id, chat_id, params.before, params.limit).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct SyncParams {
    /// The last cursor you processed; from the beginning without it (or empty, or `0`). A
    /// position, after the database's history epoch and a dot once there is one (`3.1042`).
    #[param(pattern = "^\\s*(([0-9]{1,18}\\.)?[0-9]{1,18})?\\s*$")]
    pub since: Option<String>,
    /// 1 to 100; 100 by default.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// Every event for you after `since`, oldest first, each shaped as its WebSocket frame.
#[utoipa::path(get, path = "/api/v1/sync", tag = "chats",
    params(SyncParams),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Events after the cursor", body = SyncBatch),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 422, description = "`invalid_cursor`, `invalid_limit`", body = ErrorBody),
    ))]
pub async fn sync(
    State(state): State<AppState>,
    session: Session,
    ApiQuery(params): ApiQuery<SyncParams>,
) -> ApiResult<ApiJson<SyncBatch>> {
    let since = state.cursors.parse(params.since.as_deref())?;
    Ok(ApiJson(chats::sync(&state, session.user_id, since, params.limit).await?))
}
