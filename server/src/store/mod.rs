//! Persistence. The `Store` trait is all the rest of the server knows of the database; it has one
//! implementation per backend (`postgres`, `sqlite`) whose shared SQL lives in `sql.rs`.
use async_trait::async_trait;

mod postgres;
pub(crate) mod sql;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was hit (e.g. an email that already has an account).
    #[error("conflict")]
    Conflict,
    #[error("database: {0}")]
    Database(#[source] sqlx::Error),
    /// A statement of SQLite's batch thread failed (store/sqlite.rs).
    #[error("database: {0}")]
    Sqlite(#[source] rusqlite::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database gave up the transaction to break a deadlock or a serialization conflict;
    /// running it again is safe.
    #[error("transaction aborted by the database; retry")]
    Retry,
    /// Chats' members changed after a batch took them from memory (Postgres keeps them between
    /// batches); nothing was written, and the next attempt reads them from the database.
    #[error("chat members changed; read them again")]
    MembersChanged,
    /// A row breaks an invariant of the schema.
    #[error("inconsistent data: {0}")]
    Corrupt(String),
    #[error("unsupported database URL (expected postgres:// or sqlite://): {0}")]
    UnsupportedUrl(String),
    /// The database cannot take the request now, through no fault of the request: the same
    /// request can succeed once the operator or the database has recovered. A write that failed
    /// this way may still have committed (the answer to a COMMIT can be lost with the
    /// connection), which is why clients resend with the same `client_id` rather than assume.
    #[error(transparent)]
    Unavailable(Unavailable),
}

/// Why the database cannot be used right now. The detail is the driver's, for the log only.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unavailable {
    /// No connection: the database is down, restarting, or refusing connections.
    #[error("the database cannot be reached: {0}")]
    Unreachable(String),
    /// It answers but refuses writes (a read-only file or file system, a read-only Postgres).
    #[error("the database is read-only: {0}")]
    ReadOnly(String),
    /// The disk it writes to is full.
    #[error("the database's storage is full: {0}")]
    Full(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if let Some(unavailable) = unavailability(&err) {
            return StoreError::Unavailable(unavailable);
        }
        match &err {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            // Postgres: deadlock_detected, serialization_failure.
            sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")) => StoreError::Retry,
            _ => StoreError::Database(err),
        }
    }
}

/// SQLite's batch thread's errors (store/sqlite.rs), told apart as sqlx's are below.
impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        let detail = err.to_string();
        match &err {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
            rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
                ErrorCode::ConstraintViolation
                    if matches!(
                        failure.extended_code,
                        rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    ) =>
                {
                    StoreError::Conflict
                }
                ErrorCode::ReadOnly => StoreError::Unavailable(Unavailable::ReadOnly(detail)),
                ErrorCode::DiskFull => StoreError::Unavailable(Unavailable::Full(detail)),
                ErrorCode::SystemIoFailure => StoreError::Unavailable(Unavailable::Unreachable(detail)),
                _ => StoreError::Sqlite(err),
            },
            _ => StoreError::Sqlite(err),
        }
    }
}

/// The one place that tells a database which is away or cannot write from a failed query.
/// Errors left out (bad SQL, constraint violations, TLS or authentication settings) are bugs or
/// configuration that waiting would not fix.
fn unavailability(err: &sqlx::Error) -> Option<Unavailable> {
    let detail = err.to_string();
    match err {
        // A dropped or refused connection, a reply cut short, no connection free in time.
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            Some(Unavailable::Unreachable(detail))
        }
        sqlx::Error::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                let code = pg.code();
                match code {
                    // read_only_sql_transaction: default_transaction_read_only, a hot standby.
                    "25006" => Some(Unavailable::ReadOnly(detail)),
                    // disk_full.
                    "53100" => Some(Unavailable::Full(detail)),
                    // Class 08, connection exceptions; admin_shutdown, crash_shutdown,
                    // cannot_connect_now; too_many_connections.
                    _ if code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300") => {
                        Some(Unavailable::Unreachable(detail))
                    }
                    _ => None,
                }
            } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // Extended result codes: the primary code is the low byte.
                let code = db.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or_default() & 0xff;
                match code {
                    // SQLITE_READONLY.
                    8 => Some(Unavailable::ReadOnly(detail)),
                    // SQLITE_FULL: the disk (or the file system's quota) is full.
                    13 => Some(Unavailable::Full(detail)),
                    // SQLITE_IOERR: a failed read, write or fsync of the file, which a full or
                    // failing disk also gives.
                    10 => Some(Unavailable::Unreachable(detail)),
                    _ => None,
                }
            } else {
                None
            }
        }
        _ => None,
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Times are Unix milliseconds (UTC) in both databases.
pub type Millis = i64;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRecord {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub created_at: Millis,
}

