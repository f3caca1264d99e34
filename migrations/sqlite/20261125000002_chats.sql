-- Chats, messages and each user's event stream.
--
-- Positions are handed out from counters on rows the writing transaction locks: a chat's
-- `last_seq` numbers its messages, a user's `last_event_pos` numbers that user's events. A second
-- writer waits for the lock until the first commits, so a position never becomes visible after a
-- larger one, on any number of server nodes.
ALTER TABLE users ADD COLUMN last_event_pos INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN last_seen_at INTEGER;

CREATE TABLE chats (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    -- "<smaller user id>:<larger user id>" for a 1:1 chat, so a pair has one chat.
    pair_key         TEXT   UNIQUE,
    last_seq         INTEGER NOT NULL DEFAULT 0,
    last_activity_at INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE INDEX chats_activity ON chats (last_activity_at);

CREATE TABLE chat_members (
    chat_id    INTEGER NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    read_up_to INTEGER NOT NULL DEFAULT 0,
    joined_at  INTEGER NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);
CREATE INDEX chat_members_user ON chat_members (user_id);

CREATE TABLE messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id    INTEGER NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    sender_id  INTEGER NOT NULL REFERENCES users (id),
    client_id  TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (chat_id, seq),
    UNIQUE (sender_id, client_id)
);

-- kind: 'message' (message_id), 'chat_created', 'read' (reader_id, up_to).
CREATE TABLE events (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    pos        INTEGER NOT NULL,
    kind       TEXT   NOT NULL,
    chat_id    INTEGER NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    message_id INTEGER REFERENCES messages (id) ON DELETE CASCADE,
    reader_id  INTEGER,
    up_to      INTEGER,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, pos)
);
CREATE INDEX events_message ON events (message_id);
