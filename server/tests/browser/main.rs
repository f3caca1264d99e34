//! End-to-end: the seed's walkthrough in two headless Chromium sessions against the real server
//! process, with a screenshot of each step under `<target>/e2e-screenshots`.
mod harness;
#[path = "../support/server_process.rs"]
mod server_process;
// Shared with the API tests, which use all of it.
#[allow(dead_code)]
#[path = "../api/smtp_sink.rs"]
mod smtp_sink;

use harness::{Browser, Driver};
use server_process::ServerProcess;
use smtp_sink::SmtpSink;

const PASSWORD: &str = "a good password";

/// Signs up through the UI, reading the code from the mail that arrived over SMTP.
async fn sign_up(browser: &mut Browser, server: &ServerProcess, smtp: &SmtpSink, email: &str, name: &str) {
    browser.goto(&server.url()).await;
    browser.click("#to-signup").await;
    browser.fill("#signup-email", email).await;
    browser.fill("#signup-name", name).await;
    browser.fill("#signup-password", PASSWORD).await;
    browser.shot("signup").await;
    browser.click("#signup-submit").await;
    browser.find("#verify-code").await;
    let code = smtp.next_code_for(email).await;
    browser.fill("#verify-code", &code).await;
    browser.shot("code").await;
    browser.click("#verify-submit").await;
    browser.find("#no-chats").await;
    browser.shot("empty-chat-page").await;
}

/// POSTs JSON to the server and returns the JSON answer.
async fn post_json(server: &ServerProcess, path: &str, body: serde_json::Value) -> serde_json::Value {
    let response = reqwest::Client::new().post(format!("{}{path}", server.url())).json(&body).send().await.unwrap();
    assert!(response.status().is_success(), "POST {path}: {}", response.status());
    response.json().await.unwrap()
}

/// `GET path` with a bearer token.
async fn get(server: &ServerProcess, path: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new().get(format!("{}{path}", server.url())).bearer_auth(token).send().await.unwrap()
}

/// An account made through the API, for the third person of the story.
async fn sign_up_by_api(server: &ServerProcess, smtp: &SmtpSink, email: &str, name: &str) -> String {
    let signup = serde_json::json!({"email": email, "password": PASSWORD, "display_name": name});
    let pending = post_json(server, "/api/v1/auth/signup", signup).await;
    let code = smtp.next_code_for(email).await;
    let verify = serde_json::json!({"signup_id": pending["signup_id"], "code": code});
    let auth = post_json(server, "/api/v1/auth/verify", verify).await;
    auth["token"].as_str().unwrap().to_string()
}

/// Sends `count` messages as the holder of `token` over a WebSocket, waiting for each ack.
async fn send_messages(server: &ServerProcess, token: &str, chat_id: i64, count: usize) {
    send_notes(server, token, chat_id, 0..count).await
}

/// Sends "note n" for each n of `numbers`, each under a `client_id` made from n.
async fn send_notes(server: &ServerProcess, token: &str, chat_id: i64, numbers: std::ops::Range<usize>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    let mut request = format!("ws://127.0.0.1:{}/api/v1/ws", server.port).into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    for n in numbers {
        let frame = parley_common::ClientFrame::Send {
            chat_id,
            client_id: format!("00000000-0000-4000-8000-{n:012}"),
            body: format!("note {n}"),
        };
        socket.send(Message::Text(serde_json::to_string(&frame).unwrap().into())).await.unwrap();
        loop {
            let Some(Ok(Message::Text(text))) = socket.next().await else { panic!("the socket ended") };
            if matches!(serde_json::from_str(&text), Ok(parley_common::ServerFrame::Ack { .. })) {
                break;
            }
        }
    }
    let _ = socket.close(None).await;
}

