//! Integration tests: a real server per test, real HTTP, real SMTP, on SQLite and on Postgres.
mod accounts;
mod authz;
mod blocking;
mod chats;
mod fuzz;
mod helpers;
mod leaving;
mod migration;
mod password_reset;
mod privacy;
mod realtime;
mod service;
mod sessions;
mod smtp_sink;
mod store;
mod ws_client;
