//! The UI's state and the one reducer that changes it. Pure: no network, no DOM, so it is tested
//! natively. Every event is applied idempotently: seeing it twice changes nothing.
use std::{
    collections::{BTreeMap, HashMap},
    rc::Rc,
};

use parley_common::{Chat, Event, InstanceInfo, Message, MessagePage, User};
use yew::Reducible;

use crate::backend::{Connection, Incoming};

/// How long a `typing` notice shows without a new one.
pub const TYPING_SHOWS_MS: f64 = 4000.0;

#[derive(Debug, Clone, PartialEq)]
pub enum Screen {
    /// Asking the server who we are.
    Loading,
    /// Asking which server to use (the desktop app, before its first login or to change it).
    Server,
    Signup,
    /// Waiting for the mailed code of this signup.
    Verify {
        signup_id: String,
        email: String,
    },
    Login,
    /// Asking for a password reset code.
    ForgotPassword,
    /// Entering the mailed reset code and a new password.
    ResetPassword {
        reset_id: String,
        email: String,
    },
    Chats,
    /// Profile, password and sessions.
    Settings,
}

/// A message written here and not yet acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub client_id: String,
    pub chat_id: i64,
    pub body: String,
    /// Why the server refused it, if it did.
    pub failed: Option<String>,
}

/// What is known of one chat's history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// By `seq`.
    pub messages: BTreeMap<i64, Message>,
    /// The newest page has been fetched.
    pub loaded: bool,
    /// Older messages exist on the server.
    pub more: bool,
    pub loading_older: bool,
}

impl History {
    pub fn oldest_seq(&self) -> Option<i64> {
        self.messages.keys().next().copied()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub screen: Screen,
    /// The server's address, when the app chooses it (the desktop app).
    pub server: Option<String>,
    pub instance: Option<InstanceInfo>,
    pub me: Option<User>,
    /// Most recent activity first.
    pub chats: Vec<Chat>,
    pub chats_loaded: bool,
    pub selected: Option<i64>,
    pub histories: HashMap<i64, History>,
    pub pending: Vec<Pending>,
    pub connection: Connection,
    /// Per chat: who is typing, until when (ms since the epoch).
    pub typing: HashMap<i64, (i64, f64)>,
    /// A message for the person, e.g. why they were logged out.
    pub notice: Option<String>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            screen: Screen::Loading,
            server: None,
            instance: None,
            me: None,
            chats: Vec::new(),
            chats_loaded: false,
            selected: None,
            histories: HashMap::new(),
            pending: Vec::new(),
            connection: Connection::Off,
            typing: HashMap::new(),
            notice: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The server in use is at this address.
    Server(String),
    Instance(InstanceInfo),
    Show(Screen),
    LoggedIn(User),
    /// Our own account changed (display name).
    ProfileUpdated(User),
    LoggedOut {
        notice: Option<String>,
    },
    ChatsLoaded(Vec<Chat>),
    /// A chat we started (or found) by email: added if new, and opened.
    ChatOpened(Chat),
    Select(Option<i64>),
    LoadingOlder(i64),
    HistoryLoaded {
        chat_id: i64,
        page: MessagePage,
    },
    /// We sent `read` up to `seq`.
    MarkedRead {
        chat_id: i64,
        up_to: i64,
    },
    Queued(Pending),
    /// We blocked (or unblocked) this user.
    BlockChanged {
        user_id: i64,
        blocked: bool,
    },
    Incoming(Incoming),
    /// Clears typing notices older than `now`.
    ExpireTyping {
        now: f64,
    },
}

impl Reducible for State {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut state = (*self).clone();
        state.apply(action);
        Rc::new(state)
    }
}

impl State {
    pub fn chat(&self, chat_id: i64) -> Option<&Chat> {
        self.chats.iter().find(|c| c.id == chat_id)
    }

    pub fn history(&self, chat_id: i64) -> Option<&History> {
        self.histories.get(&chat_id)
    }