/// A password reset waiting for its code (sealed with the server key, bound to the reset's id).
#[derive(Clone, sqlx::FromRow)]
pub struct PasswordResetRecord {
    pub id: String,
    pub user_id: i64,
    pub code_mac: Vec<u8>,
    pub code_expires_at: Millis,
    pub attempts: i64,
    pub created_at: Millis,
}

impl std::fmt::Debug for PasswordResetRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordResetRecord")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// A signup waiting for its code. `code_mac` is the code sealed with the server key.
#[derive(Clone, sqlx::FromRow)]
pub struct SignupRecord {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub code_mac: Vec<u8>,
    pub code_expires_at: Millis,
    pub code_sent_at: Millis,
    pub codes_sent: i64,
    pub attempts: i64,
    pub created_at: Millis,
}

impl std::fmt::Debug for SignupRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignupRecord").field("id", &self.id).field("email", &self.email).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub email: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub now: Millis,
}

/// A replacement code for a pending signup, granted only if the cool-down has passed and the
/// signup has codes left.
#[derive(Debug, Clone)]
pub struct CodeRenewal<'a> {
    pub signup_id: &'a str,
    pub code_mac: &'a [u8],
    pub expires_at: Millis,
    pub now: Millis,
    /// The previous code must have been sent at or before this time.
    pub sent_no_later_than: Millis,
    pub max_codes: i64,
}

#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub user_id: i64,
    pub token_hash: &'a [u8],
    pub user_agent: Option<&'a str>,
    pub now: Millis,
    pub expires_at: Millis,
}

/// An account made by an administrator, with a session minted for it.
#[derive(Debug, Clone)]
pub struct BulkUser {
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub token_hash: Vec<u8>,
    pub now: Millis,
    pub session_expires_at: Millis,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: i64,
    pub user_agent: Option<String>,
    pub created_at: Millis,
    pub last_used_at: Millis,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRecord {
    pub id: i64,
    pub user_id: i64,
    pub created_at: Millis,
    pub last_used_at: Millis,
    pub expires_at: Millis,
    pub revoked_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MessageRecord {
    pub id: i64,
    pub chat_id: i64,
    pub seq: i64,
    pub sender_id: i64,
    pub client_id: String,
    pub body: String,
    pub created_at: Millis,
}

/// A chat as one of its members sees it.
#[derive(Debug, Clone)]
pub struct ChatSummary {
    pub chat_id: i64,
    pub friend_id: i64,
    pub friend_email: String,
    pub friend_display_name: String,
    pub friend_last_seen_at: Option<Millis>,
    pub last_message: Option<MessageRecord>,
    pub unread_count: i64,
    pub read_up_to: i64,
    pub friend_read_up_to: i64,
    /// The member has blocked the friend.
    pub blocked: bool,
    /// The member may see the friend's presence and last seen.
    pub friend_presence_visible: bool,
    /// The friend deleted their account.
    pub friend_deleted: bool,
}

/// What deleting an account left to do outside the database.
#[derive(Debug, Clone, Default)]
pub struct DeletedAccount {
    /// The account's sessions, gone: their sockets must close.
    pub sessions: Vec<i64>,
    /// A `chat_created` event for each friend left, re-announcing the chat with "Deleted user".
    pub announced: Vec<(i64, EventPos)>,
}

/// Shown for a deleted account, wherever its name was.
pub const DELETED_USER_NAME: &str = "Deleted user";

/// How presence shows between a user and one friend (someone they share a chat with). One sees
/// a friend's presence and last seen when the friend has reached out in their chat (started it,
/// or written in it), neither of the two hides their presence, and the friend has not blocked
/// one.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PresencePair {
    pub friend_id: i64,
    /// The friend may see the user's presence and last seen.
    pub friend_sees_me: bool,
    /// The user may see the friend's.
    pub i_see_friend: bool,
    pub my_last_seen_at: Option<Millis>,
    pub friend_last_seen_at: Option<Millis>,
}

/// Someone the user has blocked.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BlockedRow {
    pub user_id: i64,
    pub email: String,
    pub display_name: String,
    pub created_at: Millis,
}

