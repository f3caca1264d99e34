-- One clock for every event (docs/ONE-CLOCK.md).
--
-- Until now every message wrote an event row for each member of its chat and moved each member's
-- counter (`users.last_event_pos`), so a commit wrote every active user's counter and the last
-- page of their part of the events' index, whatever the batch size. Now one counter, `clock`,
-- hands out positions to everything users are told of: a message's position is its id, and the
-- events table keeps only what is not a message (chats started, read markers), each row at the
-- position its write took. A user's stream is their chats' messages and their events, merged by
-- position; its holes are other users' positions. SQLite has one writer, so positions become
-- visible in order.
CREATE TABLE clock (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);

-- The messages keep their ids, which rise with each chat's `seq`. A chat's last position is kept
-- with its counter, to find the chats a sync must read.
ALTER TABLE chats ADD COLUMN last_pos INTEGER NOT NULL DEFAULT 0;
UPDATE chats SET last_pos = coalesce((SELECT max(id) FROM messages m WHERE m.chat_id = chats.id), 0);
CREATE INDEX messages_chat_pos ON messages (chat_id, id);

-- The events that are not messages move past every message, each user's in their order. Their
-- interleaving with messages is lost, which no client relies on: the history epoch moves on
-- below, so every client reloads its chats or replays its stream, and both apply a read marker
-- or a started chat whenever it comes.
CREATE TABLE events_on_the_clock (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    pos        INTEGER NOT NULL,
    kind       TEXT   NOT NULL,
    chat_id    INTEGER NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    reader_id  INTEGER,
    up_to      INTEGER,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, pos)
);
INSERT INTO events_on_the_clock (user_id, pos, kind, chat_id, reader_id, up_to, created_at)
SELECT user_id, (SELECT coalesce(max(id), 0) FROM messages) + row_number() OVER (ORDER BY user_id, pos),
       kind, chat_id, reader_id, up_to, created_at
FROM events WHERE kind <> 'message';
DROP TABLE events;
ALTER TABLE events_on_the_clock RENAME TO events;

INSERT INTO clock (id, value)
SELECT 1, max((SELECT coalesce(max(id), 0) FROM messages), (SELECT coalesce(max(pos), 0) FROM events));

ALTER TABLE users DROP COLUMN last_event_pos;

-- Every cursor given out before counted positions of the old streams: moved on unless there were
-- none to count (a new database, whose cursors were all 0, which means the same here).
UPDATE history_epoch SET value = value + 1 WHERE id = 1 AND (SELECT value FROM clock WHERE id = 1) > 0;
