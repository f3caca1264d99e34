//! The production backend: PostgreSQL.
use std::{str::FromStr, time::Instant};

use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    Executor, PgConnection, PgPool, Postgres,
};

use super::{
    sql::{
        batch_members_select, chat_query, impl_store, BatchMember, BatchWrite, ChatAfter, MembersMemory, NewEvent,
        Written,
    },
    MessageRecord, NewMessage, StoreError, StoreResult,
};

/// A pooled connection idle this long is pinged before it is used again.
const PING_AFTER_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

pub struct PgStore {
    pool: PgPool,
    members: MembersMemory,
    /// Connections that stored a batch of messages and wait for the next, out of the pool, each
    /// with when it was last used (see [`PgStore::batch_connection`]).
    batch_connections: std::sync::Mutex<Vec<(PgConnection, Instant)>>,
    /// How long taking a connection may take, the pool's and a kept batch connection's ping.
    acquire_timeout: std::time::Duration,
}

impl PgStore {
    /// Connects and applies `migrations/postgres`. A `?options=-c search_path=…` in the URL selects
    /// a schema (tests use one each).
    pub async fn connect(url: &str, acquire_timeout: std::time::Duration) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(StoreError::Database)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // sqlx pings every connection it hands out: a round trip before each batch of
            // messages. Only one idle for a while is pinged (it may have outlived a restart of
            // the database); one in steady use fails its next query instead, the answer a lost
            // connection gets anyway. docs/BENCHMARKS.md has the figures.
            .test_before_acquire(false)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // Postgres plans a prepared statement anew for its parameters each time
                    // while it judges that cheaper than one plan for all, and with arrays of one
                    // or two messages, as at a light load, it always did: a fifth of the
                    // database's time went to planning the batch statement. Every statement here
                    // finds its rows by an id, which one plan serves; the periodic clean-up's
                    // deletes by age may scan instead, off any request (docs/BENCHMARKS.md).
                    conn.execute("SET plan_cache_mode = force_generic_plan").await?;
                    Ok(())
                })
            })
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_AFTER_IDLE {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            // While the database is away, a request waits this long for a connection before its
            // client hears "unavailable" (sqlx's default, 30 s, outlasts most clients' patience).
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await?;
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        Ok(Self { pool, members: Default::default(), batch_connections: Default::default(), acquire_timeout })
    }

    /// Writers lock the rows they move in one order, so any number may run at once.
    const MAX_WRITERS: usize = usize::MAX;

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    /// A connection for a batch of messages. Batches keep theirs out of the pool: sqlx pings a
    /// connection every time it goes back to its pool, a second round trip per batch that kept
    /// the database and the server busy for nothing (docs/BENCHMARKS.md, item 31). One idle for
    /// a while is pinged first, as the pool does (`PING_AFTER_IDLE`), within the time a connection
    /// from the pool may take; one that fails or takes longer is dropped.
    async fn batch_connection(&self) -> StoreResult<BatchConnection> {
        loop {
            let kept = self.batch_connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
            let Some((mut conn, last_used)) = kept else { break };
            if last_used.elapsed() < PING_AFTER_IDLE
                || matches!(
                    tokio::time::timeout(self.acquire_timeout, sqlx::Connection::ping(&mut conn)).await,
                    Ok(Ok(()))
                )
            {
                return Ok(BatchConnection { conn: Some(conn) });
            }
        }
        let conn = self.pool.acquire().await?.detach();
        Ok(BatchConnection { conn: Some(conn) })
    }

    /// Keeps the connection for the next batch.
    fn keep_batch_connection(&self, mut conn: BatchConnection) {
        if let Some(conn) = conn.conn.take() {
            self.batch_connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((conn, Instant::now()));
        }
    }
}

/// A batch's connection, closed when dropped unless it was kept ([`PgStore::keep_batch_connection`]):
/// a batch that failed or was cancelled part-way may have left it out of step with the database.
struct BatchConnection {
    conn: Option<PgConnection>,
}

impl std::ops::Deref for BatchConnection {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn.as_ref().expect("a batch connection is there until dropped")
    }
}

impl std::ops::DerefMut for BatchConnection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("a batch connection is there until dropped")
    }
}

impl Drop for BatchConnection {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Said goodbye to on a task of its own, if a runtime is still there to run it.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(sqlx::Connection::close(conn));
            }
        }
    }
}

impl_store!(PgStore, Postgres, "postgres", PgConnection);

