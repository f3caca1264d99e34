//! The production backend: PostgreSQL.
use std::{collections::HashMap, str::FromStr};

use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool, Postgres,
};

use super::{
    sql::{batch_members_select, chat_query, impl_store, BatchMember, NewEvent},
    MessageRecord, Millis, NewMessage, StoreError, StoreResult,
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

/// The statements of a batch of messages, each of one fixed text whatever the batch's size (the
/// rows travel as arrays, unpacked with `UNNEST`): Postgres parses and plans each once per
/// connection, and the batch never meets the limit on bind parameters.
impl PgStore {
    async fn committed_messages(
        tx: &mut sqlx::Transaction<'_, Postgres>,
        batch: &[NewMessage],
    ) -> StoreResult<Vec<MessageRecord>> {
        let senders: Vec<i64> = batch.iter().map(|m| m.sender_id).collect();
        let client_ids: Vec<&str> = batch.iter().map(|m| m.client_id.as_str()).collect();
        // One probe of the unique index on (sender_id, client_id) per pair, whatever the
        // planner thinks: as a plain join, past a few dozen pairs it chose a hash join over a
        // scan of the whole table, which grows with every message ever sent (at 10,000 stored
        // messages: 2.7 ms for 75 pairs, 8.4 ms for 300; as probes, 0.95 ms for 300). `LIMIT 1`
        // keeps the subquery from being folded into such a join.
        Ok(sqlx::query_as(
            "SELECT m.* FROM UNNEST($1::int8[], $2::text[]) AS k (sender_id, client_id)
             CROSS JOIN LATERAL (SELECT * FROM messages
                                 WHERE sender_id = k.sender_id AND client_id = k.client_id LIMIT 1) m",
        )
        .bind(&senders)
        .bind(&client_ids)
        .fetch_all(&mut **tx)
        .await?)
    }

    async fn batch_members(
        tx: &mut sqlx::Transaction<'_, Postgres>,
        chat_ids: &[i64],
    ) -> StoreResult<Vec<BatchMember>> {
        Ok(sqlx::query_as(concat!(batch_members_select!(), " WHERE cm.chat_id = ANY($1) ORDER BY cm.user_id"))
            .bind(chat_ids)
            .fetch_all(&mut **tx)
            .await?)
    }

    /// Inserts `batch[i]` with sequence number `seq` for each `(i, seq)` of `rows`.
    async fn insert_messages(
        tx: &mut sqlx::Transaction<'_, Postgres>,
        batch: &[NewMessage],
        rows: &[(usize, i64)],
    ) -> StoreResult<Vec<MessageRecord>> {
        let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for &(i, seq) in rows {
            let m = &batch[i];
            columns.0.push(m.chat_id);
            columns.1.push(seq);
            columns.2.push(m.sender_id);
            columns.3.push(m.client_id.as_str());
            columns.4.push(m.body.as_str());
            columns.5.push(m.now);
        }
        Ok(sqlx::query_as(
            "INSERT INTO messages (chat_id, seq, sender_id, client_id, body, created_at)
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::int8[])
             RETURNING *",
        )
        .bind(&columns.0)
        .bind(&columns.1)
        .bind(&columns.2)
        .bind(&columns.3)
        .bind(&columns.4)
        .bind(&columns.5)
        .fetch_all(&mut **tx)
        .await?)
    }

    /// Adds `count` to `column` of each row `(id, count)` (and sets `last_activity_at` when
    /// given); returns each row's new value; `Retry` if a row is gone. The rows are locked first,
    /// in ascending id (`FOR UPDATE` after `ORDER BY` locks in that order), the order every
    /// writer follows, so that concurrent writers wait for each other instead of deadlocking.
    async fn bump(
        tx: &mut sqlx::Transaction<'_, Postgres>,
        table: &str,
        column: &str,
        activity: Option<Millis>,
        counts: impl Iterator<Item = (i64, i64)>,
    ) -> StoreResult<HashMap<i64, i64>> {
        let (mut ids, mut adds): (Vec<i64>, Vec<i64>) = counts.unzip();
        let counts_len = ids.len();
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_unstable_by_key(|&k| ids[k]);
        (ids, adds) = order.iter().map(|&k| (ids[k], adds[k])).unzip();
        let activity_set = if activity.is_some() { ", last_activity_at = $3" } else { "" };
        let sql = format!(
            "WITH locked AS MATERIALIZED (SELECT id FROM {table} WHERE id = ANY($1) ORDER BY id FOR UPDATE)
             UPDATE {table} t SET {column} = t.{column} + k.n{activity_set}
             FROM UNNEST($1::int8[], $2::int8[]) AS k (id, n), locked
             WHERE t.id = k.id AND locked.id = k.id
             RETURNING t.id, t.{column}"
        );
        let mut query = sqlx::query_as(&sql).bind(&ids).bind(&adds);
        if let Some(at) = activity {
            query = query.bind(at);
        }
        let rows: Vec<(i64, i64)> = query.fetch_all(&mut **tx).await?;
        if rows.len() < counts_len {
            // A row went away under a concurrent transaction (a chat deleted with its last
            // member's account): the next attempt sees that before it writes.
            return Err(StoreError::Retry);
        }
        Ok(rows.into_iter().collect())
    }

    /// Stores events whose positions are already handed out, in one statement.
    async fn insert_events(tx: &mut sqlx::Transaction<'_, Postgres>, events: &[NewEvent]) -> StoreResult<()> {
        let mut columns =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for e in events {
            columns.0.push(e.user_id);
            columns.1.push(e.pos);
            columns.2.push(e.kind);
            columns.3.push(e.chat_id);
            columns.4.push(e.message_id);
            columns.5.push(e.reader.map(|r| r.0));
            columns.6.push(e.reader.map(|r| r.1));
            columns.7.push(e.created_at);
        }
        sqlx::query(
            "INSERT INTO events (user_id, pos, kind, chat_id, message_id, reader_id, up_to, created_at)
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::int8[], $5::int8[], $6::int8[],
                                  $7::int8[], $8::int8[])",
        )
        .bind(&columns.0)
        .bind(&columns.1)
        .bind(&columns.2)
        .bind(&columns.3)
        .bind(&columns.4)
        .bind(&columns.5)
        .bind(&columns.6)
        .bind(&columns.7)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
