"""Large uploads: a presigned S3 POST to ``incoming/<id>``, ingested when the object lands.

The ingest streams the object to a temporary file (validated by decoding from
disk) and through the chunk store, so memory holds a few chunks whatever the
file's size. Claiming is one conditional UPDATE: a duplicate S3 event does
nothing (and never deletes the object of an upload still pending or processing);
once the upload is ready or failed, the incoming object is deleted. A scheduled
:func:`sweep` re-drives uploads whose event was lost or whose ingest died.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

from imagerepo import images, observability
from imagerepo.config import settings
from imagerepo.db import unit_of_work
from imagerepo.errors import AppError, BadRequest, NotFound, reject_unknown_fields
from imagerepo.images import (
    check_group,
    parse_access_key,
    parse_bool,
    parse_description,
    parse_group_id,
    sanitize_filename,
)
from imagerepo.log import logger
from imagerepo.s3 import presigning_client
from imagerepo.security import Principal, generate_access_key, hash_secret

if TYPE_CHECKING:
    from imagerepo.chunkstore import ChunkStore

INCOMING = "incoming/"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_ATTEMPTS = 3
_COPY_BUFFER = 1024 * 1024


@dataclass(frozen=True)
class UploadTicket:
    upload_id: str
    url: str
    fields: dict[str, str]
    expires_at: dt.datetime
    max_size: int
    access_key: str | None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"uploadId": self.upload_id, "url": self.url, "fields": self.fields,
                                "expiresAt": self.expires_at.isoformat(), "maxSize": self.max_size}
        if self.access_key:
            body["accessKey"] = self.access_key
        return body


def create(owner: Principal, body: dict[str, Any]) -> UploadTicket:
    s = settings()
    allowed = {"fileName", "contentType", "size", "description", "isPrivate", "accessKey", "groupId"}
    reject_unknown_fields(body, allowed)
    file_name = body.get("fileName")
    if not isinstance(file_name, str) or not file_name.strip():
        raise BadRequest("fileName is required", code="invalid_field")
    content_type = body.get("contentType")
    if not isinstance(content_type, str) or not content_type.startswith("image/") \
            or len(content_type) > 100:
        raise BadRequest("contentType must be an image/* type", code="invalid_field")
    size = body.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise BadRequest("size must be a positive integer (bytes)", code="invalid_field")
    if size > s.max_large_upload_bytes:
        raise BadRequest(f"size is over the {s.max_large_upload_bytes}-byte limit",
                         code="upload_too_large")
    description = parse_description(body.get("description"))
    is_private = parse_bool(body["isPrivate"], "isPrivate") if body.get("isPrivate") is not None \
        else False
    access_key = parse_access_key(body.get("accessKey"))
    group_id = parse_group_id(body.get("groupId"))
    if is_private and access_key is None:
        access_key = generate_access_key()
    upload_id = str(uuid.uuid4())
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=s.presign_ttl_seconds)
    with unit_of_work() as uow:
        check_group(uow, group_id)
        images.check_quota(uow, owner, size)
        uow.run(
            "INSERT INTO uploads (id, owner_id, file_name, content_type, size, description,"
            " is_private, access_key_hash, group_id, expires_at)"
            " VALUES (CAST(:id AS uuid), :owner, :name, :ct, :size, :descr, :priv, :kh, :grp, :exp)",
            id=upload_id, owner=owner.user_id, name=sanitize_filename(file_name), ct=content_type,
            size=size, descr=description, priv=is_private,
            kh=hash_secret(access_key) if access_key else None, grp=group_id, exp=expires)
        uow.commit()
    post = presigning_client().generate_presigned_post(
        Bucket=s.bucket, Key=INCOMING + upload_id,
        Fields={"Content-Type": content_type},
        Conditions=[["content-length-range", 1, size], {"Content-Type": content_type}],
        ExpiresIn=s.presign_ttl_seconds)
    return UploadTicket(upload_id, post["url"], post["fields"], expires, size, access_key)


def status(upload_id: str, who: Principal) -> dict[str, Any]:
    try:
        uuid.UUID(upload_id)
    except ValueError as exc:
        raise NotFound("upload not found", code="upload_not_found") from exc
    with unit_of_work() as uow:
        row = uow.one("SELECT owner_id, status, image_id, error,"
                      # pending, the POST long expired, never claimed by an ingest: no file
                      # arrived (a killed or failed ingest counted an attempt; the sweep decides).
                      " (status = 'pending' AND attempts = 0"
                      "  AND expires_at < now() - interval '5 minutes') AS expired"
                      " FROM uploads WHERE id = CAST(:id AS uuid)", id=upload_id)
    if row is None or (row["owner_id"] != who.user_id and not who.is_admin):
        raise NotFound("upload not found", code="upload_not_found")
    if row["expired"]:  # the presigned POST expired and no file ever arrived
        return {"uploadId": upload_id, "status": "failed",
                "error": "no file was uploaded before the upload URL expired"}
    body: dict[str, Any] = {"uploadId": upload_id, "status": row["status"]}
    if row["image_id"] is not None:
        body["imageId"] = row["image_id"]
    if row["error"]:
        body["error"] = row["error"]
    return body


def _store() -> ChunkStore:
    """The chunk store, imported on first use (uploads_get and uploads_create never need it)."""
    from imagerepo.chunkstore import default_store

    return default_store()


def _claim(upload_id: str) -> dict[str, Any] | None:
    with unit_of_work() as uow:
        row = uow.one(
            "UPDATE uploads SET status = 'processing', attempts = attempts + 1, updated_at = now()"
            " WHERE id = CAST(:id AS uuid) AND attempts < :max AND (status = 'pending'"
            "   OR (status = 'processing' AND updated_at < now() - interval '5 minutes'))"
            " RETURNING id, owner_id, file_name, content_type, size, description, is_private,"
            " access_key_hash, group_id, attempts",
            id=upload_id, max=MAX_ATTEMPTS)
        uow.commit()
    return row


def _in_progress(upload_id: str) -> bool:
    try:
        uuid.UUID(upload_id)
    except ValueError:
        return False
    with unit_of_work() as uow:
        return bool(uow.scalar("SELECT status IN ('pending', 'processing') FROM uploads"
                               " WHERE id = CAST(:id AS uuid)", id=upload_id))


def _finish(upload_id: str, status: str, *, error: str | None = None) -> None:
    with unit_of_work() as uow:
        uow.run("UPDATE uploads SET status = :st, error = :err, updated_at = now()"
                " WHERE id = CAST(:id AS uuid)", id=upload_id, st=status, err=error)
        uow.commit()


def _spool(key: str, max_size: int) -> IO[bytes]:
    """Copy the incoming object to a temporary file in 1 MiB pieces (bounded memory)."""
    size, body = _store().open_object(key)
    if size > max_size:
        body.close()
        raise BadRequest(f"the uploaded object is larger than the declared {max_size} bytes",
                         code="size_mismatch")
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller, who closes it
    shutil.copyfileobj(body, spool, _COPY_BUFFER)
    spool.seek(0)
    return spool


def ingest(upload_id: str) -> str:
    """Turn incoming/<id> into an image; returns the upload's final status."""
    from imagerepo import imaging  # Pillow: only the ingest function loads it
    from imagerepo.chunkstore import rewinding

    key = INCOMING + upload_id
    store = _store()
    job = _claim(upload_id)
    if job is None:
        # A duplicate or late event, or an unknown key: make sure the object is gone, unless
        # another ingest holds the upload (its file is still needed if that one dies: the sweep).
        if not _in_progress(upload_id):
            store.delete_objects([key])
        return "skipped"
    started = time.perf_counter()
    try:
        with _spool(key, int(job["size"])) as spool:
            info = imaging.inspect_image(cast(BinaryIO, spool),
                                         max_pixels=settings().max_image_pixels)
            size = spool.seek(0, 2)

            with unit_of_work() as uow:
                blob = store.put_stream(uow, rewinding(spool))
                image_id = images.insert(uow, images.Record(
                    owner_id=job["owner_id"], sha256=blob.sha256, name=job["file_name"],
                    description=job["description"], is_private=job["is_private"],
                    access_key_hash=job["access_key_hash"], group_id=job["group_id"],
                    info=info, size=size))
                uow.run("UPDATE uploads SET status = 'ready', image_id = :img, error = NULL,"
                        " updated_at = now() WHERE id = CAST(:id AS uuid)", img=image_id, id=upload_id)
                if size > settings().max_response_bytes:
                    # Served by a 307 to materialized/<sha>: the incoming object already is
                    # that copy, so the first download need not reassemble it from chunks.
                    from imagerepo.downloads import materialized_key

                    store.copy_object(key, materialized_key(blob.sha256), info.content_type)
                uow.commit()
    except AppError as exc:  # RetryableStoreError is a 503 AppError
        if exc.status < 500:
            _finish(upload_id, "failed", error=exc.message)
            store.delete_objects([key])
            logger.info("upload refused", extra={"upload_id": upload_id, "reason": exc.message})
            return "failed"
        _retry_or_fail(upload_id, job, exc)
        raise
    except Exception as exc:
        _retry_or_fail(upload_id, job, exc)
        raise
    store.delete_objects([key])
    observability.count(observability.UPLOADS)
    observability.metric(observability.INGEST_LATENCY, round((time.perf_counter() - started) * 1000, 1),
                         observability.MetricUnit.Milliseconds)
    logger.info("upload ingested", extra={"upload_id": upload_id, "image_id": image_id})
    return "ready"


