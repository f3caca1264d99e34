//! The embedded default: one SQLite file, so one command runs Parley anywhere.
use std::{collections::HashMap, str::FromStr, time::Duration};

use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    Connection, QueryBuilder, Sqlite, SqliteConnection, SqlitePool,
};

use super::{
    sql::{
        batch_members_select, chat_query, impl_store, BatchMember, BatchWrite, ChatAfter, MembersMemory, NewEvent,
        Written, REACH_OUT,
    },
    MessageRecord, NewMessage, StoreError, StoreResult, Unavailable,
};

/// The WAL is checkpointed (its pages copied back into the database file, which is then flushed)
/// by the commit that takes it past this many pages, ~12 MiB. SQLite's 1,000 copied the same hot
/// pages back every few commits when a batch dirtied hundreds of them (10,000 then: 33-36k ->
/// 40-43k messages/s); now that a batch dirties a few dozen, a shorter WAL is cheaper to look
/// pages up in and quicker to checkpoint: p99 at a steady 10,000/s lower in 8 runs of 9 than
/// with 10,000, full speed the same (docs/BENCHMARKS.md, item 35).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 3_000;

/// SQLite allows one writer at a time. Writes go through a single connection, so they queue in
/// the pool instead of failing with `SQLITE_BUSY`; reads use several connections, which WAL lets
/// run beside the writer. Batches of messages are written on a connection and thread of their
/// own ([`BatchThread`]) while they hold the pool's one writer, so they too write alone.
pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    batches: BatchThread,
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
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
            .busy_timeout(Duration::from_secs(10));
        if let Some(parent) = options.get_filename().parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
            }
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // A ping would be a round trip to the connection's thread before every batch, and
            // tells nothing of a database in this process.
            .test_before_acquire(false)
            .after_release(|conn, _| Box::pin(out_of_transaction(conn)))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("../migrations/sqlite").run(&writer).await?;
        let batches = BatchThread::open(options.get_filename())?;
        let reader = SqlitePoolOptions::new().max_connections(8).connect_with(options.read_only(true)).await?;
        Ok(Self { reader, writer, batches, members: MembersMemory::default() })
    }

    /// SQLite takes one writer at a time, and Parley gives it one connection for it.
    const MAX_WRITERS: usize = 1;

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// The one writer connection, held while a batch of messages is written on its own thread:
    /// every write of SQLite queues for it.
    async fn batch_connection(&self) -> StoreResult<SqliteBatch<'_>> {
        Ok(SqliteBatch { _writer: self.writer.acquire().await?, thread: &self.batches })
    }

    /// The writer back to the pool, where the other writes wait for it.
    fn keep_batch_connection(&self, batch: SqliteBatch<'_>) {
        drop(batch);
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

impl_store!(SqliteStore, Sqlite, "sqlite", SqliteBatch<'_>);

/// The stored messages of `pairs` (`client_id`, sender) pairs, each found through the unique
/// index on the pair (the test below reads the query's plan: a scan would read every message
/// ever sent): a statement with `2 * pairs` parameters, a pair's two in turn.
fn resend_lookup(pairs: usize) -> String {
    let mut sql = String::from("SELECT * FROM messages WHERE (client_id, sender_id) IN (VALUES ");
    push_list(&mut sql, pairs, "(?, ?)");
    sql.push(')');
    sql
}

/// Statements built for at most this many rows (or chats) are kept prepared between batches; a
/// larger one is prepared for its batch alone. The shapes of small batches repeat and their
/// preparing would be a fair part of their cost; a large batch's rows dwarf it, and every large
/// shape kept cost memory (a cache of 256 of them held 55–75 MiB more after a run at full speed).
const CACHED_STATEMENT_ROWS: usize = 64;

/// Runs `f` on `sql`, prepared once and kept if it is for at most [`CACHED_STATEMENT_ROWS`] rows.
fn with_statement<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    rows: usize,
    f: impl FnOnce(&mut rusqlite::Statement<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    if rows <= CACHED_STATEMENT_ROWS {
        f(&mut *conn.prepare_cached(sql)?)
    } else {
        f(&mut conn.prepare(sql)?)
    }
}

/// Appends `count` copies of `item` (a statement's placeholders), separated by commas.
fn push_list(sql: &mut String, count: usize, item: &str) {
    for k in 0..count {
        if k > 0 {
            sql.push_str(", ");
        }
        sql.push_str(item);
    }
}

/// A batch's hold on SQLite: the pool's one writer, held so that no other write runs meanwhile,
/// and the thread its statements run on.
pub struct SqliteBatch<'s> {
    _writer: sqlx::pool::PoolConnection<Sqlite>,
    thread: &'s BatchThread,
}

/// The connection batches of messages are written through, on a thread of its own, and the way
/// to it: a batch's statements run there as one job, a hand-off to the thread and back, where
/// sqlx's connection thread takes one for each statement (seven a batch: the members, `BEGIN`,
/// the clock, the chats, the messages, `COMMIT` and the pool's ping). Each hand-off wakes a
/// thread on each side, and on a machine whose cores are busy each waits for one: at a steady
/// 10,000 messages/s they were most of a batch's time (docs/BENCHMARKS.md, item 34).
struct BatchThread {
    jobs: std::sync::mpsc::Sender<BatchJob>,
}

type BatchJob = Box<dyn FnOnce(&mut rusqlite::Connection) + Send>;

impl BatchThread {
    /// Opens the database file again (the migrations have run) with the settings of the pools.
    fn open(path: &std::path::Path) -> StoreResult<Self> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
        // A statement per batch size up to CACHED_STATEMENT_ROWS for the inserts, the chats'
        // counters, the members and the resends' lookup, and the few of fixed shape.
        conn.set_prepared_statement_cache_capacity(4 * CACHED_STATEMENT_ROWS + 8);
        let (jobs, queue) = std::sync::mpsc::channel::<BatchJob>();
        std::thread::Builder::new()
            .name("sqlite-batches".into())
            .spawn(move || {
                let mut conn = conn;
                // Ends when the store, and with it the sender, is dropped.
                for job in queue {
                    // A job that panics fails its own batch only (its answer is dropped, and a
                    // transaction it left open rolls back as it unwinds); the thread goes on.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut conn)));
                }
            })
            .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        Ok(Self { jobs })
    }

    /// Runs `job` on the thread and waits for its answer.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut rusqlite::Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let gone = || StoreError::Unavailable(Unavailable::Unreachable("SQLite's batch thread has stopped".into()));
        self.jobs
            .send(Box::new(move |conn| {
                let _ = answer.send(job(conn));
            }))
            .map_err(|_| gone())?;
        answered.await.map_err(|_| gone())?
    }
}

