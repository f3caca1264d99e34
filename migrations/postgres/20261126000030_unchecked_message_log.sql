-- The two tables every message writes to, `messages` and `events`, without foreign keys.
--
-- Postgres checks a foreign key with a trigger per row that runs a query of its own: five checks
-- per message (two for its row, three for each member's event). With them the throughput
-- scenario spent 47 µs of database CPU per message and delivered 18,000 messages/s; without them
-- 21 µs and 33,000/s (docs/BENCHMARKS.md).
--
-- What the keys guaranteed still holds, by the only writer of these rows (the group commit,
-- `Store::send_messages`, and `push_events`): in the transaction that inserts them it reads the
-- chat's members and locks the chat's row and each member's row (`FOR UPDATE`, stronger than the
-- key share lock a foreign key check takes) to move their counters, so the chat and the users
-- exist until it commits. Users are never deleted (a deleted account keeps its row), and deleting a
-- chat deletes its messages first (`Store::delete_account`). SQLite keeps the keys: there a check
-- is a b-tree lookup in the same process and costs little.
ALTER TABLE messages
    DROP CONSTRAINT messages_chat_id_fkey,
    DROP CONSTRAINT messages_sender_id_fkey;
ALTER TABLE events
    DROP CONSTRAINT events_user_id_fkey,
    DROP CONSTRAINT events_chat_id_fkey,
    DROP CONSTRAINT events_message_id_fkey;
