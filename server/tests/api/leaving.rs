//! Leaving: the account's data exported as JSON, and the account deleted with its password. Its
//! sessions end and their sockets close, its friends see "Deleted user" (its messages stay there
//! under that name), it can no longer be written to, and its email can sign up again.
use parley_common::{AccountExport, AuthResponse, Chat, ChatList, Event, MessagePage, ServerFrame, SyncBatch};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{
    helpers::{assert_error, spawn, spawn_open, Backend, TestApp},
    on_both_backends,
    ws_client::{Ended, WsClient},
};

on_both_backends!(
    deleting_an_account_needs_its_password_and_ends_every_session,
    friends_see_a_deleted_user_who_keeps_their_messages_and_cannot_be_written_to,
    a_deleted_accounts_email_can_sign_up_again,
    a_chat_both_of_whose_members_left_goes_with_its_messages,
    the_export_holds_the_account_its_settings_chats_and_every_message,
);

async fn delete_me(app: &TestApp, who: &AuthResponse, password: &str) -> reqwest::Response {
    app.call(Method::DELETE, "/api/v1/me", &who.token, Some(json!({"password": password}))).await
}

/// Ada and Bo with a chat Ada started, and two messages each way.
async fn friends(app: &TestApp) -> (AuthResponse, AuthResponse, i64) {
    let ada = app.user("Ada").await;
    let bo = app.user("Bo").await;
    let chat = app.chat(&ada, "bo@example.org").await;
    let mut a = WsClient::connect(app, &ada.token).await;
    let mut b = WsClient::connect(app, &bo.token).await;
    for n in 0..2 {
        a.say(chat, &format!("from Ada {n}")).await;
        a.next_ack().await;
        b.say(chat, &format!("from Bo {n}")).await;
        b.next_ack().await;
    }
    a.close().await;
    b.close().await;
    (ada, bo, chat)
}