/// A `messages` row, its columns by name.
fn message_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRecord> {
    Ok(MessageRecord {
        id: row.get("id")?,
        chat_id: row.get("chat_id")?,
        seq: row.get("seq")?,
        sender_id: row.get("sender_id")?,
        client_id: row.get("client_id")?,
        body: row.get("body")?,
        created_at: row.get("created_at")?,
    })
}

/// Inserts the messages, ids and all, in statements of up to [`MESSAGES_PER_INSERT`] rows.
/// Nothing comes back: whole rows (every body) were a third of the insert's time at full speed
/// when they did (docs/BENCHMARKS.md).
fn insert_messages(tx: &rusqlite::Transaction<'_>, messages: &[&MessageRecord]) -> StoreResult<()> {
    for chunk in messages.chunks(MESSAGES_PER_INSERT) {
        let mut sql =
            String::from("INSERT INTO messages (id, chat_id, seq, sender_id, client_id, body, created_at) VALUES ");
        push_list(&mut sql, chunk.len(), "(?, ?, ?, ?, ?, ?, ?)");
        let params = chunk.iter().flat_map(|m| {
            [&m.id as &dyn rusqlite::ToSql, &m.chat_id, &m.seq, &m.sender_id, &m.client_id, &m.body, &m.created_at]
        });
        with_statement(tx, &sql, chunk.len(), |statement| statement.execute(rusqlite::params_from_iter(params)))?;
    }
    Ok(())
}

