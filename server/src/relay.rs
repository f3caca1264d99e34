//! The relay: who is connected, and delivery of live frames to their connections. The database
//! stays the truth; the relay is only the fast path, so a frame it cannot deliver is recovered
//! through `sync` (or a [`Outbound::CatchUp`]). Two implementations: [`LocalRelay`] for one
//! process, and `cluster::RedisRelay` for several nodes sharing a Redis.
use std::{
    collections::{HashMap, HashSet, VecDeque},
    future::poll_fn,
    sync::{
        atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
    task::{Poll, Waker},
    time::Instant,
};

use async_trait::async_trait;
use parley_common::{Event, ServerFrame};
use tokio::sync::Notify;

use crate::sequencer::{Positioned, Released, Sequencer};

/// How long a node's sequencer waits for a missing position before every connection catches up
/// from the store instead. Positions arrive within milliseconds of their commit; this is for
/// those that never will (a node that died between its commit and its publish).
pub const MISSING_POSITION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub type ConnId = u64;

/// What a connection's send task receives.
#[derive(Debug, Clone)]
/// Small (a few words), so an idle connection's queue costs little; the payload is shared by all
/// of a user's connections.
pub enum Outbound {
    /// An event at position `pos` of the clock, in the connection's user's stream. `origin` is
    /// the connection whose frame caused it: that connection gets an `ack` for its own message
    /// instead.
    Event { pos: i64, event: Arc<Event>, origin: Option<ConnId> },
    /// The answer to a resend: the ack of the message stored at `pos` before, for the connection
    /// that resent it, which must have been sent the user's stream up to `pos` first.
    Duplicate { pos: i64, event: Arc<Event> },
    /// A frame outside the stream (presence, typing, errors, pongs, sync batches).
    Frame(Arc<ServerFrame>),
    /// Events of the user's stream may have been committed without reaching this connection (a
    /// relay that lost them): send whatever the store has beyond what was sent.
    CatchUp,
}
impl Outbound {
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
    pub queue: QueueSender<Outbound>,
    pub kick: Arc<Kick>,
    /// A `CatchUp` is queued and not yet begun: one is enough, however many are asked for.
    pub catch_up_queued: Arc<AtomicBool>,
}

/// A connection's queue: bounded, one receiver (the connection's send side), any number of
/// senders. Tokio's channel allocates a block of 32 slots and a cache-padded header when it is
/// made, ~1.5 KiB for every connection however idle; this one holds no buffer while it is empty
/// (memory per idle connection, docs/BENCHMARKS.md).
pub fn queue<T>(capacity: usize) -> (QueueSender<T>, QueueReceiver<T>) {
    let shared = Arc::new(QueueShared {
        state: Mutex::new(QueueState { items: VecDeque::new(), waiting: None, receiver_gone: false }),
        capacity: capacity.max(1),
        senders: AtomicUsize::new(1),
    });
    (QueueSender { shared: shared.clone() }, QueueReceiver { shared })
}

/// Past this many slots, a queue that empties gives its buffer back: a burst does not leave an
/// idle connection holding what it needed then.
const QUEUE_KEEP_SLOTS: usize = 64;

struct QueueShared<T> {
    state: Mutex<QueueState<T>>,
    capacity: usize,
    senders: AtomicUsize,
}

struct QueueState<T> {
    items: VecDeque<T>,
    /// The receiver, when it found the queue empty.
    waiting: Option<Waker>,
    receiver_gone: bool,
}

impl<T> QueueShared<T> {
    fn lock(&self) -> MutexGuard<'_, QueueState<T>> {
        self.state.lock().expect("queue lock")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The queue holds its capacity: the connection is not keeping up.
    Full,
    /// The connection's send side is gone.
    Closed,
}

pub struct QueueSender<T> {
    shared: Arc<QueueShared<T>>,
}

impl<T> QueueSender<T> {
    /// Queues `item` unless the queue is full or its receiver gone; never waits.
    pub fn try_send(&self, item: T) -> Result<(), QueueError> {
        let waiting = {
            let mut state = self.shared.lock();
            if state.receiver_gone {
                return Err(QueueError::Closed);
            }
            if state.items.len() >= self.shared.capacity {
                return Err(QueueError::Full);
            }
            state.items.push_back(item);
            state.waiting.take()
        };
        if let Some(waker) = waiting {
            waker.wake();
        }
        Ok(())
    }
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Self { shared: self.shared.clone() }
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last one: a waiting receiver learns that nothing more will come.
            let waiting = self.shared.lock().waiting.take();
            if let Some(waker) = waiting {
                waker.wake();
            }
        }
    }
}

