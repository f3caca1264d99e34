//! Chat flows as plain functions over the app state, shared by the REST routes and the WebSocket:
//! starting chats, listing them, history, sending, read markers, sync, presence.
use std::sync::Arc;

use parley_common::{Chat, ChatList, Event, Friend, Message, MessagePage, ServerFrame, SyncBatch};
use tokio::sync::OwnedSemaphorePermit;

use crate::{
    clock::{now_millis, rfc3339},
    domain::Email,
    error::{ApiError, ApiResult},
    ratelimit::{take_all, Bucket},
    relay::{ConnId, Outbound},
    sequencer::{Delivery, Positioned},
    state::AppState,
    store::{ChatSummary, EventKind, EventPos, EventRecord, MessageRecord, NewMessage, ReadOutcome, SendOutcome},
};

/// Runs a write and what publishes its positions on a task of their own: a request's future is
/// dropped when its client goes away, and a position committed but never published would hold
/// every later one on this node until the sequencer gives up on it.
pub async fn detached<T, Write>(state: &AppState, write: impl FnOnce(AppState) -> Write) -> ApiResult<T>
where
    T: Send + 'static,
    Write: std::future::Future<Output = ApiResult<T>> + Send + 'static,
{
    tokio::spawn(write(state.clone()))
        .await
        .map_err(|err| ApiError::Internal(format!("a write's task failed: {err}")))?
}

/// Publishes one position with its events, `(user, event, origin)`: every position a write took
/// must be published, even with none.
pub fn publish_at(state: &AppState, pos: i64, deliveries: Vec<(i64, Event, Option<ConnId>)>) {
    let deliveries = deliveries
        .into_iter()
        .map(|(user_id, event, origin)| Delivery { user_id, event: Arc::new(event), origin })
        .collect();
    state.relay.publish(vec![Positioned { pos, deliveries }]);
}

/// Largest page of history or sync events one request returns.
pub const MAX_PAGE: i64 = 100;

pub fn message_view(m: &MessageRecord) -> Message {
    Message {
        id: m.id,
        chat_id: m.chat_id,
        seq: m.seq,
        sender_id: m.sender_id,
        client_id: m.client_id.clone(),
        body: m.body.clone(),
        created_at: rfc3339(m.created_at),
    }
}

/// A chat as the member sees it; `friend_online` from the relay (see [`chat_views`]). A friend
/// whose presence the member may not see is offline with no last seen, whatever the truth.
pub fn chat_view(c: ChatSummary, friend_online: bool) -> Chat {
    let visible = c.friend_presence_visible;
    Chat {
        id: c.chat_id,
        friend: Friend {
            id: c.friend_id,
            // A deleted account's row keeps a placeholder, not an address: nothing to show.
            email: if c.friend_deleted { String::new() } else { c.friend_email },
            display_name: c.friend_display_name,
            online: visible && friend_online,
            last_seen: c.friend_last_seen_at.filter(|_| visible).map(rfc3339),
            deleted: c.friend_deleted,
        },
        last_message: c.last_message.as_ref().map(message_view),
        unread_count: c.unread_count,
        read_up_to: c.read_up_to,
        friend_read_up_to: c.friend_read_up_to,
        blocked: c.blocked,
    }
}

/// Chats with their friends' presence, asked of the relay in one go. Every rendering of a chat
/// (the list, `chat_created` live and in `sync`) goes through here, so presence privacy is decided
/// in one place, per viewer, from the database: it holds on every node of a cluster.
pub async fn chat_views(state: &AppState, chats: Vec<ChatSummary>) -> Vec<Chat> {
    let friends: Vec<i64> = chats.iter().filter(|c| c.friend_presence_visible).map(|c| c.friend_id).collect();
    let online = state.relay.online(&friends).await;
    chats
        .into_iter()
        .map(|c| {
            let on = online.contains(&c.friend_id);
            chat_view(c, on)
        })
        .collect()
}

async fn one_chat_view(state: &AppState, chat: ChatSummary) -> Chat {
    chat_views(state, vec![chat]).await.pop().expect("one in, one out")
}

/// The `chat_created` event of the chat at `pos`, as `member` sees it now; `None` if they are
/// not in it (any more).
pub async fn chat_created_event(state: &AppState, member: i64, chat_id: i64, pos: i64) -> ApiResult<Option<Event>> {
    let Some(chat) = state.store.chat_for_user(chat_id, member).await? else { return Ok(None) };
    Ok(Some(Event::ChatCreated { cursor: state.cursors.string(pos), chat: one_chat_view(state, chat).await }))
}

