//! The service around the routes: bad bodies, limits, rate limits, discovery and health.
use parley_common::{Health, InstanceInfo, SignupMode};
use reqwest::StatusCode;
use serde_json::json;

use crate::{
    helpers::{assert_error, spawn, spawn_with, Backend},
    on_both_backends,
};

on_both_backends!(
    malformed_bodies_get_clear_errors,
    an_oversized_body_is_refused_with_413,
    login_is_rate_limited_per_ip_and_per_email,
    signup_is_rate_limited_per_email,
    code_guessing_is_rate_limited_per_signup,
    resends_are_rate_limited_per_email,
    metrics_are_served_to_loopback_or_with_the_token,
    bulk_accounts_get_a_session_and_no_password,
    https_is_served_directly_with_a_certificate_and_key,
    instance_health_and_openapi_are_public,
    unknown_routes_answer_json_404,
    the_web_ui_is_served_with_a_strict_content_security_policy,
);

async fn malformed_bodies_get_clear_errors(backend: Backend) {
    let app = spawn(backend).await;
    let url = app.at("/api/v1/auth/login");
    let not_json =
        app.client.post(&url).header("content-type", "application/json").body("{\"email\": ").send().await.unwrap();
    assert_error(not_json, StatusCode::BAD_REQUEST, "malformed_json").await;
    let missing_field = app.post("/api/v1/auth/login", json!({"email": "a@example.org"})).await;
    assert_error(missing_field, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let wrong_type = app.post("/api/v1/auth/signup", json!({"email": 5, "password": [], "display_name": null})).await;
    assert_error(wrong_type, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let no_content_type = app.client.post(&url).body("{}").send().await.unwrap();
    assert_error(no_content_type, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
}

async fn an_oversized_body_is_refused_with_413(backend: Backend) {
    let app = spawn_with(backend, |c| c.max_body_bytes = 4096).await;
    let huge = "x".repeat(5000);
    let response = app.signup("ta@example.org", &huge, "Ta").await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert_eq!(app.smtp.pending().await, 0);
    // The server is still fine.
    assert_eq!(app.signup("ta@example.org", "a good password", "Ta").await.status(), StatusCode::ACCEPTED);
}

async fn login_is_rate_limited_per_ip_and_per_email(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.rate_limits.login_per_ip = 4;
        c.rate_limits.login_per_email = 2;
    })
    .await;
    for _ in 0..2 {
        assert_error(
            app.login("ua@example.org", "wrong password").await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    }
    let limited = app.login("ua@example.org", "wrong password").await;
    assert!(limited.headers().contains_key("retry-after"));
    assert_error(limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Another email still has budget, until the address runs out.
    assert_error(app.login("ve@example.org", "wrong password").await, StatusCode::UNAUTHORIZED, "invalid_credentials")
        .await;
    assert_error(app.login("wi@example.org", "wrong password").await, StatusCode::TOO_MANY_REQUESTS, "rate_limited")
        .await;
}

async fn signup_is_rate_limited_per_email(backend: Backend) {
    let app = spawn_with(backend, |c| c.rate_limits.signup_per_email = 2).await;
    app.start_signup("xa@example.org", "a good password").await;
    app.start_signup("xa@example.org", "a good password").await;
    let third = app.signup("xa@example.org", "a good password", "Xa").await;
    assert_error(third, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(app.signup("ya@example.org", "a good password", "Ya").await.status(), StatusCode::ACCEPTED);
}

async fn code_guessing_is_rate_limited_per_signup(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.rate_limits.verify_per_signup = 3;
        c.code_max_attempts = 100;
    })
    .await;
    let signup = app.start_signup("za@example.org", "a good password").await;
    for guess in ["000000", "000001", "000002"] {
        let response = app.verify(&signup, guess).await;
        assert_ne!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    assert_error(app.verify(&signup, "000003").await, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

async fn instance_health_and_openapi_are_public(backend: Backend) {
    let app = spawn_with(backend, |c| c.instance_name = "Team Chat".into()).await;
    let instance: InstanceInfo = app.client.get(app.at("/api/v1/instance")).send().await.unwrap().json().await.unwrap();
    assert_eq!(instance.name, "Team Chat");
    assert_eq!(instance.signup, SignupMode::Verify);
    assert_eq!(instance.version, env!("CARGO_PKG_VERSION"));

    let health = app.client.get(app.at("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let health: Health = health.json().await.unwrap();
    assert_eq!(health.status, "ok");
    assert_eq!(
        health.database,
        match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    );

    let doc: serde_json::Value =
        app.client.get(app.at("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/auth/signup",
        "/api/v1/auth/verify",
        "/api/v1/auth/resend",
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/me",
        "/api/v1/instance",
        "/healthz",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

async fn unknown_routes_answer_json_404(backend: Backend) {
    let app = spawn(backend).await;
    let response = app.client.get(app.at("/api/v1/nope")).send().await.unwrap();
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
}

async fn the_web_ui_is_served_with_a_strict_content_security_policy(backend: Backend) {
    let ui = std::env::temp_dir().join(format!("parley-ui-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&ui).unwrap();
    std::fs::write(ui.join("index.html"), "<!doctype html><title>Parley</title>").unwrap();
    std::fs::write(ui.join("app.wasm"), b"\0asm").unwrap();
    let dir = ui.clone();
    let app = spawn_with(backend, move |c| c.ui_dir = dir).await;

    for path in ["/", "/chats/42"] {
        let page = app.client.get(app.at(path)).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        let headers = page.headers().clone();
        let csp = headers["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'self'",
            "script-src 'self' 'wasm-unsafe-eval'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ] {
            assert!(csp.contains(directive), "{csp} lacks {directive}");
        }
        assert!(!csp.contains("unsafe-inline"), "no inline script or style: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert!(page.text().await.unwrap().contains("<title>Parley</title>"), "the app's page for {path}");
    }
    let wasm = app.client.get(app.at("/app.wasm")).send().await.unwrap();
    assert_eq!(wasm.headers()["content-type"], "application/wasm");
    assert!(wasm.headers().get("access-control-allow-origin").is_none(), "no CORS");
    // Unknown API paths stay JSON errors, not the app's page.
    assert_error(app.client.get(app.at("/api/v1/nope")).send().await.unwrap(), StatusCode::NOT_FOUND, "not_found")
        .await;
    let api = app.client.get(app.at("/api/v1/instance")).send().await.unwrap();
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");
    std::fs::remove_dir_all(ui).unwrap();
}

async fn resends_are_rate_limited_per_email(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.resend_cooldown_secs = 0;
        c.rate_limits.resend_per_email = 2;
    })
    .await;
    let first = app.start_signup("ab@example.org", "a good password").await;
    let second = app.start_signup("ab@example.org", "a good password").await;
    for signup in [&first, &second] {
        let response = app.post("/api/v1/auth/resend", serde_json::json!({"signup_id": signup})).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let third = app.post("/api/v1/auth/resend", serde_json::json!({"signup_id": first})).await;
    assert_error(third, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

async fn metrics_are_served_to_loopback_or_with_the_token(backend: Backend) {
    let app = crate::helpers::spawn_open(backend, |_| {}).await;
    let ada = app.user("Ada").await;
    app.user("Bo").await;
    let chat = app.chat(&ada, "bo@example.org").await;
    let mut socket = crate::ws_client::WsClient::connect(&app, &ada.token).await;
    socket.say(chat, "counted").await;
    socket.next_ack().await;
    let text = app.client.get(app.at("/metrics")).send().await.unwrap().text().await.unwrap();
    for metric in [
        "parley_ws_connections",
        "parley_messages_total",
        "parley_acks_total",
        "parley_store_seconds_bucket",
        "parley_batch_members_total{from=\"database\"}",
    ] {
        assert!(text.contains(metric), "{metric} missing from:\n{text}");
    }

    let guarded =
        spawn_with(backend, |c| c.metrics_token = Some(parley_server::config::Secret("scrape-me".into()))).await;
    let anonymous = guarded.client.get(guarded.at("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::NOT_FOUND);
    let wrong = guarded.client.get(guarded.at("/metrics")).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::NOT_FOUND);
    let right = guarded.client.get(guarded.at("/metrics")).bearer_auth("scrape-me").send().await.unwrap();
    assert_eq!(right.status(), StatusCode::OK);
}

async fn bulk_accounts_get_a_session_and_no_password(backend: Backend) {
    let app = spawn(backend).await;
    let file = app.data_dir.join("tokens.tsv");
    std::fs::create_dir_all(&app.data_dir).unwrap();
    let made = parley_server::admin::create_users(&app.config, 3, "bot", &file).await.unwrap();
    assert_eq!(made, 3);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2][1], "bot-000002@bot.invalid");
    let me: parley_common::User = app.get_json("/api/v1/me", lines[0][2]).await;
    assert_eq!(me.email, "bot-000000@bot.invalid");
    assert_eq!(me.id.to_string(), lines[0][0]);
    assert_error(app.login("bot-000000@bot.invalid", "").await, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_error(
        app.login("bot-000000@bot.invalid", "!no-password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let again = parley_server::admin::create_users(&app.config, 1, "bot", &file).await;
    assert!(matches!(again, Err(parley_server::admin::AdminError::EmailTaken)));
}

async fn https_is_served_directly_with_a_certificate_and_key(backend: Backend) {
    let dir = std::env::temp_dir().join(format!("parley-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let (c, k) = (cert.clone(), key.clone());
    let app = crate::helpers::spawn_open(backend, move |config| {
        config.tls_cert = Some(c);
        config.tls_key = Some(k);
    })
    .await;
    let port = app.url.rsplit(':').next().unwrap().to_string();
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    let health = https.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    // Sessions made over it are Secure cookies.
    let signup = https
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&serde_json::json!({"email": "tls@example.org", "password": "a good password", "display_name": "T"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), StatusCode::OK);
    assert!(signup.headers()["set-cookie"].to_str().unwrap().contains("; Secure"));

    // Plain HTTP on the same port gets no answer from the API.
    let plain = app.client.get(app.at("/healthz")).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success(), "no plain HTTP beside HTTPS");
    std::fs::remove_dir_all(dir).unwrap();
}

/// After a restart every client reconnects at once. Until the server accepts them, the kernel
/// queues their handshakes up to the listening socket's backlog and drops the rest, whose
/// clients try again only after a second. Nothing accepts here: each connect below gives up
/// before that second, so every one of them must have been queued.
#[tokio::test]
async fn a_burst_of_connections_is_queued_until_accepted_not_dropped() {
    const CLIENTS: usize = 600;
    let listener = parley_server::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut connects = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        connects.spawn(async move {
            tokio::time::timeout(std::time::Duration::from_millis(800), tokio::net::TcpStream::connect(addr)).await
        });
    }
    let mut queued = Vec::new();
    while let Some(connect) = connects.join_next().await {
        if let Ok(Ok(stream)) = connect.unwrap() {
            queued.push(stream);
        }
    }
    assert_eq!(queued.len(), CLIENTS, "handshakes dropped by a full accept queue");
}
