"""Domain errors. Each maps to one HTTP status and a stable machine-readable code.

Raised anywhere in the layer; the API module turns them into
``{"error": {"code": ..., "message": ...}}`` responses in one place.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable


class AppError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(AppError):
    status = 400
    code = "bad_request"


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class NotFound(AppError):
    status = 404
    code = "not_found"


class Conflict(AppError):
    status = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(AppError):
    status = 415
    code = "unsupported_media_type"


class UpstreamError(AppError):
    """A dependency (object store, Graph, ...) failed: 502 to the client."""

    status = 502
    code = "upstream_error"


class TooManyRequests(AppError):
    """An abuse limit was reached: 429 with ``Retry-After`` (whole seconds)."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = max(1, int(retry_after))


def reject_unknown_fields(given: Iterable[str], allowed: Collection[str]) -> None:
    """400 ``unknown_fields`` naming every field of ``given`` not in ``allowed``."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(unknown)}", code="unknown_fields")
