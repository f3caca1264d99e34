-- Whether we have blocked the friend (the server's `Chat.blocked`).
ALTER TABLE chats ADD COLUMN blocked INTEGER NOT NULL DEFAULT 0;
