//! Chats and messages as the REST API and the WebSocket show them.
use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// A committed message. `seq` numbers the messages of one chat from 1, in commit order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Message {
    pub id: i64,
    pub chat_id: i64,
    pub seq: i64,
    pub sender_id: i64,
    /// The sender's idempotency key (a UUID): sending again with it returns this message.
    pub client_id: String,
    pub body: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// The other member of a 1:1 chat, as the caller may see them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Friend {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    /// Whether they have at least one live connection now.
    pub online: bool,
    /// When their last connection closed (RFC 3339), if ever, and if you may see it.
    pub last_seen: Option<String>,
    /// They deleted their account: shown as "Deleted user" with no email, and they cannot be
    /// written to. (Absent from older servers.)
    #[serde(default)]
    pub deleted: bool,
}

/// A chat as its caller sees it; the default is one with nothing in it yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Chat {
    pub id: i64,
    pub friend: Friend,
    pub last_message: Option<Message>,
    /// Messages from the friend after the caller's read marker.
    pub unread_count: i64,
    /// The `seq` up to which the caller has read.
    pub read_up_to: i64,
    /// The `seq` up to which the friend has read.
    pub friend_read_up_to: i64,
    /// You have blocked the friend: their messages are refused and they do not see your presence.
    /// (Absent from older servers.)
    #[serde(default)]
    pub blocked: bool,
}

/// `POST /api/v1/chats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct NewChatRequest {
    /// Email of the person to chat with.
    pub email: String,
}

/// `GET /api/v1/chats`: the caller's chats, most recent activity first, and the cursor the list
/// is current to (go live from there without a gap).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ChatList {
    pub chats: Vec<Chat>,
    pub cursor: String,
}

/// `GET /api/v1/chats/{id}/messages`: a page of history, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MessagePage {
    pub messages: Vec<Message>,
    /// Whether older messages exist (ask again with `before` = the last message's `seq`).
    pub more: bool,
    pub cursor: String,
}
