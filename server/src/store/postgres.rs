//! The production backend: PostgreSQL.
use std::str::FromStr;

use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool, Postgres,
};

use super::{
    sql::{chat_query, impl_store},
    StoreError, StoreResult,
};

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects and applies `migrations/postgres`. A `?options=-c search_path=…` in the URL selects
    /// a schema (tests use one each).
    pub async fn connect(url: &str, acquire_timeout: std::time::Duration) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(StoreError::Database)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // While the database is away, a request waits this long for a connection before its
            // client hears "unavailable" (sqlx's default, 30 s, outlasts most clients' patience).
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await?;
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }
}

impl_store!(PgStore, Postgres, "postgres");
