//! The authorisation matrix: every route that needs a session, called with no session, an
//! expired one, a revoked one, a stranger's (for a chat's own routes) and the right one.
use parley_common::AuthResponse;
use parley_server::{
    clock::now_millis,
    crypto::new_session_token,
    store::{self, NewSession},
};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::{
    helpers::{assert_error, spawn_open, Backend, TestApp},
    on_both_backends,
    ws_client::WsClient,
};

on_both_backends!(every_route_answers_each_kind_of_caller_as_it_should);

/// A token for a session that expired a second ago.
async fn expired_token(app: &TestApp, user_id: i64) -> String {
    let store = store::connect(&app.config.database_url()).await.unwrap();
    let (token, token_hash) = new_session_token();
    let now = now_millis();
    store
        .create_session(NewSession {
            user_id,
            token_hash: &token_hash,
            user_agent: None,
            now: now - 5000,
            expires_at: now - 1000,
        })
        .await
        .unwrap();
    token
}

async fn call(
    app: &TestApp,
    method: &Method,
    path: &str,
    body: Option<&serde_json::Value>,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.request(method.clone(), app.at(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.unwrap()
}

async fn every_route_answers_each_kind_of_caller_as_it_should(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let ada = app.user("Ada").await;
    let bo = app.user("Bo").await;
    let eve = app.user("Eve").await;
    let chat = app.chat(&ada, "bo@example.org").await;
    let expired = expired_token(&app, ada.user.id).await;
    let revoked: AuthResponse = app.login("ada@example.org", "a good password").await.json().await.unwrap();
    assert_eq!(app.post_with_token("/api/v1/auth/logout", &revoked.token).await.status(), StatusCode::NO_CONTENT);

    let new_chat = json!({"email": "bo@example.org"});
    let routes: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (Method::GET, "/api/v1/me".into(), None),
        (Method::GET, "/api/v1/chats".into(), None),
        (Method::POST, "/api/v1/chats".into(), Some(new_chat.clone())),
        (Method::GET, format!("/api/v1/chats/{chat}/messages"), None),
        (Method::GET, "/api/v1/sync".into(), None),
        (Method::GET, "/api/v1/sessions".into(), None),
        (Method::DELETE, "/api/v1/sessions/others".into(), None),
        (Method::PATCH, "/api/v1/me".into(), Some(json!({"display_name": "Ada L."}))),
        (
            Method::POST,
            "/api/v1/me/password".into(),
            Some(json!({"current_password": "a good password", "new_password": "a good password"})),
        ),
        (Method::GET, "/api/v1/me/export".into(), None),
        (Method::GET, "/api/v1/me/privacy".into(), None),
        (Method::PUT, "/api/v1/me/privacy".into(), Some(json!({"hide_presence": false}))),
        (Method::GET, "/api/v1/blocks".into(), None),
        (Method::POST, "/api/v1/blocks".into(), Some(json!({"user_id": bo.user.id}))),
        (Method::DELETE, format!("/api/v1/blocks/{}", bo.user.id), None),
        (Method::POST, "/api/v1/auth/logout".into(), None),
    ];
    for (method, path, body) in &routes {
        for (who, token) in
            [("no session", None), ("expired", Some(expired.as_str())), ("revoked", Some(revoked.token.as_str()))]
        {
            let response = call(&app, method, path, body.as_ref(), token).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{method} {path} with {who}");
            assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
        }
    }

    // A stranger to the chat: its history is as if it did not exist; their own routes work.
    let history = call(&app, &Method::GET, &format!("/api/v1/chats/{chat}/messages"), None, Some(&eve.token)).await;
    assert_error(history, StatusCode::NOT_FOUND, "chat_not_found").await;
    for path in ["/api/v1/me", "/api/v1/chats", "/api/v1/sync"] {
        let response = call(&app, &Method::GET, path, None, Some(&eve.token)).await;
        assert_eq!(response.status(), StatusCode::OK, "{path} for Eve");
        let text = response.text().await.unwrap();
        assert!(!text.contains("bo@example.org"), "{path} shows Eve nothing of Ada's chat: {text}");
    }

    // Deleting the account: no session, a dead one, or someone else's (with Ada's password) never
    // reaches Ada's account.
    let delete = json!({"password": "a good password"});
    for (who, token) in
        [("no session", None), ("expired", Some(expired.as_str())), ("revoked", Some(revoked.token.as_str()))]
    {
        let response = call(&app, &Method::DELETE, "/api/v1/me", Some(&delete), token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "DELETE /api/v1/me with {who}");
    }
    // The route names no account: Eve's session can only ever mean Eve's, checked against her password.
    let not_eves = json!({"password": "Ada's, say"});
    let by_eve = call(&app, &Method::DELETE, "/api/v1/me", Some(&not_eves), Some(&eve.token)).await;
    assert_error(by_eve, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_eq!(app.login("ada@example.org", "a good password").await.status(), StatusCode::OK, "Ada is still there");

    // The right user, on every route (logout last: it ends the session).
    for (method, path, body) in &routes {
        let response = call(&app, method, path, body.as_ref(), Some(&ada.token)).await;
        assert!(response.status().is_success(), "{method} {path} for Ada: {}", response.status());
    }

    // The WebSocket upgrade, likewise.
    for (who, token) in
        [("expired", expired.as_str()), ("revoked", revoked.token.as_str()), ("logged out", ada.token.as_str())]
    {
        let mut request = app.ws_url().into_client_request().unwrap();
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        let refused = WsClient::connect_with(request).await;
        assert!(
            matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401),
            "WebSocket with {who} session"
        );
    }
    let eve_socket = WsClient::connect(&app, &eve.token).await;
    assert_eq!(eve_socket.user.id, eve.user.id, "the socket is Eve's, whatever a frame may claim");
}