STALE_SECONDS = 300  # as _claim: a processing upload untouched this long was abandoned


def sweep(stale_seconds: int = STALE_SECONDS, limit: int = 20) -> dict[str, str]:
    """Re-drive uploads left behind, synchronously, in this process: processing past
    ``stale_seconds`` (the ingest died), or pending with their object present (the event was
    lost); fail the ones whose object never came (expired) or is gone; remove incoming/
    objects of settled uploads. Returns ``{upload id: outcome}``.

    For a quiet system (tests, ``devstack.invariants.settle_and_check``): deployed, the
    housekeeping schedule runs :func:`imagerepo.recovery.sweep`, which re-drives through
    S3 events instead."""
    with unit_of_work() as uow:
        rows = uow.rows(
            "SELECT id::text AS id, status, expires_at < now() AS expired FROM uploads"
            " WHERE status IN ('pending', 'processing')"
            " AND updated_at < now() - make_interval(secs => :stale)"
            " ORDER BY updated_at LIMIT :limit", stale=stale_seconds, limit=limit)
    from imagerepo.chunkstore import default_store

    store = default_store()
    outcomes: dict[str, str] = {}
    for row in rows:
        upload_id = row["id"]
        try:
            if store.exists(INCOMING + upload_id):
                if row["status"] == "processing":  # let _claim take it although recently touched
                    _touch_stale(upload_id)
                outcomes[upload_id] = ingest(upload_id)
            elif row["expired"] or row["status"] == "processing":
                _finish(upload_id, "failed", error="the uploaded file never arrived or was lost")
                outcomes[upload_id] = "failed"
        except Exception:  # noqa: BLE001 - one bad upload must not stop the sweep
            logger.exception("upload sweep failed", extra={"upload_id": upload_id})
            outcomes[upload_id] = "error"
    _remove_settled_objects()
    return outcomes