/// How this server writes and reads cursors: positions in the user's event stream, as decimal
/// strings, marked with the history epoch once it is not 0 (`"<epoch>.<position>"`). Clients
/// treat them as opaque. The epoch moves on when the database is restored from a backup
/// (`parley-server admin after-restore`), and cursors of another epoch are refused: resuming from
/// one would skip the positions handed out again since the restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursors {
    epoch: i64,
}

impl Cursors {
    pub fn new(epoch: i64) -> Self {
        Cursors { epoch }
    }

    pub fn string(self, pos: i64) -> String {
        if self.epoch == 0 {
            pos.to_string()
        } else {
            format!("{}.{pos}", self.epoch)
        }
    }

    /// The position a cursor names; none is the beginning.
    pub fn parse(self, cursor: Option<&str>) -> ApiResult<i64> {
        let Some(cursor) = cursor.map(str::trim).filter(|c| !c.is_empty()) else {
            return Ok(0);
        };
        let (epoch, pos) = match cursor.split_once('.') {
            Some((epoch, pos)) => (epoch.parse::<i64>().ok().filter(|e| *e > 0), pos),
            None => (Some(0), cursor),
        };
        match (epoch, pos.parse::<i64>().ok().filter(|pos| *pos >= 0)) {
            (Some(epoch), Some(pos)) if epoch == self.epoch => Ok(pos),
            (Some(_), Some(_)) => {
                Err(cursor_refused("the cursor was given out before this server's history was renumbered (a restore from a backup, or an upgrade)"))
            }
            _ => Err(cursor_refused("the cursor is not one this server gave out")),
        }
    }
}

/// A `sync` from a cursor the server cannot resume from: the client drops it and starts again
/// from a snapshot or from the beginning (docs/PROTOCOL.md).
fn cursor_refused(why: &str) -> ApiError {
    ApiError::invalid(parley_common::ws::INVALID_CURSOR, why)
}

/// `POST /chats`: the chat with the owner of `email`, created (and announced to both) if new.
pub async fn start_chat(state: &AppState, user_id: i64, email: &str) -> ApiResult<(Chat, bool)> {
    take_all(&*state.limiter, &[(Bucket::NewChatPerUser, &user_id.to_string())]).await?;
    let email = Email::parse(email)?;
    let friend = state.store.user_by_email(email.as_str()).await?.ok_or(ApiError::UserNotFound)?;
    if friend.id == user_id {
        return Err(ApiError::invalid("cannot_chat_with_self", "you cannot start a chat with yourself"));
    }
    let friend_id = friend.id;
    let created = detached(state, |state| async move {
        let created = state.store.create_chat(user_id, friend_id, now_millis()).await?;
        if let Some(pos) = created.events.first().map(|e| e.pos) {
            let mut deliveries = Vec::new();
            for EventPos { user_id: member, .. } in &created.events {
                match chat_created_event(&state, *member, created.chat_id, pos).await {
                    Ok(Some(event)) => deliveries.push((*member, event, None)),
                    Ok(None) => {}
                    // Stored all the same: the member's devices find it through the store.
                    Err(err) => tracing::warn!(error = %err, "rendering a new chat for a member"),
                }
            }
            publish_at(&state, pos, deliveries);
        }
        Ok(created)
    })
    .await?;
    if created.events.is_empty() {
        // Asking again may follow a node that died after the commit, before telling the friend.
        state.relay.catch_up(friend.id);
        if created.reached_out {
            // Asking for a chat the friend started is reaching out: they may see us from now on.
            refresh_presence(state, user_id, Some(friend.id), false).await?;
        }
    }
    let chat = state.store.chat_for_user(created.chat_id, user_id).await?.ok_or(ApiError::ChatNotFound)?;
    Ok((one_chat_view(state, chat).await, !created.events.is_empty()))
}

pub async fn list_chats(state: &AppState, user_id: i64) -> ApiResult<ChatList> {
    // The cursor first: the list is at least as new as it, so going live from it leaves no gap.
    let cursor = state.store.clock().await?;
    let chats = state.store.chats_for_user(user_id).await?;
    Ok(ChatList { chats: chat_views(state, chats).await, cursor: state.cursors.string(cursor) })
}

