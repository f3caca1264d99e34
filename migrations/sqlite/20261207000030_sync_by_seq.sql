-- A sync finds a chat's first message past its cursor by a binary search over `seq`
-- (`SqliteStore::chats_after`), so the messages need one per-chat index, not two. Each commit
-- wrote a leaf of both for every chat in its batch: this one was two fifths of the pages a commit
-- wrote at a steady 10,000 messages/s (docs/BENCHMARKS.md, item 32).
DROP INDEX messages_chat_pos;
