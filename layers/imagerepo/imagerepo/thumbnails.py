"""Thumbnails, keyed by blob hash: a small WebP and a JPEG preview per distinct file.

Work is claimed with one conditional UPDATE, so a duplicate or late S3 event
does nothing twice; a failure is recorded and retried a bounded number of
times, and a periodic sweep re-drives anything left pending (an event lost
while the runtime was down, a crash mid-render).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from imagerepo import observability
from imagerepo.chunkstore import (
    StoreIntegrityError,
    default_store,
    legacy_thumbnail_key,
    manifest_key,
    thumbnail_key,
)
from imagerepo.config import settings
from imagerepo.db import unit_of_work
from imagerepo.errors import AppError, NotFound
from imagerepo.log import logger

MAX_ATTEMPTS = 3
STALE_SECONDS = 120
SIZES = {"small": "image/webp", "preview": "image/jpeg"}


class BlobNotVisibleYet(Exception):
    """The manifest exists but its blob row is not committed yet: retry the event later."""


@dataclass(frozen=True)
class Outcome:
    sha256: str
    status: str  # done | skipped | failed


_CLAIM = (
    "UPDATE blobs SET thumb_status = 'processing', thumb_attempts = thumb_attempts + 1,"
    " thumb_updated_at = now()"
    " WHERE sha256 = :s AND refcount > 0 AND thumb_attempts < :max AND ("
    "   thumb_status IN ('pending', 'failed')"
    "   OR (thumb_status = 'processing'"
    "       AND thumb_updated_at < now() - make_interval(secs => :stale)))"
    "   AND NOT (thumb_status = 'failed' AND thumb_error LIKE 'invalid:%')"
    " RETURNING thumb_attempts"
)


def _claim(sha256: str) -> tuple[bool, dict[str, Any] | None]:
    """(claimed, the row as it is now or None). Each statement has its own snapshot: a
    row committed between the UPDATE and the SELECT is seen pending, so claim again."""
    with unit_of_work() as uow:
        for _ in range(2):
            row = uow.one(_CLAIM, s=sha256, max=MAX_ATTEMPTS, stale=STALE_SECONDS)
            if row is not None:
                uow.commit()
                return True, row
            current = uow.one("SELECT thumb_status, refcount, thumb_attempts FROM blobs"
                              " WHERE sha256 = :s", s=sha256)
            if current is None or current["thumb_status"] != "pending" or current["refcount"] == 0:
                break
        uow.commit()
    return False, current


def _finish(sha256: str, status: str, error: str | None = None) -> None:
    with unit_of_work() as uow:
        uow.run("UPDATE blobs SET thumb_status = :st, thumb_error = :err, thumb_updated_at = now()"
                " WHERE sha256 = :s", s=sha256, st=status, err=error)
        uow.commit()


def _manifest_exists(sha256: str) -> bool:
    return default_store().head(manifest_key(sha256)) is not None


def process(sha256: str, *, visibility_wait: float = 3.0) -> Outcome:
    from imagerepo import imaging  # Pillow: the thumbnailer needs it, image_thumbnail does not

    claimed, current = _claim(sha256)
    if not claimed and current is None:
        if not _manifest_exists(sha256):
            return Outcome(sha256, "skipped")  # a late event for a blob GC has removed
        # The manifest is PUT after the uploading transaction commits, but a replica
        # (or an old writer) may lag: wait a little for the row.
        deadline = time.monotonic() + visibility_wait
        while not claimed and current is None and time.monotonic() < deadline:
            time.sleep(0.1)
            claimed, current = _claim(sha256)
        if current is None:
            raise BlobNotVisibleYet(sha256)  # redelivered later (async retry, or the sweep)
    if not claimed:
        return Outcome(sha256, "skipped")
    assert current is not None
    # Out of retries: failed for good (visible to clients), no longer pending.
    retry_status = "failed" if current["thumb_attempts"] >= MAX_ATTEMPTS else "pending"
    store = default_store()
    try:
        with observability.timed(observability.THUMBNAIL_LATENCY):
            data = store.read(sha256)
            thumbs = imaging.render_thumbnails(data, max_pixels=settings().max_image_pixels)
            for size, body in (("small", thumbs.small), ("preview", thumbs.preview)):
                store.put_object(thumbnail_key(sha256, size), body, SIZES[size],
                                 cache_control="public, max-age=31536000")
    except AppError as exc:
        if exc.status < 500:  # the file itself cannot be rendered: retrying will not help
            _finish(sha256, "failed", f"invalid: {exc.message}")
            logger.warning("thumbnail failed", extra={"sha256": sha256, "reason": exc.message})
            return Outcome(sha256, "failed")
        _finish(sha256, retry_status, f"error: {exc.message}")
        raise
    except Exception as exc:
        _finish(sha256, retry_status, f"error: {type(exc).__name__}")
        raise
    _finish(sha256, "ready")
    logger.info("thumbnails ready", extra={"sha256": sha256, "small": thumbs.small_size,
                                           "preview": thumbs.preview_size})
    return Outcome(sha256, "done")


def sweep(limit: int = 20) -> list[Outcome]:
    """Re-drive thumbnails left pending, stuck in processing, or failed with retries left."""
    with unit_of_work() as uow:
        rows = uow.run(
            "SELECT sha256 FROM blobs WHERE refcount > 0 AND thumb_attempts < :max"
            " AND thumb_status IN ('pending', 'processing', 'failed')"
            " AND coalesce(thumb_error, '') NOT LIKE 'invalid:%'"
            " AND thumb_updated_at < now() - make_interval(secs => :stale)"
            " ORDER BY thumb_updated_at LIMIT :limit",
            max=MAX_ATTEMPTS, stale=STALE_SECONDS // 2, limit=limit)
    outcomes = []
    for (sha,) in rows:
        try:
            outcomes.append(process(sha.strip()))
        except Exception:  # noqa: BLE001 - one bad blob must not stop the sweep
            logger.exception("thumbnail sweep failed", extra={"sha256": sha})
            outcomes.append(Outcome(sha.strip(), "failed"))
    return outcomes


def read(sha256: str, size: str, status: str) -> bytes:
    """The thumbnail's bytes; 404 while not ready, and 404 ``thumbnail_missing`` (after
    queueing a new render for the sweep) if the blob says ready but the object is gone.

    Thumbnails rendered before the hashed prefixes are read from their old key."""
    if status != "ready":
        raise NotFound(f"thumbnails are {status}", code="thumbnail_not_ready")
    store = default_store()
    for key in (thumbnail_key(sha256, size), legacy_thumbnail_key(sha256, size)):
        try:
            return store.get_object_bytes(key)
        except StoreIntegrityError:
            continue
    requeue(sha256)
    raise NotFound("the thumbnail object is missing; it is being rendered again",
                   code="thumbnail_missing")


def requeue(sha256: str) -> None:
    """Mark a ready blob's thumbnails pending again, with fresh attempts, for the sweep."""
    with unit_of_work() as uow:
        uow.run("UPDATE blobs SET thumb_status = 'pending', thumb_attempts = 0, thumb_error = NULL,"
                " thumb_updated_at = now() - make_interval(secs => :stale)"
                " WHERE sha256 = :s AND thumb_status = 'ready'", s=sha256, stale=STALE_SECONDS)
        uow.commit()
