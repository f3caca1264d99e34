//! The sync planner: pure. It turns what arrives from the server (and what the person writes)
//! into operations — cache writes, frames to transmit, events for the UI — and keeps the one
//! piece of state the protocol needs: whether the cache has caught up with the server.
//!
//! The rules that make the cache converge to exactly the server's state:
//! - every event is applied idempotently (by message id, chat id, maximum of read markers);
//! - the cursor moves only with the events it covers, in the same cache transaction, so a client
//!   killed at any point resumes from a cursor whose events are all in the cache;
//! - live events that arrive while catching up are applied but do not move the cursor (the
//!   replay covers them);
//! - the outbox goes out only once caught up, in the order written, under its own `client_id`s;
//!   an outbox message the replay shows committed (its ack was lost) is dropped, not resent.
use parley_common::{desktop::DesktopEvent, Chat, ClientFrame, Event, Message, ServerFrame};

/// A message written on this device and not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub client_id: String,
    pub chat_id: i64,
    pub body: String,
}

/// A write to the local cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOp {
    PutChat(Chat),
    PutMessage(Message),
    /// The server confirms we read the chat up to `up_to`.
    OwnRead {
        chat_id: i64,
        up_to: i64,
    },
    FriendRead {
        chat_id: i64,
        up_to: i64,
    },
    Presence {
        user_id: i64,
        online: bool,
        last_seen: Option<String>,
    },
    SetCursor(String),
    DropOutbox(String),
    /// Every cached message goes, and every chat's read markers go back to nothing: the stream
    /// is replayed from its beginning, and what the cache holds may no longer be the server's (a
    /// database restored from a backup numbers messages anew, a replayed message never replaces
    /// a cached one, and markers only ever move forward). The chats stay, and with them the
    /// outbox: messages written here and not yet sent are still to be sent (once the replay is
    /// done, the engine drops the chats the server no longer lists).
    ForgetHistory,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Cache(CacheOp),
    Transmit(ClientFrame),
    Emit(DesktopEvent),
    /// Caught up: the executor reads the outbox and unconfirmed read markers from the cache and
    /// hands them to [`Planner::caught_up`].
    CaughtUp,
    /// The server asked us to slow down: offer the outbox again later.
    RetryOutboxLater,
    /// A replay from the beginning ended: the executor reads the chats from the cache and emits
    /// them as [`DesktopEvent::Resynced`].
    Resynced,
}

/// What the cache holds that the end of a catch-up needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaughtUpView {
    /// The outbox, in the order written.
    pub outbox: Vec<OutboxItem>,
    /// Outbox messages the server already committed (found in the cache by `client_id`).
    pub committed: Vec<(String, Message)>,
    /// `(chat_id, up_to)` read markers set here that the server has not confirmed.
    pub unconfirmed_reads: Vec<(i64, i64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connected, waiting for `hello`.
    Greeting,
    /// Replaying events after the cache's cursor.
    CatchingUp,
    /// Caught up: live events move the cursor; writes go out at once.
    Live,
}

/// The planner of one connection: a new one per connection, started from the cache's cursor.
#[derive(Debug)]
pub struct Planner {
    me: Option<i64>,
    cursor: Option<String>,
    phase: Phase,
    /// Replaying from the beginning after the server refused the cursor.
    rebuilding: bool,
}

impl Planner {
    pub fn new(me: Option<i64>, cursor: Option<String>) -> Self {
        Planner { me, cursor, phase: Phase::Greeting, rebuilding: false }
    }

