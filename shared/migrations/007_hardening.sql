-- Issue 10 (hardening), OneDrive part.
-- A throttled import job waits until resume_at (Graph's Retry-After) before it carries on.
ALTER TABLE onedrive_import_jobs ADD COLUMN resume_at timestamptz;
-- The auth-code flow's state is bound to the browser of the admin who started it:
-- /connect sets a cookie whose SHA-256 is kept here, the callback must present it.
ALTER TABLE onedrive_auth_flows ADD COLUMN binder_sha256 text;