/// Moves the batch's chats' counters in one statement (`last_seq` by their messages, `last_pos`
/// to their last message's position, `last_activity_at`); returns each chat's new `last_seq`;
/// `Retry` if a chat is gone.
fn bump_chats(tx: &rusqlite::Transaction<'_>, w: &BatchWrite<'_>, clock_before: i64) -> StoreResult<HashMap<i64, i64>> {
    let chats = w.by_chat.len();
    let mut sql = String::from("UPDATE chats SET last_seq = last_seq + CASE id");
    sql.push_str(&" WHEN ? THEN ?".repeat(chats));
    sql.push_str(" END, last_pos = CASE id");
    sql.push_str(&" WHEN ? THEN ?".repeat(chats));
    sql.push_str(" END, last_activity_at = ? WHERE id IN (");
    push_list(&mut sql, chats, "?");
    sql.push_str(") RETURNING id, last_seq");
    let mut params: Vec<i64> = Vec::with_capacity(5 * chats + 1);
    for (&id, list) in &w.by_chat {
        params.extend([id, list.len() as i64]);
    }
    for (&id, rank) in w.by_chat.keys().zip(w.last_ranks()) {
        params.extend([id, clock_before + rank]);
    }
    params.push(w.now);
    params.extend(w.by_chat.keys());
    let rows: HashMap<i64, i64> = with_statement(tx, &sql, chats, |statement| {
        statement.query_map(rusqlite::params_from_iter(&params), |row| Ok((row.get(0)?, row.get(1)?)))?.collect()
    })?;
    if rows.len() < chats {
        // A chat went away under a concurrent transaction (deleted with its last member's
        // account): the next attempt sees that before it writes.
        return Err(StoreError::Retry);
    }
    Ok(rows)
}

/// `SqliteStore::chats_after`'s binary search: `$1` the user, `$2` the cursor, `$3` the clock,
/// `$4` the limit. The answer, the `seq` of a chat's first message past the cursor, is kept in
/// `[lo, hi]`. It starts as the chat's last `last_pos - $2` messages at most, since each of those
/// past the cursor has a position of its own in `($2, last_pos]`: a device catching up, its
/// cursor near the end, searches a few messages of each chat, a replay from the start all of
/// them. A step moves `lo` past the midpoint when the midpoint's message is at or before the
/// cursor, else `hi` to it, and probes its new midpoint (written out from the old `lo` and `hi`,
/// as a recursive step can read only its row); each row carries the position of the first
/// message at or past its midpoint, `mid_pos`, which is the answer's when `lo = hi`. `lo <= hi`
/// holds throughout, and a chat's `last_pos > $2` means its last message is past the cursor, so
/// the search ends on one. It takes at most 64 steps; a chat unsettled after 128 (a mistake in the
/// above) comes back as `runaway`, and the sync fails instead of running on or leaving it out.
const CHATS_AFTER: &str = "
    WITH RECURSIVE search (chat_id, lo, hi, mid_pos, steps) AS (
        SELECT chat_id, lo, hi,
               (SELECT m.id FROM messages m
                WHERE m.chat_id = f.chat_id AND m.seq >= (f.lo + f.hi) / 2 ORDER BY m.seq LIMIT 1),
               0
        FROM (SELECT cm.chat_id, max(1, c.last_seq - (c.last_pos - $2) + 1) AS lo, c.last_seq AS hi
              FROM chat_members cm JOIN chats c ON c.id = cm.chat_id
              WHERE cm.user_id = $1 AND c.last_pos > $2) f
        UNION ALL
        SELECT s.chat_id,
               iif(s.mid_pos <= $2, (s.lo + s.hi) / 2 + 1, s.lo),
               iif(s.mid_pos <= $2, s.hi, (s.lo + s.hi) / 2),
               (SELECT m.id FROM messages m
                WHERE m.chat_id = s.chat_id
                  AND m.seq >= iif(s.mid_pos <= $2, ((s.lo + s.hi) / 2 + 1 + s.hi) / 2,
                                                    (s.lo + (s.lo + s.hi) / 2) / 2)
                ORDER BY m.seq LIMIT 1),
               s.steps + 1
        FROM search s WHERE s.lo < s.hi AND s.steps < 128
    )
    SELECT chat_id, mid_pos AS first_pos, lo AS first_seq, lo < hi AS runaway FROM search
    WHERE (lo = hi AND mid_pos <= $3) OR (lo < hi AND steps = 128) ORDER BY runaway DESC, mid_pos LIMIT $4";

