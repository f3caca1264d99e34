-- A counter that moves with every change to who is in which chat, who blocks whom, and which
-- accounts are deleted, as Postgres has had since 20261126000040. The server keeps chats'
-- members in memory between batches of messages, tagged with the counter's value they were read
-- at; a batch written from that memory reads the value in its own transaction and stores nothing
-- if it moved (server/src/store/sqlite.rs). Triggers move it, so no statement that changes
-- membership can forget to. Not on updates of `reached_out` or the read markers: neither decides
-- where a message may go, and a batch's own first message would move the counter.
CREATE TABLE membership_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO membership_epoch (id, value) VALUES (1, 0);

CREATE TRIGGER blocks_inserted_move_membership_epoch AFTER INSERT ON blocks
BEGIN UPDATE membership_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER blocks_updated_move_membership_epoch AFTER UPDATE ON blocks
BEGIN UPDATE membership_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER blocks_deleted_move_membership_epoch AFTER DELETE ON blocks
BEGIN UPDATE membership_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER chat_members_inserted_move_membership_epoch AFTER INSERT ON chat_members
BEGIN UPDATE membership_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER chat_members_moved_move_membership_epoch AFTER UPDATE OF chat_id, user_id ON chat_members
BEGIN UPDATE membership_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER chat_members_deleted_move_membership_epoch AFTER DELETE ON chat_members
BEGIN UPDATE membership_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER users_deleted_move_membership_epoch AFTER UPDATE OF deleted_at ON users
WHEN OLD.deleted_at IS NOT NEW.deleted_at
BEGIN UPDATE membership_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER users_removed_move_membership_epoch AFTER DELETE ON users
BEGIN UPDATE membership_epoch SET value = value + 1 WHERE id = 1; END;
