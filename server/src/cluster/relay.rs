//! The relay of a node in a cluster: its own connections (a [`LocalRelay`]), plus Redis.
//!
//! - **Delivery.** Everything delivered here is also published, in batches, on one channel that
//!   every node subscribes to; each node hands the items to its own connections of the user.
//!   Connection ids mean nothing on another node, so remote items never carry an `origin`.
//! - **Order.** Events travel as positions of the clock, each with all its deliveries, and every
//!   position is published whether or not it has users elsewhere: each node's sequencer
//!   (`crate::sequencer`) hands them to its connections in position order, and gives up on a
//!   position that does not arrive in time by having every connection catch up from the store.
//! - **Missed items.** Pub/sub forgets what it could not deliver. Besides the sequencer's timeout:
//!   - every connection of a node checks the store after each (re)subscription: this is what
//!     recovers a Redis restart, since a node cannot know what was published while it was away;
//!   - after a publish that failed while subscribers may have stayed up (a timeout, a full queue),
//!     the publisher tells the affected users' connections, cluster-wide, to check once it can
//!     publish again (too early for nodes still resubscribing; those are covered above);
//!   - a resend that finds its message already committed has the members' connections check
//!     (`chats::send`): the node that committed it may have died before publishing;
//!   - and as the net under all of these, each node reads the store's clock now and then, so a
//!     position a dead node committed but never published is given up on (and caught up) even
//!     when nothing follows it.
//! - **Presence.** Per user, a sorted set of the nodes that hold a connection, each with an expiry
//!   (Redis's clock). Nodes renew their claims every quarter of `PARLEY_PRESENCE_TTL_SECS`, with a
//!   lifetime of half of it; a reaper on every node removes the claims of nodes whose heartbeat
//!   stopped and announces those users offline, so a dead node's users show offline within the TTL.
//!   Claims and releases of one node go through one ordered queue, so Redis sees them in the order
//!   the node saw its connections come and go.
use std::{
    collections::HashSet,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use async_trait::async_trait;
use futures_util::StreamExt;
use parley_common::{Event, ServerFrame};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Notify};

use super::Redis;
use crate::{
    relay::{ConnHandle, ConnId, LocalRelay, Outbound, Relay},
    sequencer::{Delivery, Positioned},
};

/// Items published in one message at most.
const PUBLISH_BATCH: usize = 256;
/// Items waiting for the publisher; beyond, the affected users are told to check the store later.
const PUBLISH_QUEUE: usize = 16 * 1024;
/// Users remembered one by one after a failed publish; beyond, every connection checks.
const MAX_LOST_USERS: usize = 10_000;
/// Presence operations in one script call.
const PRESENCE_CHUNK: usize = 500;
const RESUBSCRIBE_MIN: Duration = Duration::from_millis(100);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(5);
/// A subscription that does not answer a ping this fast is taken for dead.
const SUBSCRIPTION_PING_EVERY: Duration = Duration::from_secs(5);
const SUBSCRIPTION_PING_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a connection waits for Redis's word on presence before going on without it: a Redis
/// that accepts connections but does not answer must not hold up every new socket's `hello`.
const PRESENCE_ANSWER_WAIT: Duration = Duration::from_millis(500);

/// What the node must act on with the rest of the application (the store, announcements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The user is online again somewhere after being shown offline (a claim renewed after Redis
    /// lost it, or after this node was taken for dead).
    CameOnline(i64),
    /// The user's last node died, or a release that failed earlier went through.
    WentOffline(i64),
    /// The subscription was down: broadcasts that ended some of these sessions may be lost.
    RecheckSessions(Vec<i64>),
    /// The subscription is up (again): positions published before it are lost to this node, up
    /// to the store's clock as read from now on.
    Subscribed,
}

