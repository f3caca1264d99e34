-- Each user's event counter moves to a narrow table of its own.
--
-- Every batch of messages locks and moves the counter of each member of its chats; on `users`
-- that meant locking and writing a new version of the whole account row (email, name, password
-- hash: 107 bytes on average) for one number. Here a row is the id and the counter, and pages are
-- kept half empty so that each new version fits beside the last (a HOT update, as on `chats`).
-- Locking and moving 100 counters took 1.22 ms here against 1.63 ms on `users`
-- (docs/BENCHMARKS.md, item 26).
--
-- The batch's lock on a member's counter still keeps the member's account from being removed
-- under it: removing a `users` row removes its counter row, which waits for the lock.
CREATE TABLE user_streams (
    id             BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    last_event_pos BIGINT NOT NULL DEFAULT 0
) WITH (fillfactor = 50);

INSERT INTO user_streams (id, last_event_pos) SELECT id, last_event_pos FROM users;
ALTER TABLE users DROP COLUMN last_event_pos;

-- Every account has its stream from the start, however it was made (signup, bulk creation).
CREATE FUNCTION create_user_stream() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_streams (id) VALUES (NEW.id);
    RETURN NULL;
END
$$;
CREATE TRIGGER users_create_stream AFTER INSERT ON users
    FOR EACH ROW EXECUTE FUNCTION create_user_stream();
