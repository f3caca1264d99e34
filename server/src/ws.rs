//! `GET /api/v1/ws`: one task pair per socket. The receive side turns client frames into calls
//! of `chats`; the send side writes the connection's queue to the socket (the user's events come
//! in position order from the node's sequencer, `crate::sequencer`), and pings.
use std::{
    collections::HashMap,
    num::NonZeroU32,
    ops::ControlFlow,
    sync::{
        atomic::{AtomicBool, AtomicI64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{
    extract::{
        ws::{rejection::WebSocketUpgradeRejection, CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade},
        State,
    },
    http::HeaderMap,
    response::Response,
};
use futures_util::{
    stream::{SplitSink, SplitStream},
    SinkExt, StreamExt,
};
use governor::{DefaultDirectRateLimiter, Quota};
use parley_common::{ws::close, ClientFrame, Event, ServerFrame};
use tokio::sync::Semaphore;

use crate::{
    accounts::user_view,
    chats,
    clock::now_millis,
    error::{ApiError, ApiResult},
    relay::{self, next_conn_id, ConnHandle, ConnId, Kick, Outbound, QueueError, QueueReceiver, QueueSender},
    state::{origin_allowed, AppState, Session},
    store::UserRecord,
};

/// Socket buffers per connection. The library's defaults (128 KiB each) suit a few busy sockets;
/// a chat server holds many mostly idle ones, and frames are small. The read buffer is allocated
/// up front and kept: 4 KiB of the ~12 KiB an idle connection cost; 1 KiB delivers as much under
/// load (512 bytes cost a tenth of the throughput, docs/BENCHMARKS.md). A larger frame grows it.
const READ_BUFFER_BYTES: usize = 1024;
const WRITE_BUFFER_BYTES: usize = 8 * 1024;
/// RFC 6455's normal closure.
const NORMAL_CLOSE: u16 = 1000;
/// Bad frames a connection may send in a row before it is closed.
const MAX_BAD_FRAMES_IN_A_ROW: u32 = 20;
/// `typing` frames for one chat closer together than this are dropped.
const TYPING_EVERY: Duration = Duration::from_secs(2);
/// `send` frames of one connection that may wait for their commit at once: a client may send
/// many without waiting for each ack, and they share group commits. Past this, the connection's
/// frames are not read until an answer comes.
const MAX_SENDS_IN_FLIGHT: usize = 64;
/// Queued frames written before the socket is flushed: a backlog goes out in few writes, while
/// one frame alone is flushed at once.
const MAX_FRAMES_PER_FLUSH: usize = 64;

/// Opens the socket for the session's user (cookie sessions only from the server's own origin).
#[utoipa::path(get, path = "/api/v1/ws", tag = "realtime",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 101, description = "WebSocket; frames are described in docs/PROTOCOL.md"),
        (status = 400, description = "`not_websocket`: not a WebSocket upgrade request", body = parley_common::ErrorBody),
        (status = 401, description = "`unauthorized`", body = parley_common::ErrorBody),
        (status = 403, description = "`forbidden_origin`", body = parley_common::ErrorBody),
    ))]
pub async fn upgrade(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let ws = ws.map_err(|rejection| ApiError::NotWebSocket(rejection.body_text()))?;
    if session.via_cookie && !origin_allowed(&headers, &state.config) {
        return Err(ApiError::ForbiddenOrigin);
    }
    let user = state.store.user_by_id(session.user_id).await?.ok_or(ApiError::Unauthorized)?;
    // Room for a body of the largest size even if JSON escaping inflates it several times.
    let max_frame = state.config.max_message_bytes * 6 + 1024;
    Ok(ws
        .max_message_size(max_frame)
        .max_frame_size(max_frame)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            // A task of the connection's own: axum's upgrade task would keep, for as long as the
            // connection lives, the callback's captures and room for its largest state (the
            // handshake's) next to the connection's future, ~1.3 KiB in all.
            tokio::spawn(run(state, session, user, socket));
            std::future::ready(())
        }))
}