def _remove_settled_objects() -> None:
    """incoming/ objects of uploads already ready or failed (their delete failed after the commit)."""
    from imagerepo.chunkstore import default_store

    store = default_store()
    ids = [o["Key"].removeprefix(INCOMING) for page in store.list_objects(INCOMING) for o in page]
    ids = [i for i in ids if _UUID.match(i)]
    if not ids:
        return
    with unit_of_work() as uow:
        settled = [r[0] for r in uow.run(
            "SELECT id::text FROM uploads WHERE id = ANY(CAST(:ids AS uuid[]))"
            " AND status IN ('ready', 'failed')", ids=ids)]
    if settled:
        store.delete_objects(INCOMING + i for i in settled)


def _touch_stale(upload_id: str) -> None:
    with unit_of_work() as uow:
        uow.run("UPDATE uploads SET updated_at = now() - interval '1 hour'"
                " WHERE id = CAST(:id AS uuid) AND status = 'processing'", id=upload_id)
        uow.commit()


def _retry_or_fail(upload_id: str, job: dict[str, Any], exc: Exception) -> None:
    """Transient failure: back to pending for the retry, or failed once out of attempts."""
    if job["attempts"] >= MAX_ATTEMPTS:
        _finish(upload_id, "failed", error=f"could not be processed: {type(exc).__name__}")
        _store().delete_objects([INCOMING + upload_id])
    else:
        _finish(upload_id, "pending")

