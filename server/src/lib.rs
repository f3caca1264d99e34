//! Parley's server as a library: `main` reads the configuration and calls [`Server::build`] and
//! [`Server::serve`]; integration tests do the same on a port of their own.
#![forbid(unsafe_code)]

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::TcpListener;

pub mod accounts;
pub mod admin;
pub mod chats;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod mail;
pub mod metrics;
pub mod privacy;
pub mod ratelimit;
pub mod relay;
pub mod routes;
pub mod sequencer;
pub mod state;
pub mod store;
pub mod writer;
pub mod ws;

pub use config::Config;

/// Connections the kernel may hold until the server accepts them (capped by
/// `net.core.somaxconn`). tokio's default, 128, overflowed when a few hundred clients connected at
/// once, as after a restart: the kernel dropped the handshakes past it, and each of those clients
/// waited a second for its retry (docs/BENCHMARKS.md).
pub const LISTEN_BACKLOG: u32 = 4096;

/// The server's listening socket on `addr`, with room for [`LISTEN_BACKLOG`] connections.
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As tokio's own `TcpListener::bind`: a restarted server binds while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
use state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Store(#[from] store::StoreError),
    #[error(
        "database: still unreachable after waiting {waited_secs} s (PARLEY_DATABASE_WAIT_SECS); is it running, \
         and do DATABASE_URL's host and port point at it? {detail}"
    )]
    DatabaseUnreachable { waited_secs: u64, detail: String },
    #[error("mail: {0}")]
    Mail(#[from] mail::MailError),
    #[error("server secret: {0}")]
    Secret(std::io::Error),
    #[error("Redis (PARLEY_REDIS_URL): {0}")]
    Redis(#[from] redis::RedisError),
    #[error("TLS certificate or key: {0}")]
    Tls(String),
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// A server ready to accept connections: database migrated, secret loaded, mailer configured.
pub struct Server {
    state: AppState,
}

impl Server {
    pub async fn build(config: Config) -> Result<Self, StartError> {
        metrics::handle();
        let wait = Duration::from_secs(config.database_wait_secs);
        let acquire_timeout = Duration::from_millis(config.database_acquire_timeout_ms.max(1));
        let store = match store::connect_waiting(&config.database_url(), acquire_timeout, wait).await {
            Err(store::StoreError::Unavailable(store::Unavailable::Unreachable(detail))) => {
                return Err(StartError::DatabaseUnreachable { waited_secs: wait.as_secs(), detail })
            }
            other => other?,
        };
        let key = crypto::ServerKey::load_or_create(config.secret.as_ref().map(|s| s.0.as_str()), &config.data_dir)
            .map_err(StartError::Secret)?;
        let mailer = mail::Mailer::from_config(&config)?;
        tracing::info!(database = store.backend(), mail = %mailer.describe(), signup = ?config.signup, "server ready");
        let writers = config.commit_writers.clamp(1, store.max_writers());
        let writer = writer::GroupCommit::start(store.clone(), config.max_commit_batch, writers);
        let clock = store.clock().await?;
        let (limiter, relay, notices): (Arc<dyn ratelimit::RateLimiter>, Arc<dyn relay::Relay>, _) =
            match &config.redis_url {
                None => (ratelimit::LocalRateLimiter::new(&config.rate_limits), relay::LocalRelay::new(clock), None),
                Some(url) => {
                    let redis = cluster::Redis::open(&url.0, &config.redis_prefix)?;
                    let ttl = Duration::from_secs(config.presence_ttl_secs);
                    let (relay, notices) = cluster::RedisRelay::start(redis.clone(), ttl, clock);
                    (cluster::RedisRateLimiter::new(redis, &config.rate_limits), relay, Some(notices))
                }
            };
        let cursors = chats::Cursors::new(store.history_epoch().await?);
        let state = AppState {
            config: Arc::new(config),
            store,
            mailer: Arc::new(mailer),
            key,
            limiter,
            relay,
            writer,
            cursors,
        };
        if let Some(notices) = notices {
            tokio::spawn(cluster_notices(state.clone(), notices));
        }
        tokio::spawn(watch_positions(Arc::downgrade(&state.relay), state.store.clone()));
        Ok(Self { state })
    }

    /// Whether the server answers HTTPS itself (`PARLEY_TLS_CERT` and `PARLEY_TLS_KEY`).
    pub fn serves_tls(&self) -> bool {
        self.state.config.tls_files().is_some()
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let housekeeping = tokio::spawn(housekeeping(self.state.clone()));
        let tls = match self.state.config.tls_files() {
            Some((cert, key)) => Some(
                axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .map_err(|e| StartError::Tls(format!("{} / {}: {e}", cert.display(), key.display())))?,
            ),
            None => None,
        };
        let app = routes::router(self.state).into_make_service_with_connect_info::<SocketAddr>();
        let result = match tls {
            None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await,
            Some(tls) => {
                let handle = axum_server::Handle::new();
                let stopper = handle.clone();
                tokio::spawn(async move {
                    shutdown.await;
                    stopper.graceful_shutdown(Some(Duration::from_secs(10)));
                });
                axum_server::from_tcp_rustls(listener.into_std()?, tls)?.handle(handle).serve(app).await
            }
        };
        housekeeping.abort();
        Ok(result?)
    }
}

/// Acts on what the cluster relay reports: presence changes it found (a dead node's users, claims
/// renewed after Redis lost them) and sessions to check after the subscription was down.
async fn cluster_notices(state: AppState, mut notices: tokio::sync::mpsc::UnboundedReceiver<cluster::Notice>) {
    while let Some(notice) = notices.recv().await {
        let outcome = match notice {
            cluster::Notice::CameOnline(user_id) => chats::announce_presence(&state, user_id, true, None).await,
            cluster::Notice::WentOffline(user_id) => {
                let now = clock::now_millis();
                match state.store.set_last_seen(user_id, now).await {
                    Ok(()) => chats::announce_presence(&state, user_id, false, Some(now)).await,
                    Err(err) => Err(err.into()),
                }
            }
            cluster::Notice::RecheckSessions(ids) => recheck_sessions(&state, &ids).await,
            // Read after the subscription: every position up to the clock was published before
            // it (or is on its way, and handed on at once when it comes).
            cluster::Notice::Subscribed => match state.store.clock().await {
                Ok(clock) => {
                    state.relay.skip_positions_to(clock);
                    Ok(())
                }
                Err(err) => Err(err.into()),
            },
        };
        if let Err(err) = outcome {
            tracing::warn!(error = %err, "acting on a cluster notice");
        }
    }
}

/// Closes the sockets of sessions that ended while this node could not hear about it.
async fn recheck_sessions(state: &AppState, ids: &[i64]) -> error::ApiResult<()> {
    for chunk in ids.chunks(500) {
        let live: std::collections::HashSet<i64> =
            state.store.live_session_ids(chunk, clock::now_millis()).await?.into_iter().collect();
        for ended in chunk.iter().filter(|id| !live.contains(id)) {
            tracing::info!(session = ended, "closing the sockets of a session that ended elsewhere");
            state.relay.end_session(*ended);
        }
    }
    Ok(())
}

/// Keeps the node's sequencer going (`crate::sequencer`): gives up on positions missing for too
/// long, and reads the store's clock now and then, so that positions committed and never
/// published (a node that died first) are given up on even when nothing follows them. Ends with
/// the relay.
async fn watch_positions(relay: std::sync::Weak<dyn relay::Relay>, store: Arc<dyn store::Store>) {
    const CHECK_EVERY: Duration = Duration::from_millis(250);
    const READ_CLOCK_EVERY: u32 = 20;
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u32.. {
        tick.tick().await;
        if n % READ_CLOCK_EVERY == 0 {
            // Read before looking at the relay: the clock's positions were committed by then.
            let clock = store.clock().await;
            let Some(relay) = relay.upgrade() else { return };
            match clock {
                Ok(clock) => relay.expect_positions(clock),
                Err(err) => tracing::debug!(error = %err, "reading the clock"),
            }
        }
        let Some(relay) = relay.upgrade() else { return };
        relay.give_up_overdue_positions();
    }
}

/// Periodic clean-up: expired sessions and stale signups out of the database, idle keys out of
/// the rate limiter.
async fn housekeeping(state: AppState) {
    const EVERY: Duration = Duration::from_secs(600);
    const SIGNUP_LIFETIME_MS: i64 = 24 * 3600 * 1000;
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        let now = clock::now_millis();
        match state.store.purge(now, now - SIGNUP_LIFETIME_MS).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "purged expired sessions and signups"),
            Err(err) => tracing::warn!(error = %err, "purge failed"),
        }
        state.limiter.forget_idle();
    }
}
