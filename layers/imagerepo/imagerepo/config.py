"""Settings read from the environment the template gives each function.

Secrets are never in the template: ``JWT_SECRET_ARN`` / ``DB_SECRET_ARN`` name
Secrets Manager secrets in AWS; the local runtime passes ``JWT_SECRET`` and
``DB_PASSWORD`` directly (like ``sam local --env-vars``).

Secrets rotate: :func:`settings` is re-read after ``SETTINGS_TTL_SECONDS``
(default 300), and :func:`refresh` re-reads it at once, bypassing every cache
(``db`` calls it when the database refuses the password). The JWT secret's
previous version (stage ``AWSPREVIOUS``, locally ``JWT_PREVIOUS_SECRET``) is
``jwt_previous_secret``, accepted by ``security`` for tokens signed before a rotation.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imagerepo.chunking import DEFAULT_CHUNKER_SPEC


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


SETTINGS_TTL_DEFAULT = 300

_force_fetch = threading.local()


def _secret(arn: str, stage: str | None = None) -> str:
    # Imported lazily: the Parameters utility pulls in boto3 clients.
    from aws_lambda_powertools.utilities import parameters

    options: dict[str, Any] = {"VersionStage": stage} if stage else {}
    value = parameters.get_secret(arn, max_age=_int("SETTINGS_TTL_SECONDS", SETTINGS_TTL_DEFAULT),
                                  force_fetch=bool(getattr(_force_fetch, "on", False)), **options)
    return value if isinstance(value, str) else value.decode()


def _previous_secret(arn: str) -> str | None:
    """The secret's AWSPREVIOUS version (right after a rotation), or None when there is none."""
    from aws_lambda_powertools.utilities import parameters

    try:
        return _secret(arn, "AWSPREVIOUS")
    except parameters.exceptions.GetParameterError:
        return None


@dataclass(frozen=True)
class Settings:
    db_host: str
    db_port: int
    db_name: str
    db_user: str
    db_password: str
    jwt_secret: str
    jwt_previous_secret: str | None
    jwt_issuer: str
    jwt_audience: str
    token_ttl_seconds: int
    refresh_ttl_seconds: int
    login_account_max_failures: int
    login_source_max_failures: int
    access_key_max_failures: int
    failure_window_seconds: int
    user_quota_bytes: int
    bucket: str
    s3_endpoint_url: str | None
    s3_public_endpoint_url: str | None
    aws_region: str
    chunker: str
    chunk_cache_bytes: int
    max_upload_bytes: int
    max_large_upload_bytes: int
    max_image_pixels: int
    gc_grace_seconds: int
    presign_ttl_seconds: int
    max_response_bytes: int
    db_ssl: str = "disable"

    @property
    def db_params(self) -> dict[str, Any]:
        return {
            "host": self.db_host,
            "port": self.db_port,
            "database": self.db_name,
            "user": self.db_user,
            "password": self.db_password,
        }


def _db_credentials() -> dict[str, Any]:
    """Host/user/password from env, or from an RDS-style JSON secret."""
    creds: dict[str, Any] = {
        "host": os.environ.get("DB_HOST", "127.0.0.1"),
        "port": _int("DB_PORT", 5432),
        "dbname": os.environ.get("DB_NAME", "imagerepo"),
        "username": os.environ.get("DB_USER", "imagerepo"),
        "password": os.environ.get("DB_PASSWORD", ""),
    }
    arn = os.environ.get("DB_SECRET_ARN", "")
    if arn and not creds["password"]:
        raw = _secret(arn)
        try:
            secret = json.loads(raw)
        except ValueError:
            secret = {"password": raw}
        creds.update({k: v for k, v in secret.items() if k in creds and v})
    return creds


class _Expiring:
    """A cached value re-computed after ``ttl()`` seconds; ``cache_clear`` drops it now."""

    def __init__(self, load: Callable[[], Settings], ttl: Callable[[], float]) -> None:
        self._load, self._ttl = load, ttl
        self._lock = threading.Lock()
        self._value: Settings | None = None
        self._loaded_at = 0.0

    def __call__(self) -> Settings:
        with self._lock:
            if self._value is None or time.monotonic() - self._loaded_at >= self._ttl():
                self._value = self._load()
                self._loaded_at = time.monotonic()
            return self._value

    def cache_clear(self) -> None:
        with self._lock:
            self._value = None


def refresh() -> Settings:
    """Re-read settings and secrets now (after an authentication failure), skipping every cache."""
    settings.cache_clear()
    _force_fetch.on = True
    try:
        return settings()
    finally:
        _force_fetch.on = False


def _load_settings() -> Settings:
    creds = _db_credentials()
    jwt_secret = os.environ.get("JWT_SECRET", "")
    jwt_previous = os.environ.get("JWT_PREVIOUS_SECRET") or None
    if not jwt_secret and os.environ.get("JWT_SECRET_ARN"):
        jwt_secret = _secret(os.environ["JWT_SECRET_ARN"])
        jwt_previous = _previous_secret(os.environ["JWT_SECRET_ARN"])
    return Settings(
        db_host=str(creds["host"]),
        db_port=int(creds["port"]),
        db_name=str(creds["dbname"]),
        db_user=str(creds["username"]),
        db_password=str(creds["password"]),
        jwt_secret=jwt_secret,
        jwt_previous_secret=jwt_previous if jwt_previous != jwt_secret else None,
        jwt_issuer=os.environ.get("JWT_ISSUER", "imagerepo"),
        jwt_audience=os.environ.get("JWT_AUDIENCE", "imagerepo-api"),
        token_ttl_seconds=_int("TOKEN_TTL_SECONDS", 900),
        refresh_ttl_seconds=_int("REFRESH_TTL_SECONDS", 30 * 24 * 3600),
        login_account_max_failures=_int("LOGIN_ACCOUNT_MAX_FAILURES", 10),
        login_source_max_failures=_int("LOGIN_SOURCE_MAX_FAILURES", 100),
        access_key_max_failures=_int("ACCESS_KEY_MAX_FAILURES", 20),
        failure_window_seconds=_int("FAILURE_WINDOW_SECONDS", 900),
        user_quota_bytes=_int("USER_QUOTA_BYTES", 10 * 1024**3),
        bucket=os.environ.get("BUCKET_NAME", "imagerepo"),
        s3_endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None,
        s3_public_endpoint_url=os.environ.get("S3_PUBLIC_ENDPOINT_URL") or None,
        aws_region=os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1")),
        chunker=os.environ.get("CHUNKER", DEFAULT_CHUNKER_SPEC),
        chunk_cache_bytes=_int("CHUNK_CACHE_BYTES", 64 * 1024 * 1024),
        max_upload_bytes=_int("MAX_UPLOAD_BYTES", 4_500_000),
        max_large_upload_bytes=_int("MAX_LARGE_UPLOAD_BYTES", 100 * 1024 * 1024),
        max_image_pixels=_int("MAX_IMAGE_PIXELS", 100_000_000),
        gc_grace_seconds=_int("GC_GRACE_SECONDS", 900),
        presign_ttl_seconds=_int("PRESIGN_TTL_SECONDS", 300),
        # What fits a 6 MB Lambda response once base64-encoded, with room for headers.
        max_response_bytes=_int("MAX_RESPONSE_BYTES", 4_400_000),
        db_ssl=os.environ.get("DB_SSL", "disable").strip().lower() or "disable",
    )


#: The settings, re-read every ``SETTINGS_TTL_SECONDS`` (rotated secrets need no redeploy).
settings = _Expiring(_load_settings, lambda: _int("SETTINGS_TTL_SECONDS", SETTINGS_TTL_DEFAULT))
