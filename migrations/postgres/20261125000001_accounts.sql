-- Accounts, pending signups and sessions. Times are Unix milliseconds (UTC).
CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    email         TEXT   NOT NULL UNIQUE,
    display_name  TEXT   NOT NULL,
    password_hash TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);

-- A signup waits here until its code is entered; several may wait for one email, and the one
-- whose code is entered wins.
CREATE TABLE signups (
    id              TEXT   PRIMARY KEY,
    email           TEXT   NOT NULL,
    display_name    TEXT   NOT NULL,
    password_hash   TEXT   NOT NULL,
    code_mac        BYTEA  NOT NULL,
    code_expires_at BIGINT NOT NULL,
    code_sent_at    BIGINT NOT NULL,
    codes_sent      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX signups_email ON signups (email);
CREATE INDEX signups_created_at ON signups (created_at);

CREATE TABLE sessions (
    id           BIGSERIAL PRIMARY KEY,
    token_hash   BYTEA  NOT NULL UNIQUE,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_agent   TEXT,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
