//! Starting chats, the chat list, history pages and sync over REST.
use parley_common::{Chat, ChatList, Event, MessagePage, SyncBatch};
use reqwest::StatusCode;
use serde_json::json;

use crate::{
    helpers::{assert_error, spawn_open, Backend},
    on_both_backends,
    ws_client::WsClient,
};

on_both_backends!(
    a_chat_is_started_by_email_and_appears_in_both_lists,
    starting_a_chat_with_an_unknown_email_or_yourself_is_refused,
    the_chat_list_puts_the_most_recent_activity_first,
    history_pages_go_back_in_time,
    only_members_may_read_a_chat,
    sync_pages_through_every_event_once,
    probing_emails_by_starting_chats_is_rate_limited,
);

async fn a_chat_is_started_by_email_and_appears_in_both_lists(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let ada = app.user("Ada").await;
    let bo = app.user("Bo").await;
    let mut bo_socket = WsClient::connect(&app, &bo.token).await;

    let response = app
        .client
        .post(app.at("/api/v1/chats"))
        .bearer_auth(&ada.token)
        .json(&json!({"email": " BO@example.org "}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let chat: Chat = response.json().await.unwrap();
    assert_eq!(chat.friend.id, bo.user.id);
    assert_eq!(chat.friend.display_name, "Bo");
    // Bo is connected, but Ada only knows his email: his presence is not hers to see until he
    // writes to her or asks for the chat himself.
    assert!(!chat.friend.online && chat.friend.last_seen.is_none(), "Bo's presence is his");
    assert_eq!(chat.unread_count, 0);
    assert!(chat.last_message.is_none());

    // Bo hears of it at once, with Ada as the friend.
    let created = bo_socket
        .next_matching(|f| match f {
            parley_common::ServerFrame::Event(Event::ChatCreated { chat, .. }) => Some(chat),
            _ => None,
        })
        .await;
    assert_eq!(created.id, chat.id);
    assert_eq!(created.friend.id, ada.user.id);
    assert!(!created.friend.online, "Ada has no socket");

    // Asking again gives the same chat.
    let again =
        app.client.post(app.at("/api/v1/chats")).bearer_auth(&bo.token).json(&json!({"email": "ada@example.org"}));
    let again = again.send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Chat>().await.unwrap().id, chat.id);

    let ada_list: ChatList = app.get_json("/api/v1/chats", &ada.token).await;
    let bo_list: ChatList = app.get_json("/api/v1/chats", &bo.token).await;
    assert_eq!(ada_list.chats.len(), 1);
    assert_eq!(bo_list.chats.len(), 1);
    assert_eq!(bo_list.chats[0].friend.email, "ada@example.org");
    assert_ne!(bo_list.cursor, "0", "the chat_created event moved Bo's cursor");
}

async fn starting_a_chat_with_an_unknown_email_or_yourself_is_refused(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let ada = app.user("Ada").await;
    let post = |email: &'static str| {
        app.client.post(app.at("/api/v1/chats")).bearer_auth(&ada.token).json(&json!({"email": email})).send()
    };
    assert_error(post("nobody@example.org").await.unwrap(), StatusCode::NOT_FOUND, "user_not_found").await;
    assert_error(post("ada@example.org").await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "cannot_chat_with_self")
        .await;
    assert_error(post("not an email").await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_email").await;
    let anonymous = app.client.post(app.at("/api/v1/chats")).json(&json!({"email": "ada@example.org"})).send().await;
    assert_error(anonymous.unwrap(), StatusCode::UNAUTHORIZED, "unauthorized").await;
    let list: ChatList = app.get_json("/api/v1/chats", &ada.token).await;
    assert!(list.chats.is_empty());
}

async fn the_chat_list_puts_the_most_recent_activity_first(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let ada = app.user("Ada").await;
    app.user("Bo").await;
    app.user("Cy").await;
    let with_bo = app.chat(&ada, "bo@example.org").await;
    let with_cy = app.chat(&ada, "cy@example.org").await;
    let list: ChatList = app.get_json("/api/v1/chats", &ada.token).await;
    assert_eq!(list.chats.iter().map(|c| c.id).collect::<Vec<_>>(), vec![with_cy, with_bo]);

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let mut socket = WsClient::connect(&app, &ada.token).await;
    socket.say(with_bo, "news for Bo").await;
    socket.next_ack().await;
    let list: ChatList = app.get_json("/api/v1/chats", &ada.token).await;
    assert_eq!(list.chats.iter().map(|c| c.id).collect::<Vec<_>>(), vec![with_bo, with_cy]);
    assert_eq!(list.chats[0].last_message.as_ref().unwrap().body, "news for Bo");
}

async fn history_pages_go_back_in_time(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let ada = app.user("Ada").await;
    app.user("Bo").await;
    let chat = app.chat(&ada, "bo@example.org").await;
    let mut socket = WsClient::connect(&app, &ada.token).await;
    for i in 1..=7 {
        socket.say(chat, &format!("message {i}")).await;
        socket.next_ack().await;
    }
    let path = |query: &str| format!("/api/v1/chats/{chat}/messages?{query}");
    let first: MessagePage = app.get_json(&path("limit=3"), &ada.token).await;
    assert_eq!(first.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![7, 6, 5]);
    assert!(first.more);
    let second: MessagePage = app.get_json(&path("limit=3&before=5"), &ada.token).await;
    assert_eq!(second.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![4, 3, 2]);
    assert!(second.more);
    let last: MessagePage = app.get_json(&path("limit=3&before=2"), &ada.token).await;
    assert_eq!(last.messages.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), vec!["message 1"]);
    assert!(!last.more);
    let all: MessagePage = app.get_json(&path(""), &ada.token).await;
    assert_eq!(all.messages.len(), 7);

    for bad in ["limit=0", "limit=101", "limit=x"] {
        let response = app.get_with_token(&path(bad), &ada.token).await;
        assert!(response.status().is_client_error(), "{bad}: {}", response.status());
    }
}

