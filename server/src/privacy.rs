//! Who may reach and see whom: blocks (and, with them, what the blocked person is shown) and the
//! presence setting. Handlers in `routes::privacy` only translate HTTP to these calls. Who may see
//! whose presence is decided in the store (`Store::presence_pairs`, `chat_query!`).
use parley_common::{BlockList, BlockedUser, PrivacySettings};

use crate::{
    chats::refresh_presence,
    clock::{now_millis, rfc3339},
    error::{ApiError, ApiResult},
    state::AppState,
};

/// Blocks someone the user shares a chat with: their sends to the user are refused (as if the
/// chat did not exist) and they stop seeing the user's presence at once.
pub async fn block(state: &AppState, user_id: i64, other: i64) -> ApiResult<()> {
    if other == user_id {
        return Err(ApiError::invalid("cannot_block_self", "you cannot block yourself"));
    }
    // Only people one shares a chat with: anyone else's id says nothing, existing or not.
    if state.store.chat_between(user_id, other).await?.is_none() {
        return Err(ApiError::UserNotFound);
    }
    state.store.block(user_id, other, now_millis()).await?;
    tracing::info!(user_id, blocked = other, "blocked");
    // Only the blocked person's view changes: the blocker still sees them.
    refresh_presence(state, user_id, Some(other), false).await
}

/// Lifts a block (lifting one that is not there changes nothing).
pub async fn unblock(state: &AppState, user_id: i64, other: i64) -> ApiResult<()> {
    state.store.unblock(user_id, other).await?;
    tracing::info!(user_id, unblocked = other, "unblocked");
    refresh_presence(state, user_id, Some(other), false).await
}

pub async fn blocked_users(state: &AppState, user_id: i64) -> ApiResult<BlockList> {
    let rows = state.store.blocked_users(user_id).await?;
    let blocked = rows
        .into_iter()
        .map(|r| BlockedUser {
            user_id: r.user_id,
            email: r.email,
            display_name: r.display_name,
            blocked_at: rfc3339(r.created_at),
        })
        .collect();
    Ok(BlockList { blocked })
}

pub async fn privacy_settings(state: &AppState, user_id: i64) -> ApiResult<PrivacySettings> {
    Ok(PrivacySettings { hide_presence: state.store.hide_presence(user_id).await? })
}

/// Hides (or shows again) the user's presence from everyone; while hidden they see nobody's. Both
/// sides are told at once how the other looks now.
pub async fn set_privacy_settings(
    state: &AppState,
    user_id: i64,
    settings: PrivacySettings,
) -> ApiResult<PrivacySettings> {
    let before = state.store.hide_presence(user_id).await?;
    if before != settings.hide_presence {
        state.store.set_hide_presence(user_id, settings.hide_presence).await?;
        tracing::info!(user_id, hide_presence = settings.hide_presence, "presence setting changed");
        refresh_presence(state, user_id, None, true).await?;
    }
    Ok(settings)
}
