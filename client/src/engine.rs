//! The sync engine: keeps one session's WebSocket up (reconnecting with backoff and jitter, or at
//! once when nudged), feeds what arrives to the planner, and executes the planner's operations:
//! cache writes first (one transaction), then frames out, then events to the UI.
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use parley_common::{
    desktop::{BridgeError, ConnectionState, DesktopEvent},
    ws::close,
    ClientFrame, ServerFrame,
};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::{protocol::CloseFrame, Message as WsMessage};

use crate::{
    cache::{Cache, CacheError},
    error::ClientError,
    planner::{CacheOp, Op, OutboxItem, Planner},
    server_api::{ServerApi, Socket},
};

/// A ping this often; a connection silent for `DEAD_AFTER` is given up.
const PING_EVERY: Duration = Duration::from_secs(20);
const DEAD_AFTER: Duration = Duration::from_secs(50);
/// After a nudge (network up, wake) an open connection must prove itself this fast.
const NUDGE_PROOF: Duration = Duration::from_secs(10);
const MAX_BACKOFF_SECS: u64 = 30;
const RETRY_OUTBOX_AFTER: Duration = Duration::from_secs(5);

/// What the rest of the client asks of the engine.
#[derive(Debug)]
pub enum Command {
    /// A message was put in the outbox.
    Written(OutboxItem),
    /// The person read a chat (already in the cache).
    Read {
        chat_id: i64,
        up_to: i64,
    },
    Typing {
        chat_id: i64,
    },
    /// The network came up or the machine woke: reconnect now, or check the connection.
    Nudge,
}

/// Why the engine stopped by itself.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// The server ended the session (logout elsewhere, revoked, expired).
    LoggedOut,
    /// Every command sender is gone.
    Stopped,
}

/// What the engine shares with the client.
pub struct Shared {
    pub cache: Cache,
    pub events: broadcast::Sender<DesktopEvent>,
    pub connection: Mutex<ConnectionState>,
}

impl Shared {
    pub fn emit(&self, event: DesktopEvent) {
        // No receiver (no window) is fine: the cache has it all.
        let _ = self.events.send(event);
    }

    fn set_connection(&self, state: ConnectionState) {
        *self.connection.lock().expect("connection state") = state.clone();
        self.emit(DesktopEvent::Connection { connection: state });
    }
}

/// Why a connection closed.
enum Closed {
    Lost(Option<ClientError>),
    SessionEnded,
    Stopped,
}

pub async fn run(
    shared: Arc<Shared>,
    api: ServerApi,
    token: String,
    mut commands: mpsc::UnboundedReceiver<Command>,
) -> Exit {
    let mut attempt: u32 = 0;
    loop {
        shared.set_connection(ConnectionState::Connecting);
        let problem = match api.connect(&token).await {
            Ok(socket) => {
                attempt = 0;
                match Connection::new(&shared, &api, &token).run(socket, &mut commands).await {
                    Closed::Lost(problem) => problem,
                    Closed::SessionEnded => return session_ended(&shared),
                    Closed::Stopped => return Exit::Stopped,
                }
            }
            Err(ClientError::NotLoggedIn) => return session_ended(&shared),
            Err(err) => Some(err),
        };
        if let Some(problem) = &problem {
            tracing::info!(error = %problem, "not connected");
        }
        let delay = backoff(attempt);
        attempt = attempt.saturating_add(1);
        // Only a problem the person can act on is shown; a plain network failure is the banner.
        let shown = problem.filter(|p| !p.is_transient()).map(BridgeError::from);
        shared.set_connection(ConnectionState::Reconnecting {
            retry_in_secs: delay.as_secs_f64().ceil() as u32,
            problem: shown,
        });
        let wake_at = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(wake_at) => break,
                command = commands.recv() => match command {
                    None => return Exit::Stopped,
                    Some(Command::Nudge) => break,
                    // Writes are in the cache already and go out after the next catch-up.
                    Some(_) => {}
                },
            }
        }
    }
}

fn session_ended(shared: &Shared) -> Exit {
    shared.set_connection(ConnectionState::Off);
    shared.emit(DesktopEvent::SessionEnded);
    Exit::LoggedOut
}

/// Exponential backoff with jitter (half to all of the step), so that the clients of a restarted
/// server do not return in step.
fn backoff(attempt: u32) -> Duration {
    use rand_core::RngCore;
    let ceiling_ms = 1000 * 2u64.saturating_pow(attempt).min(MAX_BACKOFF_SECS);
    let jitter = f64::from(rand_core::OsRng.next_u32()) / f64::from(u32::MAX);
    Duration::from_millis((ceiling_ms as f64 * (0.5 + jitter * 0.5)) as u64)
}

