//! Clusters for tests: `parley-server` processes on loopback ports sharing one Postgres schema and
//! one Redis (the shared one with a key prefix of the test's own, or a private `redis-server` the
//! test may stop and start), plus a WebSocket client that checks the stream it receives.
use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use parley_common::{AuthResponse, Chat, ChatList, ClientFrame, Event, Message, ServerFrame, SyncBatch};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message as WsMessage};

use crate::server_process::{free_port, ServerProcess};

pub const PRESENCE_TTL_SECS: u64 = 6;
pub const SHARED_REDIS: &str = "redis://127.0.0.1:6379";

fn postgres_admin_url() -> String {
    std::env::var("PARLEY_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn shared_redis_url() -> String {
    std::env::var("PARLEY_TEST_REDIS_URL").unwrap_or_else(|_| SHARED_REDIS.into())
}

/// A `redis-server` of the test's own (no persistence), which it may stop and start again.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let mut redis = PrivateRedis { port: free_port(), child: None };
        redis.spawn().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) must be installed");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not come up on port {}", self.port);
    }

    /// SIGKILL: everything it held is gone, as after a crash without persistence.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: it keeps its connections and accepts new ones, but answers nothing (a hung Redis).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
    }

    pub async fn start_again(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Nodes on one database and one Redis.
pub struct Cluster {
    pub nodes: Vec<ServerProcess>,
    env: Vec<(String, String)>,
    schema: String,
    redis_url: String,
    prefix: String,
}

impl Cluster {
    /// `n` nodes on the shared Redis (with a prefix of this cluster's own).
    pub async fn start(n: usize, extra: &[(&str, &str)]) -> Self {
        Self::start_on(n, &shared_redis_url(), extra).await
    }

    pub async fn start_on(n: usize, redis_url: &str, extra: &[(&str, &str)]) -> Self {
        use sqlx::Connection;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let schema = format!("cluster_{id}");
        let mut conn = sqlx::PgConnection::connect(&postgres_admin_url()).await.expect("Postgres for tests");
        sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut conn).await.unwrap();
        let admin = postgres_admin_url();
        let sep = if admin.contains('?') { '&' } else { '?' };
        let database_url = format!("{admin}{sep}options=-c%20search_path%3D{schema}");
        let prefix = format!("test:{id}:");
        let mut env: Vec<(String, String)> = [
            ("DATABASE_URL", database_url.as_str()),
            ("PARLEY_REDIS_URL", redis_url),
            ("PARLEY_REDIS_PREFIX", prefix.as_str()),
            ("PARLEY_SECRET", "a secret shared by every node of the test cluster"),
            ("PARLEY_SIGNUP", "open"),
            ("PARLEY_PRESENCE_TTL_SECS", &PRESENCE_TTL_SECS.to_string()),
            ("PARLEY_RATE_LIMITS__MESSAGES_PER_USER", "0"),
            ("PARLEY_WS_FRAMES_PER_SEC", "100000"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut cluster = Cluster { nodes: Vec::new(), env, schema, redis_url: redis_url.to_string(), prefix };
        for _ in 0..n {
            cluster.add_node().await;
        }
        cluster
    }

    pub async fn add_node(&mut self) -> usize {
        self.add_node_with(&[]).await
    }

    /// A node whose settings differ from the others' by `overrides`.
    pub async fn add_node_with(&mut self, overrides: &[(&str, &str)]) -> usize {
        let mut env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.extend_from_slice(overrides);
        self.nodes.push(ServerProcess::start(&env).await);
        self.nodes.len() - 1
    }

    pub fn url(&self, node: usize) -> String {
        self.nodes[node].url()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let (schema, redis_url, prefix) = (self.schema.clone(), self.redis_url.clone(), self.prefix.clone());
        // Drop runs inside the test's runtime; a thread with its own runtime can block on it.
        let cleanup = std::thread::spawn(move || {
            if let Ok(mut conn) = redis::Client::open(redis_url).and_then(|c| c.get_connection()) {
                let keys: Vec<String> =
                    redis::cmd("KEYS").arg(format!("{prefix}*")).query(&mut conn).unwrap_or_default();
                if !keys.is_empty() {
                    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
                }
            }
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut conn).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

// --- REST -------------------------------------------------------------------------------------

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

/// An account (open signup) through `base`, logged in.
pub async fn user(base: &str, name: &str) -> AuthResponse {
    let body = serde_json::json!({"email": email(name), "password": "a good password", "display_name": name});
    let response = http().post(format!("{base}/api/v1/auth/signup")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200, "signup of {name}");
    response.json().await.unwrap()
}

pub fn email(name: &str) -> String {
    format!("{}@example.org", name.to_lowercase())
}

pub async fn start_chat(base: &str, token: &str, with: &str) -> Chat {
    let response = http()
        .post(format!("{base}/api/v1/chats"))
        .bearer_auth(token)
        .json(&serde_json::json!({"email": email(with)}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "start chat: {}", response.status());
    response.json().await.unwrap()
}

pub async fn chats(base: &str, token: &str) -> ChatList {
    let response = http().get(format!("{base}/api/v1/chats")).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The chat with `friend_id` as `token`'s user sees it through `base`.
pub async fn chat_with(base: &str, token: &str, friend_id: i64) -> Chat {
    chats(base, token).await.chats.into_iter().find(|c| c.friend.id == friend_id).expect("the chat is listed")
}

/// Every event after `since`, following `next` while `more`.
pub async fn sync_all(base: &str, token: &str, since: &str) -> (Vec<Event>, String) {
    let mut since = since.to_string();
    let mut events = Vec::new();
    loop {
        let response = http().get(format!("{base}/api/v1/sync?since={since}")).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let batch: SyncBatch = response.json().await.unwrap();
        events.extend(batch.events);
        since = batch.next;
        if !batch.more {
            return (events, since);
        }
    }
}

/// Polls `check` until it holds or `within` passes; returns how long it took.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < within {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {within:?}");
}

// --- WebSocket --------------------------------------------------------------------------------

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One device's socket. It keeps the stream positions it saw (events and acks), to check that
/// they come in order with no gap, and the messages by `client_id`, to check each came once.
pub struct Ws {
    socket: Socket,
    pub user_id: i64,
    pub hello_cursor: i64,
    /// Stream positions received, in order (events and acks).
    pub positions: Vec<i64>,
    /// Messages received as events or acks, by client_id: how many times each.
    pub seen: HashMap<String, usize>,
    /// The newest position received in order: what a client would store.
    pub cursor: i64,
    /// Presence frames received: (user, online).
    pub presence: Vec<(i64, bool)>,
}

const WAIT: Duration = Duration::from_secs(10);

impl Ws {
    pub async fn connect(base: &str, token: &str) -> Self {
        let url = format!("{}/api/v1/ws", base.replacen("http://", "ws://", 1));
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (socket, _) = tokio_tungstenite::connect_async(request).await.expect("WebSocket upgrade");
        Self::after_upgrade(socket).await
    }

    pub async fn after_upgrade(socket: Socket) -> Self {
        let mut ws = Ws {
            socket,
            user_id: 0,
            hello_cursor: 0,
            positions: Vec::new(),
            seen: HashMap::new(),
            cursor: 0,
            presence: Vec::new(),
        };
        match ws.next().await {
            ServerFrame::Hello { user, cursor } => {
                ws.user_id = user.id;
                ws.hello_cursor = cursor.parse().unwrap();
                ws.cursor = ws.hello_cursor;
            }
            other => panic!("the first frame must be hello, got {other:?}"),
        }
        ws
    }

    pub async fn send(&mut self, frame: &ClientFrame) {
        self.socket.send(WsMessage::Text(serde_json::to_string(frame).unwrap().into())).await.unwrap();
    }

    /// Queues a frame without flushing (many in flight); `flush` sends them.
    pub async fn feed(&mut self, frame: &ClientFrame) {
        self.socket.feed(WsMessage::Text(serde_json::to_string(frame).unwrap().into())).await.unwrap();
    }

    pub async fn flush(&mut self) {
        self.socket.flush().await.unwrap();
    }

    pub async fn say(&mut self, chat_id: i64, client_id: &str, body: &str) {
        self.send(&ClientFrame::Send { chat_id, client_id: client_id.into(), body: body.into() }).await;
    }

    /// The next application frame within `wait`; `None` on timeout or when the connection ends.
    pub async fn next_within(&mut self, wait: Duration) -> Option<ServerFrame> {
        let frame = tokio::time::timeout(wait, async {
            loop {
                match self.socket.next().await {
                    Some(Ok(WsMessage::Text(text))) => {
                        return Some(
                            serde_json::from_str::<ServerFrame>(&text).unwrap_or_else(|e| panic!("{text}: {e}")),
                        )
                    }
                    Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => return None,
                    Some(Ok(_)) => continue,
                }
            }
        })
        .await
        .ok()
        .flatten()?;
        self.record(&frame);
        Some(frame)
    }

    pub async fn next(&mut self) -> ServerFrame {
        self.next_within(WAIT).await.expect("a frame within 10 s")
    }

    fn record(&mut self, frame: &ServerFrame) {
        let (cursor, message) = match frame {
            ServerFrame::Presence { user_id, online, .. } => {
                self.presence.push((*user_id, *online));
                return;
            }
            ServerFrame::Ack { cursor, message, .. } => (cursor.as_str(), Some(message)),
            ServerFrame::Event(event) => {
                (event.cursor(), if let Event::Message { message, .. } = event { Some(message) } else { None })
            }
            _ => return,
        };
        let pos: i64 = cursor.parse().unwrap();
        self.positions.push(pos);
        if pos == self.cursor + 1 {
            self.cursor = pos;
        }
        if let Some(message) = message {
            *self.seen.entry(message.client_id.clone()).or_default() += 1;
        }
    }

    pub async fn next_matching<T>(&mut self, what: &str, mut pick: impl FnMut(&ServerFrame) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = self.next_within(left).await.unwrap_or_else(|| panic!("waiting for {what}: nothing in 10 s"));
            if let Some(found) = pick(&frame) {
                return found;
            }
        }
    }

    pub async fn next_ack(&mut self) -> (String, Message) {
        self.next_matching("an ack", |f| match f {
            ServerFrame::Ack { client_id, message, .. } => Some((client_id.clone(), message.clone())),
            _ => None,
        })
        .await
    }

    pub async fn next_message(&mut self) -> Message {
        self.next_matching("a message", |f| match f {
            ServerFrame::Event(Event::Message { message, .. }) => Some(message.clone()),
            _ => None,
        })
        .await
    }

    pub async fn next_presence(&mut self, user_id: i64) -> bool {
        self.next_matching("a presence frame", |f| match f {
            ServerFrame::Presence { user_id: u, online, .. } if *u == user_id => Some(*online),
            _ => None,
        })
        .await
    }

    /// Reads frames for `wait`, failing on any that `unwanted` matches.
    pub async fn expect_none(&mut self, wait: Duration, unwanted: impl Fn(&ServerFrame) -> bool) {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_within(left).await {
                Some(frame) if unwanted(&frame) => panic!("unexpected {frame:?}"),
                Some(_) => {}
                None => return,
            }
        }
    }

    /// Reads until the server closes the connection; its close code, or `None` if it did not
    /// close within `wait` (or dropped without a close frame).
    pub async fn close_code_within(&mut self, wait: Duration) -> Option<u16> {
        tokio::time::timeout(wait, async {
            loop {
                match self.socket.next().await {
                    Some(Ok(WsMessage::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// Asserts the positions seen since hello are the user's stream as the store holds it (read
    /// through `base` with `token`), up to the last one seen: in order, none missing or twice.
    /// A stream has holes (other users' positions), so only the store can tell a missing one.
    pub async fn assert_stream_in_order(&self, what: &str, base: &str, token: &str) {
        let last = self.positions.last().copied().unwrap_or(self.hello_cursor);
        let (stored, _) = sync_all(base, token, &self.hello_cursor.to_string()).await;
        let stored: Vec<i64> =
            stored.iter().map(|e| e.cursor().parse::<i64>().unwrap()).take_while(|pos| *pos <= last).collect();
        assert_eq!(self.positions, stored, "{what}: the positions seen against the store's");
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
        // Drain until the server's close arrives, so it has seen ours.
        let _ =
            tokio::time::timeout(Duration::from_secs(2), async { while self.socket.next().await.is_some() {} }).await;
    }
}

pub fn client_id(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}
