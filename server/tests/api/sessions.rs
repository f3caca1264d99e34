//! Sessions: bearer tokens and cookies, several devices, revocation and expiry.
use parley_common::AuthResponse;
use reqwest::StatusCode;

use crate::{
    helpers::{assert_error, spawn, spawn_with, Backend},
    on_both_backends,
};

on_both_backends!(
    each_device_has_its_own_session_and_logout_revokes_only_one,
    an_expired_session_is_refused,
    garbage_and_missing_tokens_are_refused,
    a_browser_session_lives_in_an_http_only_cookie,
    a_cookie_session_refuses_writes_from_a_foreign_origin,
    changing_the_password_needs_the_old_one_and_ends_the_other_sessions,
    the_display_name_can_be_changed,
    sessions_are_listed_and_revoked_one_by_one_or_all_but_this_one,
);

async fn each_device_has_its_own_session_and_logout_revokes_only_one(backend: Backend) {
    let app = spawn(backend).await;
    let laptop = app.register("pa@example.org", "a good password").await;
    let phone: AuthResponse = app.login("pa@example.org", "a good password").await.json().await.unwrap();
    assert_eq!(app.get_with_token("/api/v1/me", &phone.token).await.status(), StatusCode::OK);

    assert_eq!(app.post_with_token("/api/v1/auth/logout", &laptop.token).await.status(), StatusCode::NO_CONTENT);
    assert_error(app.get_with_token("/api/v1/me", &laptop.token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // Logging out twice with a revoked session is refused, not an error of ours.
    assert_error(
        app.post_with_token("/api/v1/auth/logout", &laptop.token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(app.get_with_token("/api/v1/me", &phone.token).await.status(), StatusCode::OK);
}

async fn an_expired_session_is_refused(backend: Backend) {
    let app = spawn_with(backend, |c| c.session_ttl_secs = 1).await;
    let auth = app.register("qi@example.org", "a good password").await;
    assert_eq!(app.get_with_token("/api/v1/me", &auth.token).await.status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_error(app.get_with_token("/api/v1/me", &auth.token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

async fn garbage_and_missing_tokens_are_refused(backend: Backend) {
    let app = spawn(backend).await;
    let no_session = app.client.get(app.at("/api/v1/me")).send().await.unwrap();
    assert_error(no_session, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_error(app.get_with_token("/api/v1/me", "not-a-token").await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let basic = app.client.get(app.at("/api/v1/me")).basic_auth("a", Some("b")).send().await.unwrap();
    assert_error(basic, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let bad_cookie =
        app.client.get(app.at("/api/v1/me")).header("cookie", "parley_session=forged").send().await.unwrap();
    assert_error(bad_cookie, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

async fn a_browser_session_lives_in_an_http_only_cookie(backend: Backend) {
    let app = spawn(backend).await;
    app.register("ra@example.org", "a good password").await;
    let browser = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let login = browser
        .post(app.at("/api/v1/auth/login"))
        .json(&serde_json::json!({"email": "ra@example.org", "password": "a good password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(!cookie.contains("Secure"), "no Secure without an https public URL: {cookie}");

    // A reload: the browser sends only its cookie.
    assert_eq!(browser.get(app.at("/api/v1/me")).send().await.unwrap().status(), StatusCode::OK);
    let logout = browser.post(app.at("/api/v1/auth/logout")).send().await.unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert!(logout.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(browser.get(app.at("/api/v1/me")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

async fn a_cookie_session_refuses_writes_from_a_foreign_origin(backend: Backend) {
    let app = spawn_with(backend, |c| c.public_url = Some("https://chat.example.org".into())).await;
    let auth = app.register("sa@example.org", "a good password").await;
    let cookie = format!("parley_session={}", auth.token);
    let foreign = app
        .client
        .post(app.at("/api/v1/auth/logout"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_error(foreign, StatusCode::FORBIDDEN, "forbidden_origin").await;
    assert_eq!(app.get_with_token("/api/v1/me", &auth.token).await.status(), StatusCode::OK, "still logged in");

    let own = app
        .client
        .post(app.at("/api/v1/auth/logout"))
        .header("cookie", &cookie)
        .header("origin", "https://chat.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::NO_CONTENT);
    assert!(own.headers()["set-cookie"].to_str().unwrap().contains("Secure"), "https public URL: Secure cookie");
}

async fn changing_the_password_needs_the_old_one_and_ends_the_other_sessions(backend: Backend) {
    let app = spawn(backend).await;
    let laptop = app.register("ch@example.org", "the old password").await;
    let phone: AuthResponse = app.login("ch@example.org", "the old password").await.json().await.unwrap();
    let mut phone_socket = crate::ws_client::WsClient::connect(&app, &phone.token).await;
    let change = |current: &str, new: &str| {
        app.client
            .post(app.at("/api/v1/me/password"))
            .bearer_auth(&laptop.token)
            .json(&serde_json::json!({"current_password": current, "new_password": new}))
            .send()
    };
    assert_error(
        change("not the old one", "a new password").await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_error(change("the old password", "short").await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "weak_password")
        .await;
    assert_eq!(change("the old password", "a new password").await.unwrap().status(), StatusCode::NO_CONTENT);

    // The phone's session and its socket are over; the laptop's lives on.
    assert_eq!(
        phone_socket.ended().await,
        crate::ws_client::Ended::Closed(Some(parley_common::ws::close::SESSION_ENDED))
    );
    assert_error(app.get_with_token("/api/v1/me", &phone.token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(app.get_with_token("/api/v1/me", &laptop.token).await.status(), StatusCode::OK);
    assert_error(
        app.login("ch@example.org", "the old password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_eq!(app.login("ch@example.org", "a new password").await.status(), StatusCode::OK);
}

async fn the_display_name_can_be_changed(backend: Backend) {
    let app = spawn(backend).await;
    let auth = app.register("dn@example.org", "a good password").await;
    let rename = |name: &str| {
        app.client
            .patch(app.at("/api/v1/me"))
            .bearer_auth(&auth.token)
            .json(&serde_json::json!({"display_name": name}))
            .send()
    };
    let renamed: parley_common::User = rename("  New Name ").await.unwrap().json().await.unwrap();
    assert_eq!(renamed.display_name, "New Name");
    assert_error(rename("   ").await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_display_name").await;
    let me: parley_common::User = app.get_json("/api/v1/me", &auth.token).await;
    assert_eq!(me.display_name, "New Name");
    let anonymous =
        app.client.patch(app.at("/api/v1/me")).json(&serde_json::json!({"display_name": "X"})).send().await.unwrap();
    assert_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

async fn sessions_are_listed_and_revoked_one_by_one_or_all_but_this_one(backend: Backend) {
    let app = spawn(backend).await;
    let laptop = app.register("se@example.org", "a good password").await;
    let phone: AuthResponse = app.login("se@example.org", "a good password").await.json().await.unwrap();
    let tablet: AuthResponse = app.login("se@example.org", "a good password").await.json().await.unwrap();
    let stranger = app.register("st@example.org", "a good password").await;

    let list: parley_common::SessionList = app.get_json("/api/v1/sessions", &laptop.token).await;
    assert_eq!(list.sessions.len(), 3);
    assert_eq!(list.sessions.iter().filter(|s| s.current).count(), 1);
    assert!(list.sessions.iter().all(|s| s.device == "parley-tests"), "labelled from the user agent");
    let me_now = list.sessions.iter().find(|s| s.current).unwrap().id;
    let others: Vec<i64> = list.sessions.iter().filter(|s| !s.current).map(|s| s.id).collect();

    // Revoke one: its socket closes, its token is dead.
    let phone_id = {
        let phone_list: parley_common::SessionList = app.get_json("/api/v1/sessions", &phone.token).await;
        phone_list.sessions.iter().find(|s| s.current).unwrap().id
    };
    assert!(others.contains(&phone_id));
    let mut phone_socket = crate::ws_client::WsClient::connect(&app, &phone.token).await;
    let revoke = app.client.delete(app.at(&format!("/api/v1/sessions/{phone_id}"))).bearer_auth(&laptop.token).send();
    assert_eq!(revoke.await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(
        phone_socket.ended().await,
        crate::ws_client::Ended::Closed(Some(parley_common::ws::close::SESSION_ENDED))
    );
    assert_error(app.get_with_token("/api/v1/me", &phone.token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;

    // Someone else's session is not yours to end.
    let theirs = app.client.delete(app.at(&format!("/api/v1/sessions/{me_now}"))).bearer_auth(&stranger.token).send();
    assert_error(theirs.await.unwrap(), StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(app.get_with_token("/api/v1/me", &laptop.token).await.status(), StatusCode::OK);

    // All but this one.
    let all = app.client.delete(app.at("/api/v1/sessions/others")).bearer_auth(&laptop.token).send();
    assert_eq!(all.await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_error(app.get_with_token("/api/v1/me", &tablet.token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let list: parley_common::SessionList = app.get_json("/api/v1/sessions", &laptop.token).await;
    assert_eq!(list.sessions.iter().map(|s| s.id).collect::<Vec<_>>(), vec![me_now]);
}
