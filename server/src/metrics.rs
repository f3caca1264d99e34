//! Prometheus metrics at `GET /metrics`: connections, messages, acks, sync batches, connections
//! cut off, and store latency. Readable from loopback, or with `PARLEY_METRICS_TOKEN`.
use std::{sync::OnceLock, time::Instant};

use axum::{
    extract::{Request, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use subtle::ConstantTimeEq;

use crate::state::AppState;

pub const CONNECTIONS: &str = "parley_ws_connections";
pub const MESSAGES: &str = "parley_messages_total";
pub const DUPLICATE_SENDS: &str = "parley_duplicate_sends_total";
pub const ACKS: &str = "parley_acks_total";
pub const SYNC_BATCHES: &str = "parley_sync_batches_total";
pub const CUT_OFF: &str = "parley_ws_cut_off_total";
pub const STORE_SECONDS: &str = "parley_store_seconds";
pub const BATCH_SIZE: &str = "parley_commit_batch_messages";
/// Batches of messages by where their chats' members came from (`from`: `memory` or
/// `database`; Postgres keeps them between batches, SQLite reads them each time).
pub const BATCH_MEMBERS: &str = "parley_batch_members_total";
/// Batches written from members in memory that had changed meanwhile, so were read and written
/// anew.
pub const MEMBERS_CHANGED: &str = "parley_members_changed_total";
/// Events a connection was sent from the store because live delivery had lost them.
pub const CAUGHT_UP: &str = "parley_events_caught_up_total";
/// Positions of the clock that never reached this node's sequencer, given up on after its
/// timeout (connections then caught up from the store).
pub const POSITIONS_GIVEN_UP: &str = "parley_positions_given_up_total";
/// Cluster: whether this node's Redis subscription is live (1) or not (0).
pub const REDIS_UP: &str = "parley_redis_subscribed";
/// Cluster: Redis operations that failed (timeouts, no connection), by what they were for.
pub const REDIS_ERRORS: &str = "parley_redis_errors_total";

/// The process-wide recorder (metrics are global; several servers in one test process share it).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(STORE_SECONDS.into()),
                &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0],
            )
            .expect("bucket list is not empty")
            .set_buckets_for_metric(
                Matcher::Full(BATCH_SIZE.into()),
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
            )
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first, and then metrics go there.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Times one store operation into `parley_store_seconds{op}` when dropped.
pub struct StoreTimer {
    op: &'static str,
    started: Instant,
}

impl StoreTimer {
    pub fn start(op: &'static str) -> Self {
        StoreTimer { op, started: Instant::now() }
    }
}

impl Drop for StoreTimer {
    fn drop(&mut self) {
        metrics::histogram!(STORE_SECONDS, "op" => self.op).record(self.started.elapsed().as_secs_f64());
    }
}

pub async fn serve(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let headers = &parts.headers;
    let allowed = match &state.config.metrics_token {
        Some(token) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.0.as_bytes()))),
        // The client's address, not the peer's: behind a proxy on this host every peer is loopback.
        None => crate::state::client_ip(&parts, &state.config.trusted_proxies).is_some_and(|ip| ip.is_loopback()),
    };
    if !allowed {
        return crate::error::ApiError::NotFound.into_response();
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle().render()).into_response()
}
