-- Accounts, the deduplicating chunk store, groups and images.

CREATE TABLE users (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    email         text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    role          text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_name_key ON users (lower(name));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- A chunk is a byte range stored once in S3 under chunks/<hash[:2]>/<hash>.
-- refcount = number of blob_chunks rows naming it; zero_since starts the GC grace.
CREATE TABLE chunks (
    hash       char(64) PRIMARY KEY,
    size       integer NOT NULL CHECK (size > 0),
    refcount   integer NOT NULL CHECK (refcount >= 0),
    zero_since timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chunks_collectable_idx ON chunks (zero_since) WHERE refcount = 0;

-- A blob is one distinct file content; refcount = number of images naming it.
CREATE TABLE blobs (
    sha256            char(64) PRIMARY KEY,
    size              bigint NOT NULL CHECK (size > 0),
    chunker           text NOT NULL,
    chunk_count       integer NOT NULL,
    refcount          integer NOT NULL CHECK (refcount >= 0),
    zero_since        timestamptz,
    thumb_status      text NOT NULL DEFAULT 'pending'
                      CHECK (thumb_status IN ('pending', 'processing', 'ready', 'failed')),
    thumb_error       text,
    thumb_attempts    integer NOT NULL DEFAULT 0,
    thumb_updated_at  timestamptz NOT NULL DEFAULT now(),
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX blobs_collectable_idx ON blobs (zero_since) WHERE refcount = 0;

CREATE TABLE blob_chunks (
    blob_sha256 char(64) NOT NULL REFERENCES blobs (sha256) ON DELETE CASCADE,
    seq         integer NOT NULL,
    chunk_hash  char(64) NOT NULL REFERENCES chunks (hash),
    PRIMARY KEY (blob_sha256, seq)
);
CREATE INDEX blob_chunks_chunk_idx ON blob_chunks (chunk_hash);

CREATE TABLE groups (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    created_by  bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX groups_name_key ON groups (lower(name));

CREATE TABLE images (
    id              bigserial PRIMARY KEY,
    owner_id        bigint NOT NULL REFERENCES users (id),
    blob_sha256     char(64) NOT NULL REFERENCES blobs (sha256),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    description     text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    is_private      boolean NOT NULL DEFAULT false,
    access_key_hash text,
    group_id        bigint REFERENCES groups (id) ON DELETE SET NULL,
    content_type    text NOT NULL,
    width           integer NOT NULL,
    height          integer NOT NULL,
    size            bigint NOT NULL,
    source          text,
    source_ref      text,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX images_public_order_idx ON images (created_at DESC, id DESC) WHERE NOT is_private;
CREATE INDEX images_owner_order_idx ON images (owner_id, created_at DESC, id DESC);
CREATE INDEX images_group_public_idx ON images (group_id, created_at DESC, id DESC) WHERE NOT is_private;
CREATE INDEX images_group_owner_idx ON images (group_id, owner_id, created_at DESC, id DESC);
CREATE INDEX images_blob_idx ON images (blob_sha256);
CREATE UNIQUE INDEX images_source_key ON images (source, source_ref) WHERE source IS NOT NULL;
