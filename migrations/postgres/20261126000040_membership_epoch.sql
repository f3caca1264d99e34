-- A counter that moves with every change to who is in which chat, who blocks whom, and which
-- accounts are deleted. A server keeps chats' members in memory between batches of messages,
-- tagged with the counter's value they were read at; a batch written from that memory compares
-- the value in its own snapshot and stores nothing if it moved (server/src/store/postgres.rs).
-- Triggers move it, so no statement that changes membership can forget to.
CREATE TABLE membership_epoch (
    id    INT PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO membership_epoch (id, value) VALUES (1, 0);

CREATE FUNCTION move_membership_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE membership_epoch SET value = value + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

-- Deferred to the commit, so that a transaction takes the counter's row lock last, after every
-- other lock it takes: one that held it while waiting for a user's row (say, a new chat's events)
-- could deadlock with another holding that row and waiting for the counter (an account deleted).
-- Not on updates of `reached_out` or the read markers: neither decides where a message may go,
-- and a batch's own first message would move the counter.
CREATE CONSTRAINT TRIGGER blocks_move_membership_epoch
    AFTER INSERT OR UPDATE OR DELETE ON blocks
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION move_membership_epoch();
CREATE CONSTRAINT TRIGGER chat_members_move_membership_epoch
    AFTER INSERT OR DELETE OR UPDATE OF chat_id, user_id ON chat_members
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION move_membership_epoch();
CREATE CONSTRAINT TRIGGER users_deleted_move_membership_epoch
    AFTER UPDATE OF deleted_at ON users
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.deleted_at IS DISTINCT FROM NEW.deleted_at)
    EXECUTE FUNCTION move_membership_epoch();
CREATE CONSTRAINT TRIGGER users_removed_move_membership_epoch
    AFTER DELETE ON users
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION move_membership_epoch();
-- TRUNCATE takes no row triggers; an operator's TRUNCATE moves it at once.
CREATE TRIGGER blocks_truncated_move_membership_epoch AFTER TRUNCATE ON blocks
    FOR EACH STATEMENT EXECUTE FUNCTION move_membership_epoch();
CREATE TRIGGER chat_members_truncated_move_membership_epoch AFTER TRUNCATE ON chat_members
    FOR EACH STATEMENT EXECUTE FUNCTION move_membership_epoch();
CREATE TRIGGER users_truncated_move_membership_epoch AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION move_membership_epoch();
