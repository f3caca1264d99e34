//! The sync engine, headless, against a real server: the cache fills from sync, reads offline,
//! queues writes offline, converges row by row after the server comes back, resumes after being
//! killed mid-sync, never duplicates a message whose ack was lost, and speaks TLS with the
//! certificate checked.
mod harness;

use std::time::Duration;

use harness::{eventually, temp_dir, Peer, Relay, Rest, TestServer};
use parley_client::{Client, ClientOptions};
use parley_common::{
    desktop::{ConnectionState, DesktopEvent, HistoryArgs, LoginArgs, SendArgs},
    AccountExport, AuthResponse, BlockRequest, DeleteAccountRequest, PasswordChange, PrivacySettings, ProfileUpdate,
};

async fn logged_in_client(data_dir: &std::path::Path, server_url: &str, email: &str) -> Client {
    let client = Client::open(data_dir).await.expect("client opens");
    client.set_server(server_url.to_string()).await.expect("server accepted");
    client.login(LoginArgs { email: email.into(), password: "a good password".into() }).await.expect("login");
    client
}

async fn wait_online(client: &Client) {
    eventually(20, "the client is online", || async { client.connection() == ConnectionState::Online }).await;
}

async fn cached_count(client: &Client, chat_id: i64) -> usize {
    client.cache().all_messages(chat_id).await.unwrap().len()
}

/// The cache holds exactly what the server holds for `me`: the same chats with the same read
/// markers, the same messages field by field, and nothing waiting to be sent.
async fn assert_converged(client: &Client, rest: &Rest, me: &AuthResponse) {
    let server_chats = rest.chats(me).await;
    let cached_chats = client.chats().await.unwrap().chats;
    assert_eq!(cached_chats.len(), server_chats.len(), "same number of chats");
    for server_chat in &server_chats {
        let cached = cached_chats.iter().find(|c| c.id == server_chat.id).expect("chat in the cache");
        assert_eq!(cached.friend.id, server_chat.friend.id);
        assert_eq!(cached.read_up_to, server_chat.read_up_to, "our read marker of chat {}", server_chat.id);
        assert_eq!(cached.friend_read_up_to, server_chat.friend_read_up_to, "the friend's read marker");
        assert_eq!(cached.unread_count, server_chat.unread_count, "unread count of chat {}", server_chat.id);
        let server_messages = rest.all_messages(me, server_chat.id).await;
        let cached_messages = client.cache().all_messages(server_chat.id).await.unwrap();
        assert_eq!(cached_messages.len(), server_messages.len(), "number of messages in chat {}", server_chat.id);
        for (cached, server) in cached_messages.iter().zip(&server_messages) {
            assert_eq!(cached, server, "message seq {}", server.seq);
        }
    }
    assert!(client.cache().outbox().await.unwrap().is_empty(), "the outbox is empty");
}

/// Ada's desktop client online against a fresh server, with the two messages Bo wrote her cached;
/// Ada also has a web session.
struct AdaOnline {
    server: TestServer,
    rest: Rest,
    ada_web: AuthResponse,
    bo: AuthResponse,
    chat_id: i64,
    data_dir: std::path::PathBuf,
    client: Client,
}

async fn ada_online_with_two_messages_from_bo() -> AdaOnline {
    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server.url());
    let ada_web = rest.user("Ada").await;
    let bo = rest.user("Bo").await;
    let chat_id = rest.chat(&bo, "ada@example.org").await;
    Peer::connect(&server.url(), &bo.token).await.say_all(chat_id, &bodies("hello", 2)).await;
    let data_dir = temp_dir("client");
    let client = logged_in_client(&data_dir, &server.url(), "ada@example.org").await;
    wait_online(&client).await;
    eventually(10, "history cached", || async { cached_count(&client, chat_id).await == 2 }).await;
    AdaOnline { server, rest, ada_web, bo, chat_id, data_dir, client }
}

