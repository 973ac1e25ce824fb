-- OneDrive administration: per-admin MSAL token caches, pending auth-code flows, import jobs.
-- Token caches and flows are AES-GCM ciphertext (see imagerepo.onedrive.crypto), never plain text.

CREATE TABLE onedrive_connections (
    admin_id         bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    home_account_id  text NOT NULL,
    username         text NOT NULL DEFAULT '',
    display_name     text NOT NULL DEFAULT '',
    token_cache      bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- An auth-code flow between /admin/onedrive/connect and /admin/onedrive/callback.
-- The state (random, from MSAL) is the key; a row is consumed once.
CREATE TABLE onedrive_auth_flows (
    state       text PRIMARY KEY CHECK (length(state) BETWEEN 8 AND 128),
    admin_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    flow        bytea NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX onedrive_auth_flows_expiry_idx ON onedrive_auth_flows (expires_at);

CREATE TABLE onedrive_import_jobs (
    id           uuid PRIMARY KEY,
    admin_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status       text NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'listing', 'running', 'finished', 'failed')),
    request      jsonb NOT NULL,
    error        text,
    note         text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX onedrive_import_jobs_admin_idx ON onedrive_import_jobs (admin_id, created_at DESC);

-- One row per drive file a job considers. source_ref is what images.source_ref gets
-- (drive id, item id and content tag): an unchanged file is never imported twice.
CREATE TABLE onedrive_import_items (
    id             bigserial PRIMARY KEY,
    job_id         uuid NOT NULL REFERENCES onedrive_import_jobs (id) ON DELETE CASCADE,
    drive_item_id  text NOT NULL,
    name           text NOT NULL,
    size           bigint NOT NULL DEFAULT 0,
    mime_type      text NOT NULL DEFAULT '',
    source_ref     text NOT NULL,
    group_id       bigint REFERENCES groups (id) ON DELETE SET NULL,
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'processing', 'done', 'skipped', 'failed')),
    reason         text,
    image_id       bigint REFERENCES images (id) ON DELETE SET NULL,
    attempts       integer NOT NULL DEFAULT 0,
    claimed_at     timestamptz,
    finished_at    timestamptz,
    UNIQUE (job_id, drive_item_id)
);
CREATE INDEX onedrive_import_items_open_idx ON onedrive_import_items (job_id, id)
    WHERE status IN ('pending', 'processing');
