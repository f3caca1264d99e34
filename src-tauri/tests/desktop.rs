//! The real desktop app end to end: the `parley-desktop` binary in Xvfb with a D-Bus session of
//! its own, driven over WebDriver by `tauri-driver` (WebKitWebDriver underneath), against a real
//! Parley server run in this process. Ada logs in, starts a chat with Bo, and Bo's message (sent
//! over a plain WebSocket) shows up; Cy's message in another chat puts "(1)" in the window title
//! and asks for a notification. The server stops; the app is started again and shows the chats
//! and history from its cache, keeps a message written offline as pending, and sends it once the
//! server is back. A second launch only hands over to the first. Screenshots of each step go to
//! `<target>/desktop-screenshots/`.
//!
//! Skips (passing) when xvfb-run, dbus-run-session, tauri-driver or WebKitWebDriver is missing,
//! unless `PARLEY_REQUIRE_DESKTOP_TESTS` is set, as CI does.
#![cfg(target_os = "linux")]

mod support;

use support::{desktop::Desktop, server::TestServer, PASSWORD};

/// Bo's, over the WebSocket; the app must show it.
const HELLO: &str = "Hello Ada, Bo here";
const FROM_CY: &str = "Cy says hi";
const OFFLINE: &str = "Written while the server was away";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_logs_in_chats_and_keeps_working_from_its_cache_when_the_server_is_gone() {
    let Some(tools) = support::desktop::tools() else { return };
    support::assert_ui_built();
    support::clear_screenshots();

    let mut server = TestServer::start();
    server.create_account("ada@example.org", "Ada").await;
    let bo = server.create_account("bo@example.org", "Bo").await;
    let cy = server.create_account("cy@example.org", "Cy").await;
    let data_dir = support::temp_dir("parley-desktop-data");
    let desktop = Desktop::start(&tools, &server.url, &data_dir).await;

    // First run: log in, start a chat, receive Bo's message live.
    let mut app = desktop.app("first-run").await;
    app.fill("#login-email", "ada@example.org").await;
    app.fill("#login-password", PASSWORD).await;
    app.shot("login").await;
    app.click("#login-submit").await;
    app.find("#no-chats").await;
    app.shot("logged-in").await;
    app.fill("#new-chat-email", "bo@example.org").await;
    app.click("#new-chat-submit").await;
    let bo_chat = r#".chat-item[data-friend="bo@example.org"]"#;
    app.find(bo_chat).await;
    app.click(bo_chat).await;
    let chat_id = server.chat_with(&bo, "ada@example.org").await;
    server.send_over_websocket(&bo, chat_id, HELLO).await;
    app.until_text(".message.theirs .body", HELLO).await;
    app.shot("message-from-bo").await;

    // Cy writes in a chat that is not on screen: unread count in the title, and a notification.
    let cy_chat = server.chat_with(&cy, "ada@example.org").await;
    server.send_over_websocket(&cy, cy_chat, FROM_CY).await;
    app.find(r#".chat-item[data-friend="cy@example.org"] .dot"#).await;
    desktop.until("the unread count in the title", || desktop.window_titles().contains("\"Parley (1)\"")).await;
    desktop.until("a notification from Cy", || desktop.notifications().contains(FROM_CY)).await;
    assert!(desktop.notifications().contains("\"Cy\""), "the notification is titled with the sender");
    assert!(!desktop.notifications().contains(HELLO), "no notification for the chat on screen");
    app.shot("unread-from-cy").await;
    desktop.screen("unread-from-cy");
    app.click(r#".chat-item[data-friend="cy@example.org"]"#).await;
    desktop.until("the title without unread", || desktop.window_titles().contains("\"Parley\"")).await;

    // The server goes away while the app runs.
    server.stop();
    app.find("#connection-banner").await;
    app.shot("server-gone").await;
    app.close().await.expect("the WebDriver session ends");
    desktop.until_app_exited().await;

    // Second run, offline: everything from the cache; a message written now waits as pending.
    let mut app = desktop.app("offline-restart").await;
    app.find(bo_chat).await;
    app.find(r#".chat-item[data-friend="cy@example.org"]"#).await;
    app.click(bo_chat).await;
    app.until_text(".message.theirs .body", HELLO).await;
    app.shot("history-from-cache").await;
    app.fill("#composer-text", OFFLINE).await;
    app.click("#composer-send").await;
    app.until_text(".message.pending .body", OFFLINE).await;
    app.shot("pending-offline").await;

    // A second launch hands over to this one and exits.
    let second = desktop.launch_second_instance().await;
    assert!(second.success(), "the second launch exits cleanly: {second}");
    app.find(bo_chat).await;

    // The server comes back: the message goes out, once.
    server.restart();
    app.until("the pending message confirmed", || async { app.count(".message.pending").await == 0 }).await;
    app.until_text(".message.mine .body", OFFLINE).await;
    app.shot("sent-after-reconnect").await;
    let bodies = server.history(&bo, chat_id).await;
    assert_eq!(bodies, vec![HELLO.to_string(), OFFLINE.to_string()], "Bo's chat holds each message once");
    app.close().await.expect("the WebDriver session ends");
    desktop.until_app_exited().await;
    drop(desktop);
    let _ = std::fs::remove_dir_all(&data_dir);
}