/// The connection's task. Not an `async fn`: its arguments (the socket among them) would stay in
/// the future for as long as the connection lives. Opening and closing are boxed, and so are the
/// two sides and the closing timeouts: what stays in the task while the connection is open is a
/// few pointers, not the largest of every state it passes through (memory per idle connection,
/// docs/BENCHMARKS.md).
fn run(
    state: AppState,
    session: Session,
    user: UserRecord,
    socket: WebSocket,
) -> impl std::future::Future<Output = ()> {
    let user_id = user.id;
    let conn_id = next_conn_id();
    let opening = Box::pin(open(state.clone(), session, user, socket, conn_id));
    async move {
        // Started out of the match: a value matched on keeps its room in the future until the
        // match ends, and `Open` is large.
        let sides = opening.await.map(Open::start);
        if let Some((mut send, mut receive, kick)) = sides {
            tokio::select! {
                // The send side closed the connection (a kick, a timeout): read on briefly so the
                // peer's close reply is taken, not answered with a reset that could cost it the
                // close frame and its reason.
                () = &mut send => {
                    let _ = Box::pin(tokio::time::timeout(Duration::from_secs(1), receive)).await;
                }
                // The peer closed or vanished: the send side answers a close with one of its own
                // (or with the reason it was kicked for), if the socket still takes it.
                () = &mut receive => {
                    kick.kick(NORMAL_CLOSE);
                    let _ = Box::pin(tokio::time::timeout(Duration::from_secs(1), send)).await;
                }
            }
        }
        Box::pin(close(&state, user_id, conn_id)).await;
    }
}

/// A connection past its `hello`, ready to run.
struct Open {
    sender: Sender,
    receiver: Receiver,
    queue_rx: QueueReceiver<Outbound>,
    kick: Arc<Kick>,
    last_heard: Arc<AtomicI64>,
}

type Side = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl Open {
    /// The two sides, each boxed at its own size, and the connection's kick.
    fn start(self) -> (Side, Side, Arc<Kick>) {
        let Open { sender, receiver, queue_rx, kick, last_heard } = self;
        (Box::pin(sender.run(queue_rx, kick.clone(), last_heard)), Box::pin(receiver.run()), kick)
    }
}

/// Registers the connection with the relay and greets it; `None` if the greeting failed (the
/// connection is registered all the same: [`close`] follows either way).
async fn open(state: AppState, session: Session, user: UserRecord, socket: WebSocket, conn_id: ConnId) -> Option<Open> {
    let (mut sink, stream) = socket.split();
    let (queue, queue_rx) = relay::queue(state.config.ws_queue_len);
    let kick = Arc::new(Kick::default());
    let catch_up_queued = Arc::new(AtomicBool::new(false));
    let user_id = user.id;
    let came_online = state
        .relay
        .register(
            user_id,
            ConnHandle {
                id: conn_id,
                session_id: session.id,
                queue: queue.clone(),
                kick: kick.clone(),
                catch_up_queued: catch_up_queued.clone(),
            },
        )
        .await;

    tracing::debug!(user_id, conn = conn_id, came_online, "connection opened");
    ::metrics::gauge!(crate::metrics::CONNECTIONS).increment(1.0);
    // Registered first, cursor second: whatever commits after this read reaches the queue (the
    // sequencer had not handed it on before the registration, since it had not committed).
    let cursor = match state.store.clock().await {
        Ok(cursor) => cursor,
        Err(err) => {
            tracing::error!(error = %err, "reading the cursor for hello");
            return None;
        }
    };
    let hello = ServerFrame::Hello { user: user_view(&user), cursor: state.cursors.string(cursor) };
    send_frame(&mut sink, &hello).await.ok()?;
    if came_online {
        if let Err(err) = chats::announce_presence(&state, user_id, true, None).await {
            tracing::warn!(error = %err, "announcing presence");
        }
    }
    let last_heard = Arc::new(AtomicI64::new(now_millis()));
    let sender = Sender { state: state.clone(), conn_id, user_id, delivered: cursor, sink, catch_up_queued };
    let receiver = Receiver {
        state: state.clone(),
        conn_id,
        user_id,
        stream,
        queue,
        kick: kick.clone(),
        last_heard: last_heard.clone(),
        frames: DefaultDirectRateLimiter::direct(frame_quota(state.config.ws_frames_per_sec)),
        sends_in_flight: Arc::new(Semaphore::new(MAX_SENDS_IN_FLIGHT)),
        bad_in_a_row: 0,
        last_typing: HashMap::new(),
    };
    Some(Open { sender, receiver, queue_rx, kick, last_heard })
}

/// Unregisters the connection; the user's last one going records their last seen and tells
/// their friends.
async fn close(state: &AppState, user_id: i64, conn_id: ConnId) {
    tracing::debug!(user_id, conn = conn_id, "connection closed");
    ::metrics::gauge!(crate::metrics::CONNECTIONS).decrement(1.0);
    if state.relay.unregister(user_id, conn_id).await {
        let now = now_millis();
        if let Err(err) = state.store.set_last_seen(user_id, now).await {
            tracing::warn!(error = %err, "recording last seen");
        }
        if let Err(err) = chats::announce_presence(state, user_id, false, Some(now)).await {
            tracing::warn!(error = %err, "announcing presence");
        }
    }
}

