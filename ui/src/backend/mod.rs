//! The data seam: everything the UI needs from the outside world, behind one trait. The browser
//! implementation speaks fetch and WebSocket; the desktop app supplies another. Components never
//! touch the network themselves.
use std::{future::Future, pin::Pin, rc::Rc};

use parley_common::{
    desktop::{BridgeError, ConnectionState, DesktopEvent},
    BlockList, Chat, ChatList, Event, InstanceInfo, Message, MessagePage, PrivacySettings, SessionList, SignupPending,
    User,
};
use yew::Callback;

pub mod browser;
#[cfg(target_arch = "wasm32")]
pub mod tauri;

pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A failed call, as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiError {
    /// The server's error code (`invalid_code`, `user_not_found`, …), or `network` when the
    /// server could not be reached.
    pub code: String,
    pub message: String,
}

impl UiError {
    pub fn network(message: impl Into<String>) -> Self {
        UiError { code: "network".into(), message: message.into() }
    }
}

impl From<BridgeError> for UiError {
    fn from(error: BridgeError) -> Self {
        UiError { code: error.code, message: error.message }
    }
}

pub type UiResult<T> = Result<T, UiError>;

/// Result of a signup: a code to enter (`verify` instances) or a session at once (`open`).
#[derive(Debug, Clone, PartialEq)]
pub enum SignupOutcome {
    CodeSent(SignupPending),
    LoggedIn(User),
}

/// State of the live connection, for the banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Online,
    /// Lost; the next attempt is in `retry_in_secs`. `problem` is why, when the person can act on
    /// it (the desktop app reports a refused certificate, say).
    Reconnecting {
        retry_in_secs: u32,
        problem: Option<UiError>,
    },
    /// Not connected on purpose (logged out).
    Off,
}

impl From<ConnectionState> for Connection {
    fn from(state: ConnectionState) -> Self {
        match state {
            ConnectionState::Connecting => Connection::Connecting,
            ConnectionState::Online => Connection::Online,
            ConnectionState::Reconnecting { retry_in_secs, problem } => {
                Connection::Reconnecting { retry_in_secs, problem: problem.map(UiError::from) }
            }
            ConnectionState::Off => Connection::Off,
        }
    }
}

/// What the backend tells the UI, live or replayed.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Connection(Connection),
    /// The live connection is (again) up for this user.
    Hello(User),
    /// A stored event: a message, a new chat, a read marker.
    Event(Event),
    /// Our message `client_id` is committed as `message`.
    Ack {
        client_id: String,
        message: Message,
    },
    /// Our message `client_id` was refused.
    SendFailed {
        client_id: String,
        code: String,
        message: String,
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
    /// A message written here earlier and not yet acknowledged (the desktop app keeps an outbox
    /// across restarts).
    Pending {
        client_id: String,
        chat_id: i64,
        body: String,
    },
    /// Chats as they are now, for what events do not carry (presence missed while away).
    ChatsChanged(Vec<Chat>),
    /// The server could not resume from our cursor: the chats as they are now replace what is
    /// shown, and histories are fetched again (what was shown may have gaps).
    Resynced(Vec<Chat>),
    /// The session ended elsewhere (logout, revoked).
    SessionEnded,
}

impl From<DesktopEvent> for Incoming {
    fn from(event: DesktopEvent) -> Self {
        match event {
            DesktopEvent::Connection { connection } => Incoming::Connection(connection.into()),
            DesktopEvent::Hello { user } => Incoming::Hello(user),
            DesktopEvent::Event { event } => Incoming::Event(event),
            DesktopEvent::Ack { client_id, message } => Incoming::Ack { client_id, message },
            DesktopEvent::SendFailed { client_id, code, message } => Incoming::SendFailed { client_id, code, message },
            DesktopEvent::Pending { client_id, chat_id, body } => Incoming::Pending { client_id, chat_id, body },
            DesktopEvent::Presence { user_id, online, last_seen } => Incoming::Presence { user_id, online, last_seen },
            DesktopEvent::Typing { chat_id, user_id } => Incoming::Typing { chat_id, user_id },
            DesktopEvent::ChatsChanged { chats } => Incoming::ChatsChanged(chats),
            DesktopEvent::Resynced { chats } => Incoming::Resynced(chats),
            DesktopEvent::SessionEnded => Incoming::SessionEnded,
        }
    }
}

/// The seam. Methods return boxed local futures so that the trait stays object-safe for
/// `Rc<dyn Backend>` on a single-threaded (wasm) executor.
pub trait Backend {
    fn instance(&self) -> LocalFuture<'_, UiResult<InstanceInfo>>;
    /// The logged-in user, if the stored session is still good.
    fn me(&self) -> LocalFuture<'_, UiResult<Option<User>>>;
    fn signup(&self, email: String, password: String, display_name: String)
        -> LocalFuture<'_, UiResult<SignupOutcome>>;
    fn verify(&self, signup_id: String, code: String) -> LocalFuture<'_, UiResult<User>>;
    fn resend(&self, signup_id: String) -> LocalFuture<'_, UiResult<()>>;
    fn login(&self, email: String, password: String) -> LocalFuture<'_, UiResult<User>>;
    fn logout(&self) -> LocalFuture<'_, UiResult<()>>;
    /// Mails a reset code if the email has an account; the reset id either way.
    fn forgot_password(&self, email: String) -> LocalFuture<'_, UiResult<String>>;
    /// Sets a new password with the mailed code and logs in (every other session ends).
    fn reset_password(&self, reset_id: String, code: String, new_password: String) -> LocalFuture<'_, UiResult<User>>;

