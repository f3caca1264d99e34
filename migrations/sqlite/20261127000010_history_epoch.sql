-- Which history cursors speak of. An operator who restores the database from a backup moves it
-- on (`parley-server admin after-restore`): the positions after the restored end are handed out
-- again to new events, and a client resuming from a cursor of before would skip them. Cursors
-- carry the epoch once it is not 0, and the server refuses those of another.
CREATE TABLE history_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO history_epoch (id, value) VALUES (1, 0);