    pub fn pending_in(&self, chat_id: i64) -> impl Iterator<Item = &Pending> {
        self.pending.iter().filter(move |p| p.chat_id == chat_id)
    }

    /// The newest message of the friend in the chat that we have not marked read.
    pub fn unread_up_to(&self, chat_id: i64) -> Option<i64> {
        let chat = self.chat(chat_id)?;
        let me = self.me.as_ref()?.id;
        let newest = self.history(chat_id)?.messages.values().rev().find(|m| m.sender_id != me)?.seq;
        (newest > chat.read_up_to).then_some(newest)
    }

    pub fn apply(&mut self, action: Action) {
        match action {
            Action::Server(url) => self.server = Some(url),
            Action::Instance(instance) => self.instance = Some(instance),
            Action::Show(screen) => {
                self.screen = screen;
                self.notice = None;
            }
            Action::LoggedIn(user) => {
                self.me = Some(user);
                self.screen = Screen::Chats;
                self.notice = None;
            }
            Action::ProfileUpdated(user) => self.me = Some(user),
            Action::LoggedOut { notice } => {
                let (server, instance) = (self.server.take(), self.instance.take());
                *self = State { server, instance, screen: Screen::Login, notice, ..State::default() };
            }
            Action::ChatsLoaded(chats) => {
                for chat in chats {
                    self.upsert_chat(chat, false);
                }
                self.chats_loaded = true;
            }
            Action::ChatOpened(chat) => {
                let id = chat.id;
                self.upsert_chat(chat, true);
                self.selected = Some(id);
            }
            Action::Select(chat_id) => self.selected = chat_id,
            Action::LoadingOlder(chat_id) => self.histories.entry(chat_id).or_default().loading_older = true,
            Action::HistoryLoaded { chat_id, page } => {
                let history = self.histories.entry(chat_id).or_default();
                let older_page = history.loaded;
                for message in page.messages {
                    history.messages.insert(message.seq, message);
                }
                // `more` speaks of what lies before this page; the first page decides it, older
                // pages narrow it.
                if !older_page || !page.more {
                    history.more = page.more;
                }
                history.loaded = true;
                history.loading_older = false;
                let pending = &mut self.pending;
                pending.retain(|p| !history.messages.values().any(|m| m.client_id == p.client_id));
            }
            Action::MarkedRead { chat_id, up_to } => self.move_read_marker(chat_id, up_to),
            Action::Queued(pending) => {
                if !self.pending.iter().any(|p| p.client_id == pending.client_id) {
                    self.pending.push(pending);
                }
            }
            Action::BlockChanged { user_id, blocked } => {
                for chat in self.chats.iter_mut().filter(|c| c.friend.id == user_id) {
                    chat.blocked = blocked;
                }
            }
            Action::Incoming(incoming) => self.apply_incoming(incoming),
            Action::ExpireTyping { now } => self.typing.retain(|_, (_, until)| *until > now),
        }
    }

