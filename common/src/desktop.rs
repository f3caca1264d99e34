//! The bridge between the desktop app's native side and the UI in its webview: the arguments of
//! each Tauri command, and the one event the native side pushes (`parley://incoming`).
//!
//! Every command takes one argument named `args` (`invoke("send", {args: {...}})`) and answers
//! with its result or a [`BridgeError`]. The native side owns the connection, the session token
//! and the local cache; the UI never sees the token.
use serde::{Deserialize, Serialize};

use crate::{Chat, Event, Message, User};

/// Name of the Tauri event that carries [`DesktopEvent`]s.
pub const EVENT_NAME: &str = "parley://incoming";

/// A failed command. `code` follows the server's error codes, plus the desktop's own:
/// `network` (server unreachable), `certificate` (the server's TLS certificate was refused),
/// `not_parley` (the address answers, but not as a Parley server), `no_server` (no address set
/// yet), `offline` (needs the server, which cannot be reached now).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeError {
    pub code: String,
    pub message: String,
}

impl BridgeError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        BridgeError { code: code.into(), message: message.into() }
    }
}

impl std::fmt::Display for BridgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for BridgeError {}

/// `server_set`: the address of the Parley server to use, e.g. `https://chat.example.org`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerArgs {
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignupArgs {
    pub email: String,
    pub password: String,
    pub display_name: String,
}

/// What `signup` led to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SignupResult {
    /// A code was mailed for this pending signup.
    CodeSent { signup_id: String },
    /// The instance signs up at once; the app is logged in.
    LoggedIn { user: User },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyArgs {
    pub signup_id: String,
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResendArgs {
    pub signup_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginArgs {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartChatArgs {
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryArgs {
    pub chat_id: i64,
    /// Messages before this `seq`; the newest page without it.
    #[serde(default)]
    pub before: Option<i64>,
}

/// `send`: the UI picks the `client_id` (a UUID) so it can show the message as pending at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendArgs {
    pub chat_id: i64,
    pub client_id: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadArgs {
    pub chat_id: i64,
    pub up_to: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatArgs {
    pub chat_id: i64,
}

/// `revoke_session`: one of the account's sessions (`sessions` lists them). The other account
/// commands take the REST bodies: `update_profile` a `ProfileUpdate` (→ `User`),
/// `change_password` a `PasswordChange`, `forgot_password` a `ForgotPasswordRequest`
/// (→ `PasswordResetPending`), `reset_password` a `PasswordResetRequest` (→ `User`, logged in);
/// `sessions` (→ `SessionList`) and `revoke_other_sessions` take no argument. `block` and
/// `unblock` take a `BlockRequest` (the friend's `user_id`); `blocks` (→ `BlockList`) and `privacy`
/// (→ `PrivacySettings`) none; `set_privacy` a `PrivacySettings` (→ `PrivacySettings`);
/// `export_data` none, and saves the `AccountExport` as a JSON file in the Downloads folder (→ its
/// path); `delete_account` a `DeleteAccountRequest`, after which the app is logged out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionArgs {
    pub session_id: i64,
}

/// `viewing`: the chat on screen, if any (no notification is shown for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewingArgs {
    #[serde(default)]
    pub chat_id: Option<i64>,
}

/// State of the native side's connection to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ConnectionState {
    Connecting,
    Online,
    /// Lost or refused; the next attempt is in `retry_in_secs`. `problem` says why, when it is
    /// worth telling (a certificate error, say).
    Reconnecting {
        retry_in_secs: u32,
        #[serde(default)]
        problem: Option<BridgeError>,
    },
    /// Not connected on purpose (logged out).
    Off,
}

/// What the native side tells the UI, live or from the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DesktopEvent {
    Connection {
        connection: ConnectionState,
    },
    /// The live connection is (again) up for this user.
    Hello {
        user: User,
    },
    /// A stored event, already in the local cache.
    Event {
        event: Event,
    },
    /// Our message `client_id` is committed as `message`.
    Ack {
        client_id: String,
        message: Message,
    },
    /// Our message `client_id` was refused for good.
    SendFailed {
        client_id: String,
        code: String,
        message: String,
    },
    /// A message written here, waiting in the outbox (sent when the server can be reached).
    Pending {
        client_id: String,
        chat_id: i64,
        body: String,
    },
    Presence {
        user_id: i64,
        online: bool,
        last_seen: Option<String>,
    },
    Typing {
        chat_id: i64,
        user_id: i64,
    },
    /// Chats changed in a way events do not carry (presence after a reconnection): read the list
    /// again.
    ChatsChanged {
        chats: Vec<Chat>,
    },
    /// The server could not resume from the cache's cursor, and the cache was rebuilt from the
    /// server's stream: these chats replace what is shown, and histories are read again.
    Resynced {
        chats: Vec<Chat>,
    },
    /// The session ended (logout elsewhere, revoked, expired).
    SessionEnded,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_for_the_webview() {
        let event = DesktopEvent::Connection {
            connection: ConnectionState::Reconnecting {
                retry_in_secs: 3,
                problem: Some(BridgeError::new("certificate", "unknown issuer")),
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "connection", "connection": {"state": "reconnecting", "retry_in_secs": 3,
                "problem": {"code": "certificate", "message": "unknown issuer"}}})
        );
        assert_eq!(serde_json::from_value::<DesktopEvent>(json).unwrap(), event);
        let pending: DesktopEvent =
            serde_json::from_str(r#"{"type":"pending","client_id":"c","chat_id":4,"body":"hi"}"#).unwrap();
        assert_eq!(pending, DesktopEvent::Pending { client_id: "c".into(), chat_id: 4, body: "hi".into() });
    }
}
