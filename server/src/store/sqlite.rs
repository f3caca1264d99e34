//! The embedded default: one SQLite file, so one command runs Parley anywhere.
use std::{str::FromStr, time::Duration};

use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    Connection, Sqlite, SqliteConnection, SqlitePool,
};

use super::{
    sql::{chat_query, impl_store},
    StoreError, StoreResult,
};

/// SQLite allows one writer at a time. Writes go through a single connection, so they queue in
/// the pool instead of failing with `SQLITE_BUSY`; reads use several connections, which WAL lets
/// run beside the writer.
pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::Database)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged write survives a power loss, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if let Some(parent) = options.get_filename().parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
            }
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .after_release(|conn, _| Box::pin(out_of_transaction(conn)))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("../migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new().max_connections(8).connect_with(options.read_only(true)).await?;
        Ok(Self { reader, writer })
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }
}

/// Whether a connection coming back to the pool is out of any transaction; one that is not is
/// closed, and the pool opens a fresh one.
///
/// When SQLite rolls a transaction back by itself (a COMMIT that failed with SQLITE_FULL or an
/// I/O error), sqlx still counts it open and its ROLLBACK fails. Kept, the connection's next
/// `begin` would open a savepoint instead of a transaction, and after one more failure a
/// savepoint's release would commit nothing: every later write acknowledged, none stored. The
/// crash test `sqlite_on_a_full_disk` found this.
async fn out_of_transaction(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    // A dropped transaction's ROLLBACK is queued, not done: a round trip lets it run first.
    conn.ping().await?;
    if conn.is_in_transaction() {
        tracing::warn!("closing a SQLite connection left inside a failed transaction");
        return Ok(false);
    }
    Ok(true)
}

impl_store!(SqliteStore, Sqlite, "sqlite");