    fn apply_incoming(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::Connection(connection) => self.connection = connection,
            Incoming::Hello(user) => self.me = Some(user),
            Incoming::Event(Event::Message { message, .. }) => self.add_message(message),
            Incoming::Event(Event::ChatCreated { chat, .. }) => self.upsert_chat(chat, false),
            Incoming::Event(Event::Read { chat_id, user_id, up_to, .. }) => {
                if self.me.as_ref().is_some_and(|me| me.id == user_id) {
                    self.move_read_marker(chat_id, up_to);
                } else if let Some(chat) = self.chats.iter_mut().find(|c| c.id == chat_id) {
                    chat.friend_read_up_to = chat.friend_read_up_to.max(up_to);
                }
            }
            Incoming::Ack { message, .. } => self.add_message(message),
            Incoming::SendFailed { client_id, message, .. } => {
                if let Some(pending) = self.pending.iter_mut().find(|p| p.client_id == client_id) {
                    pending.failed = Some(message);
                }
            }
            Incoming::Presence { user_id, online, last_seen } => {
                for chat in self.chats.iter_mut().filter(|c| c.friend.id == user_id) {
                    chat.friend.online = online;
                    // Offline with no last seen: it is not ours to see (any more).
                    if !online {
                        chat.friend.last_seen = last_seen.clone();
                    }
                }
            }
            Incoming::Typing { chat_id, user_id } => {
                self.typing.insert(chat_id, (user_id, now_ms() + TYPING_SHOWS_MS));
            }
            Incoming::Pending { client_id, chat_id, body } => {
                let delivered =
                    self.history(chat_id).is_some_and(|h| h.messages.values().any(|m| m.client_id == client_id))
                        || self
                            .chat(chat_id)
                            .and_then(|c| c.last_message.as_ref())
                            .is_some_and(|m| m.client_id == client_id);
                if !delivered {
                    self.apply(Action::Queued(Pending { client_id, chat_id, body, failed: None }));
                }
            }
            Incoming::ChatsChanged(chats) => {
                // The desktop's cache may be ahead of what is shown (events that landed before the
                // UI listened): a newer last message brings its preview and counts with it.
                let mut reordered = false;
                for fresh in &chats {
                    let Some(shown) = self.chats.iter_mut().find(|c| c.id == fresh.id) else { continue };
                    let newer = match (&shown.last_message, &fresh.last_message) {
                        (Some(shown), Some(fresh)) => fresh.seq > shown.seq,
                        (None, Some(_)) => true,
                        _ => false,
                    };
                    if newer {
                        shown.last_message = fresh.last_message.clone();
                        shown.unread_count = fresh.unread_count;
                        shown.read_up_to = shown.read_up_to.max(fresh.read_up_to);
                        shown.friend_read_up_to = shown.friend_read_up_to.max(fresh.friend_read_up_to);
                        reordered = true;
                    }
                }
                self.apply(Action::ChatsLoaded(chats));
                if reordered {
                    self.chats.sort_by(|a, b| activity(b).cmp(activity(a)));
                }
            }
            Incoming::Resynced(chats) => {
                // The server's word replaces ours whole: last messages, counts, chats gone. Each
                // history is fetched again when shown (the open one at once), and the catch-up
                // that follows brings what came after.
                self.chats.clear();
                self.chats_loaded = false;
                self.histories.clear();
                self.apply(Action::ChatsLoaded(chats));
                if self.selected.is_some_and(|id| self.chat(id).is_none()) {
                    self.selected = None;
                }
            }
            Incoming::SessionEnded => {
                self.apply(Action::LoggedOut { notice: Some("Your session ended. Please log in again.".into()) })
            }
        }
    }

    /// Adds a chat, or refreshes the friend of one we have. `to_top` for a chat just started.
    fn upsert_chat(&mut self, chat: Chat, to_top: bool) {
        match self.chats.iter().position(|c| c.id == chat.id) {
            Some(i) => {
                self.chats[i].friend = chat.friend;
                self.chats[i].blocked = chat.blocked;
                if to_top {
                    let existing = self.chats.remove(i);
                    self.chats.insert(0, existing);
                }
            }
            None if to_top => self.chats.insert(0, chat),
            None => {
                // A list in server order, or a chat someone started with us just now: the newest
                // activity goes first only if it is newer than what we show.
                let newer = self.chats.iter().position(|c| activity(c) < activity(&chat));
                match newer {
                    Some(i) if self.chats_loaded => self.chats.insert(i, chat),
                    _ if self.chats_loaded => self.chats.insert(0, chat),
                    _ => self.chats.push(chat),
                }
            }
        }
    }

    fn add_message(&mut self, message: Message) {
        let me = self.me.as_ref().map(|u| u.id);
        self.pending.retain(|p| p.client_id != message.client_id);
        self.typing.remove(&message.chat_id);
        let history = self.histories.entry(message.chat_id).or_default();
        let is_new = history.messages.insert(message.seq, message.clone()).is_none();
        let Some(i) = self.chats.iter().position(|c| c.id == message.chat_id) else {
            return;
        };
        let chat = &mut self.chats[i];
        let newest = chat.last_message.as_ref().is_none_or(|last| last.seq < message.seq);
        if !newest {
            return;
        }
        if is_new && Some(message.sender_id) != me && message.seq > chat.read_up_to {
            chat.unread_count += 1;
        }
        chat.last_message = Some(message);
        let chat = self.chats.remove(i);
        self.chats.insert(0, chat);
    }

    fn move_read_marker(&mut self, chat_id: i64, up_to: i64) {
        let me = self.me.as_ref().map(|u| u.id);
        let known = self.histories.get(&chat_id);
        let Some(chat) = self.chats.iter_mut().find(|c| c.id == chat_id) else {
            return;
        };
        if up_to <= chat.read_up_to {
            return;
        }
        chat.read_up_to = up_to;
        let last_seq = chat.last_message.as_ref().map_or(0, |m| m.seq);
        chat.unread_count = if up_to >= last_seq {
            0
        } else {
            match known {
                // Every message after the marker is here: count the friend's exactly.
                Some(h) if (up_to + 1..=last_seq).all(|seq| h.messages.contains_key(&seq)) => {
                    h.messages.range(up_to + 1..).filter(|(_, m)| Some(m.sender_id) != me).count() as i64
                }
                _ => chat.unread_count,
            }
        };
    }
}

