//! The embedded default: one SQLite file, so one command runs Parley anywhere.
use std::{collections::HashMap, str::FromStr, time::Duration};

use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    Connection, QueryBuilder, Sqlite, SqliteConnection, SqlitePool,
};

use super::{
    sql::{
        batch_members_select, chat_query, impl_store, BatchMember, BatchWrite, ChatAfter, MembersMemory, NewEvent, Written,
    },
    MessageRecord, NewMessage, StoreError, StoreResult,
};

/// SQLite allows one writer at a time. Writes go through a single connection, so they queue in
/// the pool instead of failing with `SQLITE_BUSY`; reads use several connections, which WAL lets
/// run beside the writer.
pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    members: MembersMemory,
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
            // Checkpoint the WAL every ~40 MiB, not SQLite's ~4 MiB: a batch of messages dirties
            // hundreds of pages, so the default copied the same hot pages back into the database
            // (and flushed it) every few commits. 33-36k -> 40-43k messages/s (docs/BENCHMARKS.md).
            .pragma("wal_autocheckpoint", "10000")
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
        Ok(Self { reader, writer, members: MembersMemory::default() })
    }

    /// SQLite takes one writer at a time, and Parley gives it one connection for it.
    const MAX_WRITERS: usize = 1;

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// The one writer connection, for a batch of messages: every write of SQLite queues for it.
    async fn batch_connection(&self) -> StoreResult<sqlx::pool::PoolConnection<Sqlite>> {
        Ok(self.writer.acquire().await?)
    }

    /// Back to the pool, where the other writes wait for it.
    fn keep_batch_connection(&self, conn: sqlx::pool::PoolConnection<Sqlite>) {
        drop(conn);
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

/// The stored messages of the batch's (`client_id`, sender) pairs, each found through the unique
/// index on the pair (the test below reads the query's plan: a scan would read every message
/// ever sent).
fn push_resend_lookup<'a>(query: &mut QueryBuilder<'a, Sqlite>, batch: &'a [NewMessage]) {
    query.push("SELECT * FROM messages WHERE (client_id, sender_id) IN (VALUES ");
    let mut pairs = query.separated(", ");
    for m in batch {
        pairs.push("(").push_bind_unseparated(m.client_id.as_str()).push_unseparated(", ");
        pairs.push_bind_unseparated(m.sender_id).push_unseparated(")");
    }
    query.push(")");
}

/// `SqliteStore::chats_after`'s binary search: `$1` the user, `$2` the cursor, `$3` the clock,
/// `$4` the limit. A step moves `lo` past the midpoint when the midpoint's message is at or
/// before the cursor, else `hi` to it, and probes its new midpoint (written out from the old
/// `lo` and `hi`, as a recursive step can read only its row). `lo <= hi` holds throughout, and
/// a chat's `last_pos > $2` means its last message is past the cursor, so the search ends on one.
const CHATS_AFTER: &str = "
    WITH RECURSIVE search (chat_id, lo, hi, mid_pos) AS (
        SELECT cm.chat_id, 1, c.last_seq,
               (SELECT m.id FROM messages m
                WHERE m.chat_id = cm.chat_id AND m.seq >= (1 + c.last_seq) / 2 ORDER BY m.seq LIMIT 1)
        FROM chat_members cm JOIN chats c ON c.id = cm.chat_id
        WHERE cm.user_id = $1 AND c.last_pos > $2
        UNION ALL
        SELECT s.chat_id,
               iif(s.mid_pos <= $2, (s.lo + s.hi) / 2 + 1, s.lo),
               iif(s.mid_pos <= $2, s.hi, (s.lo + s.hi) / 2),
               (SELECT m.id FROM messages m
                WHERE m.chat_id = s.chat_id
                  AND m.seq >= iif(s.mid_pos <= $2, ((s.lo + s.hi) / 2 + 1 + s.hi) / 2,
                                                    (s.lo + (s.lo + s.hi) / 2) / 2)
                ORDER BY m.seq LIMIT 1)
        FROM search s WHERE s.lo < s.hi
    )
    SELECT chat_id, mid_pos AS first_pos, lo AS first_seq FROM search
    WHERE lo = hi AND mid_pos <= $3 ORDER BY mid_pos LIMIT $4";

