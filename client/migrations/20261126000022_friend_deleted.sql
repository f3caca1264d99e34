-- Whether the friend deleted their account (the server's `Friend.deleted`).
ALTER TABLE chats ADD COLUMN friend_deleted INTEGER NOT NULL DEFAULT 0;