fn activity(chat: &Chat) -> &str {
    chat.last_message.as_ref().map_or("", |m| m.created_at.as_str())
}

#[cfg(target_arch = "wasm32")]
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

#[cfg(not(target_arch = "wasm32"))]
pub fn now_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_millis() as f64)
}

#[cfg(test)]
mod tests {
    use parley_common::Friend;

    use super::*;

    fn user(id: i64) -> User {
        User { id, email: format!("u{id}@example.org"), display_name: format!("U{id}"), created_at: String::new() }
    }

    fn chat(id: i64, friend: i64) -> Chat {
        let email = format!("u{friend}@example.org");
        let friend = Friend { id: friend, email, display_name: format!("U{friend}"), ..Default::default() };
        Chat { id, friend, ..Default::default() }
    }

    fn message(chat_id: i64, seq: i64, sender_id: i64) -> Message {
        Message {
            id: chat_id * 1000 + seq,
            chat_id,
            seq,
            sender_id,
            client_id: format!("c-{chat_id}-{seq}"),
            body: format!("message {seq}"),
            created_at: format!("2026-11-25T10:00:{seq:02}Z"),
        }
    }

    fn logged_in_with_chats() -> State {
        let mut state = State::default();
        state.apply(Action::LoggedIn(user(1)));
        state.apply(Action::ChatsLoaded(vec![chat(10, 2), chat(20, 3)]));
        state
    }

    fn event(message: Message) -> Action {
        Action::Incoming(Incoming::Event(Event::Message { cursor: "1".into(), message }))
    }

    #[test]
    fn a_message_seen_twice_counts_once() {
        let mut state = logged_in_with_chats();
        state.apply(event(message(20, 1, 3)));
        state.apply(event(message(20, 1, 3)));
        let chat = state.chat(20).unwrap();
        assert_eq!(chat.unread_count, 1);
        assert_eq!(state.history(20).unwrap().messages.len(), 1);
        assert_eq!(state.chats[0].id, 20, "the chat with news goes to the top");
    }

    #[test]
    fn own_messages_are_never_unread_and_the_ack_replaces_the_pending_copy() {
        let mut state = logged_in_with_chats();
        let sent = message(10, 1, 1);
        state.apply(Action::Queued(Pending {
            client_id: sent.client_id.clone(),
            chat_id: 10,
            body: sent.body.clone(),
            failed: None,
        }));
        assert_eq!(state.pending_in(10).count(), 1);
        state.apply(Action::Incoming(Incoming::Ack { client_id: sent.client_id.clone(), message: sent.clone() }));
        assert_eq!(state.pending_in(10).count(), 0);
        assert_eq!(state.chat(10).unwrap().unread_count, 0);
        assert_eq!(state.chat(10).unwrap().last_message, Some(sent));
    }