/// The writes of a batch, each part conditioned on `guard` (the members' epoch, `$11`, when they
/// came from memory), as `write_batch` explains; the two statements below end them. Every part
/// that writes must be: Postgres runs a data-modifying CTE to completion whether or not anything
/// reads it, so an unguarded one still writes when the batch is refused.
///
/// The chats are locked first (ascending id), then the clock: every writer takes the clock row
/// last, so none waits for another lock while holding it, and its lock orders the commits by
/// position. `$first_words` is where the statement with first words turns them, between the two
/// (their `chat_members` rows are locks too, so they must come before the clock's).
///
/// The chats' counters are found with `id = ANY(array)` and each row's increment with
/// `array_position`, not by joining `UNNEST` of the arrays: the generic plan sizes an array at
/// ten elements, and on small tables it joined them by hashing a sequential scan, whose set-up
/// was most of a one-message batch's cost (`batch_cost`, docs/BENCHMARKS.md).
macro_rules! write_batch_ctes {
    ($first_words:literal, $after_first_words:literal) => {
        concat!(
            "WITH guard AS MATERIALIZED (
                 SELECT $11::int8 IS NULL OR $11::int8 = (SELECT value FROM membership_epoch WHERE id = 1) AS ok),
             chats_locked AS MATERIALIZED (
                 SELECT c.id FROM chats c
                 WHERE c.id = ANY($1::int8[]) AND (SELECT ok FROM guard)
                 ORDER BY c.id FOR UPDATE OF c),",
            $first_words,
            "
             clock_taken AS MATERIALIZED (
                 UPDATE clock SET value = value + cardinality($6::int8[])
                 WHERE id = 1 AND (SELECT count(*) FROM chats_locked) = cardinality($1::int8[])",
            $after_first_words,
            "
                 RETURNING value - cardinality($6::int8[]) AS before),
             chat_seqs AS (
                 UPDATE chats t
                 SET last_seq = t.last_seq + ($2::int8[])[array_position($1::int8[], t.id)],
                     last_pos = k.before + ($4::int8[])[array_position($1::int8[], t.id)],
                     last_activity_at = $3
                 FROM clock_taken k
                 WHERE t.id = ANY($1::int8[])
                 RETURNING t.id, t.last_seq - ($2::int8[])[array_position($1::int8[], t.id)] AS seq_before),
             chat_base AS MATERIALIZED (
                 SELECT CASE WHEN count(*) = cardinality($1::int8[])
                             THEN array_agg(seq_before ORDER BY id) END AS seq_before
                 FROM chat_seqs),
             new_messages AS (
                 INSERT INTO messages (id, chat_id, seq, sender_id, client_id, body, created_at)
                 SELECT k.before + m.n, m.chat_id, b.seq_before[m.chat_index] + m.rank, m.sender_id, m.client_id,
                        m.body, m.created_at
                 FROM UNNEST($5::int4[], $6::int8[], $7::int8[], $8::int8[], $9::text[], $10::text[], $12::int8[])
                          WITH ORDINALITY AS m (chat_index, rank, chat_id, sender_id, client_id, body, created_at, n),
                      chat_base b, clock_taken k)"
        )
    };
}

/// A batch's write when none of its senders writes first in a chat.
const WRITE_BATCH: &str = concat!(
    write_batch_ctes!("", ""),
    "
     SELECT g.ok, c.seq_before, k.before, NULL::int8[], NULL::int8[]
     FROM guard g CROSS JOIN chat_base c LEFT JOIN clock_taken k ON TRUE"
);

/// A batch's write with the (chat, sender) pairs of first words in `$13`, `$14`: it turns their
/// `reached_out` and returns the pairs it turned.
const WRITE_BATCH_WITH_FIRST_WORDS: &str = concat!(
    write_batch_ctes!(
        "
         first_words AS MATERIALIZED (
             UPDATE chat_members cm SET reached_out = TRUE
             FROM UNNEST($13::int8[], $14::int8[]) AS f (chat_id, user_id)
             WHERE cm.chat_id = f.chat_id AND cm.user_id = f.user_id AND NOT cm.reached_out
               AND (SELECT count(*) FROM chats_locked) = cardinality($1::int8[])
             RETURNING cm.chat_id, cm.user_id),",
        " AND (SELECT count(*) FROM first_words) >= 0"
    ),
    "
     SELECT g.ok, c.seq_before, k.before,
            (SELECT array_agg(chat_id ORDER BY chat_id, user_id) FROM first_words),
            (SELECT array_agg(user_id ORDER BY chat_id, user_id) FROM first_words)
     FROM guard g CROSS JOIN chat_base c LEFT JOIN clock_taken k ON TRUE"
);

