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

CREATE TRIGGER blocks_move_membership_epoch
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON blocks
    FOR EACH STATEMENT EXECUTE FUNCTION move_membership_epoch();
-- Not on updates of `reached_out` or the read markers: a batch's own write of `reached_out`
-- would move it, and neither decides where a message may go.
CREATE TRIGGER chat_members_move_membership_epoch
    AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF chat_id, user_id ON chat_members
    FOR EACH STATEMENT EXECUTE FUNCTION move_membership_epoch();
CREATE TRIGGER users_move_membership_epoch
    AFTER DELETE OR TRUNCATE OR UPDATE OF deleted_at ON users
    FOR EACH STATEMENT EXECUTE FUNCTION move_membership_epoch();