    #[test]
    fn a_refused_message_stays_with_the_reason() {
        let mut state = logged_in_with_chats();
        state.apply(Action::Queued(Pending { client_id: "x".into(), chat_id: 10, body: "hi".into(), failed: None }));
        state.apply(Action::Incoming(Incoming::SendFailed {
            client_id: "x".into(),
            code: "message_too_large".into(),
            message: "too large".into(),
        }));
        assert_eq!(state.pending[0].failed.as_deref(), Some("too large"));
    }

    #[test]
    fn reading_on_another_device_clears_the_dot() {
        let mut state = logged_in_with_chats();
        for seq in 1..=3 {
            state.apply(event(message(20, seq, 3)));
        }
        assert_eq!(state.chat(20).unwrap().unread_count, 3);
        assert_eq!(state.unread_up_to(20), Some(3));
        state.apply(Action::Incoming(Incoming::Event(Event::Read {
            cursor: "9".into(),
            chat_id: 20,
            user_id: 1,
            up_to: 2,
        })));
        assert_eq!(state.chat(20).unwrap().unread_count, 1);
        state.apply(Action::Incoming(Incoming::Event(Event::Read {
            cursor: "9".into(),
            chat_id: 20,
            user_id: 1,
            up_to: 3,
        })));
        assert_eq!(state.chat(20).unwrap().unread_count, 0);
        assert_eq!(state.unread_up_to(20), None);
        // The friend's marker is kept apart.
        state.apply(Action::Incoming(Incoming::Event(Event::Read {
            cursor: "9".into(),
            chat_id: 20,
            user_id: 3,
            up_to: 1,
        })));
        assert_eq!(state.chat(20).unwrap().friend_read_up_to, 1);
        assert_eq!(state.chat(20).unwrap().read_up_to, 3);
    }

    #[test]
    fn presence_colours_every_chat_with_that_friend() {
        let mut state = logged_in_with_chats();
        state.apply(Action::Incoming(Incoming::Presence { user_id: 3, online: true, last_seen: None }));
        assert!(state.chat(20).unwrap().friend.online);
        assert!(!state.chat(10).unwrap().friend.online);
        state.apply(Action::Incoming(Incoming::Presence {
            user_id: 3,
            online: false,
            last_seen: Some("2026-11-25T10:00:00Z".into()),
        }));
        assert!(!state.chat(20).unwrap().friend.online);
        assert_eq!(state.chat(20).unwrap().friend.last_seen.as_deref(), Some("2026-11-25T10:00:00Z"));
        // Hidden from us now (a block, a privacy setting): no last seen either.
        state.apply(Action::Incoming(Incoming::Presence { user_id: 3, online: false, last_seen: None }));
        assert_eq!(state.chat(20).unwrap().friend.last_seen, None);
    }

    #[test]
    fn blocking_marks_every_chat_with_that_friend_and_a_fresh_list_keeps_it() {
        let mut state = logged_in_with_chats();
        state.apply(Action::BlockChanged { user_id: 3, blocked: true });
        assert!(state.chat(20).unwrap().blocked);
        assert!(!state.chat(10).unwrap().blocked);
        let mut fresh = chat(20, 3);
        fresh.blocked = false;
        state.apply(Action::ChatsLoaded(vec![fresh]));
        assert!(!state.chat(20).unwrap().blocked, "the server's word wins");
    }

