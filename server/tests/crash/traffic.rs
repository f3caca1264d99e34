//! What the fault tests share: a user sending over a WebSocket and keeping score of what the
//! server answered for each `client_id`, and the checks that history and `sync` hold each
//! message exactly once.
use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use futures_util::SinkExt;
use parley_common::{AuthResponse, Chat, ClientFrame, Event, MessagePage, ServerFrame, SyncBatch};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::{client_id, connect, get_json, next_frame, open_signup, server_process::ServerProcess, Socket};

/// Ada writes to Bo: both accounts, their chat, and Ada's socket past `hello`.
pub struct Conversation {
    pub ada: AuthResponse,
    pub bo: AuthResponse,
    pub chat: Chat,
    pub socket: Socket,
    /// `client_id` → the id of the message its ack carried.
    pub acked: HashMap<String, i64>,
    /// `client_id` → the code of the error frame that refused it (the last time, if resent).
    pub refused: HashMap<String, String>,
    /// Sent and not answered yet.
    pub pending: HashSet<String>,
}

impl Conversation {
    pub async fn open(server: &ServerProcess) -> Self {
        let ada = open_signup(server, "ada").await;
        let bo = open_signup(server, "bo").await;
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/chats", server.url()))
            .bearer_auth(&ada.token)
            .json(&serde_json::json!({"email": "bo@example.org"}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "start chat: {}", response.status());
        let chat: Chat = response.json().await.unwrap();
        let mut socket = connect(server, &ada.token).await;
        assert!(matches!(next_frame(&mut socket).await, Some(ServerFrame::Hello { .. })));
        Conversation { ada, bo, chat, socket, acked: HashMap::new(), refused: HashMap::new(), pending: HashSet::new() }
    }

    /// Sends message `n` (body `body(n)`) without waiting for its answer.
    pub async fn send(&mut self, n: usize) {
        let frame = ClientFrame::Send { chat_id: self.chat.id, client_id: client_id(n), body: body(n) };
        self.socket.send(WsMessage::Text(serde_json::to_string(&frame).unwrap().into())).await.unwrap();
        self.pending.insert(client_id(n));
    }

    /// Reads one answer to a send (other frames are skipped) and records it. Panics if the
    /// connection ends: the server must keep it open through database trouble.
    pub async fn answer(&mut self) -> Answer {
        loop {
            match next_frame(&mut self.socket).await {
                Some(ServerFrame::Ack { client_id, message, .. }) => {
                    assert!(self.pending.remove(&client_id), "an ack for {client_id}, which was not waiting");
                    if let Some(id) = self.acked.insert(client_id.clone(), message.id) {
                        assert_eq!(id, message.id, "{client_id} acked twice as different messages");
                    }
                    return Answer::Acked(client_id);
                }
                Some(ServerFrame::Error { code, message, client_id: Some(client_id) }) => {
                    assert!(self.pending.remove(&client_id), "an error for {client_id}, which was not waiting");
                    assert!(!self.acked.contains_key(&client_id), "{client_id} refused after its ack: {code}");
                    assert!(!message.is_empty());
                    self.refused.insert(client_id.clone(), code.clone());
                    return Answer::Refused { client_id, code };
                }
                Some(ServerFrame::Error { code, message, client_id: None }) => panic!("{code}: {message}"),
                Some(_) => {}
                None => panic!("the socket closed or went silent with {} sends unanswered", self.pending.len()),
            }
        }
    }

    /// A `ping` on Ada's socket gets its `pong`: the connection survived.
    pub async fn socket_still_answers(&mut self) {
        let ping = serde_json::to_string(&ClientFrame::Ping).unwrap();
        self.socket.send(WsMessage::Text(ping.into())).await.unwrap();
        loop {
            match next_frame(&mut self.socket).await {
                Some(ServerFrame::Pong) => return,
                Some(_) => {}
                None => panic!("the socket closed or went silent"),
            }
        }
    }

    /// Sends message `n` and waits for its answer.
    pub async fn send_and_wait(&mut self, n: usize) -> Answer {
        self.send(n).await;
        self.answer().await
    }

    /// Sends `0..count` again one after the other, as a client's outbox would after trouble, and
    /// checks that every message acked before keeps its id.
    pub async fn resend_all(&mut self, count: usize) {
        let before = self.acked.clone();
        for n in 0..count {
            match self.send_and_wait(n).await {
                Answer::Acked(_) => {}
                Answer::Refused { client_id, code } => panic!("resending {client_id} after recovery: {code}"),
            }
        }
        for (client_id, id) in &before {
            assert_eq!(self.acked.get(client_id), Some(id), "{client_id} was acked before: the same message after");
        }
    }
}

#[derive(Debug)]
pub enum Answer {
    Acked(String),
    Refused { client_id: String, code: String },
}

pub fn body(n: usize) -> String {
    format!("message {n}")
}

/// Messages in the chat's history right now, as Bo reads it.
pub async fn history(server: &ServerProcess, conversation: &Conversation) -> Vec<(i64, String)> {
    let mut seqs = Vec::new();
    let mut before = None::<i64>;
    loop {
        let query = before.map_or(String::from("limit=100"), |b| format!("limit=100&before={b}"));
        let path = format!("/api/v1/chats/{}/messages?{query}", conversation.chat.id);
        let page: MessagePage = get_json(server, &path, &conversation.bo.token).await;
        seqs.extend(page.messages.iter().map(|m| (m.seq, m.client_id.clone())));
        before = page.messages.last().map(|m| m.seq);
        if !page.more {
            break;
        }
    }
    seqs.sort();
    seqs
}

/// History holds `0..count` each exactly once, numbered 1..=count without a hole, and Bo's
/// `sync` from the start replays each once.
pub async fn assert_each_once(server: &ServerProcess, conversation: &Conversation, count: usize) {
    let seqs = history(server, conversation).await;
    assert_eq!(seqs.len(), count, "each message exactly once in history");
    assert!(seqs.iter().enumerate().all(|(i, (seq, _))| *seq == i as i64 + 1), "seq 1..={count}");
    let stored: HashSet<String> = seqs.into_iter().map(|(_, c)| c).collect();
    let sent: HashSet<String> = (0..count).map(client_id).collect();
    assert_eq!(stored, sent, "history holds exactly the messages sent");

    let mut since = String::new();
    let mut replayed = Vec::new();
    loop {
        let batch: SyncBatch = get_json(server, &format!("/api/v1/sync?since={since}"), &conversation.bo.token).await;
        for event in &batch.events {
            if let Event::Message { message, .. } = event {
                replayed.push(message.client_id.clone());
            }
        }
        since = batch.next;
        if !batch.more {
            break;
        }
    }
    assert_eq!(replayed.len(), count, "sync replays each message once");
    assert_eq!(replayed.into_iter().collect::<HashSet<_>>(), sent);
}

/// A REST answer while the database is in trouble: the status, the JSON error body's code and
/// `Retry-After`.
pub async fn assert_refused(response: reqwest::Response, codes: &[&str]) -> String {
    assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE, "{}", response.url());
    assert!(response.headers().contains_key("retry-after"), "503 without Retry-After");
    let body: serde_json::Value = response.json().await.unwrap();
    let code = body["error"]["code"].as_str().unwrap_or_default().to_string();
    assert!(codes.contains(&code.as_str()), "error code {code:?}, expected one of {codes:?}: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    code
}

/// Polls `/healthz` until it answers 200; how long that took.
pub async fn wait_healthy(server: &ServerProcess, limit: Duration) -> Duration {
    let started = std::time::Instant::now();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    while started.elapsed() < limit {
        if client.get(format!("{}/healthz", server.url())).send().await.is_ok_and(|r| r.status().is_success()) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/healthz still failing after {limit:?}");
}
