//! Signup → code → verify → login, and every way it can go wrong.
use parley_common::{AuthResponse, SignupMode, SignupPending, User};
use reqwest::StatusCode;
use serde_json::json;

use crate::{
    helpers::{assert_error, spawn, spawn_with, Backend},
    on_both_backends,
};

on_both_backends!(
    the_whole_flow_from_signup_to_login,
    two_pending_signups_are_each_completed_only_by_their_own_code,
    the_signup_verified_first_wins_and_ends_the_others,
    a_wrong_code_costs_an_attempt_and_the_sixth_try_is_refused,
    an_expired_code_is_refused,
    resend_mails_a_new_code_after_the_cool_down,
    resend_stops_after_the_code_budget,
    login_before_verify_is_refused_with_email_not_verified,
    a_verified_email_cannot_sign_up_again,
    bad_emails_short_passwords_and_empty_names_are_refused,
    wrong_password_and_unknown_email_get_the_same_answer,
    open_signup_logs_in_at_once,
    closed_signup_is_refused_and_admins_can_still_create_accounts,
    without_smtp_the_code_is_written_to_the_mail_folder,
);

async fn the_whole_flow_from_signup_to_login(backend: Backend) {
    let app = spawn(backend).await;
    let signup_id = app.start_signup("  Ada@Example.org ", "correct horse").await;
    let code = app.smtp.next_code_for("ada@example.org").await;

    let response = app.verify(&signup_id, &code).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    let auth: AuthResponse = response.json().await.unwrap();
    assert_eq!(auth.user.email, "ada@example.org");
    assert_eq!(auth.user.display_name, "Tester");
    assert!(cookie.starts_with(&format!("parley_session={}", auth.token)), "{cookie}");

    let me = app.get_with_token("/api/v1/me", &auth.token).await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(me.json::<User>().await.unwrap(), auth.user);

    let logout = app.post_with_token("/api/v1/auth/logout", &auth.token).await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert_error(app.get_with_token("/api/v1/me", &auth.token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let login = app.login("ADA@example.org", "correct horse").await;
    assert_eq!(login.status(), StatusCode::OK);
    let again: AuthResponse = login.json().await.unwrap();
    assert_eq!(again.user.id, auth.user.id);
    assert_ne!(again.token, auth.token);
    assert_eq!(app.get_with_token("/api/v1/me", &again.token).await.status(), StatusCode::OK);
}

async fn two_pending_signups_are_each_completed_only_by_their_own_code(backend: Backend) {
    let app = spawn(backend).await;
    let owner = app.start_signup("bo@example.org", "owner password").await;
    let owner_code = app.smtp.next_code_for("bo@example.org").await;
    let squatter = app.start_signup("bo@example.org", "squatter password").await;
    let squatter_code = app.smtp.next_code_for("bo@example.org").await;
    assert_ne!(owner, squatter);

    // A code completes only the signup that asked for it.
    if owner_code != squatter_code {
        assert_error(app.verify(&squatter, &owner_code).await, StatusCode::BAD_REQUEST, "invalid_code").await;
        assert_error(app.verify(&owner, &squatter_code).await, StatusCode::BAD_REQUEST, "invalid_code").await;
    }
    // The owner, who reads the mailbox, verifies: the account gets the owner's password.
    let response = app.verify(&owner, &owner_code).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.login("bo@example.org", "owner password").await.status(), StatusCode::OK);
    assert_error(
        app.login("bo@example.org", "squatter password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    // The other signup died with it.
    assert_error(app.verify(&squatter, &squatter_code).await, StatusCode::NOT_FOUND, "signup_not_found").await;
}

async fn the_signup_verified_first_wins_and_ends_the_others(backend: Backend) {
    // The reverse order: the later signup is the one whose code is entered.
    let app = spawn(backend).await;
    let first = app.start_signup("cy@example.org", "first password").await;
    let first_code = app.smtp.next_code_for("cy@example.org").await;
    let second = app.start_signup("cy@example.org", "second password").await;
    let second_code = app.smtp.next_code_for("cy@example.org").await;

    assert_eq!(app.verify(&second, &second_code).await.status(), StatusCode::OK);
    assert_error(app.verify(&first, &first_code).await, StatusCode::NOT_FOUND, "signup_not_found").await;
    assert_eq!(app.login("cy@example.org", "second password").await.status(), StatusCode::OK);
    assert_error(app.login("cy@example.org", "first password").await, StatusCode::UNAUTHORIZED, "invalid_credentials")
        .await;
}

fn a_wrong_code_for(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

async fn a_wrong_code_costs_an_attempt_and_the_sixth_try_is_refused(backend: Backend) {
    let app = spawn_with(backend, |c| c.resend_cooldown_secs = 0).await;
    let signup = app.start_signup("di@example.org", "a good password").await;
    let code = app.smtp.next_code_for("di@example.org").await;
    let wrong = a_wrong_code_for(&code);

    for left in (1..=4).rev() {
        let body = assert_error(app.verify(&signup, &wrong).await, StatusCode::BAD_REQUEST, "invalid_code").await;
        assert!(body.error.message.contains(&format!("{left} attempt")), "{}", body.error.message);
    }
    assert_error(app.verify(&signup, &wrong).await, StatusCode::GONE, "code_attempts_exhausted").await;
    // The sixth try fails even with the right code: the code is dead.
    assert_error(app.verify(&signup, &code).await, StatusCode::GONE, "code_attempts_exhausted").await;

    // A new code brings new attempts; the old code stays dead.
    let resend = app.post("/api/v1/auth/resend", json!({"signup_id": signup})).await;
    assert_eq!(resend.status(), StatusCode::ACCEPTED);
    let new_code = app.smtp.next_code_for("di@example.org").await;
    if new_code != code {
        assert_error(app.verify(&signup, &code).await, StatusCode::BAD_REQUEST, "invalid_code").await;
    }
    assert_eq!(app.verify(&signup, &new_code).await.status(), StatusCode::OK);
}

async fn an_expired_code_is_refused(backend: Backend) {
    let app = spawn_with(backend, |c| c.code_ttl_secs = 0).await;
    let signup = app.start_signup("ed@example.org", "a good password").await;
    let code = app.smtp.next_code_for("ed@example.org").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_error(app.verify(&signup, &code).await, StatusCode::GONE, "code_expired").await;
}

async fn resend_mails_a_new_code_after_the_cool_down(backend: Backend) {
    let app = spawn(backend).await;
    let signup = app.start_signup("fa@example.org", "a good password").await;
    let _first = app.smtp.next_code_for("fa@example.org").await;
    let response = app.post("/api/v1/auth/resend", json!({"signup_id": signup})).await;
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "retry after {retry_after}");
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "resend_too_soon").await;
    assert_eq!(app.smtp.pending().await, 0, "no mail for a refused resend");

    let unknown = app.post("/api/v1/auth/resend", json!({"signup_id": "no-such-signup"})).await;
    assert_error(unknown, StatusCode::NOT_FOUND, "signup_not_found").await;
}

async fn resend_stops_after_the_code_budget(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.resend_cooldown_secs = 0;
        c.max_codes_per_signup = 3;
    })
    .await;
    let signup = app.start_signup("gu@example.org", "a good password").await;
    let mut last = app.smtp.next_code_for("gu@example.org").await;
    for _ in 0..2 {
        let response = app.post("/api/v1/auth/resend", json!({"signup_id": signup})).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(response.json::<SignupPending>().await.unwrap().signup_id, signup);
        last = app.smtp.next_code_for("gu@example.org").await;
    }
    let refused = app.post("/api/v1/auth/resend", json!({"signup_id": signup})).await;
    assert_error(refused, StatusCode::GONE, "too_many_codes").await;
    // The last code sent still works.
    assert_eq!(app.verify(&signup, &last).await.status(), StatusCode::OK);
}