fn frame_quota(per_sec: u32) -> Quota {
    let per_sec = NonZeroU32::new(per_sec.max(1)).expect("at least one");
    Quota::per_second(per_sec).allow_burst(per_sec.saturating_mul(NonZeroU32::new(2).expect("two")))
}

type Sink = SplitSink<WebSocket, WsMessage>;

fn encode(frame: &impl serde::Serialize) -> String {
    serde_json::to_string(frame).expect("frames serialise")
}

async fn send_frame(sink: &mut Sink, frame: &impl serde::Serialize) -> Result<(), axum::Error> {
    sink.send(WsMessage::Text(encode(frame).into())).await
}

fn close_reason(code: u16) -> &'static str {
    match code {
        close::TOO_SLOW => "too slow to keep up; reconnect and sync",
        close::FLOOD => "too many frames",
        close::TIMEOUT => "no answer to pings",
        close::SESSION_ENDED => "the session ended",
        _ => "closing",
    }
}

/// The send side of one connection.
struct Sender {
    state: AppState,
    conn_id: ConnId,
    user_id: i64,
    /// The position of the clock up to which the user's stream has been sent on this connection.
    delivered: i64,
    sink: Sink,
    catch_up_queued: Arc<AtomicBool>,
}

impl Sender {
    /// Not an `async fn`, which would keep its arguments twice (as arguments and as locals). The
    /// future is as large as its largest state, and every connection keeps it for its whole life:
    /// what is larger than waiting (a step, the goodbye) is boxed.
    fn run(
        mut self,
        mut queue: QueueReceiver<Outbound>,
        kick: Arc<Kick>,
        last_heard: Arc<AtomicI64>,
    ) -> impl std::future::Future<Output = ()> + Send {
        let idle_limit_ms = self.state.config.ws_idle_timeout_secs as i64 * 1000;
        async move {
            let ping_every = Duration::from_secs(self.state.config.ws_ping_secs.max(1));
            let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
            // Every socket write races the kick: a peer that stopped reading blocks writes, and it
            // must still be cut off.
            let code = loop {
                let step = tokio::select! {
                    item = queue.recv() => match item {
                        Some(item) => Step::Forward(item),
                        None => return,
                    },
                    code = kick.kicked() => break code,
                    _ = ping.tick() => Step::Ping,
                };
                let outcome = tokio::select! {
                    outcome = Box::pin(self.step(step, &mut queue, &last_heard, idle_limit_ms)) => outcome,
                    code = kick.kicked() => break code,
                };
                match outcome {
                    Ok(None) => {}
                    Ok(Some(code)) => break code,
                    Err(SendFailure::Socket) => return,
                    Err(SendFailure::Store(err)) => {
                        tracing::error!(error = %err, "filling a gap in the event stream");
                        break 1011;
                    }
                }
            };
            Box::pin(self.goodbye(code)).await;
        }
    }

    /// Closes the socket with `code`, or completes the peer's close.
    async fn goodbye(&mut self, code: u16) {
        if code == NORMAL_CLOSE {
            // The peer closed: complete the handshake (the library answers its close frame).
            let _ = tokio::time::timeout(Duration::from_secs(1), self.sink.close()).await;
            return;
        }
        ::metrics::counter!(crate::metrics::CUT_OFF, "code" => code.to_string()).increment(1);
        let frame = CloseFrame { code, reason: close_reason(code).into() };
        let _ = tokio::time::timeout(Duration::from_secs(1), self.sink.send(WsMessage::Close(Some(frame)))).await;
    }

    /// One unit of work; `Some(code)` closes the connection. A forwarded item takes whatever else
    /// is queued along (up to [`MAX_FRAMES_PER_FLUSH`]) before the socket is flushed.
    async fn step(
        &mut self,
        step: Step,
        queue: &mut QueueReceiver<Outbound>,
        last_heard: &AtomicI64,
        idle_limit_ms: i64,
    ) -> Result<Option<u16>, SendFailure> {
        match step {
            Step::Forward(item) => {
                self.forward(item).await?;
                for _ in 1..MAX_FRAMES_PER_FLUSH {
                    match queue.try_recv() {
                        Some(item) => self.forward(item).await?,
                        None => break,
                    }
                }
                self.sink.flush().await.map_err(|_| SendFailure::Socket)?;
                Ok(None)
            }
            Step::Ping => {
                if now_millis() - last_heard.load(Ordering::Relaxed) > idle_limit_ms {
                    return Ok(Some(close::TIMEOUT));
                }
                self.sink.send(WsMessage::Ping(Vec::new().into())).await.map_err(|_| SendFailure::Socket)?;
                Ok(None)
            }
        }
    }