/// The statements of a batch of messages, each of one fixed text whatever the batch's size (the
/// rows travel as arrays, unpacked with `UNNEST`): Postgres parses and plans each once per
/// connection, and the batch never meets the limit on bind parameters.
impl PgStore {
    async fn committed_messages(conn: &mut PgConnection, batch: &[NewMessage]) -> StoreResult<Vec<MessageRecord>> {
        let senders: Vec<i64> = batch.iter().map(|m| m.sender_id).collect();
        let client_ids: Vec<&str> = batch.iter().map(|m| m.client_id.as_str()).collect();
        // One probe of the unique index on (client_id, sender_id) per pair, whatever the
        // planner thinks: as a plain join, past a few dozen pairs it chose a hash join over a
        // scan of the whole table, which grows with every message ever sent (at 10,000 stored
        // messages: 2.7 ms for 75 pairs, 8.4 ms for 300; as probes, 0.95 ms for 300). `LIMIT 1`
        // keeps the subquery from being folded into such a join.
        Ok(sqlx::query_as(
            "SELECT m.id, m.chat_id, m.seq, m.sender_id, m.client_id, m.body, m.created_at
             FROM UNNEST($1::int8[], $2::text[]) AS k (sender_id, client_id)
             CROSS JOIN LATERAL (SELECT * FROM messages
                                 WHERE sender_id = k.sender_id AND client_id = k.client_id LIMIT 1) m",
        )
        .bind(&senders)
        .bind(&client_ids)
        .fetch_all(conn)
        .await?)
    }

    /// The user's chats with a message in `(since, up_to]`, by their first one there, at most
    /// `limit`: each chat's first found by one probe of `messages_chat_pos`.
    async fn chats_after(
        conn: &mut PgConnection,
        user_id: i64,
        since: i64,
        up_to: i64,
        limit: i64,
    ) -> StoreResult<Vec<ChatAfter>> {
        Ok(sqlx::query_as(
            "SELECT cm.chat_id, f.id AS first_pos, f.seq AS first_seq
             FROM chat_members cm JOIN chats c ON c.id = cm.chat_id
             CROSS JOIN LATERAL (SELECT id, seq FROM messages m
                                 WHERE m.chat_id = cm.chat_id AND m.id > $2 ORDER BY m.id LIMIT 1) f
             WHERE cm.user_id = $1 AND c.last_pos > $2 AND f.id <= $3
             ORDER BY f.id LIMIT $4",
        )
        .bind(user_id)
        .bind(since)
        .bind(up_to)
        .bind(limit)
        .fetch_all(conn)
        .await?)
    }

    /// The messages of each chat with positions in `(since, up_to]`, at most `limit` a chat, by
    /// chat and position: one statement, each chat read through `messages_chat_pos`.
    async fn messages_after(
        conn: &mut PgConnection,
        chats: &[ChatAfter],
        since: i64,
        up_to: i64,
        limit: i64,
    ) -> StoreResult<Vec<MessageRecord>> {
        if chats.is_empty() {
            return Ok(Vec::new());
        }
        let chat_ids: Vec<i64> = chats.iter().map(|c| c.chat_id).collect();
        Ok(sqlx::query_as(
            "SELECT m.* FROM UNNEST($1::int8[]) WITH ORDINALITY AS c (id, n)
             CROSS JOIN LATERAL (SELECT * FROM messages
                                 WHERE chat_id = c.id AND id > $2 AND id <= $3 ORDER BY id LIMIT $4) m
             ORDER BY c.n, m.id",
        )
        .bind(&chat_ids)
        .bind(since)
        .bind(up_to)
        .bind(limit)
        .fetch_all(conn)
        .await?)
    }

    /// The members of the chats, each row with the membership epoch of the same snapshot.
    async fn batch_members(conn: &mut PgConnection, chat_ids: &[i64]) -> StoreResult<Vec<BatchMember>> {
        Ok(sqlx::query_as(concat!(batch_members_select!(), " WHERE cm.chat_id = ANY($1) ORDER BY cm.user_id"))
            .bind(chat_ids)
            .fetch_all(conn)
            .await?)
    }

