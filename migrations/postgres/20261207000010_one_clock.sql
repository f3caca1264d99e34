-- One clock for every event (docs/ONE-CLOCK.md).
--
-- Until now every message wrote an event row for each member of its chat and moved each member's
-- counter (`user_streams`), so a commit touched every active user's counter row and the last
-- page of their part of the events' index, whatever the batch size. Now one counter, `clock`,
-- hands out positions to everything users are told of: a message's position is its id, and the
-- events table keeps only what is not a message (chats started, read markers), each row at the
-- position its write took. A user's stream is their chats' messages and their events, merged by
-- position; its holes are other users' positions.
--
-- A writer takes its positions last, after locking its chats: the clock row's lock then orders
-- commits, so positions become visible in order and a reader never sees one before a smaller.
CREATE TABLE clock (
    id    INT PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);

-- The messages keep their ids: a chat's messages were written under its row's lock, so their ids
-- rise with `seq`. A chat's last position is kept with its counter, to find the chats a sync must
-- read.
ALTER TABLE chats ADD COLUMN last_pos BIGINT NOT NULL DEFAULT 0;
UPDATE chats c SET last_pos = m.last_id
FROM (SELECT chat_id, max(id) AS last_id FROM messages GROUP BY chat_id) m
WHERE m.chat_id = c.id;
CREATE INDEX messages_chat_pos ON messages (chat_id, id);
-- Ids come from the clock now, never from the column's sequence.
ALTER TABLE messages ALTER COLUMN id DROP DEFAULT;

-- The events that are not messages move past every message, each user's in their order. Their
-- interleaving with messages is lost, which no client relies on: the history epoch moves on
-- below, so every client reloads its chats or replays its stream, and both apply a read marker
-- or a started chat whenever it comes.
DELETE FROM events WHERE kind = 'message';
ALTER TABLE events DROP CONSTRAINT events_pkey;
UPDATE events e SET pos = n.new_pos
FROM (SELECT user_id, pos,
             (SELECT coalesce(max(id), 0) FROM messages) + row_number() OVER (ORDER BY user_id, pos) AS new_pos
      FROM events) n
WHERE n.user_id = e.user_id AND n.pos = e.pos;
ALTER TABLE events ADD PRIMARY KEY (user_id, pos);
ALTER TABLE events DROP COLUMN message_id;

INSERT INTO clock (id, value)
SELECT 1, greatest((SELECT coalesce(max(id), 0) FROM messages), (SELECT coalesce(max(pos), 0) FROM events));

-- A resend is answered with its message's position, which is its id.
ALTER TABLE messages DROP COLUMN sender_pos;

DROP TRIGGER users_create_stream ON users;
DROP FUNCTION create_user_stream();
DROP TABLE user_streams;

-- Every cursor given out before counted positions of the old streams: moved on unless there were
-- none to count (a new database, whose cursors were all 0, which means the same here).
UPDATE history_epoch SET value = value + 1 WHERE id = 1 AND (SELECT value FROM clock WHERE id = 1) > 0;