/// Rows of events per statement: seven parameters each, under SQLite's limit of 32,766 per
/// statement.
const EVENTS_PER_INSERT: usize = 2048;
/// Rows of messages per statement: seven parameters each, under the same limit.
const MESSAGES_PER_INSERT: usize = 4096;

/// The statements of a batch of messages, as multi-row statements built to the batch's size:
/// SQLite runs in this process, so a statement costs its execution, not a round trip, and
/// parsing a new shape is cheap next to writing the rows.
impl SqliteStore {
    async fn committed_messages(conn: &mut SqliteConnection, batch: &[NewMessage]) -> StoreResult<Vec<MessageRecord>> {
        let mut query = QueryBuilder::<Sqlite>::new("");
        push_resend_lookup(&mut query, batch);
        Ok(query.build_query_as().fetch_all(conn).await?)
    }

    /// The members of the chats, each row with the membership epoch of the same snapshot.
    async fn batch_members(conn: &mut SqliteConnection, chat_ids: &[i64]) -> StoreResult<Vec<BatchMember>> {
        let mut query = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT m.*, (SELECT value FROM membership_epoch WHERE id = 1) AS epoch FROM (",
            batch_members_select!(),
            " WHERE cm.chat_id IN ("
        ));
        let mut list = query.separated(", ");
        for id in chat_ids {
            list.push_bind(*id);
        }
        list.push_unseparated(")) m ORDER BY m.user_id");
        Ok(query.build_query_as().fetch_all(conn).await?)
    }

    /// The user's chats with a message in `(since, up_to]`, by their first one there, at most
    /// `limit`.
    ///
    /// SQLite keeps one index of a chat's messages, by `seq` (each commit writes a leaf of every
    /// per-chat index for each chat in its batch, and a second one by position cost a third of
    /// the bytes a commit wrote: docs/BENCHMARKS.md, item 32). A chat's positions rise with its
    /// `seq`, so its first message past `since` is found by a binary search over `seq` in
    /// `[1, last_seq]`, a probe of that index per step (~20 for a chat of a million messages).
    /// Each step's row carries the probe of its own midpoint, `mid_pos` (the position of the
    /// first message at or past it), so that a step probes once; when `lo = hi` that is the
    /// answer's position.
    async fn chats_after(
        conn: &mut SqliteConnection,
        user_id: i64,
        since: i64,
        up_to: i64,
        limit: i64,
    ) -> StoreResult<Vec<ChatAfter>> {
        Ok(sqlx::query_as(CHATS_AFTER).bind(user_id).bind(since).bind(up_to).bind(limit).fetch_all(conn).await?)
    }

    /// The messages of each chat from its first past `since` up to position `up_to`, at most
    /// `limit` a chat, by chat and `seq`: a statement per chat, each through `(chat_id, seq)`.
    /// SQLite runs in this process, so a statement costs no round trip.
    async fn messages_after(
        conn: &mut SqliteConnection,
        chats: &[ChatAfter],
        _since: i64,
        up_to: i64,
        limit: i64,
    ) -> StoreResult<Vec<MessageRecord>> {
        let mut messages = Vec::new();
        for chat in chats {
            let rows: Vec<MessageRecord> = sqlx::query_as(
                "SELECT * FROM messages WHERE chat_id = $1 AND seq >= $2 AND id <= $3 ORDER BY seq LIMIT $4",
            )
            .bind(chat.chat_id)
            .bind(chat.first_seq)
            .bind(up_to)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?;
            messages.extend(rows);
        }
        Ok(messages)
    }

    /// Stores a batch in one transaction, a statement per step: the clock, the chats' counters,
    /// then the messages. SQLite has one writer, so there is no lock order to keep.
    ///
    /// With `members_epoch` (the members came from memory) the clock's statement also reads the
    /// membership epoch; if it moved, the transaction is rolled back, nothing stored and no
    /// position taken, and the batch fails with `MembersChanged`. The first write takes SQLite's
    /// one write lock, so the epoch cannot move after that read before the commit.
    async fn write_batch(
        conn: &mut SqliteConnection,
        w: &BatchWrite<'_>,
    ) -> StoreResult<(Vec<Written>, Vec<(i64, i64)>)> {
        let mut tx = conn.begin().await?;
        let taken = w.len() as i64;
        let (clock, epoch): (i64, i64) = sqlx::query_as(
            "UPDATE clock SET value = value + $1 WHERE id = 1
             RETURNING value, (SELECT value FROM membership_epoch WHERE id = 1)",
        )
        .bind(taken)
        .fetch_one(&mut *tx)
        .await?;
        if w.members_epoch.is_some_and(|remembered| remembered != epoch) {
            tx.rollback().await?;
            return Err(StoreError::MembersChanged);
        }
        let clock_before = clock - taken;
        let last_seq = Self::bump_chats(&mut tx, w, clock_before).await?;
        let seq_before: Vec<i64> = w.by_chat.iter().map(|(chat, list)| last_seq[chat] - list.len() as i64).collect();
        let written = w.written(&seq_before, clock_before);

        let rows: Vec<&MessageRecord> = written.iter().flatten().collect();
        Self::insert_messages(&mut tx, &rows).await?;
        // Rare: one statement per sender and chat.
        let mut reached_out = Vec::new();
        for &(chat_id, user_id) in &w.first_words {
            if Self::reach_out(&mut *tx, chat_id, user_id).await? {
                reached_out.push((chat_id, user_id));
            }
        }
        tx.commit().await?;
        Ok((written, reached_out))
    }

    /// Inserts the messages, ids and all, in statements of up to [`MESSAGES_PER_INSERT`] rows.
    /// Nothing comes back: returning rows sent each through the connection's channel, and whole
    /// rows (every body) were a third of the insert's time at full speed (docs/BENCHMARKS.md).
    async fn insert_messages(tx: &mut sqlx::Transaction<'_, Sqlite>, messages: &[&MessageRecord]) -> StoreResult<()> {
        for chunk in messages.chunks(MESSAGES_PER_INSERT) {
            let mut query = QueryBuilder::<Sqlite>::new(
                "INSERT INTO messages (id, chat_id, seq, sender_id, client_id, body, created_at) ",
            );
            query.push_values(chunk, |mut row, m| {
                row.push_bind(m.id)
                    .push_bind(m.chat_id)
                    .push_bind(m.seq)
                    .push_bind(m.sender_id)
                    .push_bind(m.client_id.as_str())
                    .push_bind(m.body.as_str())
                    .push_bind(m.created_at);
            });
            query.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Moves the batch's chats' counters in one statement (`last_seq` by their messages,
    /// `last_pos` to their last message's position, `last_activity_at`); returns each chat's new
    /// `last_seq`; `Retry` if a chat is gone.
    async fn bump_chats(
        tx: &mut sqlx::Transaction<'_, Sqlite>,
        w: &BatchWrite<'_>,
        clock_before: i64,
    ) -> StoreResult<HashMap<i64, i64>> {
        let mut query = QueryBuilder::<Sqlite>::new("UPDATE chats SET last_seq = last_seq + CASE id");
        for (&id, list) in &w.by_chat {
            query.push(" WHEN ").push_bind(id).push(" THEN ").push_bind(list.len() as i64);
        }
        query.push(" END, last_pos = CASE id");
        for (&id, rank) in w.by_chat.keys().zip(w.last_ranks()) {
            query.push(" WHEN ").push_bind(id).push(" THEN ").push_bind(clock_before + rank);
        }
        query.push(" END, last_activity_at = ").push_bind(w.now);
        query.push(" WHERE id IN (");
        let mut list = query.separated(", ");
        for &id in w.by_chat.keys() {
            list.push_bind(id);
        }
        list.push_unseparated(") RETURNING id, last_seq");
        let rows: Vec<(i64, i64)> = query.build_query_as().fetch_all(&mut **tx).await?;
        if rows.len() < w.by_chat.len() {
            // A chat went away under a concurrent transaction (deleted with its last member's
            // account): the next attempt sees that before it writes.
            return Err(StoreError::Retry);
        }
        Ok(rows.into_iter().collect())
    }

    /// Stores events whose positions are already handed out, in statements of up to
    /// [`EVENTS_PER_INSERT`] rows.
    async fn insert_events(tx: &mut sqlx::Transaction<'_, Sqlite>, events: &[NewEvent]) -> StoreResult<()> {
        for chunk in events.chunks(EVENTS_PER_INSERT) {
            let mut query = QueryBuilder::<Sqlite>::new(
                "INSERT INTO events (user_id, pos, kind, chat_id, reader_id, up_to, created_at) ",
            );
            query.push_values(chunk, |mut row, e| {
                row.push_bind(e.user_id)
                    .push_bind(e.pos)
                    .push_bind(e.kind)
                    .push_bind(e.chat_id)
                    .push_bind(e.reader.map(|r| r.0))
                    .push_bind(e.reader.map(|r| r.1))
                    .push_bind(e.created_at);
            });
            query.build().execute(&mut **tx).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_resend_is_looked_up_through_the_unique_index_not_by_reading_the_table() {
        let path = std::env::temp_dir().join(format!("parley-plan-{}.db", uuid::Uuid::new_v4()));
        let store = SqliteStore::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        let message = |sender_id, client_id: &str| NewMessage {
            chat_id: 1,
            sender_id,
            client_id: client_id.into(),
            body: "hi".into(),
            now: 1,
        };
        let batch =
            [message(1, "0193a4b2-0000-7000-8000-000000000001"), message(2, "0193a4b2-0000-7000-8000-000000000002")];
        let mut query = QueryBuilder::<Sqlite>::new("EXPLAIN QUERY PLAN ");
        push_resend_lookup(&mut query, &batch);
        let mut conn = store.writer().acquire().await.unwrap();
        let plan: Vec<(i64, i64, i64, String)> = query.build_query_as().fetch_all(&mut *conn).await.unwrap();
        let steps: Vec<&str> = plan.iter().map(|(.., detail)| detail.as_str()).collect();
        assert!(
            steps
                .iter()
                .any(|s| s.starts_with("SEARCH messages USING INDEX") && s.contains("client_id=? AND sender_id=?")),
            "{steps:?}"
        );
        assert!(!steps.iter().any(|s| s.starts_with("SCAN messages")), "{steps:?}");
        drop(conn);
        drop(store);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[tokio::test]
    async fn a_syncs_binary_search_probes_the_chats_seq_index_and_never_reads_a_chat_through() {
        let path = std::env::temp_dir().join(format!("parley-plan-{}.db", uuid::Uuid::new_v4()));
        let store = SqliteStore::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        let mut conn = store.reader().acquire().await.unwrap();
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!("EXPLAIN QUERY PLAN {CHATS_AFTER}"))
            .bind(1_i64)
            .bind(0_i64)
            .bind(10_i64)
            .bind(10_i64)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        let steps: Vec<&str> = plan.iter().map(|(.., detail)| detail.as_str()).collect();
        let probes: Vec<&&str> = steps.iter().filter(|s| s.contains(" m ") || s.ends_with(" m")).collect();
        assert_eq!(probes.len(), 2, "the first probe and a step's: {steps:?}");
        assert!(
            probes.iter().all(|s| s.starts_with("SEARCH m USING COVERING INDEX") && s.contains("(chat_id=? AND seq>?)")),
            "{steps:?}"
        );
        drop(conn);
        drop(store);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