impl<T> std::fmt::Debug for QueueSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSender").field("capacity", &self.shared.capacity).finish_non_exhaustive()
    }
}

pub struct QueueReceiver<T> {
    shared: Arc<QueueShared<T>>,
}

impl<T> QueueReceiver<T> {
    /// The next item; `None` once the queue is empty and every sender gone. Cancel-safe: an item
    /// is taken only when it is returned.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            if let Some(item) = Self::pop(&mut state) {
                return Poll::Ready(Some(item));
            }
            if self.shared.senders.load(Ordering::Acquire) == 0 {
                return Poll::Ready(None);
            }
            match &mut state.waiting {
                Some(waker) => waker.clone_from(cx.waker()),
                none => *none = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        Self::pop(&mut self.shared.lock())
    }

    fn pop(state: &mut QueueState<T>) -> Option<T> {
        let item = state.items.pop_front()?;
        if state.items.is_empty() && state.items.capacity() > QUEUE_KEEP_SLOTS {
            state.items = VecDeque::new();
        }
        Some(item)
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        let items = {
            let mut state = self.shared.lock();
            state.receiver_gone = true;
            std::mem::take(&mut state.items)
        };
        drop(items);
    }
}

pub fn next_conn_id() -> ConnId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[async_trait]
pub trait Relay: Send + Sync + 'static {
    /// Adds a connection; `true` if the user came online (no connection of theirs anywhere).
    async fn register(&self, user_id: i64, conn: ConnHandle) -> bool;
    /// Removes a connection; `true` if it was the user's last anywhere (the user went offline).
    async fn unregister(&self, user_id: i64, conn: ConnId) -> bool;
    /// Hands the events of newly committed positions to the connections of their users on every
    /// node, through each node's sequencer (so in position order). Every position a write took
    /// must be published, with its deliveries or without.
    fn publish(&self, items: Vec<Positioned>);
    /// The store's clock was read at `clock`: positions up to it that never arrive are given up on
    /// after [`MISSING_POSITION_TIMEOUT`].
    fn expect_positions(&self, clock: i64);
    /// Gives up on positions missing for longer than [`MISSING_POSITION_TIMEOUT`] (called now and
    /// then).
    fn give_up_overdue_positions(&self);
    /// Gives up at once on the positions up to the store's `clock` not yet handed on: the node
    /// could not hear of them (its subscription was not up yet).
    fn skip_positions_to(&self, clock: i64);
    /// Queues `item` on every connection of the user but `except`. A connection whose queue is
    /// full is kicked: it must reconnect and catch up through `sync`.
    fn deliver(&self, user_id: i64, item: Outbound, except: Option<ConnId>);
    /// Queues `item` on one connection of the user, if it is still there.
    fn deliver_to(&self, user_id: i64, conn: ConnId, item: Outbound);
    /// Which of `user_ids` have a live connection.
    async fn online(&self, user_ids: &[i64]) -> HashSet<i64>;
    /// Closes every connection opened with the session.
    fn end_session(&self, session_id: i64);
    /// Has every connection of the user check the store for events it was not sent: for writes
    /// whose live delivery may have been lost (a node that died between commit and publish).
    fn catch_up(&self, user_id: i64) {
        self.deliver(user_id, Outbound::CatchUp, None);
    }
    /// Live connections on this node, for metrics and tests.
    fn connection_count(&self) -> usize;
}

/// The connections of one process, with its sequencer; also the local half of the cluster relay.
pub struct LocalRelay {
    conns: Mutex<HashMap<i64, Vec<ConnHandle>>>,
    sequencer: Sequencer,
}

impl LocalRelay {
    /// A relay of a node starting at the store's `clock`.
    pub fn new(clock: i64) -> Arc<Self> {
        Arc::new(Self { conns: Mutex::default(), sequencer: Sequencer::new(clock, MISSING_POSITION_TIMEOUT) })
    }

