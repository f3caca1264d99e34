-- A resend is recognised by its sender and `client_id`, through a unique index. That index had
-- the sender first, so each sender's ids sat in a part of it of their own, and a commit rewrote
-- the last page of that part for every sender in its batch. With the `client_id` first, ids made
-- in time order (UUIDv7, as Parley's clients make them: `parley_common::client_id`) all land at
-- the index's end, a page or two per commit whoever sent them (docs/BENCHMARKS.md, item 30).
-- The lookup names both columns either way.
--
-- SQLite cannot drop a table's UNIQUE constraint, so the table is built again, rows and ids
-- unchanged. No table refers to `messages` any more (its events went with the one clock), so the
-- old one can go first. AUTOINCREMENT goes too: every id comes from the clock, and it cost an
-- update of `sqlite_sequence` per commit.
CREATE TABLE messages_client_id_first (
    id         INTEGER PRIMARY KEY,
    chat_id    INTEGER NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    sender_id  INTEGER NOT NULL REFERENCES users (id),
    client_id  TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (chat_id, seq),
    UNIQUE (client_id, sender_id)
);
INSERT INTO messages_client_id_first (id, chat_id, seq, sender_id, client_id, body, created_at)
SELECT id, chat_id, seq, sender_id, client_id, body, created_at FROM messages ORDER BY id;
DROP TABLE messages;
ALTER TABLE messages_client_id_first RENAME TO messages;
CREATE INDEX messages_chat_pos ON messages (chat_id, id);