    /// Stores a batch in one statement, its own transaction: each statement is a round trip to
    /// another process and an executor start, and at a steady load of small batches those, not
    /// the rows, were most of the database's work (docs/BENCHMARKS.md).
    ///
    /// The chats are locked in ascending id, then the clock (`write_batch_ctes!`), so writers
    /// wait for each other instead of deadlocking. Each chat's `seq` before the batch comes back
    /// in an array in id order, and a message finds its chat's by position: the planner cannot
    /// size the results of one data-modifying CTE joined to another, and a join chose loops
    /// quadratic in the batch.
    ///
    /// With `members_epoch` (the members came from memory) every part of the statement is
    /// conditioned on the epoch being still that one in the statement's snapshot; otherwise it
    /// stores nothing and the batch fails with `MembersChanged`.
    async fn write_batch(conn: &mut PgConnection, w: &BatchWrite<'_>) -> StoreResult<(Vec<Written>, Vec<(i64, i64)>)> {
        let batch = w.batch;
        let (chat_ids, chat_counts): (Vec<i64>, Vec<i64>) =
            w.by_chat.iter().map(|(&chat, list)| (chat, list.len() as i64)).unzip();
        // Each message's chat's position (1-based, as SQL arrays count) in `chat_ids` and its
        // rank in the chat, chat by chat in `by_chat`'s order: the order of their ids.
        let mut messages = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (c, (&chat_id, indexes)) in w.by_chat.iter().enumerate() {
            for (k, &i) in indexes.iter().enumerate() {
                let m = &batch[i];
                messages.0.push(c as i32 + 1);
                messages.1.push(k as i64 + 1);
                messages.2.push(chat_id);
                messages.3.push(m.sender_id);
                messages.4.push(m.client_id.as_str());
                messages.5.push(m.body.as_str());
                messages.6.push(m.now);
            }
        }
        let (first_chats, first_senders): (Vec<i64>, Vec<i64>) = w.first_words.iter().copied().unzip();
        type Array = Option<Vec<i64>>;
        type Row = (bool, Array, Option<i64>, Array, Array);
        // Nearly every batch has no first words and leaves their part out: turning and returning
        // them cost a small batch 10-20% more of the database's time even with no pairs
        // (measured back to back at a light load).
        let statement = if w.first_words.is_empty() { WRITE_BATCH } else { WRITE_BATCH_WITH_FIRST_WORDS };
        let mut query = sqlx::query_as(statement)
            .bind(&chat_ids)
            .bind(&chat_counts)
            .bind(w.now)
            .bind(w.last_ranks())
            .bind(&messages.0)
            .bind(&messages.1)
            .bind(&messages.2)
            .bind(&messages.3)
            .bind(&messages.4)
            .bind(&messages.5)
            .bind(w.members_epoch)
            .bind(&messages.6);
        if !w.first_words.is_empty() {
            query = query.bind(&first_chats).bind(&first_senders);
        }
        let (current, seq_before, clock_before, reached_chats, reached_users): Row = query.fetch_one(conn).await?;
        if !current {
            return Err(StoreError::MembersChanged);
        }
        let (Some(seq_before), Some(clock_before)) = (seq_before, clock_before) else {
            // A chat went away under a concurrent transaction (an account deleted): the clock was
            // not taken and nothing was stored. The next attempt sees that.
            return Err(StoreError::Retry);
        };
        if seq_before.len() != chat_ids.len() {
            return Err(StoreError::Corrupt("a batch's write returned counters of another size".into()));
        }

        let reached_out =
            reached_chats.unwrap_or_default().into_iter().zip(reached_users.unwrap_or_default()).collect();
        Ok((w.written(&seq_before, clock_before), reached_out))
    }

    /// Stores events whose positions are already handed out, in one statement.
    async fn insert_events(tx: &mut sqlx::Transaction<'_, Postgres>, events: &[NewEvent]) -> StoreResult<()> {
        let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for e in events {
            columns.0.push(e.user_id);
            columns.1.push(e.pos);
            columns.2.push(e.kind);
            columns.3.push(e.chat_id);
            columns.4.push(e.reader.map(|r| r.0));
            columns.5.push(e.reader.map(|r| r.1));
            columns.6.push(e.created_at);
        }
        sqlx::query(
            "INSERT INTO events (user_id, pos, kind, chat_id, reader_id, up_to, created_at)
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::int8[], $5::int8[], $6::int8[],
                                  $7::int8[])",
        )
        .bind(&columns.0)
        .bind(&columns.1)
        .bind(&columns.2)
        .bind(&columns.3)
        .bind(&columns.4)
        .bind(&columns.5)
        .bind(&columns.6)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