    pub fn is_live(&self) -> bool {
        self.phase == Phase::Live
    }

    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    pub fn on_frame(&mut self, frame: ServerFrame) -> Vec<Op> {
        let mut ops = Vec::new();
        match frame {
            ServerFrame::Hello { user, cursor } => {
                self.me = Some(user.id);
                ops.push(Op::Emit(DesktopEvent::Hello { user }));
                if self.cursor.as_deref() == Some(cursor.as_str()) {
                    self.phase = Phase::Live;
                    ops.push(Op::CaughtUp);
                } else {
                    self.phase = Phase::CatchingUp;
                    ops.push(Op::Transmit(ClientFrame::Sync { since: self.cursor.clone() }));
                }
            }
            ServerFrame::SyncBatch { events, next, more } => {
                for event in events {
                    self.apply_event(event, &mut ops);
                }
                self.cursor = Some(next.clone());
                ops.push(Op::Cache(CacheOp::SetCursor(next.clone())));
                if more {
                    ops.push(Op::Transmit(ClientFrame::Sync { since: Some(next) }));
                } else {
                    self.phase = Phase::Live;
                    if std::mem::take(&mut self.rebuilding) {
                        ops.push(Op::Resynced);
                    }
                    ops.push(Op::CaughtUp);
                }
            }
            ServerFrame::Event(event) => {
                let cursor = event.cursor().to_string();
                self.apply_event(event, &mut ops);
                self.advance(cursor, &mut ops);
            }
            ServerFrame::Ack { client_id, message, cursor } => {
                ops.push(Op::Cache(CacheOp::PutMessage(message.clone())));
                ops.push(Op::Cache(CacheOp::DropOutbox(client_id.clone())));
                self.advance(cursor, &mut ops);
                ops.push(Op::Emit(DesktopEvent::Ack { client_id, message }));
            }
            ServerFrame::Error { code, message, client_id: Some(client_id) } => {
                if parley_common::ws::RETRYABLE_SEND_ERRORS.contains(&code.as_str()) {
                    ops.push(Op::RetryOutboxLater);
                } else {
                    ops.push(Op::Cache(CacheOp::DropOutbox(client_id.clone())));
                    ops.push(Op::Emit(DesktopEvent::SendFailed { client_id, code, message }));
                }
            }
            ServerFrame::Error { code, message, client_id: None }
                if code == parley_common::ws::INVALID_CURSOR && self.phase == Phase::CatchingUp =>
            {
                // Waiting for a batch that will never come would keep the outbox in forever: the
                // stream is replayed from its beginning instead, into a cache without messages.
                tracing::warn!(cursor = ?self.cursor, %message, "the server refused the cache's cursor; replaying");
                self.cursor = None;
                self.rebuilding = true;
                ops.push(Op::Cache(CacheOp::ForgetHistory));
                ops.push(Op::Transmit(ClientFrame::Sync { since: None }));
            }
            ServerFrame::Error { code, message, client_id: None } => {
                tracing::warn!(%code, %message, "the server refused a frame");
            }
            ServerFrame::Presence { user_id, online, last_seen } => {
                ops.push(Op::Cache(CacheOp::Presence { user_id, online, last_seen: last_seen.clone() }));
                ops.push(Op::Emit(DesktopEvent::Presence { user_id, online, last_seen }));
            }
            ServerFrame::Typing { chat_id, user_id } => {
                ops.push(Op::Emit(DesktopEvent::Typing { chat_id, user_id }));
            }
            ServerFrame::Pong => {}
        }
        ops
    }