/// One item on the wire, as published.
#[derive(Serialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum WireOut<'a> {
    At { pos: i64, to: Vec<(i64, &'a Event)> },
    Frame { user: i64, frame: &'a ServerFrame },
    EndSession { session: i64 },
    CatchUp { user: i64 },
    CatchUpAll,
}

/// One item on the wire, as received.
#[derive(Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum WireIn {
    At { pos: i64, to: Vec<(i64, Event)> },
    Frame { user: i64, frame: Box<ServerFrame> },
    EndSession { session: i64 },
    CatchUp { user: i64 },
    CatchUpAll,
}

/// A serialised item and what to do if it is lost.
struct Published {
    json: String,
    lost: Lost,
}

/// What must be made good once Redis is back.
#[derive(Debug, Default)]
struct LostItems {
    users: HashSet<i64>,
    sessions: HashSet<i64>,
    all: bool,
}

#[derive(Debug, Clone)]
enum Lost {
    /// The user's connections elsewhere should check the store.
    User(i64),
    /// So should these users'.
    Users(Vec<i64>),
    /// The session must still be ended elsewhere.
    Session(i64),
}

impl LostItems {
    fn add(&mut self, lost: Lost) {
        match lost {
            Lost::Session(id) => {
                self.sessions.insert(id);
            }
            Lost::Users(ids) => {
                for id in ids {
                    self.add(Lost::User(id));
                }
            }
            Lost::User(_) if self.all => {}
            Lost::User(id) => {
                self.users.insert(id);
                if self.users.len() > MAX_LOST_USERS {
                    self.all = true;
                    self.users.clear();
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.users.is_empty() && self.sessions.is_empty() && !self.all
    }

    /// The items that make the losses good.
    fn remedies(&self) -> Vec<String> {
        let mut items: Vec<String> =
            self.sessions.iter().map(|&session| wire(&WireOut::EndSession { session })).collect();
        if self.all {
            items.push(wire(&WireOut::CatchUpAll));
        } else {
            items.extend(self.users.iter().map(|&user| wire(&WireOut::CatchUp { user })));
        }
        items
    }

    fn absorb(&mut self, other: LostItems) {
        self.all |= other.all;
        self.sessions.extend(other.sessions);
        for user in other.users {
            self.add(Lost::User(user));
        }
    }
}

fn wire(item: &WireOut<'_>) -> String {
    serde_json::to_string(item).expect("wire items serialise")
}

enum PresenceOp {
    Claim { user: i64, reply: oneshot::Sender<Option<bool>> },
    Release { user: i64, reply: oneshot::Sender<Option<bool>> },
    Heartbeat { users: Vec<i64>, releases: Vec<i64> },
}

/// How one presence result is used.
enum Answer {
    Reply(oneshot::Sender<Option<bool>>),
    Renewed,
    Released,
}

/// Claims (`c`), renewals (`h`) and releases (`r`) of one node, in order. A claim or renewal
/// answers 1 when the user was shown offline before it (no live claim, the node's own included);
/// a release answers 1 when it ends the user's last live claim.
const PRESENCE_SCRIPT: &str = r"
local prefix, node, life = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + life
redis.call('ZADD', prefix .. 'nodes', expiry, node)
redis.call('PEXPIRE', prefix .. 'nodes', life * 20)
local mine = prefix .. 'node:' .. node .. ':users'
local out = {}
for i = 4, #ARGV, 2 do
  local op, user = ARGV[i], ARGV[i + 1]
  local key = prefix .. 'presence:' .. user
  local live = redis.call('ZCOUNT', key, now, '+inf')
  local own = redis.call('ZSCORE', key, node)
  local own_live = own and tonumber(own) >= now
  if own_live then live = live - 1 end
  if op == 'r' then
    redis.call('ZREM', key, node)
    redis.call('SREM', mine, user)
    out[#out + 1] = (own_live and live == 0) and 1 or 0
  else
    redis.call('ZADD', key, expiry, node)
    if redis.call('PTTL', key) < life then redis.call('PEXPIRE', key, life) end
    redis.call('SADD', mine, user)
    out[#out + 1] = ((not own_live) and live == 0) and 1 or 0
  end
end
redis.call('PEXPIRE', mine, life * 20)
return out
";

/// Takes the claims of nodes whose heartbeat stopped; answers the users left with no live claim.
const REAP_SCRIPT: &str = r"
local prefix = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', prefix .. 'nodes', '-inf', '(' .. now, 'LIMIT', 0, 16)
local out = {}
for _, node in ipairs(dead) do
  redis.call('ZREM', prefix .. 'nodes', node)
  local set = prefix .. 'node:' .. node .. ':users'
  for _, user in ipairs(redis.call('SMEMBERS', set)) do
    local key = prefix .. 'presence:' .. user
    redis.call('ZREM', key, node)
    if redis.call('ZCOUNT', key, now, '+inf') == 0 then out[#out + 1] = tonumber(user) end
  end
  redis.call('DEL', set)
end
return out
";

/// 1 for each user with a live claim, else 0.
const ONLINE_SCRIPT: &str = r"
local prefix = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 2, #ARGV do
  out[#out + 1] = redis.call('ZCOUNT', prefix .. 'presence:' .. ARGV[i], now, '+inf') > 0 and 1 or 0
end
return out
";

/// What the background tasks share with the relay.
struct Shared {
    local: Arc<LocalRelay>,
    redis: Arc<Redis>,
    /// Releases that failed (Redis away); retried by the next heartbeat unless the user is back.
    pending_releases: Mutex<HashSet<i64>>,
    presence: mpsc::UnboundedSender<PresenceOp>,
    heartbeat_now: Notify,
}

pub struct RedisRelay {
    shared: Arc<Shared>,
    publish: mpsc::Sender<Published>,
    lost: Arc<Mutex<LostItems>>,
    online_script: redis::Script,
}

impl RedisRelay {
    /// Starts the node's Redis tasks (publisher, subscriber, presence, heartbeat, reaper). The
    /// receiver gets what the rest of the application must act on.
    /// `clock` is the store's, for the node's sequencer.
    pub fn start(
        redis: Arc<Redis>,
        presence_ttl: Duration,
        clock: i64,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Notice>) {
        let node = uuid::Uuid::new_v4().simple().to_string();
        let channel = format!("{}events", redis.prefix());
        let life = presence_ttl / 2;
        let (notices, notices_rx) = mpsc::unbounded_channel();
        let (presence, presence_rx) = mpsc::unbounded_channel();
        let (publish, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let lost = Arc::new(Mutex::new(LostItems::default()));
        let shared = Arc::new(Shared {
            local: LocalRelay::new(clock),
            redis: redis.clone(),
            pending_releases: Mutex::default(),
            presence,
            heartbeat_now: Notify::new(),
        });
        tracing::info!(node = %node, prefix = redis.prefix(), "joining the cluster through Redis");
        tokio::spawn(publisher(redis.clone(), channel.clone(), node.clone(), publish_rx, lost.clone()));
        tokio::spawn(subscriber(Arc::downgrade(&shared), channel, node.clone(), notices.clone()));
        tokio::spawn(presence_worker(Arc::downgrade(&shared), node, life, presence_rx, notices.clone()));
        tokio::spawn(heartbeat(Arc::downgrade(&shared), life / 2));
        tokio::spawn(reaper(Arc::downgrade(&shared), life / 2, notices));
        let relay = RedisRelay { shared, publish, lost, online_script: redis::Script::new(ONLINE_SCRIPT) };
        (Arc::new(relay), notices_rx)
    }

    fn send(&self, item: WireOut<'_>, lost: Lost) {
        let published = Published { json: wire(&item), lost };
        if let Err(err) = self.publish.try_send(published) {
            let published = match err {
                mpsc::error::TrySendError::Full(p) | mpsc::error::TrySendError::Closed(p) => p,
            };
            self.lost.lock().expect("lost lock").add(published.lost);
        }
    }

    /// The presence queue's answer, if it comes in time. An answer that comes later is acted on
    /// by the queue itself (see `presence_worker`).
    async fn presence_answer(rx: Option<oneshot::Receiver<Option<bool>>>) -> Option<bool> {
        tokio::time::timeout(PRESENCE_ANSWER_WAIT, rx?).await.ok()?.ok().flatten()
    }
}

#[async_trait]
impl Relay for RedisRelay {
    async fn register(&self, user_id: i64, conn: ConnHandle) -> bool {
        let (first, rx) = self.shared.local.add(user_id, conn, |first| {
            if !first {
                return (false, None);
            }
            let (reply, rx) = oneshot::channel();
            let _ = self.shared.presence.send(PresenceOp::Claim { user: user_id, reply });
            (true, Some(rx))
        });
        // Without an answer from Redis, the first connection here is taken as coming online: a
        // repeated "online" is harmless, a missing one is not.
        first && Self::presence_answer(rx).await.unwrap_or(true)
    }

    async fn unregister(&self, user_id: i64, conn: ConnId) -> bool {
        let (last, rx) = self.shared.local.remove(user_id, conn, |last| {
            if !last {
                return (false, None);
            }
            let (reply, rx) = oneshot::channel();
            let _ = self.shared.presence.send(PresenceOp::Release { user: user_id, reply });
            (true, Some(rx))
        });
        // Without an answer, nothing is announced now; the release is retried by the heartbeat,
        // which announces it then.
        last && Self::presence_answer(rx).await.unwrap_or(false)
    }

    fn publish(&self, items: Vec<Positioned>) {
        for item in &items {
            let to: Vec<(i64, &Event)> = item.deliveries.iter().map(|d| (d.user_id, &*d.event)).collect();
            // Its users' connections elsewhere catch up; a position with none is given up on by
            // the other nodes' sequencers, which is all it needs.
            let lost = Lost::Users(to.iter().map(|(user, _)| *user).collect());
            self.send(WireOut::At { pos: item.pos, to }, lost);
        }
        self.shared.local.publish(items);
    }

    fn expect_positions(&self, clock: i64) {
        self.shared.local.expect_positions(clock);
    }

    fn give_up_overdue_positions(&self) {
        self.shared.local.give_up_overdue_positions();
    }

    fn skip_positions_to(&self, clock: i64) {
        self.shared.local.skip_positions_to(clock);
    }

    fn deliver(&self, user_id: i64, item: Outbound, except: Option<ConnId>) {
        match &item {
            // Events of the stream travel by `publish`; a resend's answer is for one connection.
            Outbound::Event { .. } | Outbound::Duplicate { .. } => {}
            Outbound::Frame(frame) => self.send(WireOut::Frame { user: user_id, frame }, Lost::User(user_id)),
            Outbound::CatchUp => self.send(WireOut::CatchUp { user: user_id }, Lost::User(user_id)),
        }
        self.shared.local.deliver(user_id, item, except);
    }

    fn deliver_to(&self, user_id: i64, conn: ConnId, item: Outbound) {
        self.shared.local.deliver_to(user_id, conn, item);
    }

    async fn online(&self, user_ids: &[i64]) -> HashSet<i64> {
        let mut online = self.shared.local.online(user_ids).await;
        let mut rest: Vec<i64> = user_ids.iter().copied().filter(|id| !online.contains(id)).collect();
        rest.sort_unstable();
        rest.dedup();
        if rest.is_empty() {
            return online;
        }
        let prefix = self.shared.redis.prefix().to_string();
        let script = &self.online_script;
        let asked = rest.clone();
        let flags = self
            .shared
            .redis
            .call("online", |mut conn| async move {
                let mut call = script.prepare_invoke();
                call.arg(prefix);
                for id in &asked {
                    call.arg(*id);
                }
                call.invoke_async::<Vec<i64>>(&mut conn).await
            })
            .await;
        // Without Redis, only this node's own connections are known.
        if let Ok(flags) = flags {
            online.extend(rest.into_iter().zip(flags).filter(|(_, on)| *on == 1).map(|(id, _)| id));
        }
        online
    }

    fn end_session(&self, session_id: i64) {
        self.shared.local.end_session(session_id);
        self.send(WireOut::EndSession { session: session_id }, Lost::Session(session_id));
    }

    fn connection_count(&self) -> usize {
        self.shared.local.connection_count()
    }
}

/// Publishes queued items in batches, in order. What a failed publish loses is remembered and
/// made good (catch-ups, session ends) by the first publish that goes through.
async fn publisher(
    redis: Arc<Redis>,
    channel: String,
    node: String,
    mut queue: mpsc::Receiver<Published>,
    lost: Arc<Mutex<LostItems>>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            n = queue.recv_many(&mut batch, PUBLISH_BATCH) => if n == 0 { return },
            _ = retry.tick() => {}
        }
        let owed = std::mem::take(&mut *lost.lock().expect("lost lock"));
        let mut items = owed.remedies();
        items.extend(batch.iter().map(|p| p.json.clone()));
        if items.is_empty() {
            continue;
        }
        // The node id first, so that receivers skip their own messages without parsing them.
        let payload = format!("{node}\n[{}]", items.join(","));
        let channel = channel.as_str();
        let sent =
            redis.call("publish", |mut conn| async move { conn.publish::<_, _, i64>(channel, payload).await }).await;
        if let Err(err) = sent {
            let mut lost = lost.lock().expect("lost lock");
            let first_loss = lost.is_empty();
            lost.absorb(owed);
            for item in batch.drain(..) {
                lost.add(item.lost);
            }
            if first_loss {
                tracing::warn!(error = %err, "publishing to Redis failed; the receivers will catch up from the store");
            }
        }
        batch.clear();
    }
}

/// Keeps the node subscribed, resubscribing with backoff; after each subscription every
/// connection here checks the store for what it may have missed.
async fn subscriber(shared: Weak<Shared>, channel: String, node: String, notices: mpsc::UnboundedSender<Notice>) {
    let mut backoff = RESUBSCRIBE_MIN;
    let mut failures = 0u32;
    let mut subscribed_before = false;
    loop {
        let Some(client) = shared.upgrade().map(|s| s.redis.client().clone()) else { return };
        let subscription = tokio::time::timeout(Duration::from_secs(2), async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        match subscription {
            Ok(Ok(pubsub)) => {
                backoff = RESUBSCRIBE_MIN;
                if subscribed_before || failures > 0 {
                    tracing::info!(
                        after_failures = failures,
                        "Redis subscription back; connections catch up from the store"
                    );
                }
                failures = 0;
                subscribed_before = true;
                ::metrics::gauge!(crate::metrics::REDIS_UP).set(1.0);
                let Some(s) = shared.upgrade() else { return };
                // Only now: whatever commits after a connection reads the store reaches it live.
                s.local.deliver_all(Outbound::CatchUp);
                let sessions = s.local.session_ids();
                if !sessions.is_empty() {
                    let _ = notices.send(Notice::RecheckSessions(sessions));
                }
                let _ = notices.send(Notice::Subscribed);
                // Redis may have restarted empty: put the claims back now, not at the next beat.
                s.heartbeat_now.notify_one();
                drop(s);
                listen(&shared, pubsub, &node).await;
                ::metrics::gauge!(crate::metrics::REDIS_UP).set(0.0);
                tracing::warn!("lost the Redis subscription; resubscribing");
            }
            Ok(Err(err)) => {
                if failures == 0 {
                    tracing::warn!(error = %err, "cannot subscribe to Redis; retrying with backoff");
                }
                failures += 1;
            }
            Err(_) => {
                if failures == 0 {
                    tracing::warn!("subscribing to Redis timed out; retrying with backoff");
                }
                failures += 1;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RESUBSCRIBE_MAX);
    }
}

/// Hands received items to this node's connections until the subscription dies.
async fn listen(shared: &Weak<Shared>, pubsub: redis::aio::PubSub, node: &str) {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(SUBSCRIPTION_PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else { return };
                let Some(shared) = shared.upgrade() else { return };
                receive(&shared.local, message.get_payload_bytes(), node);
            }
            _ = ping.tick() => {
                let answer = tokio::time::timeout(SUBSCRIPTION_PING_TIMEOUT, sink.ping::<redis::Value>()).await;
                if !matches!(answer, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}

fn receive(local: &LocalRelay, payload: &[u8], node: &str) {
    let Some(split) = payload.iter().position(|b| *b == b'\n') else {
        tracing::warn!("a message on the cluster channel without a node id");
        return;
    };
    if &payload[..split] == node.as_bytes() {
        return;
    }
    let items: Vec<WireIn> = match serde_json::from_slice(&payload[split + 1..]) {
        Ok(items) => items,
        Err(err) => {
            // Another version of Parley on the same prefix, or something else entirely.
            tracing::warn!(error = %err, "an unreadable message on the cluster channel");
            return;
        }
    };
    for item in items {
        match item {
            WireIn::At { pos, to } => {
                let deliveries = to
                    .into_iter()
                    .map(|(user_id, event)| Delivery { user_id, event: Arc::new(event), origin: None })
                    .collect();
                local.publish(vec![Positioned { pos, deliveries }]);
            }
            WireIn::Frame { user, frame } => local.deliver(user, Outbound::Frame(Arc::from(frame)), None),
            WireIn::EndSession { session } => local.end_session(session),
            WireIn::CatchUp { user } => local.deliver(user, Outbound::CatchUp, None),
            WireIn::CatchUpAll => local.deliver_all(Outbound::CatchUp),
        }
    }
}

/// Runs presence operations in the order the node queued them, in batches.
async fn presence_worker(
    shared: Weak<Shared>,
    node: String,
    life: Duration,
    mut ops: mpsc::UnboundedReceiver<PresenceOp>,
    notices: mpsc::UnboundedSender<Notice>,
) {
    let script = redis::Script::new(PRESENCE_SCRIPT);
    let life_ms = life.as_millis() as u64;
    let mut batch = Vec::new();
    while ops.recv_many(&mut batch, 64).await > 0 {
        let Some(shared) = shared.upgrade() else { return };
        let mut flat: Vec<(char, i64, Answer)> = Vec::new();
        for op in batch.drain(..) {
            match op {
                PresenceOp::Claim { user, reply } => flat.push(('c', user, Answer::Reply(reply))),
                PresenceOp::Release { user, reply } => flat.push(('r', user, Answer::Reply(reply))),
                PresenceOp::Heartbeat { users, releases } => {
                    flat.extend(users.into_iter().map(|u| ('h', u, Answer::Renewed)));
                    flat.extend(releases.into_iter().map(|u| ('r', u, Answer::Released)));
                }
            }
        }
        while !flat.is_empty() {
            let rest = flat.split_off(flat.len().min(PRESENCE_CHUNK));
            let chunk = std::mem::replace(&mut flat, rest);
            let args: Vec<(char, i64)> = chunk.iter().map(|(op, user, _)| (*op, *user)).collect();
            let (prefix, node, script) = (shared.redis.prefix().to_string(), node.as_str(), &script);
            let results = shared
                .redis
                .call("presence", |mut conn| async move {
                    let mut call = script.prepare_invoke();
                    call.arg(prefix).arg(node).arg(life_ms);
                    for (op, user) in &args {
                        call.arg(op.to_string()).arg(*user);
                    }
                    call.invoke_async::<Vec<i64>>(&mut conn).await
                })
                .await
                .ok()
                .filter(|r| r.len() == chunk.len());
            for (i, (op, user, answer)) in chunk.into_iter().enumerate() {
                let result = results.as_ref().map(|r| r[i] == 1);
                if result.is_none() && op == 'r' {
                    shared.pending_releases.lock().expect("pending lock").insert(user);
                }
                match answer {
                    Answer::Reply(reply) => {
                        // The connection stopped waiting: it took the user as online already,
                        // but a last release it did not hear of must still be announced.
                        if reply.send(result).is_err() && op == 'r' && result == Some(true) {
                            let _ = notices.send(Notice::WentOffline(user));
                        }
                    }
                    Answer::Renewed if result == Some(true) => {
                        let _ = notices.send(Notice::CameOnline(user));
                    }
                    Answer::Released if result == Some(true) => {
                        let _ = notices.send(Notice::WentOffline(user));
                    }
                    Answer::Renewed | Answer::Released => {}
                }
            }
        }
    }
}

/// Renews the node's claims (and retries failed releases) every `every`, or at once when asked.
async fn heartbeat(shared: Weak<Shared>, every: Duration) {
    loop {
        {
            let Some(shared) = shared.upgrade() else { return };
            // Snapshot and queue under the relay's lock, so the beat is ordered with the
            // claims and releases of connections that come and go meanwhile.
            shared.local.with_users(|users| {
                let users: Vec<i64> = users.collect();
                let local: HashSet<i64> = users.iter().copied().collect();
                let releases: Vec<i64> = shared
                    .pending_releases
                    .lock()
                    .expect("pending lock")
                    .drain()
                    .filter(|u| !local.contains(u))
                    .collect();
                let _ = shared.presence.send(PresenceOp::Heartbeat { users, releases });
            });
        }
        let Some(notify) = shared.upgrade() else { return };
        let wait = async {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = notify.heartbeat_now.notified() => {}
            }
        };
        wait.await;
    }
}

/// Takes the claims of dead nodes, and announces their users offline.
async fn reaper(shared: Weak<Shared>, every: Duration, notices: mpsc::UnboundedSender<Notice>) {
    let script = redis::Script::new(REAP_SCRIPT);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(redis) = shared.upgrade().map(|s| s.redis.clone()) else { return };
        let prefix = redis.prefix().to_string();
        let script = &script;
        let reaped = redis
            .call("reap", |mut conn| async move { script.arg(prefix).invoke_async::<Vec<i64>>(&mut conn).await })
            .await;
        if let Ok(mut users) = reaped {
            users.sort_unstable();
            users.dedup();
            if !users.is_empty() {
                tracing::info!(users = users.len(), "a node stopped renewing its claims; its users are offline");
            }
            for user in users {
                let _ = notices.send(Notice::WentOffline(user));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_survive_the_wire() {
        let event = Event::Read { cursor: "9".into(), chat_id: 3, user_id: 2, up_to: 4 };
        let frame = ServerFrame::Presence { user_id: 2, online: true, last_seen: None };
        let items = [
            wire(&WireOut::At { pos: 9, to: vec![(5, &event), (6, &event)] }),
            wire(&WireOut::Frame { user: 5, frame: &frame }),
            wire(&WireOut::EndSession { session: 77 }),
            wire(&WireOut::CatchUp { user: 5 }),
            wire(&WireOut::CatchUpAll),
        ];
        let parsed: Vec<WireIn> = serde_json::from_str(&format!("[{}]", items.join(","))).unwrap();
        assert!(matches!(&parsed[0], WireIn::At { pos: 9, to } if *to == [(5, event.clone()), (6, event.clone())]));
        assert!(matches!(&parsed[1], WireIn::Frame { user: 5, frame: f } if **f == frame));
        assert!(matches!(parsed[2], WireIn::EndSession { session: 77 }));
        assert!(matches!(parsed[3], WireIn::CatchUp { user: 5 }));
        assert!(matches!(parsed[4], WireIn::CatchUpAll));
    }

    #[test]
    fn losses_are_remembered_one_by_one_then_as_everyone() {
        let mut lost = LostItems::default();
        assert!(lost.is_empty());
        lost.add(Lost::Session(4));
        lost.add(Lost::User(1));
        lost.add(Lost::User(1));
        assert_eq!(lost.remedies().len(), 2, "one session end and one catch-up");
        for user in 0..=MAX_LOST_USERS as i64 {
            lost.add(Lost::User(user));
        }
        assert!(lost.all);
        let remedies = lost.remedies();
        assert_eq!(remedies.len(), 2, "the session end and one catch-up for all: {remedies:?}");
        assert!(remedies.iter().any(|r| r.contains("catch_up_all")));
    }
}