/// Rows of events per statement: seven parameters each, under SQLite's limit of 32,766 per
/// statement.
const EVENTS_PER_INSERT: usize = 2048;
/// Rows of messages per statement: seven parameters each, under the same limit.
const MESSAGES_PER_INSERT: usize = 4096;

/// The statements of a batch of messages, as multi-row statements built to the batch's size:
/// SQLite runs in this process, so a statement costs its execution, not a round trip, and
/// parsing a new shape is cheap next to writing the rows.
impl SqliteStore {
    async fn committed_messages(
        batch: &mut SqliteBatch<'_>,
        messages: &[NewMessage],
    ) -> StoreResult<Vec<MessageRecord>> {
        let pairs: Vec<(String, i64)> = messages.iter().map(|m| (m.client_id.clone(), m.sender_id)).collect();
        batch
            .thread
            .run(move |conn| {
                let params = pairs.iter().flat_map(|(client_id, sender_id)| {
                    [client_id as &dyn rusqlite::ToSql, sender_id as &dyn rusqlite::ToSql]
                });
                Ok(with_statement(conn, &resend_lookup(pairs.len()), pairs.len(), |statement| {
                    statement.query_map(rusqlite::params_from_iter(params), message_from_row)?.collect()
                })?)
            })
            .await
    }

    /// The members of the chats, each row with the membership epoch of the same snapshot.
    async fn batch_members(batch: &mut SqliteBatch<'_>, chat_ids: &[i64]) -> StoreResult<Vec<BatchMember>> {
        let chat_ids = chat_ids.to_vec();
        batch
            .thread
            .run(move |conn| {
                let mut sql = String::from(concat!(batch_members_select!(), " WHERE cm.chat_id IN ("));
                push_list(&mut sql, chat_ids.len(), "?");
                sql.push_str(") ORDER BY cm.user_id");
                Ok(with_statement(conn, &sql, chat_ids.len(), |statement| {
                    statement
                        .query_map(rusqlite::params_from_iter(&chat_ids), |row| {
                            Ok(BatchMember {
                                chat_id: row.get("chat_id")?,
                                user_id: row.get("user_id")?,
                                reached_out: row.get("reached_out")?,
                                blocks_friend: row.get("blocks_friend")?,
                                gone: row.get("gone")?,
                                epoch: row.get("epoch")?,
                            })
                        })?
                        .collect()
                })?)
            })
            .await
    }

