"""OneDrive-specific domain errors (all :class:`imagerepo.errors.AppError`, mapped once)."""

from __future__ import annotations

from imagerepo.errors import AppError, UpstreamError


class NotConfigured(AppError):
    """The deployment has no OneDrive app registration (client id, secret, cache key)."""

    status = 503
    code = "onedrive_not_configured"


class ReauthorizationRequired(AppError):
    """No usable token for this admin: never connected, revoked, or refresh impossible.

    Answered 409 (the OneDrive connection, not the caller's API token, is the
    problem) with a fresh ``authorizationUrl`` added by :mod:`imagerepo.onedrive.web`.
    """

    status = 409
    code = "onedrive_reauthorization_required"

    def __init__(self, message: str, *, admin_id: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.admin_id = admin_id


class GraphThrottled(UpstreamError):
    """Graph kept answering 429/503 after the bounded retries."""

    status = 503
    code = "onedrive_throttled"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