/// A user told of an event, at the event's position on the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPos {
    pub user_id: i64,
    pub pos: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Message(MessageRecord),
    ChatCreated,
    Read { reader_id: i64, up_to: i64 },
}

/// One entry of a user's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub pos: i64,
    pub chat_id: i64,
    pub kind: EventKind,
}

/// A page of a user's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    pub events: Vec<EventRecord>,
    /// The cursor after the page: the user's stream holds nothing more up to it. Past the last
    /// event when the rest of the stream up to the clock is other users' positions.
    pub next: i64,
    /// More of the stream follows `next` (up to `clock`).
    pub more: bool,
    /// The clock's value the page was read at.
    pub clock: i64,
}

#[derive(Debug, Clone)]
pub struct NewChat {
    pub chat_id: i64,
    /// Empty when the chat already existed.
    pub events: Vec<EventPos>,
    /// The asker had not reached out in this chat before (see [`PresencePair`]): the friend may
    /// see the asker's presence from now on.
    pub reached_out: bool,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub chat_id: i64,
    pub sender_id: i64,
    pub client_id: String,
    pub body: String,
    pub now: Millis,
}

#[derive(Debug, Clone)]
pub enum SendOutcome {
    /// Committed now; `events`: the members, each at the message's position. `reached_out`: the
    /// sender's first message in the chat, after which the friend may see the sender's presence.
    Created { message: MessageRecord, events: Vec<EventPos>, reached_out: bool },
    /// Committed before under the same `client_id`; `cursor` is its position (its id).
    Duplicate { message: MessageRecord, cursor: i64 },
    /// The `client_id` names another message of this sender.
    ClientIdReused,
    /// No such chat, the sender is not a member, or the other member deleted their account.
    NotMember,
    /// One member has blocked the other; nothing is stored. `by_sender` when the sender did.
    Blocked { by_sender: bool },
}

#[derive(Debug, Clone)]
pub enum ReadOutcome {
    Updated {
        up_to: i64,
        events: Vec<EventPos>,
    },
    /// The marker was already there (or past it).
    Unchanged,
    NotMember,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is, for logs and `/healthz`.
    fn backend(&self) -> &'static str;
    /// How many transactions writing messages may usefully run at once.
    fn max_writers(&self) -> usize;
    /// A round trip to the database.
    async fn ping(&self) -> StoreResult<()>;