    /// The user's chats with a message in `(since, up_to]`, by their first one there, at most
    /// `limit`.
    ///
    /// SQLite keeps one index of a chat's messages, by `seq` (each commit writes a leaf of every
    /// per-chat index for each chat in its batch, and a second one by position cost a third of
    /// the bytes a commit wrote: docs/BENCHMARKS.md, item 32). A chat's positions rise with its
    /// `seq`, so its first message past `since` is found by a binary search over `seq`, a probe of
    /// that index per step ([`CHATS_AFTER`]): ~log2 of the chat's messages past `since` at most,
    /// ~20 for a replay of a chat of a million messages.
    async fn chats_after(
        conn: &mut SqliteConnection,
        user_id: i64,
        since: i64,
        up_to: i64,
        limit: i64,
    ) -> StoreResult<Vec<ChatAfter>> {
        let rows: Vec<(i64, i64, i64, bool)> =
            sqlx::query_as(CHATS_AFTER).bind(user_id).bind(since).bind(up_to).bind(limit).fetch_all(conn).await?;
        rows.into_iter()
            .map(|(chat_id, first_pos, first_seq, runaway)| match runaway {
                false => Ok(ChatAfter { chat_id, first_pos, first_seq }),
                true => {
                    Err(StoreError::Corrupt(format!("the search for chat {chat_id}'s first message did not settle")))
                }
            })
            .collect()
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
    /// then the messages, all in one job of the batch thread. SQLite has one writer, so there is
    /// no lock order to keep.
    ///
    /// With `members_epoch` (the members came from memory) the clock's statement also reads the
    /// membership epoch; if it moved, the transaction is rolled back, nothing stored and no
    /// position taken, and the batch fails with `MembersChanged`. The first write takes SQLite's
    /// one write lock, so the epoch cannot move after that read before the commit.
    async fn write_batch(
        batch: &mut SqliteBatch<'_>,
        w: &BatchWrite<'_>,
    ) -> StoreResult<(Vec<Written>, Vec<(i64, i64)>)> {
        // The job owns what it writes: the thread outlives any borrow.
        let messages = w.batch.to_vec();
        let (by_chat, first_words, now, members_epoch) =
            (w.by_chat.clone(), w.first_words.clone(), w.now, w.members_epoch);
        batch
            .thread
            .run(move |conn| {
                let w = BatchWrite { batch: &messages, by_chat, first_words, now, members_epoch };
                let tx = conn.transaction()?;
                let taken = w.len() as i64;
                let (clock, epoch): (i64, i64) = tx
                    .prepare_cached(
                        "UPDATE clock SET value = value + ?1 WHERE id = 1
                         RETURNING value, (SELECT value FROM membership_epoch WHERE id = 1)",
                    )?
                    .query_row([taken], |row| Ok((row.get(0)?, row.get(1)?)))?;
                if w.members_epoch.is_some_and(|remembered| remembered != epoch) {
                    tx.rollback()?;
                    return Err(StoreError::MembersChanged);
                }
                let clock_before = clock - taken;
                let last_seq = bump_chats(&tx, &w, clock_before)?;
                let seq_before: Vec<i64> =
                    w.by_chat.iter().map(|(chat, list)| last_seq[chat] - list.len() as i64).collect();
                let written = w.written(&seq_before, clock_before);
                let rows: Vec<&MessageRecord> = written.iter().flatten().collect();
                insert_messages(&tx, &rows)?;
                // Rare: one statement per sender and chat.
                let mut reached_out = Vec::new();
                for &(chat_id, user_id) in &w.first_words {
                    let turned = tx.prepare_cached(REACH_OUT)?.execute([chat_id, user_id])?;
                    if turned == 1 {
                        reached_out.push((chat_id, user_id));
                    }
                }
                tx.commit()?;
                Ok((written, reached_out))
            })
            .await
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
        let sql = format!("EXPLAIN QUERY PLAN {}", resend_lookup(batch.len()));
        let mut query = sqlx::query_as(&sql);
        for m in &batch {
            query = query.bind(m.client_id.as_str()).bind(m.sender_id);
        }
        let mut conn = store.writer().acquire().await.unwrap();
        let plan: Vec<(i64, i64, i64, String)> = query.fetch_all(&mut *conn).await.unwrap();
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
            probes
                .iter()
                .all(|s| s.starts_with("SEARCH m USING COVERING INDEX") && s.contains("(chat_id=? AND seq>?)")),
            "{steps:?}"
        );
        drop(conn);
        drop(store);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