    /// The end of a catch-up, with what the cache holds after it.
    pub fn caught_up(&self, view: CaughtUpView) -> Vec<Op> {
        let mut ops = Vec::new();
        for (client_id, message) in view.committed {
            ops.push(Op::Cache(CacheOp::DropOutbox(client_id.clone())));
            ops.push(Op::Emit(DesktopEvent::Ack { client_id, message }));
        }
        let committed: Vec<&str> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Cache(CacheOp::DropOutbox(id)) => Some(id.as_str()),
                _ => None,
            })
            .collect();
        let mut sends: Vec<Op> = view
            .outbox
            .into_iter()
            .filter(|item| !committed.contains(&item.client_id.as_str()))
            .map(|item| Op::Transmit(send_frame(item)))
            .collect();
        ops.append(&mut sends);
        for (chat_id, up_to) in view.unconfirmed_reads {
            ops.push(Op::Transmit(ClientFrame::Read { chat_id, up_to }));
        }
        ops
    }

    /// A message was put in the outbox: out now if live, else at the end of the catch-up.
    pub fn on_written(&self, item: OutboxItem) -> Vec<Op> {
        if self.is_live() {
            vec![Op::Transmit(send_frame(item))]
        } else {
            Vec::new()
        }
    }

    /// The person read a chat up to `up_to` (already in the cache): tell the server if live.
    pub fn on_read(&self, chat_id: i64, up_to: i64) -> Vec<Op> {
        if self.is_live() {
            vec![Op::Transmit(ClientFrame::Read { chat_id, up_to })]
        } else {
            Vec::new()
        }
    }

    fn advance(&mut self, cursor: String, ops: &mut Vec<Op>) {
        if self.phase == Phase::Live {
            self.cursor = Some(cursor.clone());
            ops.push(Op::Cache(CacheOp::SetCursor(cursor)));
        }
    }

    fn apply_event(&self, event: Event, ops: &mut Vec<Op>) {
        match &event {
            Event::Message { message, .. } => {
                ops.push(Op::Cache(CacheOp::PutMessage(message.clone())));
                if Some(message.sender_id) == self.me {
                    // Ours, committed: whether or not its ack reached us, it leaves the outbox.
                    ops.push(Op::Cache(CacheOp::DropOutbox(message.client_id.clone())));
                }
            }
            Event::ChatCreated { chat, .. } => ops.push(Op::Cache(CacheOp::PutChat(chat.clone()))),
            Event::Read { chat_id, user_id, up_to, .. } => {
                let (chat_id, up_to) = (*chat_id, *up_to);
                if Some(*user_id) == self.me {
                    ops.push(Op::Cache(CacheOp::OwnRead { chat_id, up_to }));
                } else {
                    ops.push(Op::Cache(CacheOp::FriendRead { chat_id, up_to }));
                }
            }
        }
        ops.push(Op::Emit(DesktopEvent::Event { event }));
    }
}

fn send_frame(item: OutboxItem) -> ClientFrame {
    ClientFrame::Send { chat_id: item.chat_id, client_id: item.client_id, body: item.body }
}

#[cfg(test)]
mod tests {
    use parley_common::{Friend, User};

    use super::*;

    const ME: i64 = 1;
    const FRIEND: i64 = 2;

    fn user() -> User {
        User { id: ME, email: "me@example.org".into(), display_name: "Me".into(), created_at: "t".into() }
    }

    fn message(seq: i64, sender_id: i64, client_id: &str) -> Message {
        Message {
            id: 100 + seq,
            chat_id: 7,
            seq,
            sender_id,
            client_id: client_id.into(),
            body: format!("m{seq}"),
            created_at: "t".into(),
        }
    }

    fn chat() -> Chat {
        let friend =
            Friend { id: FRIEND, email: "f@example.org".into(), display_name: "F".into(), ..Default::default() };
        Chat { id: 7, friend, ..Default::default() }
    }

    fn item(client_id: &str) -> OutboxItem {
        OutboxItem { client_id: client_id.into(), chat_id: 7, body: client_id.into() }
    }

    fn transmitted(ops: &[Op]) -> Vec<ClientFrame> {
        ops.iter()
            .filter_map(|op| match op {
                Op::Transmit(frame) => Some(frame.clone()),
                _ => None,
            })
            .collect()
    }

