-- A forgotten password: a code mailed to the account's address, good for one new password.
-- At most one per account (a new request replaces the old one).
CREATE TABLE password_resets (
    id              TEXT   PRIMARY KEY,
    user_id         BIGINT NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    code_mac        BYTEA  NOT NULL,
    code_expires_at BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL
);
