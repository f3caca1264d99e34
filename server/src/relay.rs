//! The relay: who is connected, and delivery of live frames to their connections. The database
//! stays the truth; the relay is only the fast path, so a frame it cannot deliver is recovered
//! through `sync`. Behind a trait so a relay across several nodes can replace the in-process one.
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU16, AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use parley_common::{Event, ServerFrame};
use tokio::sync::{mpsc, Notify};

pub type ConnId = u64;

/// What a connection's send task receives.
#[derive(Debug, Clone)]
/// Small (a few words), so an idle connection's queue costs little; the payload is shared by all
/// of a user's connections.
pub enum Outbound {
    /// An event at position `pos` of the connection's user's stream. `origin` is the connection
    /// whose frame caused it: that connection gets an `ack` for its own message instead.
    Event { pos: i64, event: Arc<Event>, origin: Option<ConnId> },
    /// A frame outside the stream (presence, typing, errors, pongs, sync batches).
    Frame(Arc<ServerFrame>),
}

impl Outbound {
    pub fn event(pos: i64, event: Event, origin: Option<ConnId>) -> Self {
        Outbound::Event { pos, event: Arc::new(event), origin }
    }

    pub fn frame(frame: ServerFrame) -> Self {
        Outbound::Frame(Arc::new(frame))
    }
}

/// Asks a connection to close itself, with a close code and reason.
#[derive(Debug, Default)]
pub struct Kick {
    code: AtomicU16,
    notify: Notify,
}

impl Kick {
    pub fn kick(&self, code: u16) {
        // The first reason wins.
        let _ = self.code.compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
        self.notify.notify_one();
    }

    pub fn is_kicked(&self) -> bool {
        self.code.load(Ordering::SeqCst) != 0
    }

    /// Waits for a kick; returns its close code.
    pub async fn kicked(&self) -> u16 {
        loop {
            let code = self.code.load(Ordering::SeqCst);
            if code != 0 {
                return code;
            }
            self.notify.notified().await;
        }
    }
}

/// The relay's handle on one live connection.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    pub id: ConnId,
    pub session_id: i64,
    pub queue: mpsc::Sender<Outbound>,
    pub kick: Arc<Kick>,
}

pub fn next_conn_id() -> ConnId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub trait Relay: Send + Sync + 'static {
    /// Adds a connection; `true` if it is the user's first (the user came online).
    fn register(&self, user_id: i64, conn: ConnHandle) -> bool;
    /// Removes a connection; `true` if it was the user's last (the user went offline).
    fn unregister(&self, user_id: i64, conn: ConnId) -> bool;
    /// Queues `item` on every connection of the user but `except`. A connection whose queue is
    /// full is kicked: it must reconnect and catch up through `sync`.
    fn deliver(&self, user_id: i64, item: Outbound, except: Option<ConnId>);
    /// Queues `item` on one connection of the user, if it is still there.
    fn deliver_to(&self, user_id: i64, conn: ConnId, item: Outbound);
    fn is_online(&self, user_id: i64) -> bool;
    /// Closes every connection opened with the session.
    fn end_session(&self, session_id: i64);
    /// Live connections, for metrics and tests.
    fn connection_count(&self) -> usize;
}

/// The relay of a single server process.
#[derive(Default)]
pub struct LocalRelay {
    conns: Mutex<HashMap<i64, Vec<ConnHandle>>>,
}

impl LocalRelay {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

impl Relay for LocalRelay {
    fn register(&self, user_id: i64, conn: ConnHandle) -> bool {
        let mut conns = self.conns.lock().expect("relay lock");
        let list = conns.entry(user_id).or_default();
        list.push(conn);
        list.len() == 1
    }

    fn unregister(&self, user_id: i64, conn: ConnId) -> bool {
        let mut conns = self.conns.lock().expect("relay lock");
        let Some(list) = conns.get_mut(&user_id) else {
            return false;
        };
        let before = list.len();
        list.retain(|c| c.id != conn);
        let removed = list.len() < before;
        if list.is_empty() {
            conns.remove(&user_id);
        }
        removed && !conns.contains_key(&user_id)
    }

    fn deliver(&self, user_id: i64, item: Outbound, except: Option<ConnId>) {
        self.deliver_where(user_id, item, |c| Some(c.id) != except);
    }

    fn deliver_to(&self, user_id: i64, conn: ConnId, item: Outbound) {
        self.deliver_where(user_id, item, |c| c.id == conn);
    }

    fn is_online(&self, user_id: i64) -> bool {
        self.conns.lock().expect("relay lock").contains_key(&user_id)
    }

    fn end_session(&self, session_id: i64) {
        let conns = self.conns.lock().expect("relay lock");
        for conn in conns.values().flatten().filter(|c| c.session_id == session_id) {
            conn.kick.kick(parley_common::ws::close::SESSION_ENDED);
        }
    }

    fn connection_count(&self) -> usize {
        self.conns.lock().expect("relay lock").values().map(Vec::len).sum()
    }
}

impl LocalRelay {
    fn deliver_where(&self, user_id: i64, item: Outbound, wanted: impl Fn(&ConnHandle) -> bool) {
        // Queue outside the lock: try_send never blocks, but kicking wakes other tasks.
        let targets: Vec<ConnHandle> = {
            let conns = self.conns.lock().expect("relay lock");
            match conns.get(&user_id) {
                Some(list) => list.iter().filter(|c| wanted(c)).cloned().collect(),
                None => return,
            }
        };
        for conn in targets {
            match conn.queue.try_send(item.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::info!(conn = conn.id, "connection cannot keep up; closing it");
                    conn.kick.kick(parley_common::ws::close::TOO_SLOW);
                }
                // The connection is closing; it unregisters itself.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: ConnId, capacity: usize) -> (ConnHandle, mpsc::Receiver<Outbound>) {
        let (queue, rx) = mpsc::channel(capacity);
        (ConnHandle { id, session_id: 1, queue, kick: Arc::default() }, rx)
    }

    #[tokio::test]
    async fn online_while_any_connection_lives() {
        let relay = LocalRelay::new();
        let (a, _ra) = conn(1, 4);
        let (b, _rb) = conn(2, 4);
        assert!(relay.register(7, a));
        assert!(!relay.register(7, b));
        assert!(relay.is_online(7));
        assert!(!relay.unregister(7, 1));
        assert!(relay.is_online(7));
        assert!(relay.unregister(7, 2));
        assert!(!relay.is_online(7));
        assert!(!relay.unregister(7, 2), "a second unregister changes nothing");
    }

    #[tokio::test]
    async fn delivery_skips_the_excepted_connection_and_kicks_a_full_one() {
        let relay = LocalRelay::new();
        let (a, mut ra) = conn(1, 1);
        let (b, mut rb) = conn(2, 1);
        let kick_b = b.kick.clone();
        relay.register(7, a);
        relay.register(7, b);
        relay.deliver(7, Outbound::frame(ServerFrame::Pong), Some(1));
        assert!(ra.try_recv().is_err());
        assert!(matches!(rb.try_recv(), Ok(Outbound::Frame(f)) if *f == ServerFrame::Pong));
        relay.deliver(7, Outbound::frame(ServerFrame::Pong), None);
        relay.deliver(7, Outbound::frame(ServerFrame::Pong), None);
        assert_eq!(kick_b.kicked().await, parley_common::ws::close::TOO_SLOW);
    }
}