pub async fn history(
    state: &AppState,
    user_id: i64,
    chat_id: i64,
    before: Option<i64>,
    limit: Option<i64>,
) -> ApiResult<MessagePage> {
    let limit = limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", format!("limit must be between 1 and {MAX_PAGE}")));
    }
    let cursor = state.store.clock().await?;
    if !state.store.member_ids(chat_id).await?.contains(&user_id) {
        return Err(ApiError::ChatNotFound);
    }
    let mut messages = state.store.messages_before(chat_id, before.unwrap_or(i64::MAX), limit + 1).await?;
    let more = messages.len() as i64 > limit;
    messages.truncate(limit as usize);
    Ok(MessagePage {
        messages: messages.iter().map(message_view).collect(),
        more,
        cursor: state.cursors.string(cursor),
    })
}

/// The user's events after `since`, rendered exactly as their live frames.
pub async fn sync(state: &AppState, user_id: i64, since: i64, limit: Option<i64>) -> ApiResult<SyncBatch> {
    let limit = limit.unwrap_or(MAX_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", format!("limit must be between 1 and {MAX_PAGE}")));
    }
    ::metrics::counter!(crate::metrics::SYNC_BATCHES).increment(1);
    let page = state.store.events_since(user_id, since, limit).await?;
    if since > page.clock {
        // A cursor past the clock was given out before the database went back in time (restored
        // from a backup). The positions after the restored end are handed out again to new
        // events, and a client resuming from its cursor would skip those up to it. Told now, it
        // starts again from a snapshot; once the clock has passed its cursor again, nothing here
        // can tell any more (which is what the history epoch is for).
        return Err(cursor_refused("the cursor is ahead of this server's history (was its database restored?)"));
    }
    let (next, more) = (page.next, page.more);
    let mut events = Vec::with_capacity(page.events.len());
    for record in page.events {
        events.push(render_event(state, user_id, record).await?);
    }
    Ok(SyncBatch { events, next: state.cursors.string(next), more })
}

/// A stored event as the frame that carries it live.
pub async fn render_event(state: &AppState, user_id: i64, record: EventRecord) -> ApiResult<Event> {
    let cursor = state.cursors.string(record.pos);
    Ok(match record.kind {
        EventKind::Message(m) => Event::Message { cursor, message: message_view(&m) },
        EventKind::ChatCreated => {
            chat_created_event(state, user_id, record.chat_id, record.pos).await?.ok_or(ApiError::ChatNotFound)?
        }
        EventKind::Read { reader_id, up_to } => {
            Event::Read { cursor, chat_id: record.chat_id, user_id: reader_id, up_to }
        }
    })
}

/// A `send` frame's failure, told to the sender with the frame's `client_id`.
#[derive(Debug)]
pub struct SendError {
    pub code: &'static str,
    pub message: String,
}

impl From<ApiError> for SendError {
    fn from(err: ApiError) -> Self {
        if let ApiError::Internal(detail) = &err {
            tracing::error!(error = %detail, "send failed");
        }
        SendError { code: err.code(), message: err.to_string() }
    }
}

impl SendError {
    /// The `error` frame that tells the sender, naming its message by `client_id`.
    pub fn frame(self, client_id: String) -> ServerFrame {
        ServerFrame::Error { code: self.code.into(), message: self.message, client_id: Some(client_id) }
    }
}

/// What a `send` must be before it reaches the store: a UUID `client_id` and a body with some
/// text, at most `max_bytes` long. Pure, so the protocol fuzz targets (`fuzz/`) check it too.
pub fn check_send(client_id: &str, body: &str, max_bytes: usize) -> ApiResult<()> {
    if uuid::Uuid::parse_str(client_id).is_err() {
        return Err(ApiError::invalid("invalid_client_id", "client_id must be a UUID"));
    }
    if body.trim().is_empty() {
        return Err(ApiError::invalid("empty_message", "a message needs some text"));
    }
    if body.len() > max_bytes {
        return Err(ApiError::invalid("message_too_large", format!("a message may have at most {max_bytes} bytes")));
    }
    Ok(())
}

