-- Blocks: the blocker no longer receives the blocked user's messages (their sends are refused as
-- if the chat did not exist), and the blocked user no longer sees the blocker's presence.
CREATE TABLE blocks (
    blocker_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);
-- "Who blocked me?", asked when rendering presence and chats for the blocked user.
CREATE INDEX blocks_blocked ON blocks (blocked_id);
