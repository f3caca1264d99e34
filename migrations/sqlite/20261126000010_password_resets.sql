-- A forgotten password: a code mailed to the account's address, good for one new password.
-- At most one per account (a new request replaces the old one).
CREATE TABLE password_resets (
    id              TEXT    PRIMARY KEY,
    user_id         INTEGER NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    code_mac        BLOB    NOT NULL,
    code_expires_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL
);
