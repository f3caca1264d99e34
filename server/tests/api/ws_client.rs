//! A WebSocket client for tests, speaking the protocol's JSON frames over a real socket.
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parley_common::{ClientFrame, Event, Message, ServerFrame, User};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, protocol::frame::coding::CloseCode, Message as WsMessage},
    MaybeTlsStream, WebSocketStream,
};

use crate::helpers::TestApp;

pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub user: User,
    /// The cursor of `hello`.
    pub hello_cursor: String,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Closed(Option<u16>),
    Dropped,
}

const WAIT: Duration = Duration::from_secs(10);

impl WsClient {
    pub async fn connect(app: &TestApp, token: &str) -> Self {
        let mut request = app.ws_url().into_client_request().unwrap();
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        Self::connect_with(request).await.expect("WebSocket upgrade")
    }

    pub async fn connect_with(
        request: tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let (socket, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Self::after_upgrade(socket).await)
    }

    /// Reads the `hello` every connection starts with.
    async fn after_upgrade(socket: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        let mut client = Self { socket, user: placeholder_user(), hello_cursor: String::new() };
        match client.next().await {
            ServerFrame::Hello { user, cursor } => {
                client.user = user;
                client.hello_cursor = cursor;
            }
            other => panic!("the first frame must be hello, got {other:?}"),
        }
        client
    }

    pub async fn send(&mut self, frame: &ClientFrame) {
        self.send_text(serde_json::to_string(frame).unwrap()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.socket.send(WsMessage::Text(text.into())).await.unwrap();
    }

    /// Sends without insisting: `false` if the connection is gone.
    pub async fn try_send_text(&mut self, text: String) -> bool {
        self.socket.send(WsMessage::Text(text.into())).await.is_ok()
    }

    pub async fn send_raw(&mut self, message: WsMessage) {
        self.socket.send(message).await.unwrap();
    }

    /// Sends a message with a fresh client_id; returns the client_id.
    pub async fn say(&mut self, chat_id: i64, body: &str) -> String {
        let client_id = uuid::Uuid::new_v4().to_string();
        self.send(&ClientFrame::Send { chat_id, client_id: client_id.clone(), body: body.into() }).await;
        client_id
    }

    /// The next application frame (pings and pongs are skipped).
    pub async fn next(&mut self) -> ServerFrame {
        tokio::time::timeout(WAIT, self.next_frame())
            .await
            .expect("a frame within 10 s")
            .unwrap_or_else(|ended| panic!("connection ended: {ended:?}"))
    }

    async fn next_frame(&mut self) -> Result<ServerFrame, Ended> {
        loop {
            match self.socket.next().await {
                Some(Ok(WsMessage::Text(text))) => {
                    return Ok(serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad frame {text}: {e}")))
                }
                Some(Ok(WsMessage::Close(frame))) => return Err(Ended::Closed(frame.map(|f| u16::from(f.code)))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(Ended::Dropped),
            }
        }
    }

    /// Skips frames until one matches.
    pub async fn next_matching<T>(&mut self, mut pick: impl FnMut(ServerFrame) -> Option<T>) -> T {
        loop {
            if let Some(found) = pick(self.next().await) {
                return found;
            }
        }
    }

    pub async fn next_ack(&mut self) -> (String, Message, String) {
        self.next_matching(|f| match f {
            ServerFrame::Ack { client_id, message, cursor } => Some((client_id, message, cursor)),
            _ => None,
        })
        .await
    }

    pub async fn next_message(&mut self) -> (String, Message) {
        self.next_matching(|f| match f {
            ServerFrame::Event(Event::Message { cursor, message }) => Some((cursor, message)),
            _ => None,
        })
        .await
    }

    pub async fn next_error(&mut self) -> (String, Option<String>) {
        self.next_matching(|f| match f {
            ServerFrame::Error { code, client_id, .. } => Some((code, client_id)),
            _ => None,
        })
        .await
    }

    /// Asserts that no application frame arrives within `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Ok(frame) = tokio::time::timeout(wait, self.next_frame()).await {
            panic!("expected no frame, got {frame:?}");
        }
    }

    /// Asserts that no frame `unwanted` matches arrives within `wait` (others are skipped).
    pub async fn expect_none(&mut self, wait: Duration, unwanted: impl Fn(&ServerFrame) -> bool) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(frame) = tokio::time::timeout_at(deadline, self.next_frame()).await {
            match frame {
                Ok(frame) if unwanted(&frame) => panic!("unexpected {frame:?}"),
                Ok(_) => continue,
                Err(ended) => panic!("connection ended: {ended:?}"),
            }
        }
    }

    /// Reads until the connection ends, returning how.
    pub async fn ended(&mut self) -> Ended {
        loop {
            match tokio::time::timeout(Duration::from_secs(30), self.next_frame()).await {
                Ok(Ok(_)) => continue,
                Ok(Err(ended)) => return ended,
                Err(_) => panic!("the connection did not end within 30 s"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .socket
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
        // Wait for the server's answer so the server has seen the close.
        let _ =
            tokio::time::timeout(Duration::from_secs(5), async { while self.socket.next().await.is_some() {} }).await;
    }
}

fn placeholder_user() -> User {
    User { id: 0, email: String::new(), display_name: String::new(), created_at: String::new() }
}

impl WsClient {
    /// A client whose socket has a tiny receive buffer, so that not reading soon blocks the
    /// server's writes (a slow consumer).
    pub async fn connect_slow_reader(app: &TestApp, token: &str) -> Self {
        let addr: std::net::SocketAddr = app.url.trim_start_matches("http://").parse().unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let mut request = app.ws_url().into_client_request().unwrap();
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (socket, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await.unwrap();
        Self::after_upgrade(socket).await
    }
}

impl WsClient {
    /// The next message's id, or how the connection ended.
    pub async fn next_message_or_end(&mut self) -> Result<i64, Ended> {
        loop {
            match self.next_frame().await? {
                ServerFrame::Event(Event::Message { message, .. }) => return Ok(message.id),
                _ => continue,
            }
        }
    }
}

impl WsClient {
    /// The next `read` event as `(chat_id, user_id, up_to)`.
    pub async fn next_read(&mut self) -> (i64, i64, i64) {
        self.next_matching(|f| match f {
            ServerFrame::Event(Event::Read { chat_id, user_id, up_to, .. }) => Some((chat_id, user_id, up_to)),
            _ => None,
        })
        .await
    }

    /// The next `presence` frame as `(user_id, online, last_seen)`.
    pub async fn next_presence(&mut self) -> (i64, bool, Option<String>) {
        self.next_matching(|f| match f {
            ServerFrame::Presence { user_id, online, last_seen } => Some((user_id, online, last_seen)),
            _ => None,
        })
        .await
    }
}
