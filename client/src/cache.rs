//! The local cache: one SQLite file (WAL, foreign keys on) holding one account's chats, messages,
//! read markers, sync cursor and outbox. Every batch of planner operations is applied in one
//! transaction together with the cursor it advances to.
use std::{path::Path, str::FromStr};

use parley_common::{Chat, Friend, Message, User};
use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    Row, SqlitePool,
};

use crate::planner::{CacheOp, CaughtUpView, OutboxItem};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("local cache: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("local cache migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// An operation names a chat the cache does not hold yet.
    #[error("chat {0} is not in the local cache")]
    UnknownChat(i64),
}

pub type CacheResult<T> = Result<T, CacheError>;

#[derive(Clone)]
pub struct Cache {
    pool: SqlitePool,
}

/// A page of history: newest first, like the server's.
pub struct HistoryPage {
    pub messages: Vec<Message>,
    pub more: bool,
}

impl Cache {
    pub async fn open(path: &Path) -> CacheResult<Self> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        // One connection: the app is the only writer, and reads are small.
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Cache { pool })
    }

    async fn meta(&self, key: &str) -> CacheResult<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?").bind(key).fetch_optional(&self.pool).await?)
    }

    async fn set_meta(&self, key: &str, value: &str) -> CacheResult<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn cursor(&self) -> CacheResult<Option<String>> {
        self.meta("cursor").await
    }

    /// The account the cache belongs to.
    pub async fn me(&self) -> CacheResult<Option<User>> {
        Ok(self.meta("me").await?.and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// Makes the cache `user`'s: another account's data is dropped first.
    pub async fn claim(&self, user: &User) -> CacheResult<()> {
        if self.me().await?.is_some_and(|me| me.id != user.id) {
            self.clear().await?;
        }
        self.set_meta("me", &serde_json::to_string(user).expect("user serializes")).await
    }

    /// Forgets everything (logout, another server).
    pub async fn clear(&self) -> CacheResult<()> {
        let mut tx = self.pool.begin().await?;
        for table in ["outbox", "messages", "chats", "meta"] {
            sqlx::query(&format!("DELETE FROM {table}")).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Applies the writes of one planner step atomically.
    pub async fn apply(&self, ops: &[CacheOp]) -> CacheResult<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for op in ops {
            match op {
                CacheOp::PutChat(chat) => put_chat(&mut tx, chat).await?,
                CacheOp::PutMessage(message) => put_message(&mut tx, message).await?,
                CacheOp::OwnRead { chat_id, up_to } => {
                    sqlx::query(
                        "UPDATE chats SET read_up_to = MAX(read_up_to, ?1), read_confirmed = MAX(read_confirmed, ?1)
                         WHERE id = ?2",
                    )
                    .bind(up_to)
                    .bind(chat_id)
                    .execute(&mut *tx)
                    .await?;
                }
                CacheOp::FriendRead { chat_id, up_to } => {
                    sqlx::query("UPDATE chats SET friend_read_up_to = MAX(friend_read_up_to, ?) WHERE id = ?")
                        .bind(up_to)
                        .bind(chat_id)
                        .execute(&mut *tx)
                        .await?;
                }
                CacheOp::Presence { user_id, online, last_seen } => {
                    // Offline with no last seen means it is hidden from us (a block, a privacy
                    // setting): the last seen we had goes too.
                    sqlx::query(
                        "UPDATE chats SET friend_online = ?1,
                                          friend_last_seen = CASE WHEN ?1 THEN friend_last_seen ELSE ?2 END
                         WHERE friend_id = ?3",
                    )
                    .bind(online)
                    .bind(last_seen)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                }
                CacheOp::SetCursor(cursor) => {
                    sqlx::query(
                        "INSERT INTO meta (key, value) VALUES ('cursor', ?)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    )
                    .bind(cursor)
                    .execute(&mut *tx)
                    .await?;
                }
                CacheOp::DropOutbox(client_id) => {
                    sqlx::query("DELETE FROM outbox WHERE client_id = ?").bind(client_id).execute(&mut *tx).await?;
                }
                CacheOp::ForgetHistory => {
                    sqlx::query("DELETE FROM messages").execute(&mut *tx).await?;
                    // Reads made here and not yet confirmed go too: they count in a history the
                    // server no longer has, and sent now they would mark read what came since.
                    sqlx::query("UPDATE chats SET read_up_to = 0, read_confirmed = 0, friend_read_up_to = 0")
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn has_chat(&self, chat_id: i64) -> CacheResult<bool> {
        Ok(sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM chats WHERE id = ?")
            .bind(chat_id)
            .fetch_one(&self.pool)
            .await?
            > 0)
    }

    /// Marks the chats with `friend_id` as blocked by us, or not.
    pub async fn set_blocked(&self, friend_id: i64, blocked: bool) -> CacheResult<()> {
        sqlx::query("UPDATE chats SET blocked = ? WHERE friend_id = ?")
            .bind(blocked)
            .bind(friend_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The chats, most recent activity first, with unread counts as this device knows them.
    pub async fn chats(&self) -> CacheResult<Vec<Chat>> {
        let me = self.me().await?.map_or(0, |u| u.id);
        let rows = sqlx::query(
            "SELECT c.*,
                    (SELECT COUNT(*) FROM messages m
                      WHERE m.chat_id = c.id AND m.sender_id <> ?1 AND m.seq > c.read_up_to) AS unread,
                    (SELECT MAX(seq) FROM messages m WHERE m.chat_id = c.id) AS last_seq,
                    COALESCE((SELECT MAX(created_at) FROM messages m WHERE m.chat_id = c.id), c.created_at)
                      AS activity
               FROM chats c
              ORDER BY activity DESC, c.id DESC",
        )
        .bind(me)
        .fetch_all(&self.pool)
        .await?;
        let mut chats = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.get("id");
            let last_message = match row.get::<Option<i64>, _>("last_seq") {
                Some(seq) => sqlx::query("SELECT * FROM messages WHERE chat_id = ? AND seq = ?")
                    .bind(id)
                    .bind(seq)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(|r| message_of(&r)),
                None => None,
            };
            chats.push(Chat {
                id,
                friend: Friend {
                    id: row.get("friend_id"),
                    email: row.get("friend_email"),
                    display_name: row.get("friend_name"),
                    online: row.get("friend_online"),
                    last_seen: row.get("friend_last_seen"),
                    deleted: row.get("friend_deleted"),
                },
                last_message,
                unread_count: row.get("unread"),
                read_up_to: row.get("read_up_to"),
                friend_read_up_to: row.get("friend_read_up_to"),
                blocked: row.get("blocked"),
            });
        }
        Ok(chats)
    }

    /// Up to `limit` messages before `seq` `before` (the newest without it), newest first.
    pub async fn history(&self, chat_id: i64, before: Option<i64>, limit: i64) -> CacheResult<HistoryPage> {
        let rows = sqlx::query("SELECT * FROM messages WHERE chat_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?")
            .bind(chat_id)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit + 1)
            .fetch_all(&self.pool)
            .await?;
        let more = rows.len() as i64 > limit;
        let messages = rows.iter().take(limit as usize).map(message_of).collect();
        Ok(HistoryPage { messages, more })
    }

    /// Every message of a chat, oldest first.
    pub async fn all_messages(&self, chat_id: i64) -> CacheResult<Vec<Message>> {
        let rows = sqlx::query("SELECT * FROM messages WHERE chat_id = ? ORDER BY seq")
            .bind(chat_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(message_of).collect())
    }

    /// Puts a message written here in the outbox (again: the same `client_id` is kept once).
    pub async fn add_to_outbox(&self, item: &OutboxItem) -> CacheResult<()> {
        if !self.has_chat(item.chat_id).await? {
            return Err(CacheError::UnknownChat(item.chat_id));
        }
        sqlx::query(
            "INSERT INTO outbox (client_id, chat_id, body, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (client_id) DO NOTHING",
        )
        .bind(&item.client_id)
        .bind(item.chat_id)
        .bind(&item.body)
        .bind(crate::now_rfc3339())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn outbox(&self) -> CacheResult<Vec<OutboxItem>> {
        let mut conn = self.pool.acquire().await?;
        outbox_items(&mut conn).await
    }

    /// What the end of a catch-up needs: the outbox, which of it the server already has, and the
    /// read markers it has not confirmed.
    pub async fn caught_up_view(&self) -> CacheResult<CaughtUpView> {
        let me = self.me().await?.map_or(0, |u| u.id);
        let committed = sqlx::query(
            "SELECT m.* FROM outbox o JOIN messages m ON m.client_id = o.client_id AND m.sender_id = ?
              ORDER BY o.position",
        )
        .bind(me)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let message = message_of(r);
            (message.client_id.clone(), message)
        })
        .collect();
        let unconfirmed_reads = sqlx::query("SELECT id, read_up_to FROM chats WHERE read_up_to > read_confirmed")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| (r.get("id"), r.get("read_up_to")))
            .collect();
        Ok(CaughtUpView { outbox: self.outbox().await?, committed, unconfirmed_reads })
    }

    /// Removes the chats not in `keep` (the server's list after its database was restored: chats
    /// started after the backup are gone there), with their messages and what waits in the
    /// outbox for them, which can no longer be delivered; returns those outbox items.
    pub async fn forget_chats_except(&self, keep: &[i64]) -> CacheResult<Vec<OutboxItem>> {
        let mut tx = self.pool.begin().await?;
        let gone: Vec<i64> = sqlx::query_scalar::<_, i64>("SELECT id FROM chats")
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .filter(|id| !keep.contains(id))
            .collect();
        let dropped: Vec<OutboxItem> =
            outbox_items(&mut tx).await?.into_iter().filter(|item| gone.contains(&item.chat_id)).collect();
        for chat_id in gone {
            // Its messages and outbox rows go with it (ON DELETE CASCADE).
            sqlx::query("DELETE FROM chats WHERE id = ?").bind(chat_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(dropped)
    }

    /// The person read the chat up to `up_to` here; the server hears of it when it can.
    pub async fn mark_read(&self, chat_id: i64, up_to: i64) -> CacheResult<()> {
        sqlx::query("UPDATE chats SET read_up_to = MAX(read_up_to, ?) WHERE id = ?")
            .bind(up_to)
            .bind(chat_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Messages from friends not yet read, over all chats.
    pub async fn unread_total(&self) -> CacheResult<i64> {
        let me = self.me().await?.map_or(0, |u| u.id);
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages m JOIN chats c ON c.id = m.chat_id
              WHERE m.sender_id <> ? AND m.seq > c.read_up_to",
        )
        .bind(me)
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn put_chat(tx: &mut sqlx::SqliteConnection, chat: &Chat) -> CacheResult<()> {
    sqlx::query(
        "INSERT INTO chats (id, friend_id, friend_email, friend_name, friend_online, friend_last_seen,
                            read_up_to, read_confirmed, friend_read_up_to, created_at, blocked, friend_deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (id) DO UPDATE SET
             friend_email = excluded.friend_email,
             friend_name = excluded.friend_name,
             friend_online = excluded.friend_online,
             -- The server's view: no last seen may mean that it is hidden from us now.
             friend_last_seen = excluded.friend_last_seen,
             blocked = excluded.blocked,
             friend_deleted = excluded.friend_deleted,
             read_up_to = MAX(chats.read_up_to, excluded.read_up_to),
             read_confirmed = MAX(chats.read_confirmed, excluded.read_confirmed),
             friend_read_up_to = MAX(chats.friend_read_up_to, excluded.friend_read_up_to)",
    )
    .bind(chat.id)
    .bind(chat.friend.id)
    .bind(&chat.friend.email)
    .bind(&chat.friend.display_name)
    .bind(chat.friend.online)
    .bind(&chat.friend.last_seen)
    .bind(chat.read_up_to)
    .bind(chat.friend_read_up_to)
    .bind(crate::now_rfc3339())
    .bind(chat.blocked)
    .bind(chat.friend.deleted)
    .execute(&mut *tx)
    .await?;
    if let Some(message) = &chat.last_message {
        put_message(tx, message).await?;
    }
    Ok(())
}

async fn put_message(tx: &mut sqlx::SqliteConnection, message: &Message) -> CacheResult<()> {
    let known: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM chats WHERE id = ?").bind(message.chat_id).fetch_one(&mut *tx).await?;
    if known == 0 {
        return Err(CacheError::UnknownChat(message.chat_id));
    }
    sqlx::query(
        "INSERT INTO messages (id, chat_id, seq, sender_id, client_id, body, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(message.id)
    .bind(message.chat_id)
    .bind(message.seq)
    .bind(message.sender_id)
    .bind(&message.client_id)
    .bind(&message.body)
    .bind(&message.created_at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// What waits in the outbox, in the order it was written.
async fn outbox_items(conn: &mut sqlx::SqliteConnection) -> CacheResult<Vec<OutboxItem>> {
    let rows = sqlx::query("SELECT client_id, chat_id, body FROM outbox ORDER BY position").fetch_all(conn).await?;
    Ok(rows
        .iter()
        .map(|r| OutboxItem { client_id: r.get("client_id"), chat_id: r.get("chat_id"), body: r.get("body") })
        .collect())
}

fn message_of(row: &sqlx::sqlite::SqliteRow) -> Message {
    Message {
        id: row.get("id"),
        chat_id: row.get("chat_id"),
        seq: row.get("seq"),
        sender_id: row.get("sender_id"),
        client_id: row.get("client_id"),
        body: row.get("body"),
        created_at: row.get("created_at"),
    }
}