    /// `Conflict` when the email already has an account.
    async fn create_user(&self, user: NewUser<'_>) -> StoreResult<UserRecord>;
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>>;
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>>;

    async fn create_signup(&self, signup: &SignupRecord) -> StoreResult<()>;
    async fn signup(&self, id: &str) -> StoreResult<Option<SignupRecord>>;
    async fn signups_for_email(&self, email: &str) -> StoreResult<Vec<SignupRecord>>;
    /// Spends one attempt on the signup's current code; `false` if none is left (or no signup).
    /// Atomic, so concurrent guesses cannot exceed `max_attempts`.
    async fn spend_code_attempt(&self, id: &str, max_attempts: i64) -> StoreResult<bool>;
    /// Installs a new code (attempts reset); `None` if the renewal's conditions do not hold.
    async fn renew_signup_code(&self, renewal: CodeRenewal<'_>) -> StoreResult<Option<SignupRecord>>;
    /// Turns the signup into an account with the signup's own password, and ends every other
    /// pending signup of that email, in one transaction. `NotFound` if the signup is gone,
    /// `Conflict` if the email got an account meanwhile.
    async fn complete_signup(&self, id: &str, now: Millis) -> StoreResult<UserRecord>;
    async fn delete_signup(&self, id: &str) -> StoreResult<()>;

    async fn create_session(&self, session: NewSession<'_>) -> StoreResult<i64>;
    async fn session_by_token_hash(&self, token_hash: &[u8]) -> StoreResult<Option<SessionRecord>>;
    /// Records use and slides the expiry forward.
    async fn touch_session(&self, id: i64, now: Millis, expires_at: Millis) -> StoreResult<()>;
    async fn revoke_session(&self, id: i64, now: Millis) -> StoreResult<()>;

    /// The chat between two users, created with a `chat_created` event for both if it is new; `a`,
    /// who asks for it, has reached out in it either way.
    async fn create_chat(&self, a: i64, b: i64, now: Millis) -> StoreResult<NewChat>;
    /// The user's chats, most recent activity first.
    async fn chats_for_user(&self, user_id: i64) -> StoreResult<Vec<ChatSummary>>;
    /// One chat, if the user is a member.
    async fn chat_for_user(&self, chat_id: i64, user_id: i64) -> StoreResult<Option<ChatSummary>>;
    async fn member_ids(&self, chat_id: i64) -> StoreResult<Vec<i64>>;
    /// Everyone who shares a chat with the user.
    async fn friend_ids(&self, user_id: i64) -> StoreResult<Vec<i64>>;
    /// The chat of two users, if they have one.
    async fn chat_between(&self, a: i64, b: i64) -> StoreResult<Option<i64>>;
    /// How presence shows between the user and each friend.
    async fn presence_pairs(&self, user_id: i64) -> StoreResult<Vec<PresencePair>>;
    /// Messages with `seq < before`, newest first.
    async fn messages_before(&self, chat_id: i64, before: i64, limit: i64) -> StoreResult<Vec<MessageRecord>>;
    /// Stores messages exactly once per `(sender, client_id)`, each with its chat's next `seq` and
    /// the clock's next position as its id, all in one transaction (group commit); one outcome per
    /// message, in order.
    async fn send_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<SendOutcome>>;
    /// Moves the user's read marker forward (never past the last message) with a `read` event for
    /// every member.
    async fn mark_read(&self, chat_id: i64, user_id: i64, up_to: i64, now: Millis) -> StoreResult<ReadOutcome>;
    /// The clock's value: the newest position taken. Every user's stream is in the store up to
    /// it, so it is every user's cursor now.
    async fn clock(&self) -> StoreResult<i64>;
    /// The history epoch cursors speak of (see `chats::Cursors`).
    async fn history_epoch(&self) -> StoreResult<i64>;
    /// Moves the history epoch on, after a restore; returns the new one.
    async fn advance_history_epoch(&self) -> StoreResult<i64>;
    /// The user's events after `since`, oldest first, at most `limit` of them.
    async fn events_since(&self, user_id: i64, since: i64, limit: i64) -> StoreResult<EventPage>;
    async fn set_last_seen(&self, user_id: i64, at: Millis) -> StoreResult<()>;

    async fn set_display_name(&self, user_id: i64, display_name: &str) -> StoreResult<()>;
    async fn set_password_hash(&self, user_id: i64, password_hash: &str) -> StoreResult<()>;
    /// The user's live sessions (not revoked, not expired at `now`), most recently used first.
    async fn live_sessions(&self, user_id: i64, now: Millis) -> StoreResult<Vec<SessionRow>>;
    /// Which of the sessions are live (neither revoked nor expired at `now`).
    async fn live_session_ids(&self, ids: &[i64], now: Millis) -> StoreResult<Vec<i64>>;
    /// Revokes one of the user's sessions; `false` if the user has no such live session.
    async fn revoke_session_of(&self, user_id: i64, session_id: i64, now: Millis) -> StoreResult<bool>;
    /// Revokes every live session of the user but `keep`; returns the revoked sessions' ids.
    async fn revoke_other_sessions(&self, user_id: i64, keep: i64, now: Millis) -> StoreResult<Vec<i64>>;

    /// Creates accounts, each with one session, in bulk (bots, load tests): one transaction per
    /// call, so callers pass chunks. Returns the new users' ids in order. `Conflict` if an email
    /// is taken.
    async fn create_users_with_sessions(&self, users: &[BulkUser]) -> StoreResult<Vec<i64>>;

    /// Stores a password reset, replacing any earlier one of the same user.
    async fn replace_password_reset(&self, reset: &PasswordResetRecord) -> StoreResult<()>;
    async fn password_reset(&self, id: &str) -> StoreResult<Option<PasswordResetRecord>>;
    /// Counts one attempt at the reset's code; false when none is left (or no such reset).
    async fn spend_reset_attempt(&self, id: &str, max_attempts: i64) -> StoreResult<bool>;
    /// In one transaction: the reset is used up, the password replaced, and every session of the
    /// user revoked (their ids returned, so their sockets can be closed).
    async fn complete_password_reset(&self, id: &str, password_hash: &str, now: Millis) -> StoreResult<Vec<i64>>;

    async fn hide_presence(&self, user_id: i64) -> StoreResult<bool>;
    async fn set_hide_presence(&self, user_id: i64, hide: bool) -> StoreResult<()>;
    /// Blocks a user (blocking again changes nothing).
    async fn block(&self, blocker_id: i64, blocked_id: i64, now: Millis) -> StoreResult<()>;
    async fn unblock(&self, blocker_id: i64, blocked_id: i64) -> StoreResult<()>;
    /// The users `blocker_id` has blocked, most recent first.
    async fn blocked_users(&self, blocker_id: i64) -> StoreResult<Vec<BlockedRow>>;
    /// Whether either of the two has blocked the other.
    async fn blocked_either_way(&self, a: i64, b: i64) -> StoreResult<bool>;

    /// Deletes the account in one transaction: its sessions, blocks, settings, pending password
    /// reset and event stream go; its row stays, anonymous ("Deleted user", no email, no password),
    /// as the author of the messages it sent, which stay in its friends' chats; chats whose other
    /// member is gone too are deleted with their messages. The email is free again.
    async fn delete_account(&self, user_id: i64, now: Millis) -> StoreResult<DeletedAccount>;

    /// Deletes expired or revoked sessions and signups created before `signups_before`.
    async fn purge(&self, now: Millis, signups_before: Millis) -> StoreResult<u64>;
}

/// Like [`connect`], but a database that cannot be reached yet (started by the same compose file
/// or boot, restarting, its host not resolvable yet) is tried again for up to `wait`, with a log
/// line per attempt, so the order services start in does not matter. Anything else (a wrong
/// password, a missing database, a read-only file) fails at once: waiting would not fix it.
pub async fn connect_waiting(
    url: &str,
    acquire_timeout: std::time::Duration,
    wait: std::time::Duration,
) -> StoreResult<std::sync::Arc<dyn Store>> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut delay = std::time::Duration::from_millis(500);
    loop {
        match connect_with(url, acquire_timeout).await {
            Err(StoreError::Unavailable(Unavailable::Unreachable(detail)))
                if tokio::time::Instant::now() + delay < deadline =>
            {
                tracing::warn!(
                    error = %detail,
                    retry_in_ms = delay.as_millis() as u64,
                    "the database cannot be reached yet; waiting for it (PARLEY_DATABASE_WAIT_SECS)"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// How long a Postgres query waits for a connection, unless configured
/// (`PARLEY_DATABASE_ACQUIRE_TIMEOUT_MS`).
pub const DEFAULT_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the backend named by the URL's scheme and brings its schema up to date.
pub async fn connect(url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    connect_with(url, DEFAULT_ACQUIRE_TIMEOUT).await
}

/// [`connect`] with Postgres waiting at most `acquire_timeout` for a connection: while the
/// database is away, that is how long a request takes to hear "unavailable".
pub async fn connect_with(url: &str, acquire_timeout: std::time::Duration) -> StoreResult<std::sync::Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PgStore::connect(url, acquire_timeout).await?))
    } else if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::connect(url).await?))
    } else {
        let scheme = url.split(':').next().unwrap_or_default();
        Err(StoreError::UnsupportedUrl(format!("{scheme}:…")))
    }
}
