//! Presence privacy: one's presence and last seen show only to people one has started a chat with
//! or written to, never to someone who merely knows one's email; and they can be hidden from
//! everyone, which hides everyone's from oneself as well.
use std::time::Duration;

use parley_common::{AuthResponse, Chat, ChatList, Event, PrivacySettings, ServerFrame, SyncBatch};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{
    helpers::{assert_error, spawn_open, Backend, TestApp},
    on_both_backends,
    ws_client::WsClient,
};

on_both_backends!(
    a_stranger_who_starts_a_chat_does_not_see_your_presence_until_you_write,
    asking_for_the_chat_by_email_too_shows_your_presence,
    hidden_presence_hides_it_from_everyone_and_hides_theirs_from_you,
);

const QUIET: Duration = Duration::from_millis(400);

fn is_presence_of(user_id: i64) -> impl Fn(&ServerFrame) -> bool {
    move |f| matches!(f, ServerFrame::Presence { user_id: u, .. } if *u == user_id)
}

/// The caller's chat with `friend_id`, as the list shows it.
async fn listed(app: &TestApp, who: &AuthResponse, friend_id: i64) -> Chat {
    let list: ChatList = app.get_json("/api/v1/chats", &who.token).await;
    list.chats.into_iter().find(|c| c.friend.id == friend_id).expect("the chat is listed")
}

async fn set_hidden(app: &TestApp, who: &AuthResponse, hide: bool) {
    let response = app.call(Method::PUT, "/api/v1/me/privacy", &who.token, Some(json!({"hide_presence": hide}))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<PrivacySettings>().await.unwrap(), PrivacySettings { hide_presence: hide });
}

async fn a_stranger_who_starts_a_chat_does_not_see_your_presence_until_you_write(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let ada = app.user("Ada").await;
    let eve = app.user("Eve").await;
    let a = WsClient::connect(&app, &ada.token).await;
    let mut e = WsClient::connect(&app, &eve.token).await;

    // Eve knows Ada's email and starts a chat: she learns nothing of Ada's presence, in the
    // answer, live, in her list or in a replay, although Ada is connected.
    let response = app.call(Method::POST, "/api/v1/chats", &eve.token, Some(json!({"email": "ada@example.org"}))).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let chat: Chat = response.json().await.unwrap();
    assert_eq!((chat.friend.online, chat.friend.last_seen.as_deref()), (false, None));
    let created = e
        .next_matching(|f| match f {
            ServerFrame::Event(Event::ChatCreated { chat, .. }) => Some(chat),
            _ => None,
        })
        .await;
    assert_eq!((created.friend.online, created.friend.last_seen.as_deref()), (false, None));
    let seen_by_eve = listed(&app, &eve, ada.user.id).await;
    assert_eq!((seen_by_eve.friend.online, seen_by_eve.friend.last_seen.as_deref()), (false, None));
    // Eve reached out, so Ada sees her.
    assert!(listed(&app, &ada, eve.user.id).await.friend.online, "Ada sees the one who wrote to her");

    // Ada comes and goes: not a word to Eve, and no last seen for her.
    a.close().await;
    let mut a = WsClient::connect(&app, &ada.token).await;
    e.expect_none(QUIET, is_presence_of(ada.user.id)).await;
    let seen_by_eve = listed(&app, &eve, ada.user.id).await;
    assert_eq!((seen_by_eve.friend.online, seen_by_eve.friend.last_seen.as_deref()), (false, None));
    let sync: SyncBatch = app.get_json("/api/v1/sync", &eve.token).await;
    for event in sync.events {
        if let Event::ChatCreated { chat, .. } = event {
            assert_eq!((chat.friend.online, chat.friend.last_seen.as_deref()), (false, None), "replayed too");
        }
    }
    // Eve writes; still nothing of Ada.
    e.say(chat.id, "hi Ada, remember me?").await;
    e.next_ack().await;
    a.next_message().await;
    e.expect_none(QUIET, is_presence_of(ada.user.id)).await;

    // Ada answers: from now on Eve sees her, at once and in her list.
    a.say(chat.id, "hello Eve").await;
    a.next_ack().await;
    let presence = e.next_matching(|f| is_presence_of(ada.user.id)(&f).then_some(f)).await;
    assert_eq!(presence, ServerFrame::Presence { user_id: ada.user.id, online: true, last_seen: None });
    assert!(listed(&app, &eve, ada.user.id).await.friend.online);
    a.close().await;
    let presence = e.next_matching(|f| is_presence_of(ada.user.id)(&f).then_some(f)).await;
    assert!(matches!(presence, ServerFrame::Presence { online: false, last_seen: Some(_), .. }), "{presence:?}");
}