async fn login_before_verify_is_refused_with_email_not_verified(backend: Backend) {
    let app = spawn(backend).await;
    app.start_signup("ha@example.org", "a good password").await;
    assert_error(app.login("ha@example.org", "a good password").await, StatusCode::FORBIDDEN, "email_not_verified")
        .await;
    // Without the pending signup's password, nothing tells the email apart from an unknown one.
    assert_error(
        app.login("ha@example.org", "not the password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
}

async fn a_verified_email_cannot_sign_up_again(backend: Backend) {
    let app = spawn(backend).await;
    app.register("io@example.org", "a good password").await;
    assert_error(app.signup("IO@example.org", "another password", "Io").await, StatusCode::CONFLICT, "email_taken")
        .await;
}

async fn bad_emails_short_passwords_and_empty_names_are_refused(backend: Backend) {
    let app = spawn(backend).await;
    for email in ["", "not-an-email", "a@b", "two@@example.org", "sp ace@example.org"] {
        assert_error(
            app.signup(email, "a good password", "X").await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_email",
        )
        .await;
    }
    assert_error(app.signup("ju@example.org", "short", "Ju").await, StatusCode::UNPROCESSABLE_ENTITY, "weak_password")
        .await;
    assert_error(
        app.signup("ju@example.org", "a good password", "   ").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_display_name",
    )
    .await;
    assert_eq!(app.smtp.pending().await, 0, "no code is mailed for a refused signup");
}

async fn wrong_password_and_unknown_email_get_the_same_answer(backend: Backend) {
    let app = spawn(backend).await;
    app.register("ka@example.org", "a good password").await;
    let wrong_password = app.login("ka@example.org", "wrong password").await;
    let unknown_email = app.login("nobody@example.org", "wrong password").await;
    assert_eq!(wrong_password.status(), unknown_email.status());
    let a = assert_error(wrong_password, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let b = assert_error(unknown_email, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_eq!(a, b);
}

async fn open_signup_logs_in_at_once(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.signup = SignupMode::Open;
        c.smtp_url = None;
    })
    .await;
    let response = app.signup("li@example.org", "a good password", "Li").await;
    assert_eq!(response.status(), StatusCode::OK);
    let auth: AuthResponse = response.json().await.unwrap();
    assert_eq!(app.get_with_token("/api/v1/me", &auth.token).await.status(), StatusCode::OK);
    assert_error(app.signup("li@example.org", "a good password", "Li").await, StatusCode::CONFLICT, "email_taken")
        .await;
    assert!(!app.data_dir.join("mail").exists(), "no mail in open mode");
}

async fn closed_signup_is_refused_and_admins_can_still_create_accounts(backend: Backend) {
    let app = spawn_with(backend, |c| c.signup = SignupMode::Closed).await;
    assert_error(app.signup("mo@example.org", "a good password", "Mo").await, StatusCode::FORBIDDEN, "signup_closed")
        .await;

    let mut password = "admin-chosen password\n".as_bytes();
    let created =
        parley_server::admin::create_user(&app.config, "Mo@Example.org", "Mo", Some(&mut password)).await.unwrap();
    assert_eq!(created.email, "mo@example.org");
    assert!(created.generated_password.is_none());
    assert_eq!(app.login("mo@example.org", "admin-chosen password").await.status(), StatusCode::OK);

    let generated = parley_server::admin::create_user(&app.config, "nu@example.org", "Nu", None).await.unwrap();
    let password = generated.generated_password.expect("a generated password");
    assert!(password.len() >= 16);
    assert_eq!(app.login("nu@example.org", &password).await.status(), StatusCode::OK);

    let again = parley_server::admin::create_user(&app.config, "nu@example.org", "Nu", None).await;
    assert!(matches!(again, Err(parley_server::admin::AdminError::EmailTaken)));
}

async fn without_smtp_the_code_is_written_to_the_mail_folder(backend: Backend) {
    let app = spawn_with(backend, |c| c.smtp_url = None).await;
    let signup = app.start_signup("ol@example.org", "a good password").await;
    let mail_dir = app.data_dir.join("mail");
    let files: Vec<_> = std::fs::read_dir(&mail_dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1);
    let mail = std::fs::read_to_string(&files[0]).unwrap();
    assert!(mail.contains("To: ol@example.org"), "{mail}");
    let received = crate::smtp_sink::ReceivedMail { recipients: vec![], data: mail.replace('\n', "\r\n") };
    let code = received.code().expect("a code in the mail file");
    assert_eq!(app.verify(&signup, &code).await.status(), StatusCode::OK);
}
