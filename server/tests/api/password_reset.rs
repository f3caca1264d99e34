//! A forgotten password: code by mail, a new password, every old session ended — and every way
//! an attacker might use it to learn about or take over an account.
use std::time::Duration;

use parley_common::{AuthResponse, PasswordResetPending};
use reqwest::StatusCode;
use serde_json::json;

use crate::{
    helpers::{assert_error, spawn, spawn_with, Backend, TestApp},
    on_both_backends,
    ws_client::{Ended, WsClient},
};

on_both_backends!(
    a_mailed_code_sets_a_new_password_and_ends_every_old_session,
    an_unknown_email_gets_the_same_answer_and_no_mail,
    one_accounts_code_does_not_work_on_anothers_reset,
    five_wrong_codes_use_the_reset_up,
    an_expired_code_is_refused,
    a_new_request_replaces_the_old_code,
    a_code_works_once,
    requests_are_rate_limited_per_address,
);

const PASSWORD: &str = "a good password";
const NEW_PASSWORD: &str = "a brand new password";

async fn forgot(app: &TestApp, email: &str) -> String {
    let response = app.post("/api/v1/auth/password/forgot", json!({"email": email})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.json::<PasswordResetPending>().await.unwrap().reset_id
}

async fn reset(app: &TestApp, reset_id: &str, code: &str, new_password: &str) -> reqwest::Response {
    app.post("/api/v1/auth/password/reset", json!({"reset_id": reset_id, "code": code, "new_password": new_password}))
        .await
}

/// A code that is not the mailed one.
fn other_than(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

async fn a_mailed_code_sets_a_new_password_and_ends_every_old_session(backend: Backend) {
    let app = spawn(backend).await;
    let laptop = app.register("ada@example.org", PASSWORD).await;
    let phone: AuthResponse = app.login("ada@example.org", PASSWORD).await.json().await.unwrap();
    let mut phone_socket = WsClient::connect(&app, &phone.token).await;

    let reset_id = forgot(&app, "  Ada@Example.org ").await;
    let mail = app.smtp.next_mail_to("ada@example.org").await;
    assert!(mail.body().contains("password"), "{}", mail.body());
    let code = mail.code().expect("a code in the mail");
    let response = reset(&app, &reset_id, &code, NEW_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("set-cookie").is_some(), "a browser is logged in by cookie");
    let fresh: AuthResponse = response.json().await.unwrap();
    assert_eq!(fresh.user.email, "ada@example.org");
    assert_eq!(app.get_with_token("/api/v1/me", &fresh.token).await.status(), StatusCode::OK);

    // Whoever held the old password is out, sockets too.
    for old in [&laptop.token, &phone.token] {
        assert_error(app.get_with_token("/api/v1/me", old).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    assert_eq!(phone_socket.ended().await, Ended::Closed(Some(parley_common::ws::close::SESSION_ENDED)));
    assert_error(app.login("ada@example.org", PASSWORD).await, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_eq!(app.login("ada@example.org", NEW_PASSWORD).await.status(), StatusCode::OK);
}

async fn an_unknown_email_gets_the_same_answer_and_no_mail(backend: Backend) {
    let app = spawn(backend).await;
    app.register("ada@example.org", PASSWORD).await;
    let known = app.post("/api/v1/auth/password/forgot", json!({"email": "ada@example.org"})).await;
    let unknown = app.post("/api/v1/auth/password/forgot", json!({"email": "nobody@example.org"})).await;
    assert_eq!(known.status(), unknown.status());
    let known: serde_json::Value = known.json().await.unwrap();
    let unknown: serde_json::Value = unknown.json().await.unwrap();
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&known), keys(&unknown), "the same shape");
    assert_eq!(known["reset_id"].as_str().unwrap().len(), unknown["reset_id"].as_str().unwrap().len());
    app.smtp.next_mail_to("ada@example.org").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.smtp.pending().await, 0, "no mail for an address without an account");

    // And the fake reset fails exactly as a wrong code on a real one does.
    let fake = reset(&app, unknown["reset_id"].as_str().unwrap(), "123456", NEW_PASSWORD).await;
    let real = reset(&app, known["reset_id"].as_str().unwrap(), "123456", NEW_PASSWORD).await;
    assert_eq!(fake.status(), real.status());
    assert_eq!(fake.json::<serde_json::Value>().await.unwrap(), real.json::<serde_json::Value>().await.unwrap());
}

async fn one_accounts_code_does_not_work_on_anothers_reset(backend: Backend) {
    let app = spawn(backend).await;
    app.register("ada@example.org", PASSWORD).await;
    app.register("eve@example.org", PASSWORD).await;
    let adas = forgot(&app, "ada@example.org").await;
    let eves = forgot(&app, "eve@example.org").await;
    let eves_code = app.smtp.next_code_for("eve@example.org").await;
    app.smtp.next_code_for("ada@example.org").await;
    assert_error(reset(&app, &adas, &eves_code, "eve owns ada now").await, StatusCode::BAD_REQUEST, "invalid_code")
        .await;
    assert_error(
        app.login("ada@example.org", "eve owns ada now").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_eq!(reset(&app, &eves, &eves_code, NEW_PASSWORD).await.status(), StatusCode::OK);
}

async fn five_wrong_codes_use_the_reset_up(backend: Backend) {
    let app = spawn(backend).await;
    app.register("ada@example.org", PASSWORD).await;
    let reset_id = forgot(&app, "ada@example.org").await;
    let code = app.smtp.next_code_for("ada@example.org").await;
    for _ in 0..5 {
        assert_error(
            reset(&app, &reset_id, &other_than(&code), NEW_PASSWORD).await,
            StatusCode::BAD_REQUEST,
            "invalid_code",
        )
        .await;
    }
    assert_error(reset(&app, &reset_id, &code, NEW_PASSWORD).await, StatusCode::BAD_REQUEST, "invalid_code").await;
    assert_eq!(app.login("ada@example.org", PASSWORD).await.status(), StatusCode::OK, "the password is unchanged");
}

async fn an_expired_code_is_refused(backend: Backend) {
    let app = spawn_with(backend, |c| c.code_ttl_secs = 1).await;
    app.register("ada@example.org", PASSWORD).await;
    let reset_id = forgot(&app, "ada@example.org").await;
    let code = app.smtp.next_code_for("ada@example.org").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_error(reset(&app, &reset_id, &code, NEW_PASSWORD).await, StatusCode::BAD_REQUEST, "invalid_code").await;
}

async fn a_new_request_replaces_the_old_code(backend: Backend) {
    let app = spawn(backend).await;
    app.register("ada@example.org", PASSWORD).await;
    let first = forgot(&app, "ada@example.org").await;
    let first_code = app.smtp.next_code_for("ada@example.org").await;
    let second = forgot(&app, "ada@example.org").await;
    let second_code = app.smtp.next_code_for("ada@example.org").await;
    assert_error(reset(&app, &first, &first_code, NEW_PASSWORD).await, StatusCode::BAD_REQUEST, "invalid_code").await;
    assert_eq!(reset(&app, &second, &second_code, NEW_PASSWORD).await.status(), StatusCode::OK);
}

async fn a_code_works_once(backend: Backend) {
    let app = spawn(backend).await;
    app.register("ada@example.org", PASSWORD).await;
    let reset_id = forgot(&app, "ada@example.org").await;
    let code = app.smtp.next_code_for("ada@example.org").await;
    assert_eq!(reset(&app, &reset_id, &code, NEW_PASSWORD).await.status(), StatusCode::OK);
    assert_error(reset(&app, &reset_id, &code, "yet another password").await, StatusCode::BAD_REQUEST, "invalid_code")
        .await;
    assert_eq!(app.login("ada@example.org", NEW_PASSWORD).await.status(), StatusCode::OK);
}

async fn requests_are_rate_limited_per_address(backend: Backend) {
    let app = spawn_with(backend, |c| c.rate_limits.resend_per_email = 2).await;
    app.register("ada@example.org", PASSWORD).await;
    forgot(&app, "ada@example.org").await;
    forgot(&app, "ada@example.org").await;
    let third = app.post("/api/v1/auth/password/forgot", json!({"email": "ada@example.org"})).await;
    assert!(third.headers().contains_key("retry-after"));
    assert_error(third, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Unknown addresses are limited the same way, so the limit tells nothing either.
    forgot(&app, "nobody@example.org").await;
    forgot(&app, "nobody@example.org").await;
    let third = app.post("/api/v1/auth/password/forgot", json!({"email": "nobody@example.org"})).await;
    assert_error(third, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}
