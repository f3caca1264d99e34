//! A real Parley server (SQLite, open signups) in this process, on a thread and runtime of its
//! own: stopping it drops that runtime, so every connection, WebSockets included, goes away as if
//! the server had died; restarting serves the same database on the same port.
use std::{net::SocketAddr, thread::JoinHandle, time::Duration};

use futures_util::{SinkExt, StreamExt};
use parley_common::{AuthResponse, Chat, ClientFrame, MessagePage, ServerFrame, SignupMode};
use parley_server::{Config, Server};
use serde_json::json;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

use super::{temp_dir, PASSWORD};

/// Someone with an account, talking to the server over REST and WebSocket.
pub struct Account {
    token: String,
}

pub struct TestServer {
    pub url: String,
    addr: SocketAddr,
    config: Config,
    running: Option<Running>,
    http: reqwest::Client,
}

struct Running {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl TestServer {
    pub fn start() -> Self {
        let config = Config {
            bind: "127.0.0.1:0".parse().expect("address"),
            data_dir: temp_dir("parley-desktop-server"),
            signup: SignupMode::Open,
            log: "warn".into(),
            ..Config::default()
        };
        let listener = std::net::TcpListener::bind(config.bind).expect("a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let running = serve(config.clone(), listener);
        TestServer { url: format!("http://{addr}"), addr, config, running: Some(running), http: reqwest::Client::new() }
    }

    pub fn stop(&mut self) {
        if let Some(Running { stop, thread }) = self.running.take() {
            let _ = stop.send(());
            thread.join().expect("the server thread ends");
        }
    }

    pub fn restart(&mut self) {
        assert!(self.running.is_none(), "the server is already running");
        let listener = std::net::TcpListener::bind(self.addr).expect("the server's port again");
        self.running = Some(serve(self.config.clone(), listener));
    }

    pub async fn create_account(&self, email: &str, name: &str) -> Account {
        let body = json!({"email": email, "password": PASSWORD, "display_name": name});
        let response = self.http.post(format!("{}/api/v1/auth/signup", self.url)).json(&body).send().await.unwrap();
        assert!(response.status().is_success(), "signup of {email}: {}", response.status());
        let auth: AuthResponse = response.json().await.unwrap();
        Account { token: auth.token }
    }

    /// Starts (or finds) `account`'s chat with the person of `email`; returns its id.
    pub async fn chat_with(&self, account: &Account, email: &str) -> i64 {
        let response = self
            .http
            .post(format!("{}/api/v1/chats", self.url))
            .bearer_auth(&account.token)
            .json(&json!({ "email": email }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "chat with {email}: {}", response.status());
        response.json::<Chat>().await.unwrap().id
    }

    /// Sends `body` the way any client does, over the WebSocket, and waits for its ack.
    pub async fn send_over_websocket(&self, account: &Account, chat_id: i64, body: &str) {
        let ws_url = format!("{}/api/v1/ws", self.url.replacen("http://", "ws://", 1));
        let mut request = ws_url.into_client_request().unwrap();
        request.headers_mut().insert("authorization", format!("Bearer {}", account.token).parse().unwrap());
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("WebSocket");
        let frame = ClientFrame::Send { chat_id, client_id: uuid::Uuid::new_v4().to_string(), body: body.into() };
        socket.send(Message::Text(serde_json::to_string(&frame).unwrap().into())).await.unwrap();
        let acked = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message {
                    if let Ok(ServerFrame::Ack { .. }) = serde_json::from_str(&text) {
                        return true;
                    }
                }
            }
            false
        })
        .await;
        assert_eq!(acked, Ok(true), "the server acknowledged {body:?}");
        let _ = socket.close(None).await;
    }

    /// The bodies of a chat's messages as the server holds them, oldest first.
    pub async fn history(&self, account: &Account, chat_id: i64) -> Vec<String> {
        let page: MessagePage = self
            .http
            .get(format!("{}/api/v1/chats/{chat_id}/messages", self.url))
            .bearer_auth(&account.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page.messages.into_iter().rev().map(|message| message.body).collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.config.data_dir);
    }
}

fn serve(config: Config, listener: std::net::TcpListener) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let (ready, is_ready) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        runtime.block_on(async move {
            let server = Server::build(config).await.expect("the server starts");
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            ready.send(()).unwrap();
            tokio::select! {
                result = server.serve(listener, std::future::pending()) => result.expect("the server runs"),
                _ = stopped => {}
            }
        });
        // Ends the tasks still running (each connection's), closing their sockets.
        runtime.shutdown_timeout(Duration::from_secs(5));
    });
    is_ready.recv().expect("the server thread came up");
    Running { stop, thread }
}