    #[test]
    fn history_pages_merge_with_live_messages() {
        let mut state = logged_in_with_chats();
        state.apply(event(message(10, 5, 2)));
        let page = MessagePage {
            messages: vec![message(10, 5, 2), message(10, 4, 1), message(10, 3, 2)],
            more: true,
            cursor: "7".into(),
        };
        state.apply(Action::HistoryLoaded { chat_id: 10, page });
        let history = state.history(10).unwrap();
        assert_eq!(history.messages.keys().copied().collect::<Vec<_>>(), vec![3, 4, 5]);
        assert!(history.more);
        assert_eq!(history.oldest_seq(), Some(3));
        let older =
            MessagePage { messages: vec![message(10, 2, 2), message(10, 1, 1)], more: false, cursor: "7".into() };
        state.apply(Action::HistoryLoaded { chat_id: 10, page: older });
        assert!(!state.history(10).unwrap().more);
        assert_eq!(state.history(10).unwrap().messages.len(), 5);
    }

    #[test]
    fn a_chat_someone_starts_with_us_appears_on_top_once() {
        let mut state = logged_in_with_chats();
        let created = Action::Incoming(Incoming::Event(Event::ChatCreated { cursor: "3".into(), chat: chat(30, 4) }));
        state.apply(created.clone());
        state.apply(created);
        assert_eq!(state.chats.iter().map(|c| c.id).collect::<Vec<_>>(), vec![30, 10, 20]);
    }

    #[test]
    fn typing_shows_until_it_expires_or_a_message_arrives() {
        let mut state = logged_in_with_chats();
        state.apply(Action::Incoming(Incoming::Typing { chat_id: 20, user_id: 3 }));
        assert!(state.typing.contains_key(&20));
        state.apply(event(message(20, 1, 3)));
        assert!(!state.typing.contains_key(&20));
        state.apply(Action::Incoming(Incoming::Typing { chat_id: 20, user_id: 3 }));
        state.apply(Action::ExpireTyping { now: now_ms() + TYPING_SHOWS_MS + 1.0 });
        assert!(state.typing.is_empty());
    }

    #[test]
    fn a_fresh_list_after_a_reconnection_updates_presence_and_keeps_the_order() {
        let mut state = logged_in_with_chats();
        state.apply(Action::Incoming(Incoming::Presence { user_id: 3, online: true, last_seen: None }));
        let mut fresh = chat(20, 3);
        fresh.friend.online = false;
        fresh.friend.last_seen = Some("2026-11-25T11:00:00Z".into());
        state.apply(Action::ChatsLoaded(vec![chat(10, 2), fresh]));
        assert!(!state.chat(20).unwrap().friend.online, "went offline while we were away");
        assert_eq!(state.chats.iter().map(|c| c.id).collect::<Vec<_>>(), vec![10, 20]);
    }

    fn pending(client_id: &str, chat_id: i64) -> Action {
        Action::Incoming(Incoming::Pending { client_id: client_id.into(), chat_id, body: "from the outbox".into() })
    }

