-- A resend is recognised by its sender and `client_id`, through a unique index. That index had
-- the sender first, so each sender's ids sat in a part of it of their own, and a commit wrote to
-- the last page of that part for every sender in its batch. With the `client_id` first, ids made
-- in time order (UUIDv7, as Parley's clients make them: `parley_common::client_id`) all land at
-- the index's end, whoever sent them (docs/BENCHMARKS.md, item 30). The lookup names both
-- columns either way.
ALTER TABLE messages ADD CONSTRAINT messages_client_id_sender_id_key UNIQUE (client_id, sender_id);
ALTER TABLE messages DROP CONSTRAINT messages_sender_id_client_id_key;
