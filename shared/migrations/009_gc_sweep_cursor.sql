-- Where the scheduled GC's bounded orphan sweep resumes, one row per key prefix: each
-- run lists a few pages after start_after instead of the whole bucket, and a full pass
-- over a prefix is spread across runs (passes counts the completed ones).
CREATE TABLE IF NOT EXISTS gc_sweep_cursor (
    prefix      text PRIMARY KEY,
    start_after text NOT NULL DEFAULT '',
    passes      bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
