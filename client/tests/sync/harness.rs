//! A real Parley server that a test can stop and start again (same port, same SQLite file), a
//! TCP relay between the client under test and that server which can be cut or held (the network
//! going away without the server knowing), and a second user speaking plain WebSocket.
use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use parley_common::{AuthResponse, ClientFrame, Message, ServerFrame, SignupMode};
use parley_server::{config::Secret, Config, Server};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinSet,
};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue, Message as WsMessage};

pub fn temp_dir(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("parley-{prefix}-{}", uuid::Uuid::new_v4()))
}

/// The server in a runtime of its own: stopping drops the runtime, which ends every task and
/// socket of the server at once, as a crash would, with nothing said to the clients.
pub struct TestServer {
    pub addr: SocketAddr,
    pub config: Config,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestServer {
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        let data_dir = temp_dir("client-server");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut config = Config {
            bind: SocketAddr::from(([127, 0, 0, 1], port)),
            database_url: Some(Secret(format!("sqlite://{}", data_dir.join("parley.db").display()))),
            data_dir,
            signup: SignupMode::Open,
            smtp_url: None,
            log: "warn".into(),
            ..Config::default()
        };
        config.rate_limits.messages_per_user = 100_000;
        config.ws_frames_per_sec = 10_000;
        tweak(&mut config);
        let mut server = TestServer { addr: config.bind, config, runtime: None };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        // The test certificate names `localhost`; plain HTTP goes to the address itself.
        match self.config.tls_cert {
            Some(_) => format!("https://localhost:{}", self.addr.port()),
            None => format!("http://{}", self.addr),
        }
    }

    /// Starts it (again) on the same port and database.
    pub async fn restart(&mut self) {
        assert!(self.runtime.is_none(), "already running");
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let config = self.config.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        runtime.spawn(async move {
            let listener = bind_retrying(config.bind).await;
            let server = Server::build(config).await.expect("server starts");
            let _ = ready_tx.send(());
            server.serve(listener, std::future::pending()).await.expect("server runs");
        });
        ready_rx.await.expect("server came up");
        self.runtime = Some(runtime);
    }

    pub fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.config.data_dir);
    }
}

async fn bind_retrying(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("port {addr} stays taken");
}

/// A TCP relay in front of the server, as the client's network: `cut` drops every connection
/// through it and refuses new ones; `hold` keeps bytes from the server back (they are lost when
/// the relay is then cut); `restore` lets traffic through again.
pub struct Relay {
    pub port: u16,
    target: SocketAddr,
    held: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut relay = Relay { port, target, held: Arc::new(AtomicBool::new(false)), task: None };
        relay.restore().await;
        relay
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.held.store(false, Ordering::SeqCst);
    }

    pub fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
    }

    pub async fn restore(&mut self) {
        self.cut();
        let listener = bind_retrying(SocketAddr::from(([127, 0, 0, 1], self.port))).await;
        let (target, held) = (self.target, self.held.clone());
        self.task = Some(tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection with it.
            let mut connections = JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                let held = held.clone();
                connections.spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = async {
                        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                        let _ = server_write.shutdown().await;
                    };
                    let downstream = async {
                        let mut buffer = vec![0u8; 16 * 1024];
                        loop {
                            let n = match server_read.read(&mut buffer).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            while held.load(Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            if client_write.write_all(&buffer[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = client_write.shutdown().await;
                    };
                    tokio::join!(upstream, downstream);
                });
            }
        }));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Plain HTTP against the server, as the second user or as the judge of what the server holds.
pub struct Rest {
    pub base: String,
    http: reqwest::Client,
}

impl Rest {
    pub fn new(base: &str) -> Self {
        Rest { base: base.to_string(), http: reqwest::Client::new() }
    }

    pub async fn user(&self, name: &str) -> AuthResponse {
        let email = format!("{}@example.org", name.to_lowercase());
        let response = self
            .http
            .post(format!("{}/api/v1/auth/signup", self.base))
            .json(&serde_json::json!({"email": email, "password": "a good password", "display_name": name}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "signup of {email}: {}", response.status());
        response.json().await.unwrap()
    }

    pub async fn chat(&self, me: &AuthResponse, email: &str) -> i64 {
        let response = self
            .http
            .post(format!("{}/api/v1/chats", self.base))
            .bearer_auth(&me.token)
            .json(&serde_json::json!({"email": email}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        response.json::<parley_common::Chat>().await.unwrap().id
    }

    pub async fn chats(&self, me: &AuthResponse) -> Vec<parley_common::Chat> {
        let list: parley_common::ChatList = self
            .http
            .get(format!("{}/api/v1/chats", self.base))
            .bearer_auth(&me.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list.chats
    }

    /// Every message of the chat as the server holds it, oldest first.
    pub async fn all_messages(&self, me: &AuthResponse, chat_id: i64) -> Vec<Message> {
        let mut messages = Vec::new();
        let mut before: Option<i64> = None;
        loop {
            let mut url = format!("{}/api/v1/chats/{chat_id}/messages?limit=100", self.base);
            if let Some(before) = before {
                url.push_str(&format!("&before={before}"));
            }
            let page: parley_common::MessagePage =
                self.http.get(url).bearer_auth(&me.token).send().await.unwrap().json().await.unwrap();
            before = page.messages.last().map(|m| m.seq);
            messages.extend(page.messages);
            if !page.more {
                break;
            }
        }
        messages.reverse();
        messages
    }
}

/// A user on a plain WebSocket.
pub struct Peer {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
}

impl Peer {
    pub async fn connect(base: &str, token: &str) -> Self {
        let url = format!("{}/api/v1/ws", base.replacen("http", "ws", 1));
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        let (socket, _) = tokio_tungstenite::connect_async(request).await.expect("peer connects");
        let mut peer = Peer { socket };
        let hello = peer.next().await;
        assert!(matches!(hello, ServerFrame::Hello { .. }), "first frame is hello: {hello:?}");
        peer
    }

    pub async fn next(&mut self) -> ServerFrame {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.socket.next())
                .await
                .expect("a frame within 10 s")
                .expect("socket open")
                .expect("readable");
            if let WsMessage::Text(text) = message {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    /// Sends messages and waits for every ack.
    pub async fn say_all(&mut self, chat_id: i64, bodies: &[String]) {
        for body in bodies {
            let frame = ClientFrame::Send { chat_id, client_id: uuid::Uuid::new_v4().to_string(), body: body.clone() };
            self.socket.send(WsMessage::text(serde_json::to_string(&frame).unwrap())).await.unwrap();
        }
        let mut acked = 0;
        while acked < bodies.len() {
            if let ServerFrame::Ack { .. } = self.next().await {
                acked += 1;
            }
        }
    }
}

/// Polls `check` until it holds, or fails the test after `secs` seconds naming `what`.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
