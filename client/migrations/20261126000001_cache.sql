-- The desktop app's local copy of one account's chats on one server, and its outbox.

-- `cursor`: the sync cursor the cache is current to; `me`: the account (JSON).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE chats (
    id                INTEGER PRIMARY KEY,
    friend_id         INTEGER NOT NULL,
    friend_email      TEXT    NOT NULL,
    friend_name       TEXT    NOT NULL,
    friend_online     INTEGER NOT NULL DEFAULT 0,
    friend_last_seen  TEXT,
    -- What this device says we have read (it may run ahead of the server while offline) and
    -- what the server has confirmed; the difference is sent on reconnection.
    read_up_to        INTEGER NOT NULL DEFAULT 0,
    read_confirmed    INTEGER NOT NULL DEFAULT 0,
    friend_read_up_to INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT    NOT NULL
);

CREATE TABLE messages (
    id         INTEGER PRIMARY KEY,
    chat_id    INTEGER NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    sender_id  INTEGER NOT NULL,
    client_id  TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    UNIQUE (chat_id, seq)
);
CREATE INDEX messages_client_id ON messages (client_id);

-- Messages written here and not yet acknowledged, in the order they were written.
CREATE TABLE outbox (
    position   INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id  TEXT    NOT NULL UNIQUE,
    chat_id    INTEGER NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    body       TEXT    NOT NULL,
    created_at TEXT    NOT NULL
);
