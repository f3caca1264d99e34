-- Chats, messages and each user's event stream.
--
-- Positions are handed out from counters on rows the writing transaction locks: a chat's
-- `last_seq` numbers its messages, a user's `last_event_pos` numbers that user's events. A second
-- writer waits for the lock until the first commits, so a position never becomes visible after a
-- larger one, on any number of server nodes.
ALTER TABLE users ADD COLUMN last_event_pos BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN last_seen_at BIGINT;

CREATE TABLE chats (
    id               BIGSERIAL PRIMARY KEY,
    -- "<smaller user id>:<larger user id>" for a 1:1 chat, so a pair has one chat.
    pair_key         TEXT   UNIQUE,
    last_seq         BIGINT NOT NULL DEFAULT 0,
    last_activity_at BIGINT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX chats_activity ON chats (last_activity_at);

CREATE TABLE chat_members (
    chat_id    BIGINT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    read_up_to BIGINT NOT NULL DEFAULT 0,
    joined_at  BIGINT NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);
CREATE INDEX chat_members_user ON chat_members (user_id);

CREATE TABLE messages (
    id         BIGSERIAL PRIMARY KEY,
    chat_id    BIGINT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    sender_id  BIGINT NOT NULL REFERENCES users (id),
    client_id  TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (chat_id, seq),
    UNIQUE (sender_id, client_id)
);

-- kind: 'message' (message_id), 'chat_created', 'read' (reader_id, up_to).
CREATE TABLE events (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    pos        BIGINT NOT NULL,
    kind       TEXT   NOT NULL,
    chat_id    BIGINT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    message_id BIGINT REFERENCES messages (id) ON DELETE CASCADE,
    reader_id  BIGINT,
    up_to      BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, pos)
);
CREATE INDEX events_message ON events (message_id);