async fn deleting_an_account_needs_its_password_and_ends_every_session(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let (ada, _bo, _chat) = friends(&app).await;
    let phone: AuthResponse = app.login("ada@example.org", "a good password").await.json().await.unwrap();
    let mut laptop_socket = WsClient::connect(&app, &ada.token).await;
    let mut phone_socket = WsClient::connect(&app, &phone.token).await;

    assert_error(delete_me(&app, &ada, "not my password").await, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let missing = app.call(Method::DELETE, "/api/v1/me", &ada.token, None).await;
    assert_error(missing, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    assert_eq!(app.get_with_token("/api/v1/me", &phone.token).await.status(), StatusCode::OK, "nothing happened");

    let deleted = delete_me(&app, &ada, "a good password").await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(deleted.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"), "the cookie goes too");
    for socket in [&mut laptop_socket, &mut phone_socket] {
        assert_eq!(socket.ended().await, Ended::Closed(Some(parley_common::ws::close::SESSION_ENDED)));
    }
    for token in [&ada.token, &phone.token] {
        assert_error(app.get_with_token("/api/v1/me", token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
        assert_error(app.get_with_token("/api/v1/chats", token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
        let socket = WsClient::connect_with({
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut request = app.ws_url().into_client_request().unwrap();
            request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
            request
        })
        .await;
        assert!(matches!(&socket, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401));
    }
    // The password opens nothing any more.
    assert_error(
        app.login("ada@example.org", "a good password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
}

async fn friends_see_a_deleted_user_who_keeps_their_messages_and_cannot_be_written_to(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let (ada, bo, chat) = friends(&app).await;
    let before: ChatList = app.get_json("/api/v1/chats", &bo.token).await;
    let mut b = WsClient::connect(&app, &bo.token).await;

    assert_eq!(delete_me(&app, &ada, "a good password").await.status(), StatusCode::NO_CONTENT);
    // Bo hears of it at once: the chat, as it is now.
    let now = b
        .next_matching(|f| match f {
            ServerFrame::Event(Event::ChatCreated { chat, .. }) => Some(chat),
            _ => None,
        })
        .await;
    let gone = |c: &Chat| {
        assert_eq!(c.id, chat);
        assert_eq!(c.friend.id, ada.user.id);
        assert_eq!(c.friend.display_name, "Deleted user");
        assert_eq!(c.friend.email, "", "no address is shown");
        assert!(c.friend.deleted);
        assert_eq!((c.friend.online, c.friend.last_seen.as_deref()), (false, None));
    };
    gone(&now);
    let list: ChatList = app.get_json("/api/v1/chats", &bo.token).await;
    gone(&list.chats[0]);
    // Offline devices get it from their cursor.
    let since = app.get_json::<SyncBatch>(&format!("/api/v1/sync?since={}", before.cursor), &bo.token).await;
    let replayed = since.events.iter().find_map(|e| match e {
        Event::ChatCreated { chat, .. } => Some(chat),
        _ => None,
    });
    gone(replayed.expect("a chat_created after the cursor"));
    assert!(!serde_json::to_string(&list).unwrap().contains("ada@example.org"), "her address is gone");

    // Her messages stay in Bo's chat, under "Deleted user".
    let page: MessagePage = app.get_json(&format!("/api/v1/chats/{chat}/messages"), &bo.token).await;
    assert_eq!(page.messages.len(), 4);
    assert_eq!(page.messages.iter().filter(|m| m.sender_id == ada.user.id).count(), 2);

    // Nobody can write to her, or find her by her old address.
    b.say(chat, "are you there?").await;
    assert_eq!(b.next_error().await.0, "chat_not_found");
    assert_eq!(
        app.get_json::<MessagePage>(&format!("/api/v1/chats/{chat}/messages"), &bo.token).await.messages.len(),
        4
    );
    let by_email = app.call(Method::POST, "/api/v1/chats", &bo.token, Some(json!({"email": "ada@example.org"}))).await;
    assert_error(by_email, StatusCode::NOT_FOUND, "user_not_found").await;
    let by_placeholder =
        app.call(Method::POST, "/api/v1/chats", &bo.token, Some(json!({"email": format!("deleted:{}", ada.user.id)})));
    assert_error(by_placeholder.await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_email").await;
}

async fn a_deleted_accounts_email_can_sign_up_again(backend: Backend) {
    let app = spawn(backend).await;
    let ada = app.register("ada@example.org", "a good password").await;
    let bo = app.register("bo@example.org", "another password").await;
    let old_chat = app.chat(&bo, "ada@example.org").await;
    assert_eq!(delete_me(&app, &ada, "a good password").await.status(), StatusCode::NO_CONTENT);

    // The whole signup again, code and all: a new account, with nothing of the old one.
    let again = app.register("ada@example.org", "a new password").await;
    assert_ne!(again.user.id, ada.user.id);
    assert_eq!(again.user.email, "ada@example.org");
    assert!(app.get_json::<ChatList>("/api/v1/chats", &again.token).await.chats.is_empty());
    let new_chat = app.chat(&bo, "ada@example.org").await;
    assert_ne!(new_chat, old_chat, "a chat with the new account, not the old one's");
    let list: ChatList = app.get_json("/api/v1/chats", &bo.token).await;
    assert_eq!(list.chats.len(), 2);
    assert!(list.chats.iter().any(|c| c.id == old_chat && c.friend.deleted));
    assert!(list.chats.iter().any(|c| c.id == new_chat && c.friend.email == "ada@example.org" && !c.friend.deleted));
}

async fn a_chat_both_of_whose_members_left_goes_with_its_messages(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let (ada, bo, chat) = friends(&app).await;
    let store = parley_server::store::connect(&app.config.database_url()).await.unwrap();
    assert_eq!(delete_me(&app, &ada, "a good password").await.status(), StatusCode::NO_CONTENT);
    assert_eq!(store.messages_before(chat, i64::MAX, 10).await.unwrap().len(), 4, "Bo still has the chat");
    assert_eq!(delete_me(&app, &bo, "a good password").await.status(), StatusCode::NO_CONTENT);
    assert!(store.messages_before(chat, i64::MAX, 10).await.unwrap().is_empty(), "nobody is left to read them");
    assert!(store.member_ids(chat).await.unwrap().is_empty());
}

async fn the_export_holds_the_account_its_settings_chats_and_every_message(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let (ada, bo, chat) = friends(&app).await;
    let cy = app.user("Cy").await;
    let cy_chat = app.chat(&cy, "ada@example.org").await;
    let block = app.call(Method::POST, "/api/v1/blocks", &ada.token, Some(json!({"user_id": cy.user.id}))).await;
    assert_eq!(block.status(), StatusCode::NO_CONTENT);
    let hide = app.call(Method::PUT, "/api/v1/me/privacy", &ada.token, Some(json!({"hide_presence": true}))).await;
    assert_eq!(hide.status(), StatusCode::OK);

    let response = app.get_with_token("/api/v1/me/export", &ada.token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let disposition = response.headers()["content-disposition"].to_str().unwrap().to_string();
    assert!(disposition.starts_with("attachment") && disposition.contains("parley-export.json"), "{disposition}");
    let export: AccountExport = response.json().await.unwrap();
    assert_eq!((export.account.id, export.account.email.as_str()), (ada.user.id, "ada@example.org"));
    assert!(export.privacy.hide_presence);
    assert_eq!(export.blocked.iter().map(|b| b.user_id).collect::<Vec<_>>(), vec![cy.user.id]);
    assert!(export.sessions.iter().any(|s| s.current));
    assert_eq!(export.chats.len(), 2);
    let with_bo = export.chats.iter().find(|c| c.chat.id == chat).expect("the chat with Bo");
    assert_eq!(with_bo.chat.friend.email, "bo@example.org");
    let bodies: Vec<&str> = with_bo.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, vec!["from Ada 0", "from Bo 0", "from Ada 1", "from Bo 1"], "every message, oldest first");
    let with_cy = export.chats.iter().find(|c| c.chat.id == cy_chat).expect("the chat with Cy");
    assert!(with_cy.chat.blocked && with_cy.messages.is_empty());

    // Only one's own: Bo's export is Bo's, and without a session there is none.
    let bos: AccountExport = app.get_json("/api/v1/me/export", &bo.token).await;
    assert_eq!(bos.account.id, bo.user.id);
    assert!(bos.blocked.is_empty() && bos.chats.len() == 1);
    let anonymous = app.client.get(app.at("/api/v1/me/export")).send().await.unwrap();
    assert_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
}
