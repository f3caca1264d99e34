//! Blocking: a blocked user's messages are refused exactly like a send to a chat they are not in,
//! nothing of them is stored or delivered, and they stop seeing the blocker's presence.
use std::time::Duration;

use parley_common::{AuthResponse, BlockList, ChatList, ClientFrame, MessagePage, ServerFrame, SyncBatch};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{
    helpers::{assert_error, spawn_open, Backend, TestApp},
    on_both_backends,
    ws_client::WsClient,
};

on_both_backends!(
    a_blocked_users_messages_are_refused_like_any_failed_delivery_and_never_stored,
    a_blocked_user_does_not_see_the_blockers_presence_until_unblocked,
    blocks_are_listed_and_only_for_people_you_share_a_chat_with,
    typing_does_not_cross_a_block,
    a_block_holds_back_the_very_next_message_of_a_busy_chat,
);

const QUIET: Duration = Duration::from_millis(400);

/// Ada starts a chat with Bo and writes first, so each may see the other's presence.
async fn friends(app: &TestApp) -> (AuthResponse, AuthResponse, i64) {
    let ada = app.user("Ada").await;
    let bo = app.user("Bo").await;
    let chat = app.chat(&ada, "bo@example.org").await;
    let mut a = WsClient::connect(app, &ada.token).await;
    a.say(chat, "hello Bo").await;
    a.next_ack().await;
    let mut b = WsClient::connect(app, &bo.token).await;
    b.say(chat, "hello Ada").await;
    b.next_ack().await;
    a.close().await;
    b.close().await;
    // Both offline, and told so, before the test goes on: no late presence frame from here.
    for who in [&ada, &bo] {
        for _ in 0..100 {
            let list: ChatList = app.get_json("/api/v1/chats", &who.token).await;
            if list.chats[0].friend.last_seen.is_some() && !list.chats[0].friend.online {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    (ada, bo, chat)
}

async fn block(app: &TestApp, who: &AuthResponse, user_id: i64) {
    let response = app.call(Method::POST, "/api/v1/blocks", &who.token, Some(json!({"user_id": user_id}))).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "block");
}

async fn unblock(app: &TestApp, who: &AuthResponse, user_id: i64) {
    let response = app.call(Method::DELETE, &format!("/api/v1/blocks/{user_id}"), &who.token, None).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "unblock");
}

fn is_message(frame: &ServerFrame) -> bool {
    matches!(frame, ServerFrame::Event(parley_common::Event::Message { .. }))
}

async fn a_blocked_users_messages_are_refused_like_any_failed_delivery_and_never_stored(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let (ada, bo, chat) = friends(&app).await;
    let cy = app.user("Cy").await;
    let not_bos_chat = app.chat(&cy, "ada@example.org").await;
    block(&app, &ada, bo.user.id).await;

    let mut a = WsClient::connect(&app, &ada.token).await;
    let mut b = WsClient::connect(&app, &bo.token).await;
    // What any failed delivery looks like: a send to a chat one is not in.
    let stranger_id = b.say(not_bos_chat, "let me in").await;
    let stranger = b.next_matching(|f| matches!(f, ServerFrame::Error { .. }).then_some(f)).await;
    let blocked_id = b.say(chat, "are you there?").await;
    let blocked = b.next_matching(|f| matches!(f, ServerFrame::Error { .. }).then_some(f)).await;
    let (
        ServerFrame::Error { code: c1, message: m1, client_id: id1 },
        ServerFrame::Error { code: c2, message: m2, client_id: id2 },
    ) = (stranger, blocked)
    else {
        unreachable!()
    };
    assert_eq!((id1, id2), (Some(stranger_id), Some(blocked_id.clone())));
    assert_eq!((c2.as_str(), m2.as_str()), (c1.as_str(), m1.as_str()), "a block looks like any failed delivery");
    assert_eq!(c2, "chat_not_found");
    // Resending changes nothing.
    b.send(&ClientFrame::Send { chat_id: chat, client_id: blocked_id, body: "are you there?".into() }).await;
    assert_eq!(b.next_error().await.0, "chat_not_found");

    // Nothing reached Ada, and nothing was stored: not in the history, not in anyone's stream.
    a.expect_none(QUIET, is_message).await;
    for who in [&ada, &bo] {
        let page: MessagePage = app.get_json(&format!("/api/v1/chats/{chat}/messages"), &who.token).await;
        assert_eq!(page.messages.len(), 2, "only the two messages from before the block");
        assert!(page.messages.iter().all(|m| m.body != "are you there?"));
        let sync: SyncBatch = app.get_json("/api/v1/sync", &who.token).await;
        let text = serde_json::to_string(&sync).unwrap();
        assert!(!text.contains("are you there?"), "{text}");
    }
    let list: ChatList = app.get_json("/api/v1/chats", &ada.token).await;
    assert!(list.chats.iter().any(|c| c.id == chat && c.blocked && c.unread_count <= 1));
    let bos: ChatList = app.get_json("/api/v1/chats", &bo.token).await;
    assert!(!bos.chats[0].blocked, "Bo is not told");

    // The blocker cannot write to the blocked either, and is told why.
    a.say(chat, "bye").await;
    assert_eq!(a.next_error().await.0, "you_blocked");
    b.expect_none(QUIET, is_message).await;

    // Unblocked: messages flow again.
    unblock(&app, &ada, bo.user.id).await;
    b.say(chat, "back again").await;
    b.next_ack().await;
    let (_, message) = a.next_message().await;
    assert_eq!(message.body, "back again");
}

async fn a_blocked_user_does_not_see_the_blockers_presence_until_unblocked(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let (ada, bo, chat) = friends(&app).await;
    let mut b = WsClient::connect(&app, &bo.token).await;
    let a1 = WsClient::connect(&app, &ada.token).await;
    assert_eq!(b.next_presence().await, (ada.user.id, true, None), "before the block Bo sees Ada");

    block(&app, &ada, bo.user.id).await;
    assert_eq!(b.next_presence().await, (ada.user.id, false, None), "at once: offline, no last seen");
    let list: ChatList = app.get_json("/api/v1/chats", &bo.token).await;
    assert_eq!((list.chats[0].friend.online, list.chats[0].friend.last_seen.as_deref()), (false, None));
    // The chat as `sync` renders it tells no more.
    let sync: SyncBatch = app.get_json("/api/v1/sync", &bo.token).await;
    for event in &sync.events {
        if let parley_common::Event::ChatCreated { chat: c, .. } = event {
            assert_eq!((c.id, c.friend.online, c.friend.last_seen.as_deref()), (chat, false, None));
        }
    }
    // Ada comes and goes: Bo hears nothing, and her last seen stays hidden.
    a1.close().await;
    let a2 = WsClient::connect(&app, &ada.token).await;
    b.expect_none(QUIET, |f| matches!(f, ServerFrame::Presence { .. })).await;
    a2.close().await;
    b.expect_none(QUIET, |f| matches!(f, ServerFrame::Presence { .. })).await;
    let list: ChatList = app.get_json("/api/v1/chats", &bo.token).await;
    assert_eq!(list.chats[0].friend.last_seen, None);
    // Ada still sees Bo.
    let adas: ChatList = app.get_json("/api/v1/chats", &ada.token).await;
    assert!(adas.chats[0].friend.online, "blocking hides the blocker, not the blocked");

    // Unblocked: Bo sees her again, at once and in his list.
    let _a3 = WsClient::connect(&app, &ada.token).await;
    b.expect_none(QUIET, |f| matches!(f, ServerFrame::Presence { .. })).await;
    unblock(&app, &ada, bo.user.id).await;
    assert_eq!(b.next_presence().await, (ada.user.id, true, None));
    let list: ChatList = app.get_json("/api/v1/chats", &bo.token).await;
    assert!(list.chats[0].friend.online);
}

async fn blocks_are_listed_and_only_for_people_you_share_a_chat_with(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let (ada, bo, _chat) = friends(&app).await;
    let eve = app.user("Eve").await;

    let call = |body: serde_json::Value| app.call(Method::POST, "/api/v1/blocks", &ada.token, Some(body));
    // A stranger's id, an id nobody has and one's own: refused, the first two alike.
    assert_error(call(json!({"user_id": eve.user.id})).await, StatusCode::NOT_FOUND, "user_not_found").await;
    assert_error(call(json!({"user_id": 999_999})).await, StatusCode::NOT_FOUND, "user_not_found").await;
    assert_error(call(json!({"user_id": ada.user.id})).await, StatusCode::UNPROCESSABLE_ENTITY, "cannot_block_self")
        .await;
    assert_error(call(json!({"user": bo.user.id})).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;

    block(&app, &ada, bo.user.id).await;
    block(&app, &ada, bo.user.id).await;
    let list: BlockList = app.get_json("/api/v1/blocks", &ada.token).await;
    assert_eq!(list.blocked.len(), 1, "blocking twice is blocking once");
    assert_eq!((list.blocked[0].user_id, list.blocked[0].email.as_str()), (bo.user.id, "bo@example.org"));
    let bos: BlockList = app.get_json("/api/v1/blocks", &bo.token).await;
    assert!(bos.blocked.is_empty(), "each sees only their own blocks");
    // Someone else's block cannot be lifted: the id names whom the caller blocked.
    unblock(&app, &bo, bo.user.id).await;
    unblock(&app, &eve, bo.user.id).await;
    assert_eq!(app.get_json::<BlockList>("/api/v1/blocks", &ada.token).await.blocked.len(), 1);

    unblock(&app, &ada, bo.user.id).await;
    unblock(&app, &ada, bo.user.id).await;
    assert!(app.get_json::<BlockList>("/api/v1/blocks", &ada.token).await.blocked.is_empty());
    let list: ChatList = app.get_json("/api/v1/chats", &ada.token).await;
    assert!(!list.chats[0].blocked);
}

async fn typing_does_not_cross_a_block(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let (ada, bo, chat) = friends(&app).await;
    block(&app, &ada, bo.user.id).await;
    let mut a = WsClient::connect(&app, &ada.token).await;
    let mut b = WsClient::connect(&app, &bo.token).await;
    b.send(&ClientFrame::Typing { chat_id: chat }).await;
    a.expect_none(QUIET, |f| matches!(f, ServerFrame::Typing { .. })).await;
    a.send(&ClientFrame::Typing { chat_id: chat }).await;
    b.expect_none(QUIET, |f| matches!(f, ServerFrame::Typing { .. } | ServerFrame::Error { .. })).await;
}

/// Messages flowing in a chat, then a block, then the next message at once: it is refused and
/// not stored, though the chat's members were just read for the messages before (Postgres keeps
/// them in memory between batches; the block must reach the next batch all the same). Unblocked,
/// the next message flows again.
async fn a_block_holds_back_the_very_next_message_of_a_busy_chat(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let (ada, bo, chat) = friends(&app).await;
    let mut a = WsClient::connect(&app, &ada.token).await;
    let mut b = WsClient::connect(&app, &bo.token).await;
    for n in 0..3 {
        b.say(chat, &format!("busy {n}")).await;
        b.next_ack().await;
    }
    block(&app, &ada, bo.user.id).await;
    b.say(chat, "after the block").await;
    assert_eq!(b.next_error().await.0, "chat_not_found");
    a.say(chat, "blocker's word").await;
    assert_eq!(a.next_error().await.0, "you_blocked");
    let page: MessagePage = app.get_json(&format!("/api/v1/chats/{chat}/messages"), &ada.token).await;
    assert_eq!(page.messages.len(), 5, "the two from before and the three busy ones");
    assert!(page.messages.iter().all(|m| m.body != "after the block" && m.body != "blocker's word"));

    unblock(&app, &ada, bo.user.id).await;
    b.say(chat, "unblocked").await;
    b.next_ack().await;
    let message = loop {
        let (_, message) = a.next_message().await;
        if message.body == "unblocked" {
            break message;
        }
    };
    assert_eq!(message.sender_id, bo.user.id);
}
