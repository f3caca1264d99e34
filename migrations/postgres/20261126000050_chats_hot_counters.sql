-- Every message moves its chat's counters (`last_seq`, `last_activity_at`). Postgres can update a
-- row in place on its page (a HOT update: no new index entries, the old version pruned on the
-- next visit) only when no indexed column changes and the page has room. `chats_activity`
-- indexed `last_activity_at`, so every message wrote a new version of its chat's row and an
-- entry in both of the table's indexes: in a 5 s run of 50,000 messages over 50 chats the table
-- grew from one page to 120 and kept growing until autovacuum came by. Nothing reads chats by
-- activity (a user's chat list finds them through `chat_members` and sorts those few), so the
-- index goes, and pages are kept half empty so the next version fits beside the last.
DROP INDEX chats_activity;
ALTER TABLE chats SET (fillfactor = 50);
