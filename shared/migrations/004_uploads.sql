-- Large uploads through presigned S3 POSTs to incoming/<id>, ingested on the S3 event.

CREATE TABLE uploads (
    id              uuid PRIMARY KEY,
    owner_id        bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    file_name       text NOT NULL CHECK (length(file_name) BETWEEN 1 AND 255),
    content_type    text NOT NULL CHECK (length(content_type) <= 100),
    size            bigint NOT NULL CHECK (size > 0),
    description     text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    is_private      boolean NOT NULL DEFAULT false,
    access_key_hash text,
    group_id        bigint REFERENCES groups (id) ON DELETE SET NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processing', 'ready', 'failed')),
    image_id        bigint REFERENCES images (id) ON DELETE SET NULL,
    error           text,
    attempts        integer NOT NULL DEFAULT 0,
    expires_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX uploads_owner_idx ON uploads (owner_id, created_at DESC);
CREATE INDEX uploads_open_idx ON uploads (updated_at) WHERE status IN ('pending', 'processing');

CREATE INDEX blobs_thumb_todo_idx ON blobs (thumb_updated_at)
    WHERE thumb_status IN ('pending', 'processing', 'failed');
