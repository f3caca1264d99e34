//! Several Parley nodes on one Postgres and one Redis, as separate processes on loopback ports:
//! chat, presence and unread counts across nodes, a node killed with SIGKILL, Redis restarted under
//! traffic, rate limits shared between nodes, client addresses behind a proxy, and the nginx
//! deployment of docs/DEPLOY.md. Needs Postgres (PARLEY_TEST_POSTGRES_URL), Redis at
//! 127.0.0.1:6379 (PARLEY_TEST_REDIS_URL), and `redis-server` and `nginx` on the PATH.
#[path = "../support/server_process.rs"]
mod server_process;

mod chat;
mod failover;
mod harness;
mod limits;
mod nginx;
