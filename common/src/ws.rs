//! WebSocket frames of `/api/v1/ws` and the events of `/api/v1/sync`. JSON objects tagged by
//! `type`. An `Event` has the same shape live (as a frame) and replayed (in a sync batch), so a
//! client handles both with one code path.
use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

use crate::{Chat, Message, User};

/// Frames a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Send a message; `client_id` (a UUID of any version; Parley's clients make version 7, see
    /// [`crate::client_id::time_ordered`]) makes resending safe.
    Send {
        chat_id: i64,
        client_id: String,
        body: String,
    },
    /// The caller has read the chat up to message `seq` `up_to`.
    Read {
        chat_id: i64,
        up_to: i64,
    },
    /// The caller is typing in the chat.
    Typing {
        chat_id: i64,
    },
    /// Replay events after `since` (from the beginning without it).
    Sync {
        #[serde(default)]
        since: Option<String>,
    },
    Ping,
}

/// An event a user must not miss: it carries the user's cursor and is kept for `sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Message { cursor: String, message: Message },
    ChatCreated { cursor: String, chat: Chat },
    Read { cursor: String, chat_id: i64, user_id: i64, up_to: i64 },
}

impl Event {
    pub fn cursor(&self) -> &str {
        match self {
            Event::Message { cursor, .. } | Event::ChatCreated { cursor, .. } | Event::Read { cursor, .. } => cursor,
        }
    }
}

/// Frames the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame on every connection: who you are and your current cursor.
    Hello {
        user: User,
        cursor: String,
    },
    /// Your message is committed (to the connection that sent it only).
    Ack {
        client_id: String,
        message: Message,
        cursor: String,
    },
    /// A friend came online or went offline.
    Presence {
        user_id: i64,
        online: bool,
        last_seen: Option<String>,
    },
    /// Someone is typing in a chat (not kept; not replayed).
    Typing {
        chat_id: i64,
        user_id: i64,
    },
    /// An answer to `sync`.
    SyncBatch {
        events: Vec<Event>,
        next: String,
        more: bool,
    },
    /// A frame was refused; the connection stays usable.
    Error {
        code: String,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    Pong,
    /// `message`, `chat_created` and `read`.
    #[serde(untagged)]
    Event(Event),
}

/// `GET /api/v1/sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SyncBatch {
    /// Oldest first.
    pub events: Vec<Event>,
    /// The cursor to ask from next time.
    pub next: String,
    /// Whether more events follow `next` already.
    pub more: bool,
}

/// Codes of an error frame refusing a `send` for a passing reason (a rate limit, the server's
/// database away, read-only or full): the message is still wanted, so clients keep it and offer it
/// again later under the same `client_id`. Any other refusal is final.
pub const RETRYABLE_SEND_ERRORS: &[&str] = &["rate_limited", "internal", "unavailable", "storage_full"];

/// The code of the error that refuses a `sync` whose cursor this server never gave out (a cache
/// damaged, or kept from another server). A client drops that cursor and replays its stream from
/// the beginning.
pub const INVALID_CURSOR: &str = "invalid_cursor";

/// Close codes the server uses (4000–4999 are the application's).
pub mod close {
    /// The session ended (logout, revoked, expired).
    pub const SESSION_ENDED: u16 = 4001;
    /// The connection did not keep up with its events; reconnect and `sync`.
    pub const TOO_SLOW: u16 = 4008;
    /// Too many frames, or too many bad ones.
    pub const FLOOD: u16 = 4009;
    /// No frame or pong for too long.
    pub const TIMEOUT: u16 = 4010;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            id: 7,
            chat_id: 3,
            seq: 2,
            sender_id: 1,
            client_id: "c".into(),
            body: "hi".into(),
            created_at: "2026-11-25T00:00:00Z".into(),
        }
    }

    #[test]
    fn an_event_is_the_same_json_live_and_replayed() {
        let event = Event::Message { cursor: "5".into(), message: message() };
        let live = serde_json::to_value(ServerFrame::Event(event.clone())).unwrap();
        let replayed = serde_json::to_value(&event).unwrap();
        assert_eq!(live, replayed);
        assert_eq!(live["type"], "message");
        assert_eq!(serde_json::from_value::<ServerFrame>(live).unwrap(), ServerFrame::Event(event));
    }

    #[test]
    fn frames_are_tagged_by_type() {
        let frame: ClientFrame =
            serde_json::from_str(r#"{"type":"send","chat_id":3,"client_id":"x","body":"hi"}"#).unwrap();
        assert_eq!(frame, ClientFrame::Send { chat_id: 3, client_id: "x".into(), body: "hi".into() });
        assert_eq!(
            serde_json::from_str::<ClientFrame>(r#"{"type":"sync"}"#).unwrap(),
            ClientFrame::Sync { since: None }
        );
        assert_eq!(serde_json::to_value(ServerFrame::Pong).unwrap(), serde_json::json!({"type": "pong"}));
        let read = ServerFrame::Event(Event::Read { cursor: "9".into(), chat_id: 3, user_id: 1, up_to: 2 });
        let json = serde_json::to_value(&read).unwrap();
        assert_eq!(json, serde_json::json!({"type": "read", "cursor": "9", "chat_id": 3, "user_id": 1, "up_to": 2}));
        assert_eq!(serde_json::from_value::<ServerFrame>(json).unwrap(), read);
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"nope"}"#).is_err());
    }
}
