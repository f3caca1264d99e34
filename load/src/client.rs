//! Accounts, REST calls and WebSocket connections of the load generator.
use std::{net::SocketAddr, path::Path, time::Duration};

use futures_util::{SinkExt, StreamExt};
use parley_common::{Chat, ClientFrame, ServerFrame};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, protocol::WebSocketConfig, Message as WsMessage},
    MaybeTlsStream, WebSocketStream,
};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Room for a burst of frames per read.
const READ_BUFFER_BYTES: usize = 8 * 1024;
pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone)]
pub struct Account {
    pub email: String,
    pub token: String,
}

impl Account {
    pub fn read_all(path: &Path) -> std::io::Result<Vec<Account>> {
        let text = std::fs::read_to_string(path)?;
        Ok(text
            .lines()
            .filter_map(|line| {
                // user_id, email, token
                let mut parts = line.split('\t').skip(1);
                Some(Account { email: parts.next()?.to_string(), token: parts.next()?.to_string() })
            })
            .collect())
    }
}

#[derive(Clone)]
pub struct Target {
    pub base: String,
    pub ws: String,
    pub addr: SocketAddr,
    http: reqwest::Client,
}

impl Target {
    pub fn new(base: &str) -> Self {
        let base = base.trim_end_matches('/').to_string();
        let host = base.trim_start_matches("http://").trim_start_matches("https://");
        let addr = host.parse().expect("--server must be http://<ip>:<port>");
        let ws = format!("{}/api/v1/ws", base.replacen("http", "ws", 1));
        Target { base, ws, addr, http: reqwest::Client::new() }
    }

    /// The chat between `from` and `to` (started if new).
    pub async fn chat(&self, from: &Account, to: &Account) -> Result<i64> {
        let response = self
            .http
            .post(format!("{}/api/v1/chats", self.base))
            .bearer_auth(&from.token)
            .json(&serde_json::json!({"email": to.email}))
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(format!("starting a chat: {}", response.text().await?).into());
        }
        Ok(response.json::<Chat>().await?.id)
    }

    /// A socket from `source` (a loopback address) for `account`, past its `hello`; returns the
    /// socket and the hello cursor.
    pub async fn connect_from(&self, account: &Account, source: Option<std::net::IpAddr>) -> Result<(Socket, String)> {
        let mut request = self.ws.as_str().into_client_request()?;
        request.headers_mut().insert("authorization", format!("Bearer {}", account.token).parse()?);
        let stream = match source {
            Some(ip) => {
                let socket = TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(self.addr).await?
            }
            None => TcpStream::connect(self.addr).await?,
        };
        stream.set_nodelay(true)?;
        // tungstenite zero-fills its read buffer's free room (128 KiB by default) before each
        // read: with many small frames that memset was a tenth of the load generator's CPU.
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(request, MaybeTlsStream::Plain(stream), Some(config)).await?;
        let mut socket = Socket { ws };
        match socket.next().await? {
            ServerFrame::Hello { cursor, .. } => Ok((socket, cursor)),
            other => Err(format!("expected hello, got {other:?}").into()),
        }
    }

    pub async fn connect(&self, account: &Account) -> Result<(Socket, String)> {
        self.connect_from(account, None).await
    }
}

pub struct Socket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Socket {
    pub async fn send(&mut self, frame: &ClientFrame) -> Result<()> {
        self.ws.send(WsMessage::Text(serde_json::to_string(frame)?.into())).await?;
        Ok(())
    }

    /// Queues a frame without flushing; `flush` sends what is queued.
    pub async fn feed(&mut self, frame: &ClientFrame) -> Result<()> {
        self.ws.feed(WsMessage::Text(serde_json::to_string(frame)?.into())).await?;
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<()> {
        self.ws.flush().await?;
        Ok(())
    }

    /// The next application frame; pings are answered by the library while reading.
    pub async fn next(&mut self) -> Result<ServerFrame> {
        loop {
            match self.ws.next().await {
                Some(Ok(WsMessage::Text(text))) => return Ok(serde_json::from_str(&text)?),
                Some(Ok(WsMessage::Close(frame))) => return Err(format!("closed by the server: {frame:?}").into()),
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(err.into()),
                None => return Err("connection ended".into()),
            }
        }
    }

    pub async fn next_within(&mut self, wait: Duration) -> Result<Option<ServerFrame>> {
        match tokio::time::timeout(wait, self.next()).await {
            Ok(frame) => frame.map(Some),
            Err(_) => Ok(None),
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