    #[test]
    fn an_outbox_message_announced_twice_is_pending_once() {
        let mut state = logged_in_with_chats();
        state.apply(Action::Queued(Pending { client_id: "a".into(), chat_id: 10, body: "hi".into(), failed: None }));
        state.apply(pending("a", 10));
        state.apply(pending("b", 10));
        state.apply(pending("b", 10));
        assert_eq!(state.pending_in(10).map(|p| p.client_id.as_str()).collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(state.pending[0].body, "hi", "what was queued here stays as it was");
    }

    #[test]
    fn an_outbox_message_already_delivered_is_not_pending_again() {
        let mut state = logged_in_with_chats();
        let sent = message(10, 1, 1);
        state.apply(Action::Incoming(Incoming::Ack { client_id: sent.client_id.clone(), message: sent.clone() }));
        state.apply(pending(&sent.client_id, 10));
        assert_eq!(state.pending_in(10).count(), 0);
    }

    #[test]
    fn an_outbox_message_leaves_pending_when_acknowledged() {
        let mut state = logged_in_with_chats();
        let sent = message(10, 1, 1);
        state.apply(pending(&sent.client_id, 10));
        assert_eq!(state.pending_in(10).count(), 1);
        state.apply(Action::Incoming(Incoming::Ack { client_id: sent.client_id.clone(), message: sent.clone() }));
        assert_eq!(state.pending_in(10).count(), 0);
        assert_eq!(state.history(10).unwrap().messages.len(), 1);
        assert_eq!(state.chat(10).unwrap().last_message, Some(sent));
    }

    #[test]
    fn changed_chats_refresh_the_ones_shown_and_add_new_ones() {
        let mut state = logged_in_with_chats();
        let mut online = chat(20, 3);
        online.friend.online = true;
        state.apply(Action::Incoming(Incoming::ChatsChanged(vec![online.clone(), chat(30, 4)])));
        state.apply(Action::Incoming(Incoming::ChatsChanged(vec![online, chat(30, 4)])));
        assert!(state.chat(20).unwrap().friend.online);
        assert_eq!(state.chats.iter().map(|c| c.id).collect::<Vec<_>>(), vec![30, 10, 20]);
    }

    #[test]
    fn changed_chats_bring_a_newer_last_message_and_its_counts() {
        let mut state = logged_in_with_chats();
        let mut ahead = chat(20, 3);
        let mut newest = message(20, 5, 3);
        newest.created_at = "2099-01-01T00:00:00Z".into();
        ahead.last_message = Some(newest.clone());
        ahead.unread_count = 2;
        state.apply(Action::Incoming(Incoming::ChatsChanged(vec![ahead.clone()])));
        let shown = state.chat(20).unwrap();
        assert_eq!(shown.last_message, Some(newest));
        assert_eq!(shown.unread_count, 2);
        assert_eq!(state.chats[0].id, 20, "the newest activity first");

        // An older view of the chat changes nothing.
        let mut behind = chat(20, 3);
        behind.unread_count = 0;
        state.apply(Action::Incoming(Incoming::ChatsChanged(vec![behind])));
        assert_eq!(state.chat(20).unwrap().unread_count, 2);
    }

    #[test]
    fn a_resync_replaces_the_chats_and_drops_the_histories() {
        let mut state = logged_in_with_chats();
        state.apply(Action::Select(Some(20)));
        state.apply(event(message(10, 1, 2)));
        // A message the server no longer has (its database restored from an older backup).
        state.apply(event(message(20, 1, 3)));
        assert!(state.history(20).is_some());
        let mut restored = chat(20, 3);
        restored.unread_count = 0;
        state.apply(Action::Incoming(Incoming::Resynced(vec![restored, chat(30, 4)])));
        assert_eq!(state.chats.iter().map(|c| c.id).collect::<Vec<_>>(), vec![20, 30], "in the server's order");
        let shown = state.chat(20).unwrap();
        assert_eq!((shown.last_message.as_ref(), shown.unread_count), (None, 0));
        assert!(state.histories.is_empty(), "every history is fetched again");
        assert_eq!(state.selected, Some(20), "the open chat stays open");
        // The catch-up that follows adds to the new list as live events do.
        state.apply(event(message(30, 1, 4)));
        assert_eq!(state.chats[0].id, 30);

        state.apply(Action::Select(Some(10)));
        state.apply(Action::Incoming(Incoming::Resynced(vec![chat(30, 4)])));
        assert_eq!(state.selected, None, "a chat that is gone is closed");
    }

    #[test]
    fn logging_out_keeps_the_server() {
        let mut state = logged_in_with_chats();
        state.apply(Action::Server("https://chat.example.org".into()));
        state.apply(Action::LoggedOut { notice: None });
        assert_eq!(state.server.as_deref(), Some("https://chat.example.org"));
        assert_eq!(state.screen, Screen::Login);
    }

    #[test]
    fn a_session_ended_elsewhere_logs_out_with_a_notice() {
        let mut state = logged_in_with_chats();
        state.apply(Action::Incoming(Incoming::SessionEnded));
        assert_eq!(state.screen, Screen::Login);
        assert!(state.me.is_none() && state.chats.is_empty());
        assert!(state.notice.is_some());
    }
}