/// Queues a message to be stored once and relayed: `message` to every connection of every member
/// except `origin`, which gets the `ack`, or an `error` frame with the `client_id` if it cannot be
/// stored. Returns once the message is queued (an `Err` here: it was refused before that);
/// `in_flight` is held until its fate is known, so a connection can bound its unanswered sends.
pub async fn send(
    state: &AppState,
    user_id: i64,
    origin: ConnId,
    chat_id: i64,
    client_id: String,
    body: String,
    in_flight: OwnedSemaphorePermit,
) -> Result<(), SendError> {
    check_send(&client_id, &body, state.config.max_message_bytes)?;
    take_all(&*state.limiter, &[(Bucket::MessagesPerUser, &user_id.to_string())]).await?;
    let new = NewMessage { chat_id, sender_id: user_id, client_id: client_id.clone(), body, now: now_millis() };
    let after = state.clone();
    let done = move |outcome: ApiResult<SendOutcome>| {
        if let Err(err) = after_send(&after, user_id, origin, outcome) {
            after.relay.deliver_to(user_id, origin, Outbound::frame(err.frame(client_id)));
        }
        drop(in_flight);
    };
    state.writer.submit(new, Box::new(done)).await?;
    Ok(())
}

/// What follows a stored (or refused) message; runs on the writer's completer task, so anything
/// that must wait for the store is spawned.
fn after_send(
    state: &AppState,
    user_id: i64,
    origin: ConnId,
    outcome: ApiResult<SendOutcome>,
) -> Result<(), SendError> {
    match outcome? {
        SendOutcome::Created { message, events, reached_out } => {
            ::metrics::counter!(crate::metrics::MESSAGES).increment(1);
            let view = message_view(&message);
            if reached_out {
                // Writing first is reaching out: the friend may see the sender's presence now.
                let friends: Vec<i64> = events.iter().map(|e| e.user_id).filter(|u| *u != user_id).collect();
                let state = state.clone();
                tokio::spawn(async move {
                    for friend in friends {
                        if let Err(err) = refresh_presence(&state, user_id, Some(friend), false).await {
                            tracing::warn!(error = %err, "showing presence after a first message");
                        }
                    }
                });
            }
            let pos = message.id;
            let cursor = state.cursors.string(pos);
            let deliveries = events
                .into_iter()
                .map(|EventPos { user_id: member, .. }| {
                    (member, Event::Message { cursor: cursor.clone(), message: view.clone() }, Some(origin))
                })
                .collect();
            publish_at(state, pos, deliveries);
            Ok(())
        }
        SendOutcome::Duplicate { message, cursor } => {
            ::metrics::counter!(crate::metrics::DUPLICATE_SENDS).increment(1);
            // Only the sending connection hears of it again: an ack, nothing new for anyone else.
            let chat_id = message.chat_id;
            let event = Event::Message { cursor: state.cursors.string(cursor), message: message_view(&message) };
            state.relay.deliver_to(user_id, origin, Outbound::Duplicate { pos: cursor, event: Arc::new(event) });
            // A resend usually means the first answer was lost, maybe with the node that committed
            // it before it could tell anyone: the members' connections check the store. Those that
            // had it learn nothing new; the protocol's "nobody else hears of it again" holds. The
            // sending connection needs no check: the ack's cursor shows it any hole.
            let state = state.clone();
            tokio::spawn(async move {
                match state.store.member_ids(chat_id).await {
                    Ok(members) => {
                        for member in members {
                            let except = (member == user_id).then_some(origin);
                            state.relay.deliver(member, Outbound::CatchUp, except);
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "members of a resent message"),
                }
            });
            Ok(())
        }
        SendOutcome::ClientIdReused => {
            Err(SendError { code: "client_id_reused", message: "this client_id was used for another message".into() })
        }
        SendOutcome::NotMember => Err(ApiError::ChatNotFound.into()),
        // Deliberately the very answer a chat one is not in gets: being blocked must not show.
        SendOutcome::Blocked { by_sender: false } => Err(ApiError::ChatNotFound.into()),
        SendOutcome::Blocked { by_sender: true } => Err(ApiError::YouBlocked.into()),
    }
}

/// Moves the user's read marker and tells every connection of both members.
pub async fn mark_read(state: &AppState, user_id: i64, chat_id: i64, up_to: i64) -> ApiResult<()> {
    let outcome = detached(state, |state| async move {
        let outcome = state.store.mark_read(chat_id, user_id, up_to, now_millis()).await?;
        if let ReadOutcome::Updated { up_to, events } = &outcome {
            if let Some(pos) = events.first().map(|e| e.pos) {
                let cursor = state.cursors.string(pos);
                let deliveries = events
                    .iter()
                    .map(|e| (e.user_id, Event::Read { cursor: cursor.clone(), chat_id, user_id, up_to: *up_to }, None))
                    .collect();
                publish_at(&state, pos, deliveries);
            }
        }
        Ok(outcome)
    })
    .await?;
    match outcome {
        ReadOutcome::Updated { .. } | ReadOutcome::Unchanged => Ok(()),
        ReadOutcome::NotMember => Err(ApiError::ChatNotFound),
    }
}

/// Tells the other members that the user is typing (never kept, never replayed).
pub async fn typing(state: &AppState, user_id: i64, chat_id: i64) -> ApiResult<()> {
    let members = state.store.member_ids(chat_id).await?;
    if !members.contains(&user_id) {
        return Err(ApiError::ChatNotFound);
    }
    for member in members.into_iter().filter(|m| *m != user_id) {
        // Dropped without a word across a block, either way: typing shows that one is there.
        if state.store.blocked_either_way(user_id, member).await? {
            continue;
        }
        state.relay.deliver(member, Outbound::frame(ServerFrame::Typing { chat_id, user_id }), None);
    }
    Ok(())
}

/// Tells the user's friends that they came online or went offline: those who may see it (see
/// `Store::presence_pairs`); to the others the user stays offline with no last seen.
pub async fn announce_presence(state: &AppState, user_id: i64, online: bool, last_seen: Option<i64>) -> ApiResult<()> {
    let frame = Outbound::frame(ServerFrame::Presence { user_id, online, last_seen: last_seen.map(rfc3339) });
    for pair in state.store.presence_pairs(user_id).await? {
        if pair.friend_sees_me {
            state.relay.deliver(pair.friend_id, frame.clone(), None);
        }
    }
    Ok(())
}

/// After a change of who may see whom (a block, a first message, the hide setting): tells the
/// user's friends (or only `only`) how the user looks to them now and, `both_ways`, the user how
/// they look. Someone whose presence one may not see is sent as offline with no last seen.
pub async fn refresh_presence(state: &AppState, user_id: i64, only: Option<i64>, both_ways: bool) -> ApiResult<()> {
    let pairs: Vec<_> = state
        .store
        .presence_pairs(user_id)
        .await?
        .into_iter()
        .filter(|p| only.is_none_or(|friend| friend == p.friend_id))
        .collect();
    if pairs.is_empty() {
        return Ok(());
    }
    let mut asked: Vec<i64> = pairs.iter().map(|p| p.friend_id).collect();
    asked.push(user_id);
    let online = state.relay.online(&asked).await;
    let frame = |subject: i64, visible: bool, last_seen: Option<i64>| {
        let on = visible && online.contains(&subject);
        let last_seen = last_seen.filter(|_| visible && !on).map(rfc3339);
        Outbound::frame(ServerFrame::Presence { user_id: subject, online: on, last_seen })
    };
    for pair in &pairs {
        state.relay.deliver(pair.friend_id, frame(user_id, pair.friend_sees_me, pair.my_last_seen_at), None);
        if both_ways {
            state.relay.deliver(user_id, frame(pair.friend_id, pair.i_see_friend, pair.friend_last_seen_at), None);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Cursors;

    #[test]
    fn cursors_read_back_and_carry_the_epoch_once_there_is_one() {
        let never_restored = Cursors::new(0);
        assert_eq!(never_restored.string(42), "42");
        assert_eq!(never_restored.parse(Some("42")).ok(), Some(42));
        assert_eq!(never_restored.parse(None).ok(), Some(0));
        assert_eq!(never_restored.parse(Some(" ")).ok(), Some(0));

        let restored = Cursors::new(3);
        assert_eq!(restored.string(42), "3.42");
        assert_eq!(restored.parse(Some("3.42")).ok(), Some(42));
        assert_eq!(restored.parse(None).ok(), Some(0), "no cursor is the beginning, in any epoch");
    }

    #[test]
    fn cursors_of_another_epoch_or_of_no_shape_are_refused() {
        let restored = Cursors::new(3);
        for cursor in ["42", "2.42", "4.42", "0.42"] {
            let err = restored.parse(Some(cursor)).expect_err(cursor);
            assert_eq!(err.code(), parley_common::ws::INVALID_CURSOR, "{cursor}");
        }
        let never_restored = Cursors::new(0);
        for cursor in ["3.42", "-1", "x", "3.", ".42", "3.-1", "1e3"] {
            let err = never_restored.parse(Some(cursor)).expect_err(cursor);
            assert_eq!(err.code(), parley_common::ws::INVALID_CURSOR, "{cursor}");
        }
        assert!(restored.parse(Some("3.x")).is_err());
    }
}