    /// What the sequencer lets go of, to the connections here.
    fn release(&self, released: Released) {
        match released {
            Released::CatchUpAll => self.deliver_all(Outbound::CatchUp),
            Released::At(Positioned { pos, deliveries }) => {
                for d in deliveries {
                    self.deliver(d.user_id, Outbound::Event { pos, event: d.event, origin: d.origin }, None);
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<i64, Vec<ConnHandle>>> {
        self.conns.lock().expect("relay lock")
    }

    /// Adds the connection and runs `then(first)` under the same lock, `first` saying whether the
    /// user had no other connection here: what `then` records is ordered like the changes.
    pub fn add<R>(&self, user_id: i64, conn: ConnHandle, then: impl FnOnce(bool) -> R) -> R {
        let mut conns = self.lock();
        let list = conns.entry(user_id).or_default();
        list.push(conn);
        then(list.len() == 1)
    }

    /// Removes the connection and runs `then(last)` under the same lock, `last` saying whether it
    /// was the user's last one here.
    pub fn remove<R>(&self, user_id: i64, conn: ConnId, then: impl FnOnce(bool) -> R) -> R {
        let mut conns = self.lock();
        let Some(list) = conns.get_mut(&user_id) else {
            return then(false);
        };
        let before = list.len();
        list.retain(|c| c.id != conn);
        let removed = list.len() < before;
        if list.is_empty() {
            conns.remove(&user_id);
        }
        then(removed && !conns.contains_key(&user_id))
    }

    /// Runs `f` on the users connected here, under the lock.
    pub fn with_users<R>(&self, f: impl FnOnce(&mut dyn Iterator<Item = i64>) -> R) -> R {
        let conns = self.lock();
        f(&mut conns.keys().copied())
    }

    /// The sessions of the connections here, each once.
    pub fn session_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.lock().values().flatten().map(|c| c.session_id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    pub fn has_user(&self, user_id: i64) -> bool {
        self.lock().contains_key(&user_id)
    }

    /// Queues `item` on every connection here, of every user.
    pub fn deliver_all(&self, item: Outbound) {
        let users: Vec<i64> = self.lock().keys().copied().collect();
        for user_id in users {
            self.deliver(user_id, item.clone(), None);
        }
    }
}

#[async_trait]
impl Relay for LocalRelay {
    async fn register(&self, user_id: i64, conn: ConnHandle) -> bool {
        self.add(user_id, conn, |first| first)
    }

    async fn unregister(&self, user_id: i64, conn: ConnId) -> bool {
        self.remove(user_id, conn, |last| last)
    }

    fn publish(&self, items: Vec<Positioned>) {
        self.sequencer.publish(items, Instant::now(), |released| self.release(released));
    }

    fn expect_positions(&self, clock: i64) {
        self.sequencer.expect(clock, Instant::now());
    }

    fn give_up_overdue_positions(&self) {
        self.sequencer.give_up_overdue(Instant::now(), |released| self.release(released));
    }

    fn skip_positions_to(&self, clock: i64) {
        self.sequencer.skip_to(clock, Instant::now(), |released| self.release(released));
    }

    fn deliver(&self, user_id: i64, item: Outbound, except: Option<ConnId>) {
        self.deliver_where(user_id, item, |c| Some(c.id) != except);
    }

    fn deliver_to(&self, user_id: i64, conn: ConnId, item: Outbound) {
        self.deliver_where(user_id, item, |c| c.id == conn);
    }

    async fn online(&self, user_ids: &[i64]) -> HashSet<i64> {
        let conns = self.lock();
        user_ids.iter().copied().filter(|id| conns.contains_key(id)).collect()
    }

    fn end_session(&self, session_id: i64) {
        let conns = self.lock();
        for conn in conns.values().flatten().filter(|c| c.session_id == session_id) {
            conn.kick.kick(parley_common::ws::close::SESSION_ENDED);
        }
    }

    fn connection_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

impl LocalRelay {
    fn deliver_where(&self, user_id: i64, item: Outbound, wanted: impl Fn(&ConnHandle) -> bool) {
        // Queue outside the lock: try_send never blocks, but kicking wakes other tasks.
        let targets: Vec<ConnHandle> = {
            let conns = self.lock();
            match conns.get(&user_id) {
                Some(list) => list.iter().filter(|c| wanted(c)).cloned().collect(),
                None => return,
            }
        };
        let catch_up = matches!(item, Outbound::CatchUp);
        for conn in targets {
            if catch_up && conn.catch_up_queued.swap(true, Ordering::SeqCst) {
                continue;
            }
            match conn.queue.try_send(item.clone()) {
                Ok(()) => {}
                Err(QueueError::Full) => {
                    tracing::info!(conn = conn.id, "connection cannot keep up; closing it");
                    conn.kick.kick(parley_common::ws::close::TOO_SLOW);
                }
                // The connection is closing; it unregisters itself.
                Err(QueueError::Closed) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: ConnId, capacity: usize) -> (ConnHandle, QueueReceiver<Outbound>) {
        let (queue, rx) = super::queue(capacity);
        let conn = ConnHandle { id, session_id: 1, queue, kick: Arc::default(), catch_up_queued: Arc::default() };
        (conn, rx)
    }

    #[tokio::test]
    async fn online_while_any_connection_lives() {
        let relay = LocalRelay::new(0);
        let (a, _ra) = conn(1, 4);
        let (b, _rb) = conn(2, 4);
        assert!(relay.register(7, a).await);
        assert!(!relay.register(7, b).await);
        assert_eq!(relay.online(&[7, 8]).await, HashSet::from([7]));
        assert!(!relay.unregister(7, 1).await);
        assert_eq!(relay.online(&[7]).await, HashSet::from([7]));
        assert!(relay.unregister(7, 2).await);
        assert!(relay.online(&[7]).await.is_empty());
        assert!(!relay.unregister(7, 2).await, "a second unregister changes nothing");
    }

    #[tokio::test]
    async fn delivery_skips_the_excepted_connection_and_kicks_a_full_one() {
        let relay = LocalRelay::new(0);
        let (a, mut ra) = conn(1, 1);
        let (b, mut rb) = conn(2, 1);
        let kick_b = b.kick.clone();
        relay.register(7, a).await;
        relay.register(7, b).await;
        relay.deliver(7, Outbound::frame(ServerFrame::Pong), Some(1));
        assert!(ra.try_recv().is_none());
        assert!(matches!(rb.try_recv(), Some(Outbound::Frame(f)) if *f == ServerFrame::Pong));
        relay.deliver(7, Outbound::frame(ServerFrame::Pong), None);
        relay.deliver(7, Outbound::frame(ServerFrame::Pong), None);
        assert_eq!(kick_b.kicked().await, parley_common::ws::close::TOO_SLOW);
    }

    #[tokio::test]
    async fn catch_up_requests_coalesce_until_the_connection_begins_one() {
        let relay = LocalRelay::new(0);
        let (a, mut ra) = conn(1, 8);
        let flag = a.catch_up_queued.clone();
        relay.register(7, a).await;
        for _ in 0..5 {
            relay.catch_up(7);
        }
        assert!(matches!(ra.try_recv(), Some(Outbound::CatchUp)));
        assert!(ra.try_recv().is_none(), "one queued catch-up stands for all five");
        flag.store(false, Ordering::SeqCst);
        relay.catch_up(7);
        assert!(matches!(ra.try_recv(), Some(Outbound::CatchUp)), "a new one once the first began");
    }

    #[tokio::test]
    async fn a_queue_keeps_order_refuses_past_its_capacity_and_ends_with_its_senders() {
        let (tx, mut rx) = super::queue::<u32>(2);
        let tx2 = tx.clone();
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx2.try_send(2), Ok(()));
        assert_eq!(tx.try_send(3), Err(QueueError::Full));
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), None);
        // A receiver waiting on an empty queue wakes for an item, then for the last sender going.
        let waiting = tokio::spawn(async move { (rx.recv().await, rx.recv().await) });
        tokio::task::yield_now().await;
        tx.try_send(4).unwrap();
        drop(tx);
        tokio::task::yield_now().await;
        drop(tx2);
        assert_eq!(waiting.await.unwrap(), (Some(4), None));
    }

    #[test]
    fn a_queue_without_its_receiver_refuses_and_an_emptied_one_gives_back_a_large_buffer() {
        let (tx, mut rx) = super::queue::<u32>(1000);
        for n in 0..200 {
            tx.try_send(n).unwrap();
        }
        while rx.try_recv().is_some() {}
        assert_eq!(rx.shared.lock().items.capacity(), 0);
        drop(rx);
        assert_eq!(tx.try_send(1), Err(QueueError::Closed));
    }
}