/// The real server serving the built web UI, the SMTP sink it mails to, and a chromedriver.
async fn stage() -> (SmtpSink, ServerProcess, Driver) {
    let smtp = SmtpSink::start().await;
    let ui_dir = harness::workspace_root().join("ui/dist").display().to_string();
    let smtp_url = smtp.url();
    let server = ServerProcess::start(&[("PARLEY_UI_DIR", &ui_dir), ("PARLEY_SMTP_URL", &smtp_url)]).await;
    (smtp, server, Driver::start().await)
}

fn chat_with(email: &str) -> String {
    format!(r#".chat-item[data-friend="{email}"]"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_walkthrough_in_two_browsers() {
    let smtp = SmtpSink::start().await;
    let ui_dir = harness::workspace_root().join("ui/dist");
    assert!(
        ui_dir.join("index.html").is_file(),
        "the web UI is not built: run scripts/build-ui.sh (scripts/test.sh does)"
    );
    let (ui_dir, smtp_url) = (ui_dir.display().to_string(), smtp.url());
    let mut server = ServerProcess::start(&[("PARLEY_UI_DIR", &ui_dir), ("PARLEY_SMTP_URL", &smtp_url)]).await;
    let driver = Driver::start().await;
    let mut ada = driver.browser("ada").await;
    let mut bo = driver.browser("bo").await;

    // Signup → code → chat page, for both.
    sign_up(&mut ada, &server, &smtp, "ada@example.org", "Ada").await;
    sign_up(&mut bo, &server, &smtp, "bo@example.org", "Bo").await;
    let cy_token = sign_up_by_api(&server, &smtp, "cy@example.org", "Cy").await;

    // Login.
    ada.click("#logout").await;
    ada.find("#login-email").await;
    ada.fill("#login-email", "ada@example.org").await;
    ada.fill("#login-password", PASSWORD).await;
    ada.shot("login").await;
    ada.click("#login-submit").await;
    ada.find("#no-chats").await;

    // A new chat by an unknown email shows the error.
    ada.fill("#new-chat-email", "nobody@example.org").await;
    ada.click("#new-chat-submit").await;
    ada.until_text("#new-chat-error", "No one uses Parley with this email").await;
    ada.shot("unknown-email").await;

    // By a known email: the chat appears on both sides.
    ada.fill("#new-chat-email", "bo@example.org").await;
    ada.click("#new-chat-submit").await;
    ada.find(&chat_with("bo@example.org")).await;
    ada.shot("new-chat").await;
    bo.find(&chat_with("ada@example.org")).await;
    bo.shot("chat-appeared").await;
    assert_eq!(ada.text("#new-chat-error").await, "", "the error is gone");

    // Bo looks at another chat (with Cy) when Ada writes: a blue dot on Ada's chat.
    bo.fill("#new-chat-email", "cy@example.org").await;
    bo.click("#new-chat-submit").await;
    bo.until_text(".conversation-header .friend-name", "Cy").await;
    ada.click(&chat_with("bo@example.org")).await;
    ada.fill("#composer-text", "Hello Bo!").await;
    ada.click("#composer-send").await;
    ada.until("the message confirmed", || async { ada.text(".message.mine:not(.pending) .body").await == "Hello Bo!" })
        .await;
    ada.shot("sent").await;
    let dot = format!("{} .dot", chat_with("ada@example.org"));
    bo.until_text(&dot, "1").await;
    bo.shot("blue-dot").await;

    // Opening the chat clears the dot and shows the message; Ada sees it was read.
    bo.click(&chat_with("ada@example.org")).await;
    bo.until_text(".message.theirs .body", "Hello Bo!").await;
    bo.until("the dot cleared", || async { bo.count(&dot).await == 0 }).await;
    bo.shot("opened").await;
    ada.until_text(".message.mine .seen", "Seen").await;

    // Bo types (Ada sees it), then answers with Enter; Shift+Enter would have made a new line.
    bo.fill("#composer-text", "Hi Ada").await;
    ada.until_text(".conversation-header .status", "typing").await;
    ada.shot("typing").await;
    bo.find("#composer-text").await.send_keys("\u{E007}").await.unwrap();
    ada.until_text(".message.theirs .body", "Hi Ada").await;
    assert_eq!(bo.find("#composer-text").await.prop("value").await.unwrap().as_deref(), Some(""), "Enter sent it");

    // The friend's name is green while they are online: Bo has written to Ada, so she may see it
    // (Bo sees Ada's since she started the chat); nobody sees a presence for merely being found.
    let bo_online = format!("{} .name.online", chat_with("bo@example.org"));
    ada.find(&bo_online).await;
    ada.shot("friend-online").await;
    bo.find(&format!("{} .name.online", chat_with("ada@example.org"))).await;
    bo.goto("about:blank").await;
    ada.until("Bo shown offline", || async { ada.count(&bo_online).await == 0 }).await;
    ada.shot("friend-offline").await;
    bo.goto(&server.url()).await;
    ada.find(&bo_online).await;

    // A reload keeps the session and the history.
    bo.client.refresh().await.unwrap();
    bo.click(&chat_with("ada@example.org")).await;
    bo.until_text(".message.theirs .body", "Hello Bo!").await;
    bo.shot("after-reload").await;

    // The server dies mid-conversation: the UI says so, keeps what Ada writes pending, recovers,
    // and the message arrives once.
    server.kill();
    ada.find("#connection-banner").await;
    ada.fill("#composer-text", "Written while the server was down").await;
    ada.click("#composer-send").await;
    ada.until_text(".message.pending .meta", "Sending").await;
    ada.shot("reconnecting").await;
    server.restart().await;
    ada.until("reconnected", || async { ada.count("#connection-banner").await == 0 }).await;
    ada.until("the pending message confirmed", || async { ada.count(".message.pending").await == 0 }).await;
    ada.shot("recovered").await;
    let sent_while_down = ".message.theirs .body";
    bo.until("the message arrived", || async {
        let bodies = bo.client.find_all(fantoccini::Locator::Css(sent_while_down)).await.unwrap_or_default();
        let mut n = 0;
        for body in bodies {
            if body.text().await.unwrap_or_default() == "Written while the server was down" {
                n += 1;
            }
        }
        n == 1
    })
    .await;
    assert_eq!(bo.count(".message.theirs").await, 2, "each of Ada's messages once");
    bo.shot("received-once").await;

    // Cy exists only for the story; the chat with Bo reached Cy's account as well.
    let cy_chats: serde_json::Value = get(&server, "/api/v1/chats", &cy_token).await.json().await.unwrap();
    assert_eq!(cy_chats["chats"][0]["friend"]["email"], "bo@example.org");

    // A long history: the newest page first, older ones as Bo scrolls up.
    let cy_chat = cy_chats["chats"][0]["id"].as_i64().unwrap();
    send_messages(&server, &cy_token, cy_chat, 60).await;
    // A fresh page, so the history comes from the server in pages rather than live.
    bo.client.refresh().await.unwrap();
    bo.click(&chat_with("cy@example.org")).await;
    bo.until_text(".messages", "note 59").await;
    assert_eq!(bo.count(".message").await, 50, "one page of 50 first");
    bo.client.execute("document.querySelector('.messages').scrollTop = 0", vec![]).await.unwrap();
    bo.until("the older page loaded", || async { bo.count(".message").await == 60 }).await;
    bo.until_text(".messages .beginning", "This is the beginning of your chat with Cy").await;
    bo.shot("older-page").await;
    bo.click(&chat_with("ada@example.org")).await;
    bo.until_text(".message.theirs .body", "Hello Bo!").await;

    // On a phone's width one pane shows at a time.
    bo.client.set_window_size(390, 844).await.unwrap();
    bo.find(".conversation .back").await;
    bo.shot("phone-conversation").await;
    bo.click(".conversation .back").await;
    bo.find(&chat_with("ada@example.org")).await;
    assert_eq!(bo.count(".conversation .composer").await, 0, "the list alone on a phone");
    bo.shot("phone-list").await;

    // Logout.
    ada.click("#logout").await;
    ada.find("#login-email").await;
    ada.shot("logged-out").await;

    ada.close().await;
    bo.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_rename_and_end_other_sessions() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

    let (smtp, server, driver) = stage().await;
    // The account's first session is another device, live on a WebSocket.
    let other_device = sign_up_by_api(&server, &smtp, "ada@example.org", "Ada").await;
    let mut request = format!("ws://127.0.0.1:{}/api/v1/ws", server.port).into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {other_device}").parse().unwrap());
    let (mut other_socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();

    let mut ada = driver.browser("ada-settings").await;
    ada.goto(&server.url()).await;
    ada.fill("#login-email", "ada@example.org").await;
    ada.fill("#login-password", PASSWORD).await;
    ada.click("#login-submit").await;
    ada.find("#no-chats").await;
    ada.click("#open-settings").await;
    ada.until("both sessions listed", || async { ada.count("#sessions .session").await == 2 }).await;
    assert_eq!(ada.count(r#"#sessions .session[data-current="true"]"#).await, 1, "this browser is marked");
    ada.shot("settings").await;

    // A new display name shows at once and stays after a reload.
    ada.fill("#settings-display-name", "Ada Lovelace").await;
    ada.click("#settings-save-name").await;
    ada.until_text("#profile-outcome", "Saved.").await;

    // A wrong current password is refused with a clear message.
    ada.fill("#settings-current-password", "not my password").await;
    ada.fill("#settings-new-password", "a better password").await;
    ada.click("#settings-change-password").await;
    ada.until_text("#password-outcome", "The current password is not right.").await;

    // Presence can be hidden from everyone, at once.
    ada.click("#settings-hide-presence").await;
    ada.until_text("#privacy-outcome", "Hidden.").await;
    let privacy: serde_json::Value = get(&server, "/api/v1/me/privacy", &other_device).await.json().await.unwrap();
    assert_eq!(privacy["hide_presence"], true);
    ada.shot("presence-hidden").await;

    // Ending every other session closes the other device's socket, with the reason.
    ada.click("#revoke-other-sessions").await;
    ada.until_text("#sessions-outcome", "Every other session ended.").await;
    ada.until("one session left", || async { ada.count("#sessions .session").await == 1 }).await;
    ada.shot("other-sessions-ended").await;
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(Ok(message)) = other_socket.next().await {
            if let Message::Close(frame) = message {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .expect("the other device's socket closes within 5 s");
    assert_eq!(closed, Some(parley_common::ws::close::SESSION_ENDED));
    let me = get(&server, "/api/v1/me", &other_device).await;
    assert_eq!(me.status(), reqwest::StatusCode::UNAUTHORIZED, "the other session is dead");

    ada.click("#settings-back").await;
    ada.until_text(".top-bar .me", "Ada Lovelace").await;
    ada.client.refresh().await.unwrap();
    ada.until_text(".top-bar .me", "Ada Lovelace").await;
    ada.shot("renamed").await;
    ada.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_password_is_reset_with_a_mailed_code() {
    let (smtp, server, driver) = stage().await;
    let old_session = sign_up_by_api(&server, &smtp, "ada@example.org", "Ada").await;

    let mut ada = driver.browser("ada-reset").await;
    ada.goto(&server.url()).await;
    ada.click("#forgot-password").await;
    ada.fill("#forgot-email", "ada@example.org").await;
    ada.shot("forgot").await;
    ada.click("#forgot-submit").await;
    ada.find("#reset-code").await;
    let code = smtp.next_code_for("ada@example.org").await;

    // A wrong code first: a clear error, and the form stays.
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    ada.fill("#reset-code", &wrong).await;
    ada.fill("#reset-password", "a brand new password").await;
    ada.click("#reset-submit").await;
    ada.until_text("#reset-error", "This code is wrong").await;
    ada.shot("wrong-code").await;

    ada.fill("#reset-code", &code).await;
    ada.click("#reset-submit").await;
    ada.find("#no-chats").await;
    ada.shot("logged-in-with-new-password").await;
    let me = get(&server, "/api/v1/me", &old_session).await;
    assert_eq!(me.status(), reqwest::StatusCode::UNAUTHORIZED, "the session from before the reset is dead");

    ada.click("#logout").await;
    ada.fill("#login-email", "ada@example.org").await;
    ada.fill("#login-password", "a brand new password").await;
    ada.click("#login-submit").await;
    ada.find("#no-chats").await;
    ada.close().await;
}

/// Logs in through the UI and waits for the chat page.
async fn log_in(browser: &mut Browser, server: &ServerProcess, email: &str) {
    browser.goto(&server.url()).await;
    browser.fill("#login-email", email).await;
    browser.fill("#login-password", PASSWORD).await;
    browser.click("#login-submit").await;
    browser.find(".chat-page").await;
}

/// The operator restores an older backup while a page is open: the server refuses the page's
/// cursor, of before the restore, and the page shows what the server holds again, and goes on live
/// from there under cursors of the new history epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_open_across_a_restored_backup_shows_what_the_server_holds() {
    let (smtp, mut server, driver) = stage().await;
    sign_up_by_api(&server, &smtp, "ada@example.org", "Ada").await;
    let bo_token = sign_up_by_api(&server, &smtp, "bo@example.org", "Bo").await;
    let chat_id = server.start_chat(&bo_token, "ada@example.org").await;
    send_notes(&server, &bo_token, chat_id, 0..2).await;
    let mut ada = driver.browser("ada-restored").await;
    log_in(&mut ada, &server, "ada@example.org").await;
    ada.click(&chat_with("bo@example.org")).await;
    ada.until_text(".message.theirs .body", "note 0").await;
    // The backup holds Ada's session, so the page stays logged in across the restore.
    let backup = server.back_up_database().await;
    ada.until("reconnected after the backup", || async { ada.count("#connection-banner").await == 0 }).await;

    // Written after the backup, seen live.
    send_notes(&server, &bo_token, chat_id, 2..5).await;
    ada.until("the notes after the backup arrived", || async { ada.count(".message.theirs").await == 5 }).await;
    ada.shot("before-restore").await;

    // Restored as the README says: the copy put back, `admin after-restore`, the server started.
    server.put_back_database(&backup);
    server.admin(&["after-restore"]);
    server.start_again().await;
    ada.until("the page shows the restored history", || async {
        let shown = ada.text(".messages").await;
        ada.count("#connection-banner").await == 0 && shown.contains("note 1") && !shown.contains("note 4")
    })
    .await;
    assert_eq!(ada.count(".message.theirs").await, 2, "what the restored database holds");
    ada.shot("after-restore").await;

    // Live again: the next message arrives, after the two the server holds.
    send_notes(&server, &bo_token, chat_id, 5..6).await;
    ada.until("a message after the restore arrived", || async { ada.text(".messages").await.contains("note 5") }).await;
    assert_eq!(ada.count(".message.theirs").await, 3);
    ada.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_a_user_stops_their_messages() {
    let (smtp, server, driver) = stage().await;
    sign_up_by_api(&server, &smtp, "ada@example.org", "Ada").await;
    let bo_token = sign_up_by_api(&server, &smtp, "bo@example.org", "Bo").await;
    // Bo starts the chat and writes first.
    let chat_id = server.start_chat(&bo_token, "ada@example.org").await;
    send_messages(&server, &bo_token, chat_id, 1).await;

    let mut ada = driver.browser("ada-blocks").await;
    let mut bo = driver.browser("bo-blocked").await;
    log_in(&mut ada, &server, "ada@example.org").await;
    log_in(&mut bo, &server, "bo@example.org").await;
    ada.click(&chat_with("bo@example.org")).await;
    ada.until_text(".message.theirs .body", "note 0").await;

    // Block, after a confirmation; the chat is marked, and Ada's composer gives way to a note.
    ada.click("#block-friend").await;
    ada.until_text(".confirm", "They will not be able to write to you").await;
    ada.shot("block-confirm").await;
    ada.click("#confirm-block").await;
    ada.find(&format!("{} .blocked-badge", chat_with("bo@example.org"))).await;
    ada.until_text("#blocked-note", "You blocked Bo").await;
    ada.until_text(".conversation-header .status", "Blocked").await;
    assert_eq!(ada.count("#composer-text").await, 0, "nothing to write with while blocked");
    ada.shot("blocked").await;

    // Bo writes: his message fails like any failed delivery and never reaches Ada.
    bo.click(&chat_with("ada@example.org")).await;
    bo.fill("#composer-text", "Why so quiet?").await;
    bo.click("#composer-send").await;
    bo.until_text(".message.failed .meta", "Not sent").await;
    assert_eq!(bo.count(&format!("{} .blocked-badge", chat_with("ada@example.org"))).await, 0, "Bo is not told");
    bo.shot("blocked-send-failed").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(ada.count(".message.theirs").await, 1, "only the message from before the block");
    assert!(!ada.text(".messages").await.contains("Why so quiet?"));
    ada.client.refresh().await.unwrap();
    ada.click(&chat_with("bo@example.org")).await;
    ada.until_text(".message.theirs .body", "note 0").await;
    assert!(!ada.text(".messages").await.contains("Why so quiet?"), "not stored either");
    ada.find(&format!("{} .blocked-badge", chat_with("bo@example.org"))).await;

    // Unblock, likewise confirmed: Bo's next message arrives.
    ada.click("#unblock-friend").await;
    ada.click("#confirm-block").await;
    ada.find("#composer-text").await;
    assert_eq!(ada.count(".blocked-badge").await, 0);
    bo.fill("#composer-text", "Better now?").await;
    bo.click("#composer-send").await;
    ada.until("the message after unblocking arrived", || async { ada.text(".messages").await.contains("Better now?") })
        .await;
    ada.shot("unblocked").await;
    ada.close().await;
    bo.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporting_and_deleting_an_account_from_settings() {
    let (smtp, server, driver) = stage().await;
    let ada_token = sign_up_by_api(&server, &smtp, "ada@example.org", "Ada").await;
    let bo_token = sign_up_by_api(&server, &smtp, "bo@example.org", "Bo").await;
    let chat_id = server.start_chat(&ada_token, "bo@example.org").await;
    send_messages(&server, &ada_token, chat_id, 2).await;

    let mut ada = driver.browser("ada-leaves").await;
    log_in(&mut ada, &server, "ada@example.org").await;
    ada.click("#open-settings").await;
    ada.click("#settings-export").await;
    ada.until_text("#export-outcome", "downloaded as parley-export.json").await;

    // A wrong password deletes nothing; the right one logs out everywhere with a notice.
    ada.fill("#settings-delete-password", "not my password").await;
    ada.click("#settings-delete-account").await;
    ada.until_text("#delete-outcome", "The password is not right.").await;
    ada.shot("delete-wrong-password").await;
    ada.fill("#settings-delete-password", PASSWORD).await;
    ada.click("#settings-delete-account").await;
    ada.find("#login-email").await;
    ada.until("the notice", || async { ada.text("body").await.contains("Your account was deleted") }).await;
    ada.shot("deleted").await;

    assert_eq!(get(&server, "/api/v1/me", &ada_token).await.status(), reqwest::StatusCode::UNAUTHORIZED);
    let bos: serde_json::Value = get(&server, "/api/v1/chats", &bo_token).await.json().await.unwrap();
    assert_eq!(bos["chats"][0]["friend"]["display_name"], "Deleted user");
    assert_eq!(bos["chats"][0]["last_message"]["body"], "note 1", "her messages stay with Bo");
    ada.close().await;
}