    async fn forward(&mut self, item: Outbound) -> Result<(), SendFailure> {
        let (pos, event, origin) = match item {
            Outbound::Frame(frame) => return self.send(&frame).await,
            // Boxed: rare, and larger than the rest of the send side.
            Outbound::CatchUp => return Box::pin(self.catch_up()).await,
            Outbound::Duplicate { pos, event } => return Box::pin(self.answer_resend(pos, event)).await,
            Outbound::Event { pos, event, origin } => (pos, event, origin),
        };
        // Encoded at once: a frame kept across the awaits below would sit in every connection's
        // future, idle or not.
        let ack = if origin == Some(self.conn_id) { encoded_ack(&event) } else { None };
        if pos <= self.delivered {
            // Already sent (from the store, while catching up); the sender still needs its ack.
            return match ack {
                Some(ack) => self.feed(ack).await,
                None => Ok(()),
            };
        }
        // An event's frame is the event itself (the `Event` variant is untagged).
        let text = ack.unwrap_or_else(|| encode(&*event));
        self.feed(text).await?;
        self.delivered = pos;
        Ok(())
    }

    /// Acks a resend of the message stored at `pos`. The first send's ack comes through the
    /// sequencer, which may not have handed it on yet (the resend was in the same batch, and an
    /// earlier position is late): the stream up to `pos` comes from the store first, since the
    /// cursor of an ack says everything up to it was sent.
    async fn answer_resend(&mut self, pos: i64, event: Arc<Event>) -> Result<(), SendFailure> {
        if pos > self.delivered {
            self.catch_up().await?;
        }
        match encoded_ack(&event) {
            Some(ack) => self.feed(ack).await,
            None => Ok(()),
        }
    }

    /// Sends every stored event after the last one sent.
    async fn catch_up(&mut self) -> Result<(), SendFailure> {
        // Cleared before reading the store: a request that comes in meanwhile queues another.
        self.catch_up_queued.store(false, Ordering::SeqCst);
        loop {
            let page = self
                .state
                .store
                .events_since(self.user_id, self.delivered, chats::MAX_PAGE)
                .await
                .map_err(ApiError::from)?;
            if !page.events.is_empty() {
                ::metrics::counter!(crate::metrics::CAUGHT_UP).increment(page.events.len() as u64);
            }
            for record in page.events {
                let event = chats::render_event(&self.state, self.user_id, record).await?;
                self.send(&ServerFrame::Event(event)).await?;
            }
            // Past the page's last event: what lies between is other users'.
            self.delivered = self.delivered.max(page.next);
            if !page.more {
                return Ok(());
            }
        }
    }

    /// Writes the frame into the socket's buffer; [`Sender::step`] flushes.
    async fn send(&mut self, frame: &impl serde::Serialize) -> Result<(), SendFailure> {
        self.feed(encode(frame)).await
    }

    async fn feed(&mut self, text: String) -> Result<(), SendFailure> {
        self.sink.feed(WsMessage::Text(text.into())).await.map_err(|_| SendFailure::Socket)
    }
}

/// The `ack` its sender gets instead of a message event, encoded (and counted).
fn encoded_ack(event: &Event) -> Option<String> {
    let Event::Message { message, cursor } = event else { return None };
    ::metrics::counter!(crate::metrics::ACKS).increment(1);
    Some(encode(&ServerFrame::Ack {
        client_id: message.client_id.clone(),
        message: message.clone(),
        cursor: cursor.clone(),
    }))
}

enum Step {
    Forward(Outbound),
    Ping,
}

enum SendFailure {
    Socket,
    Store(ApiError),
}

impl From<ApiError> for SendFailure {
    fn from(err: ApiError) -> Self {
        SendFailure::Store(err)
    }
}

/// The receive side of one connection.
struct Receiver {
    state: AppState,
    conn_id: ConnId,
    user_id: i64,
    stream: SplitStream<WebSocket>,
    queue: QueueSender<Outbound>,
    kick: Arc<Kick>,
    last_heard: Arc<AtomicI64>,
    frames: DefaultDirectRateLimiter,
    sends_in_flight: Arc<Semaphore>,
    bad_in_a_row: u32,
    last_typing: HashMap<i64, Instant>,
}