async fn only_members_may_read_a_chat(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let ada = app.user("Ada").await;
    app.user("Bo").await;
    let eve = app.user("Eve").await;
    let chat = app.chat(&ada, "bo@example.org").await;
    let mut socket = WsClient::connect(&app, &ada.token).await;
    socket.say(chat, "private").await;
    socket.next_ack().await;

    let response = app.get_with_token(&format!("/api/v1/chats/{chat}/messages"), &eve.token).await;
    assert_error(response, StatusCode::NOT_FOUND, "chat_not_found").await;
    let missing = app.get_with_token("/api/v1/chats/999999/messages", &ada.token).await;
    assert_error(missing, StatusCode::NOT_FOUND, "chat_not_found").await;
    let eve_sync: SyncBatch = app.get_json("/api/v1/sync", &eve.token).await;
    assert!(eve_sync.events.is_empty(), "nothing of Ada's chat in Eve's stream");
}

async fn sync_pages_through_every_event_once(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let ada = app.user("Ada").await;
    let bo = app.user("Bo").await;
    let chat = app.chat(&ada, "bo@example.org").await;
    let mut socket = WsClient::connect(&app, &ada.token).await;
    for i in 1..=5 {
        socket.say(chat, &format!("m{i}")).await;
        socket.next_ack().await;
    }
    // Bo's stream: chat_created, then five messages.
    let mut since = String::new();
    let mut seen = Vec::new();
    loop {
        let batch: SyncBatch = app.get_json(&format!("/api/v1/sync?limit=2&since={since}"), &bo.token).await;
        for event in &batch.events {
            seen.push(match event {
                Event::ChatCreated { chat, .. } => format!("chat {}", chat.id),
                Event::Message { message, .. } => message.body.clone(),
                Event::Read { .. } => "read".into(),
            });
        }
        since = batch.next;
        if !batch.more {
            break;
        }
    }
    assert_eq!(seen, vec![format!("chat {chat}"), "m1".into(), "m2".into(), "m3".into(), "m4".into(), "m5".into()]);
    let done: SyncBatch = app.get_json(&format!("/api/v1/sync?since={since}"), &bo.token).await;
    assert!(done.events.is_empty() && !done.more);
    assert_eq!(done.next, since);
    assert_error(
        app.get_with_token("/api/v1/sync?since=garbage", &bo.token).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_cursor",
    )
    .await;
    // Past the end of the stream, as a client holds after the server's database was restored
    // from an older backup: resuming from it would skip what is written next.
    let ahead = since.parse::<i64>().expect("this server's cursors are numbers") + 1;
    assert_error(
        app.get_with_token(&format!("/api/v1/sync?since={ahead}"), &bo.token).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_cursor",
    )
    .await;
}

async fn probing_emails_by_starting_chats_is_rate_limited(backend: Backend) {
    let app = spawn_open(backend, |c| c.rate_limits.new_chat_per_user = 3).await;
    let ada = app.user("Ada").await;
    for n in 0..3 {
        let probe = app
            .client
            .post(app.at("/api/v1/chats"))
            .bearer_auth(&ada.token)
            .json(&json!({"email": format!("x{n}@example.org")}));
        assert_error(probe.send().await.unwrap(), StatusCode::NOT_FOUND, "user_not_found").await;
    }
    let fourth =
        app.client.post(app.at("/api/v1/chats")).bearer_auth(&ada.token).json(&json!({"email": "x3@example.org"}));
    let fourth = fourth.send().await.unwrap();
    assert!(fourth.headers().contains_key("retry-after"));
    assert_error(fourth, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}
