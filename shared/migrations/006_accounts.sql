-- Accounts and sessions: disabled accounts, login sessions with rotating refresh tokens,
-- and the failure counters behind the abuse limits.

ALTER TABLE users ADD COLUMN disabled boolean NOT NULL DEFAULT false;

-- A session starts at login and lives until logout, a password change (other sessions),
-- a replayed refresh token, a disable or the account's deletion. Access tokens name it
-- (claim "sid"); every request reads this row by primary key.
CREATE TABLE sessions (
    id          uuid PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    revoked_why text
);
CREATE INDEX sessions_user_idx ON sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX sessions_expiry_idx ON sessions (expires_at);

-- Refresh tokens are random; only their SHA-256 is stored. A used token stays (used_at set)
-- so that presenting it again is recognised as a replay and ends the whole session.
CREATE TABLE refresh_tokens (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    session_id  uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    used_at     timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

-- Failed attempts counted in a sliding window: scope 'login_account', 'login_source',
-- 'access_key'; subject the account, source address or image+source.
CREATE TABLE auth_failures (
    id       bigserial PRIMARY KEY,
    scope    text NOT NULL CHECK (length(scope) <= 32),
    subject  text NOT NULL CHECK (length(subject) <= 300),
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX auth_failures_subject_idx ON auth_failures (scope, subject, at);
CREATE INDEX auth_failures_at_idx ON auth_failures (at);