/// One live connection.
struct Connection<'a> {
    shared: &'a Shared,
    api: &'a ServerApi,
    token: &'a str,
    planner: Planner,
    outgoing: Vec<String>,
}

impl<'a> Connection<'a> {
    fn new(shared: &'a Shared, api: &'a ServerApi, token: &'a str) -> Self {
        Connection { shared, api, token, planner: Planner::new(None, None), outgoing: Vec::new() }
    }

    async fn run(mut self, socket: Socket, commands: &mut mpsc::UnboundedReceiver<Command>) -> Closed {
        let (me, cursor) = match (self.shared.cache.me().await, self.shared.cache.cursor().await) {
            (Ok(me), Ok(cursor)) => (me.map(|u| u.id), cursor),
            (Err(err), _) | (_, Err(err)) => return Closed::Lost(Some(err.into())),
        };
        self.planner = Planner::new(me, cursor);
        let (mut sink, mut stream) = socket.split();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        let mut last_heard = Instant::now();
        let mut must_answer_by: Option<Instant> = None;
        let mut retry_outbox: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            let result = tokio::select! {
                frame = stream.next() => {
                    last_heard = Instant::now();
                    must_answer_by = None;
                    match frame {
                        Some(Ok(WsMessage::Text(text))) => match serde_json::from_str::<ServerFrame>(&text) {
                            Ok(frame) => {
                                let ops = self.planner.on_frame(frame);
                                self.execute(ops, &mut retry_outbox).await
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "unreadable frame from the server");
                                Ok(())
                            }
                        },
                        Some(Ok(WsMessage::Close(frame))) => return ended_by(frame),
                        Some(Ok(_)) => Ok(()),
                        Some(Err(err)) => return Closed::Lost(Some(ClientError::from_transport(&err))),
                        None => return Closed::Lost(None),
                    }
                }
                command = commands.recv() => match command {
                    None => {
                        let _ = sink.send(WsMessage::Close(None)).await;
                        return Closed::Stopped;
                    }
                    Some(Command::Written(item)) => {
                        let ops = self.planner.on_written(item);
                        self.execute(ops, &mut retry_outbox).await
                    }
                    Some(Command::Read { chat_id, up_to }) => {
                        let ops = self.planner.on_read(chat_id, up_to);
                        self.execute(ops, &mut retry_outbox).await
                    }
                    Some(Command::Typing { chat_id }) => {
                        if self.planner.is_live() {
                            self.outgoing.push(frame_text(&ClientFrame::Typing { chat_id }));
                        }
                        Ok(())
                    }
                    Some(Command::Nudge) => {
                        must_answer_by.get_or_insert_with(|| Instant::now() + NUDGE_PROOF);
                        self.outgoing.push(frame_text(&ClientFrame::Ping));
                        Ok(())
                    }
                },
                _ = ping.tick() => {
                    if last_heard.elapsed() > DEAD_AFTER || must_answer_by.is_some_and(|t| Instant::now() > t) {
                        return Closed::Lost(Some(ClientError::Network("the connection stopped answering".into())));
                    }
                    self.outgoing.push(frame_text(&ClientFrame::Ping));
                    Ok(())
                }
                _ = async { retry_outbox.as_mut().expect("guarded").await }, if retry_outbox.is_some() => {
                    retry_outbox = None;
                    self.offer_outbox_again().await
                }
                _ = tokio::time::sleep(NUDGE_PROOF), if must_answer_by.is_some() => {
                    if must_answer_by.is_some_and(|t| Instant::now() > t) {
                        return Closed::Lost(Some(ClientError::Network("the connection stopped answering".into())));
                    }
                    Ok(())
                }
            };
            if let Err(err) = result {
                return Closed::Lost(Some(err));
            }
            for text in self.outgoing.drain(..) {
                if let Err(err) = sink.send(WsMessage::text(text)).await {
                    return Closed::Lost(Some(ClientError::from_transport(&err)));
                }
            }
        }
    }

    /// Applies a planner step: the cache first (atomically), then frames, then UI events.
    async fn execute(
        &mut self,
        ops: Vec<Op>,
        retry_outbox: &mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    ) -> Result<(), ClientError> {
        let mut pending = ops;
        while !pending.is_empty() {
            let cache_ops: Vec<CacheOp> = pending
                .iter()
                .filter_map(|op| match op {
                    Op::Cache(op) => Some(op.clone()),
                    _ => None,
                })
                .collect();
            self.apply(&cache_ops).await?;
            let mut next = Vec::new();
            for op in pending {
                match op {
                    Op::Cache(_) => {}
                    Op::Transmit(frame) => self.outgoing.push(frame_text(&frame)),
                    Op::Emit(event) => self.shared.emit(event),
                    Op::CaughtUp => {
                        let view = self.shared.cache.caught_up_view().await?;
                        next.extend(self.planner.caught_up(view));
                        self.refresh_chats().await;
                        // Online once the loop is free again: until the list is refreshed, a
                        // message written now would wait for that request, not go out at once.
                        self.shared.set_connection(ConnectionState::Online);
                    }
                    Op::RetryOutboxLater => {
                        retry_outbox.get_or_insert_with(|| Box::pin(tokio::time::sleep(RETRY_OUTBOX_AFTER)));
                    }
                    Op::Resynced => {
                        self.forget_chats_the_server_lost().await?;
                        let chats = self.shared.cache.chats().await?;
                        self.shared.emit(DesktopEvent::Resynced { chats });
                    }
                }
            }
            pending = next;
        }
        Ok(())
    }

    /// Applies cache writes; a chat the cache has not seen yet (its creation predates what the
    /// cache replayed) is fetched first.
    async fn apply(&self, ops: &[CacheOp]) -> Result<(), ClientError> {
        match self.shared.cache.apply(ops).await {
            Err(CacheError::UnknownChat(chat_id)) => {
                tracing::info!(chat_id, "fetching a chat the cache lacks");
                let list = self.api.chats(self.token).await?;
                let chats: Vec<CacheOp> = list.chats.into_iter().map(CacheOp::PutChat).collect();
                self.shared.cache.apply(&chats).await?;
                Ok(self.shared.cache.apply(ops).await?)
            }
            other => Ok(other?),
        }
    }

    /// After a replay from scratch (the server's database was restored from a backup), the chats
    /// the server no longer lists go from the cache: no event removes them, and a message written
    /// to one could never be delivered. What waited in the outbox for them is reported failed.
    /// If the list cannot be read now, they stay until the next replay.
    async fn forget_chats_the_server_lost(&self) -> Result<(), ClientError> {
        let list = match self.api.chats(self.token).await {
            Ok(list) => list,
            Err(err) => {
                tracing::info!(error = %err, "could not read the chat list to drop chats the server lost");
                return Ok(());
            }
        };
        let keep: Vec<i64> = list.chats.iter().map(|chat| chat.id).collect();
        for item in self.shared.cache.forget_chats_except(&keep).await? {
            tracing::warn!(chat_id = item.chat_id, client_id = %item.client_id, "a chat the server lost took an unsent message with it");
            self.shared.emit(DesktopEvent::SendFailed {
                client_id: item.client_id,
                code: "chat_not_found".into(),
                message: "this chat is no longer on the server (it was restored from a backup)".into(),
            });
        }
        Ok(())
    }

    /// Presence and names change without events: after a (re)connection the list is read again.
    async fn refresh_chats(&self) {
        let list = match self.api.chats(self.token).await {
            Ok(list) => list,
            Err(err) => {
                tracing::info!(error = %err, "could not refresh the chat list");
                return;
            }
        };
        let ops: Vec<CacheOp> = list.chats.into_iter().map(CacheOp::PutChat).collect();
        if let Err(err) = self.shared.cache.apply(&ops).await {
            tracing::warn!(error = %err, "could not store the chat list");
            return;
        }
        if let Ok(chats) = self.shared.cache.chats().await {
            self.shared.emit(DesktopEvent::ChatsChanged { chats });
        }
    }

    async fn offer_outbox_again(&mut self) -> Result<(), ClientError> {
        let view = self.shared.cache.caught_up_view().await?;
        let sends = self.planner.caught_up(crate::planner::CaughtUpView { unconfirmed_reads: Vec::new(), ..view });
        let mut retry = None;
        self.execute(sends, &mut retry).await
    }
}

fn ended_by(frame: Option<CloseFrame>) -> Closed {
    match frame {
        Some(frame) if u16::from(frame.code) == close::SESSION_ENDED => Closed::SessionEnded,
        Some(frame) => Closed::Lost(Some(ClientError::Network(format!(
            "the server closed the connection ({}: {})",
            u16::from(frame.code),
            frame.reason
        )))),
        None => Closed::Lost(None),
    }
}

fn frame_text(frame: &ClientFrame) -> String {
    serde_json::to_string(frame).expect("frames serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_ceiling_with_jitter() {
        for attempt in 0..12 {
            let step = 2u64.saturating_pow(attempt).min(MAX_BACKOFF_SECS) * 1000;
            let delay = backoff(attempt).as_millis() as u64;
            assert!(delay >= step / 2 && delay <= step, "attempt {attempt}: {delay} ms outside {}..={step}", step / 2);
        }
    }
}