    fn cursors(ops: &[Op]) -> Vec<String> {
        ops.iter()
            .filter_map(|op| match op {
                Op::Cache(CacheOp::SetCursor(c)) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_fresh_cache_replays_from_the_beginning_batch_by_batch() {
        let mut planner = Planner::new(None, None);
        let ops = planner.on_frame(ServerFrame::Hello { user: user(), cursor: "3".into() });
        assert_eq!(transmitted(&ops), vec![ClientFrame::Sync { since: None }]);
        assert!(!planner.is_live());

        let batch = ServerFrame::SyncBatch {
            events: vec![
                Event::ChatCreated { cursor: "1".into(), chat: chat() },
                Event::Message { cursor: "2".into(), message: message(1, FRIEND, "a") },
            ],
            next: "2".into(),
            more: true,
        };
        let ops = planner.on_frame(batch);
        assert_eq!(ops[0], Op::Cache(CacheOp::PutChat(chat())));
        assert_eq!(cursors(&ops), vec!["2".to_string()]);
        assert_eq!(transmitted(&ops), vec![ClientFrame::Sync { since: Some("2".into()) }]);

        let last = ServerFrame::SyncBatch {
            events: vec![Event::Read { cursor: "3".into(), chat_id: 7, user_id: ME, up_to: 1 }],
            next: "3".into(),
            more: false,
        };
        let ops = planner.on_frame(last);
        assert!(ops.contains(&Op::Cache(CacheOp::OwnRead { chat_id: 7, up_to: 1 })));
        assert_eq!(ops.last(), Some(&Op::CaughtUp));
        assert!(planner.is_live());
    }

    #[test]
    fn a_cursor_the_server_refuses_is_dropped_and_the_stream_replayed() {
        let mut planner = Planner::new(Some(ME), Some("not-a-cursor".into()));
        let ops = planner.on_frame(ServerFrame::Hello { user: user(), cursor: "2".into() });
        assert_eq!(transmitted(&ops), vec![ClientFrame::Sync { since: Some("not-a-cursor".into()) }]);

        let refused = ServerFrame::Error {
            code: "invalid_cursor".into(),
            message: "the cursor is not one this server gave out".into(),
            client_id: None,
        };
        let ops = planner.on_frame(refused.clone());
        assert_eq!(transmitted(&ops), vec![ClientFrame::Sync { since: None }]);
        assert_eq!(ops.first(), Some(&Op::Cache(CacheOp::ForgetHistory)), "before the replay");
        assert_eq!(planner.cursor(), None);
        assert!(!planner.is_live());

        let ops = planner.on_frame(ServerFrame::SyncBatch {
            events: vec![Event::ChatCreated { cursor: "1".into(), chat: chat() }],
            next: "2".into(),
            more: false,
        });
        assert_eq!(cursors(&ops), vec!["2".to_string()]);
        assert_eq!(ops[ops.len() - 2..], [Op::Resynced, Op::CaughtUp], "the UI is told once the cache is rebuilt");
        assert!(planner.is_live());

        // Live, the same code (a refused `sync` of some other origin) changes nothing.
        let ops = planner.on_frame(refused);
        assert!(ops.is_empty());
        assert_eq!(planner.cursor(), Some("2"));
    }

    #[test]
    fn a_current_cache_goes_live_at_once() {
        let mut planner = Planner::new(Some(ME), Some("9".into()));
        let ops = planner.on_frame(ServerFrame::Hello { user: user(), cursor: "9".into() });
        assert!(transmitted(&ops).is_empty());
        assert_eq!(ops.last(), Some(&Op::CaughtUp));
        assert!(planner.is_live());
    }

    #[test]
    fn live_events_during_catch_up_do_not_move_the_cursor() {
        let mut planner = Planner::new(Some(ME), Some("1".into()));
        planner.on_frame(ServerFrame::Hello { user: user(), cursor: "5".into() });
        let ops = planner
            .on_frame(ServerFrame::Event(Event::Message { cursor: "6".into(), message: message(5, FRIEND, "x") }));
        assert!(ops.contains(&Op::Cache(CacheOp::PutMessage(message(5, FRIEND, "x")))));
        assert!(cursors(&ops).is_empty());
        assert_eq!(planner.cursor(), Some("1"));

        planner.on_frame(ServerFrame::SyncBatch { events: vec![], next: "5".into(), more: false });
        let ops = planner
            .on_frame(ServerFrame::Event(Event::Message { cursor: "7".into(), message: message(6, FRIEND, "y") }));
        assert_eq!(cursors(&ops), vec!["7".to_string()]);
    }

    #[test]
    fn the_outbox_waits_for_the_catch_up_and_keeps_its_order() {
        let mut planner = Planner::new(Some(ME), Some("1".into()));
        planner.on_frame(ServerFrame::Hello { user: user(), cursor: "2".into() });
        assert!(planner.on_written(item("late")).is_empty(), "nothing goes out while catching up");

        let ops = planner.caught_up(CaughtUpView {
            outbox: vec![item("a"), item("b"), item("late")],
            committed: vec![],
            unconfirmed_reads: vec![(7, 4)],
        });
        let client_ids: Vec<String> = transmitted(&ops)
            .into_iter()
            .filter_map(|f| match f {
                ClientFrame::Send { client_id, .. } => Some(client_id),
                _ => None,
            })
            .collect();
        assert_eq!(client_ids, ["a", "b", "late"]);
        assert_eq!(transmitted(&ops).last(), Some(&ClientFrame::Read { chat_id: 7, up_to: 4 }));
    }

    #[test]
    fn an_outbox_message_whose_ack_was_lost_is_not_sent_again() {
        let mut planner = Planner::new(Some(ME), Some("1".into()));
        planner.on_frame(ServerFrame::Hello { user: user(), cursor: "2".into() });
        let replayed = ServerFrame::SyncBatch {
            events: vec![Event::Message { cursor: "2".into(), message: message(3, ME, "a") }],
            next: "2".into(),
            more: false,
        };
        let ops = planner.on_frame(replayed);
        assert!(ops.contains(&Op::Cache(CacheOp::DropOutbox("a".into()))));

        let ops = planner.caught_up(CaughtUpView {
            outbox: vec![item("a"), item("b")],
            committed: vec![("a".into(), message(3, ME, "a"))],
            unconfirmed_reads: vec![],
        });
        assert_eq!(transmitted(&ops), vec![send_frame(item("b"))]);
        assert!(ops.contains(&Op::Emit(DesktopEvent::Ack { client_id: "a".into(), message: message(3, ME, "a") })));
    }

    #[test]
    fn refusals_drop_the_message_unless_worth_retrying() {
        let mut planner = Planner::new(Some(ME), Some("1".into()));
        planner.on_frame(ServerFrame::Hello { user: user(), cursor: "1".into() });
        let ops = planner.on_frame(ServerFrame::Error {
            code: "message_too_long".into(),
            message: "too long".into(),
            client_id: Some("a".into()),
        });
        assert_eq!(ops[0], Op::Cache(CacheOp::DropOutbox("a".into())));
        assert!(matches!(&ops[1], Op::Emit(DesktopEvent::SendFailed { client_id, .. }) if client_id == "a"));

        let ops = planner.on_frame(ServerFrame::Error {
            code: "rate_limited".into(),
            message: "slow down".into(),
            client_id: Some("b".into()),
        });
        assert_eq!(ops, vec![Op::RetryOutboxLater]);
    }

    #[test]
    fn read_markers_are_ours_or_the_friends() {
        let mut planner = Planner::new(Some(ME), Some("1".into()));
        planner.on_frame(ServerFrame::Hello { user: user(), cursor: "1".into() });
        let ops = planner.on_frame(ServerFrame::Event(Event::Read {
            cursor: "2".into(),
            chat_id: 7,
            user_id: FRIEND,
            up_to: 3,
        }));
        assert!(ops.contains(&Op::Cache(CacheOp::FriendRead { chat_id: 7, up_to: 3 })));
        assert_eq!(planner.on_read(7, 5), vec![Op::Transmit(ClientFrame::Read { chat_id: 7, up_to: 5 })]);
    }
}