fn bodies(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix} {i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_fills_from_sync_and_reads_offline() {
    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server.url());
    let ada = rest.user("Ada").await;
    let bo = rest.user("Bo").await;
    let chat_id = rest.chat(&bo, "ada@example.org").await;
    let mut bo_socket = Peer::connect(&server.url(), &bo.token).await;
    bo_socket.say_all(chat_id, &bodies("before Ada's first start", 130)).await;

    let mut relay = Relay::start(server.addr).await;
    let data_dir = temp_dir("client");
    let client = logged_in_client(&data_dir, &relay.url(), "ada@example.org").await;
    wait_online(&client).await;
    eventually(20, "130 messages cached", || async { cached_count(&client, chat_id).await == 130 }).await;
    assert_converged(&client, &rest, &ada).await;
    assert_eq!(client.unread_total().await.unwrap(), 130);

    // Live: a message now reaches the cache without a sync.
    bo_socket.say_all(chat_id, &bodies("live", 1)).await;
    eventually(10, "the live message cached", || async { cached_count(&client, chat_id).await == 131 }).await;

    relay.cut();
    eventually(20, "the client sees it is offline", || async {
        matches!(client.connection(), ConnectionState::Reconnecting { .. })
    })
    .await;
    let chats = client.chats().await.unwrap().chats;
    assert_eq!(chats.len(), 1);
    assert_eq!(chats[0].last_message.as_ref().unwrap().body, "live 1");
    let newest = client.history(HistoryArgs { chat_id, before: None }).await.unwrap();
    assert_eq!(newest.messages.len(), 50);
    assert!(newest.more);
    assert_eq!(newest.messages[0].body, "live 1", "newest first");
    let older = client.history(HistoryArgs { chat_id, before: newest.messages.last().map(|m| m.seq) }).await.unwrap();
    assert_eq!(older.messages[0].seq, newest.messages.last().unwrap().seq - 1);

    // A restart of the app offline: everything is still there, and the session too.
    client.shutdown().await;
    drop(client);
    let reopened = Client::open(&data_dir).await.unwrap();
    assert_eq!(reopened.me().await.unwrap().unwrap().id, ada.user.id);
    assert_eq!(cached_count(&reopened, chat_id).await, 131);
    reopened.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_offline_while_the_server_is_down_then_both_sides_converge() {
    let mut server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server.url());
    let ada = rest.user("Ada").await;
    let bo = rest.user("Bo").await;
    let chat_id = rest.chat(&ada, "bo@example.org").await;
    let mut relay = Relay::start(server.addr).await;
    let data_dir = temp_dir("client");
    let client = logged_in_client(&data_dir, &relay.url(), "ada@example.org").await;
    wait_online(&client).await;
    let mut bo_socket = Peer::connect(&server.url(), &bo.token).await;
    bo_socket.say_all(chat_id, &bodies("Bo online", 3)).await;
    eventually(10, "Bo's messages cached", || async { cached_count(&client, chat_id).await == 3 }).await;

    // The server goes down, and Ada's network with it.
    relay.cut();
    server.stop();
    eventually(20, "offline", || async { matches!(client.connection(), ConnectionState::Reconnecting { .. }) }).await;
    let mut written = Vec::new();
    for body in bodies("Ada offline", 4) {
        let client_id = uuid::Uuid::new_v4().to_string();
        client.send(SendArgs { chat_id, client_id: client_id.clone(), body }).await.unwrap();
        written.push(client_id);
    }
    client.mark_read(parley_common::desktop::ReadArgs { chat_id, up_to: 3 }).await.unwrap();
    let outbox: Vec<String> = client.cache().outbox().await.unwrap().into_iter().map(|i| i.client_id).collect();
    assert_eq!(outbox, written, "written offline: in the outbox, in order");

    // The server comes back; Bo talks while Ada is still cut off.
    server.restart().await;
    let mut bo_socket = Peer::connect(&server.url(), &bo.token).await;
    bo_socket.say_all(chat_id, &bodies("Bo meanwhile", 5)).await;

    relay.restore().await;
    client.nudge();
    eventually(30, "everything sent and received", || async {
        cached_count(&client, chat_id).await == 12 && client.cache().outbox().await.unwrap().is_empty()
    })
    .await;
    eventually(10, "the read marker reached the server", || async { rest.chats(&ada).await[0].read_up_to == 3 }).await;
    assert_converged(&client, &rest, &ada).await;

    // Each of Ada's messages is on the server once, in the order written, after Bo's first three.
    let on_server = rest.all_messages(&bo, chat_id).await;
    let adas: Vec<&str> =
        on_server.iter().filter(|m| m.sender_id == ada.user.id).map(|m| m.client_id.as_str()).collect();
    assert_eq!(adas, written.iter().map(String::as_str).collect::<Vec<_>>());
    client.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_the_server_refuses_is_dropped_and_the_stream_replayed() {
    let AdaOnline { server, rest, ada_web, bo, chat_id, data_dir, client } =
        ada_online_with_two_messages_from_bo().await;
    // A cache whose cursor this server never gave out (damaged, or kept from another server).
    client.cache().apply(&[parley_client::planner::CacheOp::SetCursor("not-a-cursor".into())]).await.unwrap();
    client.shutdown().await;
    drop(client);
    Peer::connect(&server.url(), &bo.token).await.say_all(chat_id, &bodies("while away", 3)).await;

    let client = Client::open(&data_dir).await.unwrap();
    let body = "written before the catch-up".to_string();
    client.send(SendArgs { chat_id, client_id: uuid::Uuid::new_v4().to_string(), body: body.clone() }).await.unwrap();
    eventually(20, "the replay and the outbox", || async { cached_count(&client, chat_id).await == 6 }).await;
    eventually(10, "the outbox empty", || async { client.cache().outbox().await.unwrap().is_empty() }).await;
    assert_converged(&client, &rest, &ada_web).await;
    let cursor = client.cache().cursor().await.unwrap().expect("a cursor again");
    assert_ne!(cursor, "not-a-cursor");
    let newest = rest.all_messages(&ada_web, chat_id).await;
    assert_eq!(newest.last().unwrap().body, body, "sent once caught up");
    client.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// The server's database went back to an older backup: the cache holds a message the server no
/// longer has, read markers past it, a chat it no longer has (with a message waiting to go out),
/// and a cursor past the end of Ada's stream there. The server refuses the cursor; the cache
/// forgets its messages and read markers, is rebuilt from the stream, drops the lost chat (the
/// UI hears that its message failed), and the UI is handed the new list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_ahead_of_a_restored_server_is_rebuilt_from_its_stream() {
    let AdaOnline { server, rest, ada_web, bo, chat_id, data_dir, client } =
        ada_online_with_two_messages_from_bo().await;
    let lost = parley_common::Message {
        id: 1_000_000,
        chat_id,
        seq: 3,
        sender_id: bo.user.id,
        client_id: uuid::Uuid::new_v4().to_string(),
        body: "lost with the restore".into(),
        created_at: "2026-11-27T00:00:00Z".into(),
    };
    let ahead = "1000000".to_string();
    // Before the restore, Ada had read the lost message here and Bo had read up to it too; and
    // she had a chat with Cy, started after the backup, with a message waiting to go out.
    let cy = parley_common::Friend {
        id: 1_000_000,
        email: "cy@example.org".into(),
        display_name: "Cy".into(),
        ..Default::default()
    };
    let lost_chat = parley_common::Chat { id: 1_000_000, friend: cy, ..Default::default() };
    client
        .cache()
        .apply(&[
            parley_client::planner::CacheOp::PutMessage(lost),
            parley_client::planner::CacheOp::OwnRead { chat_id, up_to: 3 },
            parley_client::planner::CacheOp::FriendRead { chat_id, up_to: 3 },
            parley_client::planner::CacheOp::PutChat(lost_chat),
            parley_client::planner::CacheOp::SetCursor(ahead.clone()),
        ])
        .await
        .unwrap();
    let unsent = parley_client::planner::OutboxItem {
        client_id: uuid::Uuid::new_v4().to_string(),
        chat_id: 1_000_000,
        body: "to a chat the restore lost".into(),
    };
    client.cache().add_to_outbox(&unsent).await.unwrap();
    client.shutdown().await;
    drop(client);
    // Written after the restore: the server numbers them from 3 again.
    Peer::connect(&server.url(), &bo.token).await.say_all(chat_id, &bodies("after the restore", 3)).await;

    let client = Client::open(&data_dir).await.unwrap();
    let mut events = client.subscribe();
    eventually(20, "caught up from a new cursor", || async {
        client.connection() == ConnectionState::Online && client.cache().cursor().await.unwrap() != Some(ahead.clone())
    })
    .await;
    // The read markers too are the restored server's: the third message, new since the restore,
    // is unread, not taken for the lost one Ada had read.
    assert_converged(&client, &rest, &ada_web).await;
    assert_eq!(client.unread_total().await.unwrap(), 5);
    let cached = client.cache().all_messages(chat_id).await.unwrap();
    assert_eq!(cached[2].body, "after the restore 1", "the server's third message, not the lost one");
    let mut failed = Vec::new();
    let resynced = loop {
        match events.try_recv() {
            Ok(DesktopEvent::Resynced { chats }) => break chats,
            Ok(DesktopEvent::SendFailed { client_id, code, .. }) => failed.push((client_id, code)),
            Ok(_) => continue,
            Err(err) => panic!("no resynced event for the UI: {err}"),
        }
    };
    assert_eq!(
        failed,
        [(unsent.client_id.clone(), "chat_not_found".to_string())],
        "the UI hears of the unsent message"
    );
    assert!(resynced.iter().all(|c| c.id != 1_000_000), "the chat the server lost is gone from the list");
    assert_eq!(
        resynced.iter().find(|c| c.id == chat_id).and_then(|c| c.last_message.clone()).unwrap().body,
        "after the restore 3"
    );
    client.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_in_the_middle_of_a_sync_resumes_on_the_next_start() {
    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server.url());
    let ada = rest.user("Ada").await;
    let bo = rest.user("Bo").await;
    let chat_id = rest.chat(&bo, "ada@example.org").await;
    let mut bo_socket = Peer::connect(&server.url(), &bo.token).await;
    const TOTAL: usize = 700;
    bo_socket.say_all(chat_id, &bodies("backlog", TOTAL)).await;

    let mut relay = Relay::start(server.addr).await;
    let data_dir = temp_dir("client");
    let relay_url = relay.url();
    let dir = data_dir.clone();
    // The first start runs on a runtime of its own, so that it can be killed outright: every task
    // dropped mid-step, the cache left as the last committed transaction left it.
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
    let first_run = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let client = runtime.block_on(logged_in_client(&dir, &relay_url, "ada@example.org"));
        started_tx.send(client.clone()).unwrap();
        kill_rx.recv().unwrap();
        runtime.shutdown_background();
        // Its tasks are gone with the runtime; nothing of it may run again.
        std::mem::forget(client);
    });
    let client = started_rx.recv().unwrap();
    // Let the first batch of the replay in, then hold the rest back and kill the client.
    eventually(20, "a first batch cached", || async { client.cache().cursor().await.unwrap().is_some() }).await;
    relay.hold();
    tokio::time::sleep(Duration::from_millis(200)).await;
    kill_tx.send(()).unwrap();
    first_run.join().unwrap();
    std::mem::forget(client);
    relay.cut();

    // The next start: the saved session, the cursor the cache committed, the rest of the replay.
    let client = Client::open(&data_dir).await.unwrap();
    let cached_at_kill = cached_count(&client, chat_id).await;
    assert!(cached_at_kill > 0 && cached_at_kill < TOTAL, "killed mid-sync ({cached_at_kill} of {TOTAL} cached)");
    relay.restore().await;
    client.nudge();
    eventually(30, "the rest of the backlog", || async { cached_count(&client, chat_id).await == TOTAL }).await;
    assert_converged(&client, &rest, &ada).await;
    client.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_ack_was_lost_is_not_duplicated() {
    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server.url());
    let ada = rest.user("Ada").await;
    let bo = rest.user("Bo").await;
    let chat_id = rest.chat(&ada, "bo@example.org").await;
    let mut relay = Relay::start(server.addr).await;
    let data_dir = temp_dir("client");
    let client = logged_in_client(&data_dir, &relay.url(), "ada@example.org").await;
    wait_online(&client).await;

    // The server commits the message and acks it, but the ack never arrives.
    relay.hold();
    let client_id = uuid::Uuid::new_v4().to_string();
    client.send(SendArgs { chat_id, client_id: client_id.clone(), body: "once".into() }).await.unwrap();
    eventually(10, "the server committed it", || async { rest.all_messages(&bo, chat_id).await.len() == 1 }).await;
    relay.cut();
    assert_eq!(client.cache().outbox().await.unwrap().len(), 1, "unacknowledged: still in the outbox");

    relay.restore().await;
    client.nudge();
    eventually(30, "the outbox settles", || async { client.cache().outbox().await.unwrap().is_empty() }).await;
    wait_online(&client).await;
    let on_server = rest.all_messages(&bo, chat_id).await;
    assert_eq!(on_server.len(), 1, "once on the server");
    assert_eq!(on_server[0].client_id, client_id);
    assert_converged(&client, &rest, &ada).await;
    client.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_servers_are_checked_and_a_refused_certificate_says_so() {
    let cert_dir = temp_dir("tls");
    std::fs::create_dir_all(&cert_dir).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = certified.cert.pem();
    std::fs::write(cert_dir.join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(cert_dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (cert_dir.join("cert.pem"), cert_dir.join("key.pem"));
    let server = TestServer::start(move |c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
    })
    .await;

    // Not signed by anyone the client trusts: refused, and said to be a certificate problem.
    let untrusting = Client::open(temp_dir("client")).await.unwrap();
    let err = untrusting.set_server(server.url()).await.unwrap_err();
    assert_eq!(err.code, "certificate", "{err}");
    assert!(untrusting.server_url().await.is_none(), "a refused server is not kept");
    untrusting.shutdown().await;

    // Trusted as a private root: HTTPS and WSS work.
    let options = ClientOptions {
        extra_root_certificates: vec![cert_pem.into_bytes()],
        ..ClientOptions::new(temp_dir("client"))
    };
    let client = Client::open_with(options).await.unwrap();
    let instance = client.set_server(server.url()).await.unwrap();
    assert_eq!(instance.name, server.config.instance_name);
    let rest_over_tls = client.signup(parley_common::desktop::SignupArgs {
        email: "tls@example.org".into(),
        password: "a good password".into(),
        display_name: "Tls".into(),
    });
    assert!(matches!(rest_over_tls.await.unwrap(), parley_common::desktop::SignupResult::LoggedIn { .. }));
    wait_online(&client).await;
    client.shutdown().await;
    let _ = std::fs::remove_dir_all(&cert_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_settings_and_a_session_revoked_elsewhere() {
    let AdaOnline { server, ada_web, chat_id, data_dir, client, .. } = ada_online_with_two_messages_from_bo().await;

    let renamed = client.update_profile(ProfileUpdate { display_name: "Ada L.".into() }).await.unwrap();
    assert_eq!(renamed.display_name, "Ada L.");
    assert_eq!(client.me().await.unwrap().unwrap().display_name, "Ada L.", "the saved session knows it");

    let sessions = client.sessions().await.unwrap().sessions;
    assert_eq!(sessions.len(), 2, "the web session and this one");
    let this = sessions.iter().find(|s| s.current).expect("this session is marked");
    assert!(this.device.contains("Parley desktop"), "device label: {}", this.device);
    let wrong = client.change_password(PasswordChange {
        current_password: "not it".into(),
        new_password: "another good password".into(),
    });
    assert_eq!(wrong.await.unwrap_err().code, "invalid_credentials");

    // The web session ends this device's session: the app forgets the token and the cached history.
    let mut events = client.subscribe();
    let web_sessions: parley_common::SessionList = reqwest::Client::new()
        .get(format!("{}/api/v1/sessions", server.url()))
        .bearer_auth(&ada_web.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let desktop = web_sessions.sessions.iter().find(|s| !s.current).unwrap();
    let revoked = reqwest::Client::new()
        .delete(format!("{}/api/v1/sessions/{}", server.url(), desktop.id))
        .bearer_auth(&ada_web.token)
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(DesktopEvent::SessionEnded) = events.recv().await {
                return;
            }
        }
    });
    ended.await.expect("the UI is told the session ended");
    eventually(10, "the session and cache are gone", || async {
        client.me().await.unwrap().is_none() && client.cache().all_messages(chat_id).await.unwrap().is_empty()
    })
    .await;
    assert_eq!(client.connection(), ConnectionState::Off);
    client.shutdown().await;
    let reopened = Client::open(&data_dir).await.unwrap();
    assert!(reopened.me().await.unwrap().is_none(), "no session after a restart either");
    reopened.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_privacy_export_and_deleting_the_account() {
    let AdaOnline { server, rest, ada_web, bo, chat_id, data_dir, client } =
        ada_online_with_two_messages_from_bo().await;

    // A block shows in the cached chat and on the server; lifting it likewise.
    client.block(BlockRequest { user_id: bo.user.id }).await.unwrap();
    assert!(client.chats().await.unwrap().chats[0].blocked, "the cache marks the chat");
    assert_eq!(client.blocked_users().await.unwrap().blocked[0].user_id, bo.user.id);
    assert!(rest.chats(&ada_web).await[0].blocked, "the server too");
    client.unblock(BlockRequest { user_id: bo.user.id }).await.unwrap();
    assert!(!client.chats().await.unwrap().chats[0].blocked);
    assert!(client.blocked_users().await.unwrap().blocked.is_empty());

    assert!(!client.privacy().await.unwrap().hide_presence);
    let hidden = client.set_privacy(PrivacySettings { hide_presence: true }).await.unwrap();
    assert!(hidden.hide_presence && client.privacy().await.unwrap().hide_presence);

    // The export lands in a file of its own, with the chat and its messages.
    let downloads = data_dir.join("downloads");
    let first = client.export_data(&downloads).await.unwrap();
    let second = client.export_data(&downloads).await.unwrap();
    assert_ne!(first, second, "an export never overwrites an earlier one");
    let export: AccountExport = serde_json::from_slice(&std::fs::read(&first).unwrap()).unwrap();
    assert_eq!(export.account.id, ada_web.user.id);
    assert!(export.privacy.hide_presence);
    assert_eq!(export.chats[0].messages.len(), 2);

    // A wrong password deletes nothing; the right one logs this device out and empties the cache.
    let wrong = client.delete_account(DeleteAccountRequest { password: "not it".into() }).await;
    assert_eq!(wrong.unwrap_err().code, "invalid_credentials");
    assert!(client.me().await.unwrap().is_some());
    client.delete_account(DeleteAccountRequest { password: "a good password".into() }).await.unwrap();
    assert!(client.me().await.unwrap().is_none());
    assert!(client.cache().all_messages(chat_id).await.unwrap().is_empty());
    assert_eq!(client.connection(), ConnectionState::Off);
    let bos = rest.chats(&bo).await;
    assert_eq!(bos[0].friend.display_name, "Deleted user");
    let web = reqwest::Client::new()
        .get(format!("{}/api/v1/me", server.url()))
        .bearer_auth(&ada_web.token)
        .send()
        .await
        .unwrap();
    assert_eq!(web.status(), reqwest::StatusCode::UNAUTHORIZED, "every session of the account ended");
    client.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}
