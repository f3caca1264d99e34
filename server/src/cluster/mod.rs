//! Several nodes on one database, joined by a Redis (`PARLEY_REDIS_URL`): live delivery between
//! nodes (pub/sub), presence across nodes (claims with a lifetime) and shared rate limits.
//!
//! Redis is never the truth. Everything a client must not miss is in the database; Redis only
//! makes it arrive at once. When Redis goes away, each node keeps serving its own connections,
//! falls back to what it knows locally, and reconnects with backoff; once back, every connection
//! checks the store for what it missed (see `relay`).
use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::clock::now_millis;

pub mod ratelimit;
pub mod relay;

pub use ratelimit::RedisRateLimiter;
pub use relay::{Notice, RedisRelay};

/// The longest any Redis call may take before the caller goes on without it: a request or a
/// frame must not hang on a Redis that stopped answering.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// After a failure, calls fail at once for this long instead of each waiting for a connection.
const BACKOFF_AFTER_FAILURE_MS: i64 = 500;

/// Why a Redis call did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum RedisFailure {
    #[error("Redis is unreachable (recent failure)")]
    Down,
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The node's commands connection to Redis (pub/sub has its own, in `relay`).
pub struct Redis {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    /// No call is tried before this time (Unix ms): set after a connection failure.
    down_until: AtomicI64,
    prefix: String,
}

impl Redis {
    /// Checks the URL; connects on first use, so a node starts even while Redis is down.
    pub fn open(url: &str, prefix: &str) -> Result<Arc<Self>, redis::RedisError> {
        let client = redis::Client::open(url)?;
        Ok(Arc::new(Self { client, conn: OnceCell::new(), down_until: AtomicI64::new(0), prefix: prefix.to_string() }))
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Runs one call with the node's connection, bounded in time. Connection failures make the
    /// following calls fail at once for a moment, so a dead Redis costs callers nothing.
    pub async fn call<T, F, Fut>(&self, what: &'static str, f: F) -> Result<T, RedisFailure>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if now_millis() < self.down_until.load(Ordering::Relaxed) {
            return Err(self.failed(what, RedisFailure::Down));
        }
        let outcome = tokio::time::timeout(CALL_TIMEOUT, async {
            let conn = self.conn.get_or_try_init(|| self.connect()).await?.clone();
            f(conn).await
        })
        .await;
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                if err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() || err.is_timeout() {
                    self.trip();
                }
                Err(self.failed(what, err.into()))
            }
            Err(_) => {
                self.trip();
                Err(self.failed(what, RedisFailure::Timeout(CALL_TIMEOUT)))
            }
        }
    }

    async fn connect(&self) -> redis::RedisResult<ConnectionManager> {
        // One quick attempt per call: the caller's timeout is short, and the next call tries again.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_millis(500))
            .set_response_timeout(CALL_TIMEOUT)
            .set_number_of_retries(1)
            .set_max_delay(200);
        ConnectionManager::new_with_config(self.client.clone(), config).await
    }

    fn trip(&self) {
        self.down_until.store(now_millis() + BACKOFF_AFTER_FAILURE_MS, Ordering::Relaxed);
    }

    fn failed(&self, what: &'static str, failure: RedisFailure) -> RedisFailure {
        ::metrics::counter!(crate::metrics::REDIS_ERRORS, "op" => what).increment(1);
        tracing::debug!(op = what, error = %failure, "Redis call failed");
        failure
    }
}