impl Receiver {
    /// Not an `async fn`, like [`Sender::run`]. A frame is read and judged before any await, so
    /// that neither it nor its parse keeps room in the future.
    #[expect(clippy::manual_async_fn, reason = "an `async fn` would keep `self` twice in its future")]
    fn run(mut self) -> impl std::future::Future<Output = ()> + Send {
        async move {
            loop {
                let Some(Ok(message)) = self.stream.next().await else { return };
                let handling = match self.take(message) {
                    ControlFlow::Break(()) => return,
                    ControlFlow::Continue(None) => continue,
                    // Boxed: inline, the largest of these futures would size every idle
                    // connection's task; on the heap it costs one allocation per frame.
                    ControlFlow::Continue(Some(frame)) => Box::pin(self.handle(frame)),
                };
                handling.await;
            }
        }
    }

    /// Judges a message from the peer: `Break` when it closed, a frame to handle, or nothing.
    fn take(&mut self, message: WsMessage) -> ControlFlow<(), Option<ClientFrame>> {
        self.last_heard.store(now_millis(), Ordering::Relaxed);
        let text = match message {
            WsMessage::Text(text) => text,
            WsMessage::Binary(_) => {
                self.bad_frame("frames are JSON text".into());
                return ControlFlow::Continue(None);
            }
            WsMessage::Close(_) => return ControlFlow::Break(()),
            WsMessage::Ping(_) | WsMessage::Pong(_) => return ControlFlow::Continue(None),
        };
        if self.kick.is_kicked() {
            // Closing: what still arrives is read and dropped.
            return ControlFlow::Continue(None);
        }
        if self.frames.check().is_err() {
            self.kick.kick(close::FLOOD);
            return ControlFlow::Continue(None);
        }
        match serde_json::from_str::<ClientFrame>(&text) {
            Ok(frame) => {
                self.bad_in_a_row = 0;
                ControlFlow::Continue(Some(frame))
            }
            Err(err) => {
                self.bad_frame(format!("not a valid frame: {err}"));
                if self.bad_in_a_row > MAX_BAD_FRAMES_IN_A_ROW {
                    self.kick.kick(close::FLOOD);
                }
                ControlFlow::Continue(None)
            }
        }
    }

    async fn handle(&mut self, frame: ClientFrame) {
        match frame {
            ClientFrame::Send { chat_id, client_id, body } => {
                let permit = self.sends_in_flight.clone().acquire_owned().await.expect("the semaphore is never closed");
                let result =
                    chats::send(&self.state, self.user_id, self.conn_id, chat_id, client_id.clone(), body, permit)
                        .await;
                if let Err(err) = result {
                    self.reply(err.frame(client_id));
                }
            }
            ClientFrame::Read { chat_id, up_to } => {
                let result = chats::mark_read(&self.state, self.user_id, chat_id, up_to).await;
                self.reply_error(result);
            }
            ClientFrame::Typing { chat_id } => {
                let now = Instant::now();
                if self.last_typing.get(&chat_id).is_some_and(|at| now.duration_since(*at) < TYPING_EVERY) {
                    return;
                }
                self.last_typing.insert(chat_id, now);
                let result = chats::typing(&self.state, self.user_id, chat_id).await;
                self.reply_error(result);
            }
            ClientFrame::Sync { since } => {
                let batch = match self.state.cursors.parse(since.as_deref()) {
                    Ok(since) => chats::sync(&self.state, self.user_id, since, None).await,
                    Err(err) => Err(err),
                };
                match batch {
                    Ok(b) => self.reply(ServerFrame::SyncBatch { events: b.events, next: b.next, more: b.more }),
                    Err(err) => self.reply_error::<()>(Err(err)),
                }
            }
            ClientFrame::Ping => self.reply(ServerFrame::Pong),
        }
    }

    fn reply_error<T>(&mut self, result: ApiResult<T>) {
        if let Err(err) = result {
            if let ApiError::Internal(detail) = &err {
                tracing::error!(error = %detail, "handling a frame");
            }
            self.reply(ServerFrame::Error { code: err.code().into(), message: err.to_string(), client_id: None });
        }
    }

    fn bad_frame(&mut self, message: String) {
        self.bad_in_a_row += 1;
        self.reply(ServerFrame::Error { code: "bad_frame".into(), message, client_id: None });
    }

    /// Queues a reply for this connection; one that cannot keep up with its own replies is closed.
    fn reply(&self, frame: ServerFrame) {
        if let Err(QueueError::Full) = self.queue.try_send(Outbound::frame(frame)) {
            self.kick.kick(close::TOO_SLOW);
        }
    }
}
