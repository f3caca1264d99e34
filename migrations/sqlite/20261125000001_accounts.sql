-- Accounts, pending signups and sessions. Times are Unix milliseconds (UTC).
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL UNIQUE,
    display_name  TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

-- A signup waits here until its code is entered; several may wait for one email, and the one
-- whose code is entered wins.
CREATE TABLE signups (
    id              TEXT    PRIMARY KEY,
    email           TEXT    NOT NULL,
    display_name    TEXT    NOT NULL,
    password_hash   TEXT    NOT NULL,
    code_mac        BLOB    NOT NULL,
    code_expires_at INTEGER NOT NULL,
    code_sent_at    INTEGER NOT NULL,
    codes_sent      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX signups_email ON signups (email);
CREATE INDEX signups_created_at ON signups (created_at);

CREATE TABLE sessions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash   BLOB    NOT NULL UNIQUE,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_agent   TEXT,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
