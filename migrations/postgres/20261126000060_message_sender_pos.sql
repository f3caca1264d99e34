-- A message keeps its sender's event position, so that a resend is answered with the cursor of
-- the first send (docs/PROTOCOL.md, "Exactly once") without the index `events_message`.
--
-- That index, on `events (message_id)`, served only that lookup here (Postgres has no foreign key
-- from events to messages to cascade through), yet every message wrote an entry in it for each of
-- its chat's members: two of the seven index entries a message cost. Without it a transaction
-- inserting 144 events took 1.55 ms instead of 1.90 ms (docs/BENCHMARKS.md, item 25).
ALTER TABLE messages ADD COLUMN sender_pos BIGINT;
UPDATE messages m SET sender_pos = e.pos
FROM events e
WHERE e.message_id = m.id AND e.user_id = m.sender_id;
DROP INDEX events_message;
