//! Request budgets for the routes people could abuse (guessing codes, probing emails, spraying
//! passwords). Behind a trait: one process keeps its budgets here; several nodes share theirs
//! through Redis (`cluster::RedisRateLimiter`).
use std::{collections::HashMap, num::NonZeroU32, sync::Arc};

use async_trait::async_trait;
use governor::{
    clock::{Clock, DefaultClock},
    DefaultKeyedRateLimiter, Quota,
};

use crate::{config::RateLimits, error::ApiError};

/// One budget: what is limited, per what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    SignupPerIp,
    SignupPerEmail,
    VerifyPerIp,
    VerifyPerSignup,
    ResendPerIp,
    ResendPerEmail,
    LoginPerIp,
    LoginPerEmail,
    NewChatPerUser,
    MessagesPerUser,
}

#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Takes one request from `key`'s budget in `bucket`; `Err(seconds)` says when to retry.
    async fn take(&self, bucket: Bucket, key: &str) -> Result<(), u64>;
    /// Forgets keys that are back to a full budget, to bound memory.
    fn forget_idle(&self) {}
}

impl RateLimits {
    /// Each bucket's budget per minute (0: not limited).
    pub fn per_minute(&self) -> [(Bucket, u32); 10] {
        [
            (Bucket::SignupPerIp, self.signup_per_ip),
            (Bucket::SignupPerEmail, self.signup_per_email),
            (Bucket::VerifyPerIp, self.verify_per_ip),
            (Bucket::VerifyPerSignup, self.verify_per_signup),
            (Bucket::ResendPerIp, self.resend_per_ip),
            (Bucket::ResendPerEmail, self.resend_per_email),
            (Bucket::LoginPerIp, self.login_per_ip),
            (Bucket::LoginPerEmail, self.login_per_email),
            (Bucket::NewChatPerUser, self.new_chat_per_user),
            (Bucket::MessagesPerUser, self.messages_per_user),
        ]
    }
}

/// Checks every `(bucket, key)` pair, in order, and fails on the first empty budget.
pub async fn take_all(limiter: &dyn RateLimiter, checks: &[(Bucket, &str)]) -> Result<(), ApiError> {
    for (bucket, key) in checks {
        limiter.take(*bucket, key).await.map_err(|retry_after_secs| {
            tracing::info!(?bucket, "rate limit hit");
            ApiError::RateLimited { retry_after_secs }
        })?;
    }
    Ok(())
}

/// Budgets held in this process (GCRA, via `governor`).
pub struct LocalRateLimiter {
    buckets: HashMap<Bucket, DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl LocalRateLimiter {
    pub fn new(limits: &RateLimits) -> Arc<Self> {
        let buckets = limits
            .per_minute()
            .into_iter()
            .filter_map(|(bucket, n)| {
                let n = NonZeroU32::new(n)?;
                Some((bucket, governor::RateLimiter::keyed(Quota::per_minute(n))))
            })
            .collect();
        Arc::new(Self { buckets, clock: DefaultClock::default() })
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn take(&self, bucket: Bucket, key: &str) -> Result<(), u64> {
        let Some(limiter) = self.buckets.get(&bucket) else {
            return Ok(());
        };
        limiter.check_key(&key.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }

    fn forget_idle(&self) {
        for limiter in self.buckets.values() {
            limiter.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_budget_runs_out_per_key_and_says_when_to_retry() {
        let limits = RateLimits { login_per_email: 2, ..RateLimits::default() };
        let limiter = LocalRateLimiter::new(&limits);
        assert!(limiter.take(Bucket::LoginPerEmail, "a@x.org").await.is_ok());
        assert!(limiter.take(Bucket::LoginPerEmail, "a@x.org").await.is_ok());
        let retry = limiter.take(Bucket::LoginPerEmail, "a@x.org").await.unwrap_err();
        assert!((1..=30).contains(&retry), "retry after {retry}");
        assert!(limiter.take(Bucket::LoginPerEmail, "b@x.org").await.is_ok());
    }

    #[tokio::test]
    async fn a_zero_budget_means_no_limit() {
        let limits = RateLimits { login_per_ip: 0, ..RateLimits::default() };
        let limiter = LocalRateLimiter::new(&limits);
        for _ in 0..1000 {
            assert!(limiter.take(Bucket::LoginPerIp, "127.0.0.1").await.is_ok());
        }
    }
}
