//! Crash safety: the server is killed with SIGKILL while messages stream in. Every message it
//! acknowledged must exist exactly once after the restart, and every one it did not, sent again
//! with its `client_id`, must exist exactly once too. The modules do the same with the database
//! failing under a running server: Postgres stopped and restarted, Postgres read-only, SQLite's
//! disk full; and the database restored from a backup.
#[path = "../support/server_process.rs"]
mod server_process;

mod full_disk;
mod postgres_outage;
mod private_postgres;
mod restore;
mod traffic;

use std::{collections::HashMap, time::Duration};

use futures_util::{SinkExt, StreamExt};
use parley_common::{AuthResponse, ClientFrame, Event, MessagePage, ServerFrame, SyncBatch};
use server_process::ServerProcess;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message as WsMessage};

const MESSAGES: usize = 400;
const KILL_AFTER_ACKS: usize = 150;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &ServerProcess, token: &str) -> Socket {
    let url = format!("ws://127.0.0.1:{}/api/v1/ws", server.port);
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

async fn next_frame(socket: &mut Socket) -> Option<ServerFrame> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await.ok()?? {
            Ok(WsMessage::Text(text)) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(WsMessage::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

async fn open_signup(server: &ServerProcess, name: &str) -> AuthResponse {
    let body = serde_json::json!({"email": format!("{name}@example.org"), "password": "a good password", "display_name": name});
    let response =
        reqwest::Client::new().post(format!("{}/api/v1/auth/signup", server.url())).json(&body).send().await.unwrap();
    assert!(response.status().is_success());
    response.json().await.unwrap()
}

async fn get_json<T: serde::de::DeserializeOwned>(server: &ServerProcess, path: &str, token: &str) -> T {
    let response =
        reqwest::Client::new().get(format!("{}{path}", server.url())).bearer_auth(token).send().await.unwrap();
    assert!(response.status().is_success(), "GET {path}: {}", response.status());
    response.json().await.unwrap()
}

fn client_id(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

async fn acked_messages_survive_a_kill_9(extra_env: &[(&str, &str)]) {
    let mut env = vec![
        ("PARLEY_SIGNUP", "open"),
        ("PARLEY_RATE_LIMITS__MESSAGES_PER_USER", "0"),
        ("PARLEY_WS_FRAMES_PER_SEC", "100000"),
    ];
    env.extend_from_slice(extra_env);
    let mut server = ServerProcess::start(&env).await;
    let ada = open_signup(&server, "ada").await;
    let bo = open_signup(&server, "bo").await;
    let chat_id = server.start_chat(&ada.token, "bo@example.org").await;

    // Stream every message with many in flight; kill the server once some are acknowledged.
    let mut socket = connect(&server, &ada.token).await;
    assert!(matches!(next_frame(&mut socket).await, Some(ServerFrame::Hello { .. })));
    for n in 0..MESSAGES {
        let frame = ClientFrame::Send { chat_id, client_id: client_id(n), body: format!("message {n}") };
        socket.feed(WsMessage::Text(serde_json::to_string(&frame).unwrap().into())).await.unwrap();
    }
    socket.flush().await.unwrap();
    let mut acked_before: HashMap<String, i64> = HashMap::new();
    while acked_before.len() < KILL_AFTER_ACKS {
        if let Some(ServerFrame::Ack { client_id, message, .. }) = next_frame(&mut socket).await {
            acked_before.insert(client_id, message.id);
        }
    }
    server.kill();
    // Acks that were already on their way count as acks too.
    while let Some(frame) = next_frame(&mut socket).await {
        if let ServerFrame::Ack { client_id, message, .. } = frame {
            acked_before.insert(client_id, message.id);
        }
    }
    assert!(acked_before.len() < MESSAGES, "the kill came before the end of the stream");

    // Back up: send everything again with the same client_ids, as a client with an outbox would.
    server.restart().await;
    let mut socket = connect(&server, &ada.token).await;
    assert!(matches!(next_frame(&mut socket).await, Some(ServerFrame::Hello { .. })));
    for n in 0..MESSAGES {
        let frame = ClientFrame::Send { chat_id, client_id: client_id(n), body: format!("message {n}") };
        socket.send(WsMessage::Text(serde_json::to_string(&frame).unwrap().into())).await.unwrap();
    }
    let mut acked_after: HashMap<String, i64> = HashMap::new();
    while acked_after.len() < MESSAGES {
        match next_frame(&mut socket).await {
            Some(ServerFrame::Ack { client_id, message, .. }) => {
                acked_after.insert(client_id, message.id);
            }
            Some(ServerFrame::Error { code, message, .. }) => panic!("{code}: {message}"),
            Some(_) => {}
            None => panic!("the connection ended with {} of {MESSAGES} acks", acked_after.len()),
        }
    }
    for (client_id, id) in &acked_before {
        assert_eq!(acked_after.get(client_id), Some(id), "{client_id} was acked before the crash: same message after");
    }

    // The history holds each message once, numbered without a hole.
    let mut seqs = Vec::new();
    let mut before = None::<i64>;
    loop {
        let query = before.map_or(String::from("limit=100"), |b| format!("limit=100&before={b}"));
        let page: MessagePage =
            get_json(&server, &format!("/api/v1/chats/{chat_id}/messages?{query}"), &bo.token).await;
        seqs.extend(page.messages.iter().map(|m| (m.seq, m.client_id.clone())));
        before = page.messages.last().map(|m| m.seq);
        if !page.more {
            break;
        }
    }
    seqs.sort();
    assert_eq!(seqs.len(), MESSAGES, "each message exactly once");
    assert!(seqs.iter().enumerate().all(|(i, (seq, _))| *seq == i as i64 + 1), "seq 1..={MESSAGES}");
    let distinct: std::collections::HashSet<_> = seqs.iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(distinct.len(), MESSAGES);

    // And the receiver's stream replays each once.
    let mut since = String::new();
    let mut received = 0;
    loop {
        let batch: SyncBatch = get_json(&server, &format!("/api/v1/sync?since={since}"), &bo.token).await;
        received += batch.events.iter().filter(|e| matches!(e, Event::Message { .. })).count();
        since = batch.next;
        if !batch.more {
            break;
        }
    }
    assert_eq!(received, MESSAGES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acked_messages_survive_a_kill_9() {
    acked_messages_survive_a_kill_9(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acked_messages_survive_a_kill_9() {
    use sqlx::Connection;
    let admin =
        std::env::var("PARLEY_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("crash_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut conn).await.unwrap();
    let sep = if admin.contains('?') { '&' } else { '?' };
    let url = format!("{admin}{sep}options=-c%20search_path%3D{schema}");
    acked_messages_survive_a_kill_9(&[("DATABASE_URL", &url)]).await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut conn).await.unwrap();
}
