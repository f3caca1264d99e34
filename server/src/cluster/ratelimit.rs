//! Request budgets shared by every node: one GCRA state per key in Redis, updated by a script on
//! Redis's clock, so a client cannot multiply its budget by switching nodes.
//!
//! When Redis cannot answer, a node falls back to its own in-process budgets (the same quotas):
//! neither fail-open nor fail-closed. Closing would turn a Redis outage into a chat outage (every
//! message and login refused) although the database, the truth, is fine; opening would hand
//! password sprayers and code guessers unlimited tries exactly when something is already wrong.
//! Local budgets keep the limits in force, at worst multiplied by the number of nodes for as long
//! as the outage lasts (and code guesses stay bounded per code in the database regardless).
use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;

use super::Redis;
use crate::{
    config::RateLimits,
    ratelimit::{Bucket, LocalRateLimiter, RateLimiter},
};

/// GCRA: `ARGV[1]` microseconds per request, `ARGV[2]` burst. Answers 0 (allowed) or the
/// microseconds to wait.
const GCRA_SCRIPT: &str = r"
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allowed_at = tat - (burst - 1) * interval
if now < allowed_at then return allowed_at - now end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1000)
return 0
";

pub struct RedisRateLimiter {
    redis: Arc<Redis>,
    /// Requests per minute by bucket (only the limited ones).
    per_minute: HashMap<Bucket, u32>,
    fallback: Arc<LocalRateLimiter>,
    script: redis::Script,
}

impl RedisRateLimiter {
    pub fn new(redis: Arc<Redis>, limits: &RateLimits) -> Arc<Self> {
        let per_minute = limits.per_minute().into_iter().filter(|(_, n)| *n > 0).collect();
        Arc::new(Self {
            redis,
            per_minute,
            fallback: LocalRateLimiter::new(limits),
            script: redis::Script::new(GCRA_SCRIPT),
        })
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn take(&self, bucket: Bucket, key: &str) -> Result<(), u64> {
        let Some(&per_minute) = self.per_minute.get(&bucket) else {
            return Ok(());
        };
        let redis_key = format!("{}rl:{bucket:?}:{key}", self.redis.prefix());
        let interval_us = 60_000_000 / u64::from(per_minute);
        let script = &self.script;
        let answer = self
            .redis
            .call("rate_limit", |mut conn| async move {
                script.key(redis_key).arg(interval_us).arg(per_minute).invoke_async::<u64>(&mut conn).await
            })
            .await;
        match answer {
            Ok(0) => Ok(()),
            Ok(wait_us) => Err(wait_us.div_ceil(1_000_000).max(1)),
            Err(err) => {
                tracing::debug!(error = %err, "shared rate limit unavailable; using this node's");
                self.fallback.take(bucket, key).await
            }
        }
    }

    fn forget_idle(&self) {
        self.fallback.forget_idle();
    }
}