    /// Changes the display name.
    fn update_profile(&self, display_name: String) -> LocalFuture<'_, UiResult<User>>;
    /// Changes the password; the server ends every other session of the account.
    fn change_password(&self, current_password: String, new_password: String) -> LocalFuture<'_, UiResult<()>>;
    fn sessions(&self) -> LocalFuture<'_, UiResult<SessionList>>;
    fn revoke_session(&self, session_id: i64) -> LocalFuture<'_, UiResult<()>>;
    fn revoke_other_sessions(&self) -> LocalFuture<'_, UiResult<()>>;
    /// Saves everything the server keeps about the account as a JSON file; says where it went.
    fn export_data(&self) -> LocalFuture<'_, UiResult<String>>;
    /// Deletes the account (its password required); every session ends, this one too.
    fn delete_account(&self, password: String) -> LocalFuture<'_, UiResult<()>>;

    /// Blocks a friend: their messages are refused and they stop seeing our presence.
    fn block(&self, user_id: i64) -> LocalFuture<'_, UiResult<()>>;
    fn unblock(&self, user_id: i64) -> LocalFuture<'_, UiResult<()>>;
    /// The people we have blocked.
    fn blocked_users(&self) -> LocalFuture<'_, UiResult<BlockList>>;
    fn privacy(&self) -> LocalFuture<'_, UiResult<PrivacySettings>>;
    /// Hides our presence from everyone (and theirs from us), or shows it again.
    fn set_privacy(&self, settings: PrivacySettings) -> LocalFuture<'_, UiResult<PrivacySettings>>;

    fn chats(&self) -> LocalFuture<'_, UiResult<ChatList>>;
    fn start_chat(&self, email: String) -> LocalFuture<'_, UiResult<Chat>>;
    fn history(&self, chat_id: i64, before: Option<i64>) -> LocalFuture<'_, UiResult<MessagePage>>;

    /// Starts the live connection (reconnecting by itself until `disconnect`), reporting to
    /// `listener`. `cursor` is where the UI's snapshot is current to.
    fn connect(&self, cursor: String, listener: Callback<Incoming>);
    fn disconnect(&self);
    /// Queues a message; it is sent now or after reconnecting, always with the returned
    /// `client_id`, until it is acknowledged.
    fn send(&self, chat_id: i64, body: String) -> String;
    fn mark_read(&self, chat_id: i64, up_to: i64);
    fn typing(&self, chat_id: i64);

    /// Whether the person picks the server (the desktop app); a browser talks to the server that
    /// served the page.
    fn chooses_server(&self) -> bool {
        false
    }
    /// The server's address, once one is chosen.
    fn server_url(&self) -> LocalFuture<'_, UiResult<Option<String>>> {
        Box::pin(async { Ok(None) })
    }
    /// Checks that `url` is a Parley server and uses it from now on.
    fn set_server(&self, _url: String) -> LocalFuture<'_, UiResult<InstanceInfo>> {
        Box::pin(async {
            Err(UiError { code: "unsupported".into(), message: "the server cannot be changed here".into() })
        })
    }
    /// The chat on screen, if any, so that no notification is raised for it.
    fn viewing(&self, _chat_id: Option<i64>) {}
}

pub type SharedBackend = Rc<dyn Backend>;

/// A fresh `client_id`: a UUID of version 7, time-ordered so that the server's index of the
/// sender's ids grows at its end (`parley_common::client_id`), its random part from the
/// browser's CSPRNG (`getRandomValues` works outside secure contexts too, unlike
/// `crypto.randomUUID`).
pub fn new_client_id() -> String {
    let mut random = [0u8; 10];
    fill_random(&mut random);
    parley_common::client_id::time_ordered(unix_ms(), random)
}

#[cfg(target_arch = "wasm32")]
fn unix_ms() -> u64 {
    js_sys::Date::now() as u64
}

#[cfg(not(target_arch = "wasm32"))]
fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(target_arch = "wasm32")]
fn fill_random(bytes: &mut [u8]) {
    let crypto = web_sys::window().and_then(|w| w.crypto().ok()).expect("window.crypto");
    crypto.get_random_values_with_u8_array(bytes).expect("getRandomValues");
}

/// Outside a browser (native unit tests) ids only need to differ: a counter, in the last bytes,
/// which `time_ordered` keeps whole.
#[cfg(not(target_arch = "wasm32"))]
fn fill_random(bytes: &mut [u8]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let at = bytes.len() - 8;
    bytes[at..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_of_version_7_and_differ_within_a_millisecond() {
        let ids: Vec<String> = (0..300).map(|_| new_client_id()).collect();
        for id in &ids {
            assert_eq!((id.len(), &id[14..15]), (36, "7"), "{id}");
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn a_refused_certificate_reaches_the_banner_with_its_code() {
        let event: DesktopEvent = serde_json::from_str(
            r#"{"type":"connection","connection":{"state":"reconnecting","retry_in_secs":5,
                "problem":{"code":"certificate","message":"unknown issuer"}}}"#,
        )
        .unwrap();
        let problem = UiError { code: "certificate".into(), message: "unknown issuer".into() };
        assert_eq!(
            Incoming::from(event),
            Incoming::Connection(Connection::Reconnecting { retry_in_secs: 5, problem: Some(problem) })
        );
    }

    #[test]
    fn an_outbox_message_arrives_as_pending() {
        let event = DesktopEvent::Pending { client_id: "c".into(), chat_id: 4, body: "hi".into() };
        assert_eq!(Incoming::from(event), Incoming::Pending { client_id: "c".into(), chat_id: 4, body: "hi".into() });
    }
}