async fn asking_for_the_chat_by_email_too_shows_your_presence(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let ada = app.user("Ada").await;
    let eve = app.user("Eve").await;
    app.chat(&eve, "ada@example.org").await;
    let _a = WsClient::connect(&app, &ada.token).await;
    let mut e = WsClient::connect(&app, &eve.token).await;
    assert!(!listed(&app, &eve, ada.user.id).await.friend.online);
    // Ada asks for the chat by Eve's email (it exists already): she reaches out.
    let response = app.call(Method::POST, "/api/v1/chats", &ada.token, Some(json!({"email": "eve@example.org"}))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let presence = e.next_matching(|f| is_presence_of(ada.user.id)(&f).then_some(f)).await;
    assert_eq!(presence, ServerFrame::Presence { user_id: ada.user.id, online: true, last_seen: None });
    assert!(listed(&app, &eve, ada.user.id).await.friend.online);
}

async fn hidden_presence_hides_it_from_everyone_and_hides_theirs_from_you(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let ada = app.user("Ada").await;
    let bo = app.user("Bo").await;
    // Each starts a chat with the other: both reached out.
    app.chat(&ada, "bo@example.org").await;
    app.chat(&bo, "ada@example.org").await;
    let settings: PrivacySettings = app.get_json("/api/v1/me/privacy", &ada.token).await;
    assert!(!settings.hide_presence, "shown by default");

    let mut a1 = WsClient::connect(&app, &ada.token).await;
    let mut b = WsClient::connect(&app, &bo.token).await;
    let presence = a1.next_matching(|f| is_presence_of(bo.user.id)(&f).then_some(f)).await;
    assert!(matches!(presence, ServerFrame::Presence { online: true, .. }));
    assert!(listed(&app, &bo, ada.user.id).await.friend.online);
    // Whatever the two connections said of each other arrives before the change.
    a1.expect_none(QUIET, |_| false).await;
    b.expect_none(QUIET, |_| false).await;

    // Hidden: Bo is told Ada is offline with no last seen, and Ada that Bo is.
    set_hidden(&app, &ada, true).await;
    let to_bo = b.next_matching(|f| is_presence_of(ada.user.id)(&f).then_some(f)).await;
    assert_eq!(to_bo, ServerFrame::Presence { user_id: ada.user.id, online: false, last_seen: None });
    let to_ada = a1.next_matching(|f| is_presence_of(bo.user.id)(&f).then_some(f)).await;
    assert_eq!(to_ada, ServerFrame::Presence { user_id: bo.user.id, online: false, last_seen: None });
    assert!(app.get_json::<PrivacySettings>("/api/v1/me/privacy", &ada.token).await.hide_presence);
    for (viewer, friend) in [(&bo, ada.user.id), (&ada, bo.user.id)] {
        let chat = listed(&app, viewer, friend).await;
        assert_eq!((chat.friend.online, chat.friend.last_seen.as_deref()), (false, None));
    }

    // Both come and go: nobody hears of it.
    let a2 = WsClient::connect(&app, &ada.token).await;
    a2.close().await;
    b.close().await;
    a1.expect_none(QUIET, is_presence_of(bo.user.id)).await;
    let mut b = WsClient::connect(&app, &bo.token).await;
    a1.close().await;
    b.expect_none(QUIET, is_presence_of(ada.user.id)).await;
    assert_eq!(listed(&app, &bo, ada.user.id).await.friend.last_seen, None, "no last seen while hidden");

    // Shown again: each sees the other as things are.
    let mut a = WsClient::connect(&app, &ada.token).await;
    b.expect_none(QUIET, is_presence_of(ada.user.id)).await;
    set_hidden(&app, &ada, false).await;
    let to_bo = b.next_matching(|f| is_presence_of(ada.user.id)(&f).then_some(f)).await;
    assert_eq!(to_bo, ServerFrame::Presence { user_id: ada.user.id, online: true, last_seen: None });
    let to_ada = a.next_matching(|f| is_presence_of(bo.user.id)(&f).then_some(f)).await;
    assert_eq!(to_ada, ServerFrame::Presence { user_id: bo.user.id, online: true, last_seen: None });
    assert!(listed(&app, &ada, bo.user.id).await.friend.online);
    assert!(listed(&app, &bo, ada.user.id).await.friend.online);

    let bad = app.call(Method::PUT, "/api/v1/me/privacy", &ada.token, Some(json!({"hide": true}))).await;
    assert_error(bad, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
}
