"""Import jobs: OneDrive files and folders into image groups, asynchronously and idempotently.

``POST /admin/onedrive/import`` (:func:`start`) checks the request and the drive
items, resolves the target groups, records a job and invokes the worker function
asynchronously (``InvocationType=Event``). The worker (:func:`run`) lists the
folders (every Graph page) into one row per file, then imports them one by one:
the file is streamed from Graph into a temporary file (bounded), validated by
decoding, stored through the deduplicating chunk store and recorded as an image
in the same transaction that marks its job row done.

Idempotency: each image records ``source='onedrive'`` and ``source_ref`` =
drive id / item id @ content tag (cTag, else a content hash, else eTag). The
unique index on (source, source_ref) makes a re-import of an unchanged file a
no-op (reported as skipped with the existing image id); a changed file has a new
tag and becomes a new image. Identical content under different items is stored
once, as every upload is.

Redelivery and time limits: job and item rows carry their state, so a worker
invoked twice, retried by Lambda, or re-invoking itself before its deadline
carries on where the last one stopped.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, cast

import pg8000.exceptions

from imagerepo import images, imaging, users
from imagerepo.chunkstore import default_store, rewinding
from imagerepo.config import settings
from imagerepo.db import UnitOfWork, unique_violation, unit_of_work
from imagerepo.errors import AppError, BadRequest, NotFound, UpstreamError, reject_unknown_fields
from imagerepo.lambdas import invoke_async
from imagerepo.log import logger
from imagerepo.onedrive import drive
from imagerepo.onedrive.config import onedrive_settings
from imagerepo.onedrive.errors import GraphThrottled, NotConfigured, ReauthorizationRequired
from imagerepo.onedrive.graph import FileTooLarge, GraphClient, item_path, validate_item_id
from imagerepo.security import Principal, generate_access_key, hash_secret

SOURCE = "onedrive"
MAX_IDS = 100
MAX_JOB_FILES = 5000
MAX_DEPTH = 16
MAX_ATTEMPTS = 3
MAX_GROUP_NAME = 100
STALE_CLAIM_SECONDS = 960  # longer than the worker's 900 s Lambda timeout
SAFETY_MS = 60_000  # stop taking new files with less than this left; re-invoke instead
THROTTLE_DEFAULT_SECONDS = 30.0  # a 429/503/509 without Retry-After
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ALLOWED = frozenset({"folderIds", "fileIds", "groupId", "groupName", "recursive", "isPrivate"})


# -- starting a job -------------------------------------------------------------------
def _ids(raw: Any, field: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadRequest(f"{field} must be a list of OneDrive item ids", code="invalid_field")
    return list(dict.fromkeys(validate_item_id(v, field) for v in raw))


def _group_name(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not 1 <= len(raw.strip()) <= MAX_GROUP_NAME:
        raise BadRequest(f"groupName must be 1 to {MAX_GROUP_NAME} characters", code="invalid_field")
    return raw.strip()


def ensure_group(uow: UnitOfWork, name: str, created_by: int) -> dict[str, Any]:
    """The group with this name (case-insensitive), created if missing."""
    name = "".join(ch for ch in name if ch.isprintable()).strip()[:MAX_GROUP_NAME] or "OneDrive import"
    row = uow.one(
        "INSERT INTO groups (name, created_by) VALUES (:n, :u)"
        " ON CONFLICT ((lower(name))) DO UPDATE SET name = groups.name"
        " RETURNING id, name", n=name, u=created_by)
    assert row is not None
    return {"id": int(row["id"]), "name": row["name"]}


def start(admin: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """Validate, resolve groups, record the job, invoke the worker; answers the 202 body."""
    reject_unknown_fields(body, _ALLOWED)
    folder_ids, file_ids = _ids(body.get("folderIds"), "folderIds"), _ids(body.get("fileIds"), "fileIds")
    if not folder_ids and not file_ids:
        raise BadRequest("give folderIds and/or fileIds to import", code="nothing_to_import")
    if len(folder_ids) + len(file_ids) > MAX_IDS:
        raise BadRequest(f"at most {MAX_IDS} items per import", code="too_many_items")
    group_id = images.parse_group_id(body.get("groupId"))
    group_name = _group_name(body.get("groupName"))
    if group_id is not None and group_name is not None:
        raise BadRequest("give groupId or groupName, not both", code="invalid_field")
    recursive = images.parse_bool(body.get("recursive", False), "recursive")
    is_private = images.parse_bool(body.get("isPrivate", False), "isPrivate")
    cfg = onedrive_settings()
    if not cfg.worker_function:
        raise NotConfigured("OneDrive import is not configured: no worker function")
    graph = drive.client_for(admin.user_id, cfg=cfg)
    roots: list[dict[str, Any]] = []
    for kind, ids in (("folder", folder_ids), ("file", file_ids)):
        for item_id in ids:
            item = graph.get_json(item_path(item_id))
            if ("folder" in item) != (kind == "folder"):
                raise BadRequest(f"{item_id} is not a {kind}", code=f"not_a_{kind}")
            roots.append({"id": str(item["id"]), "name": str(item.get("name") or ""), "kind": kind})
    job_id = uuid.uuid4()
    groups: dict[int, dict[str, Any]] = {}
    with unit_of_work() as uow:
        fixed: dict[str, Any] | None = None
        if group_id is not None:
            images.check_group(uow, group_id)
            fixed = {"id": group_id, "name": uow.scalar("SELECT name FROM groups WHERE id = :g", g=group_id)}
        elif group_name is not None:
            fixed = ensure_group(uow, group_name, admin.user_id)
        for root in roots:
            target = fixed
            if target is None and root["kind"] == "folder":
                target = ensure_group(uow, root["name"], admin.user_id)  # a group named after the folder
            root["groupId"] = target["id"] if target else None
            if target:
                groups[target["id"]] = target
        request = {"roots": roots, "recursive": recursive, "isPrivate": is_private}
        uow.run("INSERT INTO onedrive_import_jobs (id, admin_id, request)"
                " VALUES (:id, :a, CAST(:r AS jsonb))",
                id=job_id, a=admin.user_id, r=json.dumps(request))
        uow.commit()
    try:
        invoke_async(cfg.worker_function, {"jobId": str(job_id)})
    except UpstreamError as exc:
        _fail_job(str(job_id), "the import worker could not be started")
        raise UpstreamError("the import worker could not be started; try again",
                            code="onedrive_import_not_started") from exc
    logger.info("onedrive import queued", extra={"job_id": str(job_id), "roots": len(roots)})
    return {"jobId": str(job_id), "status": "queued", "groups": list(groups.values()),
            "statusUrl": f"/admin/onedrive/import/{job_id}"}


# -- job status -----------------------------------------------------------------------
def _job_uuid(raw: str) -> str:
    if not isinstance(raw, str) or not _UUID.match(raw):
        raise BadRequest("jobId must be a UUID", code="invalid_id")
    return raw.lower()


def status(job_id: str, who: Principal) -> dict[str, Any]:
    """Only the admin who created the job may read it: it names files of that admin's own
    OneDrive. Another admin gets the same 404 as for an unknown job."""
    job_id = _job_uuid(job_id)
    with unit_of_work() as uow:
        job = uow.one("SELECT id, admin_id, status, request, error, note, created_at, started_at,"
                      " finished_at, resume_at FROM onedrive_import_jobs WHERE id = CAST(:id AS uuid)",
                      id=job_id)
        if job is None or int(job["admin_id"]) != who.user_id:
            raise NotFound(f"import job {job_id} not found", code="job_not_found")
        counts = dict(uow.run("SELECT status, count(*) FROM onedrive_import_items WHERE job_id = :j"
                              " GROUP BY status", j=job["id"]))
        items = uow.rows("SELECT drive_item_id, name, status, reason, image_id, group_id"
                         " FROM onedrive_import_items WHERE job_id = :j ORDER BY id LIMIT :n",
                         j=job["id"], n=MAX_JOB_FILES)
    request = job["request"] if isinstance(job["request"], dict) else json.loads(job["request"])

    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "jobId": str(job["id"]), "status": job["status"], "createdBy": job["admin_id"],
        "createdAt": iso(job["created_at"]), "startedAt": iso(job["started_at"]),
        "finishedAt": iso(job["finished_at"]), "error": job["error"], "note": job["note"],
        "throttledUntil": iso(job["resume_at"]),
        "total": sum(int(v) for v in counts.values()),
        "done": int(counts.get("done", 0)), "skipped": int(counts.get("skipped", 0)),
        "failed": int(counts.get("failed", 0)),
        "pending": int(counts.get("pending", 0)) + int(counts.get("processing", 0)),
        "roots": [{k: r.get(k) for k in ("id", "name", "kind", "groupId")} for r in request.get("roots", [])],
        "items": [{"driveItemId": i["drive_item_id"], "name": i["name"], "status": i["status"],
                   "reason": i["reason"], "imageId": i["image_id"], "groupId": i["group_id"]}
                  for i in items],
    }


# -- the worker -----------------------------------------------------------------------
def source_ref(item: dict[str, Any]) -> str:
    """drive id / item id @ content tag: changes when (and only when) the content changes."""
    hashes = (item.get("file") or {}).get("hashes") or {}
    tag = (item.get("cTag") or hashes.get("sha256Hash") or hashes.get("sha1Hash")
           or hashes.get("quickXorHash") or item.get("eTag") or item.get("lastModifiedDateTime") or "")
    drive_id = (item.get("parentReference") or {}).get("driveId") or ""
    return f"{drive_id}/{item['id']}@{tag}"


def _claim_job(job_id: str) -> dict[str, Any] | None:
    with unit_of_work() as uow:
        job = uow.one(
            "UPDATE onedrive_import_jobs SET status = CASE WHEN status = 'queued' THEN 'listing'"
            " ELSE status END, started_at = coalesce(started_at, now()), updated_at = now()"
            " WHERE id = CAST(:id AS uuid) AND status IN ('queued', 'listing', 'running')"
            " RETURNING id, admin_id, status, request, resume_at", id=job_id)
        uow.commit()
    if job is not None and not isinstance(job["request"], dict):
        job["request"] = json.loads(job["request"])
    return job


def fail_job(job_id: str, error: str) -> None:
    """The job and its unfinished items end failed with ``error`` (also used by the sweep)."""
    _fail_job(job_id, error)


def _fail_job(job_id: str, error: str) -> None:
    with unit_of_work() as uow:
        uow.run("UPDATE onedrive_import_items SET status = 'failed', reason = :r, finished_at = now()"
                " WHERE job_id = CAST(:id AS uuid) AND status IN ('pending', 'processing')",
                id=job_id, r=f"not imported: {error}")
        uow.run("UPDATE onedrive_import_jobs SET status = 'failed', error = :e, finished_at = now(),"
                " updated_at = now() WHERE id = CAST(:id AS uuid)", id=job_id, e=error)
        uow.commit()


def _add_items(job: dict[str, Any], batch: list[tuple[dict[str, Any], int | None]]) -> None:
    """One row per file; non-images are recorded as skipped right away (nothing to download)."""
    with unit_of_work() as uow:
        for item, group_id in batch:
            image_like = drive.is_image(item)
            mime = str((item.get("file") or {}).get("mimeType") or "")
            uow.run(
                "INSERT INTO onedrive_import_items (job_id, drive_item_id, name, size, mime_type,"
                " source_ref, group_id, status, reason, finished_at)"
                " VALUES (:j, :i, :n, :s, :m, :ref, :g, :st, :r, CASE WHEN :st = 'skipped' THEN now() END)"
                " ON CONFLICT (job_id, drive_item_id) DO NOTHING",
                j=job["id"], i=str(item["id"]), n=str(item.get("name") or "")[:255] or "unnamed",
                s=int(item.get("size") or 0), m=mime[:100], ref=source_ref(item), g=group_id,
                st="pending" if image_like else "skipped",
                r=None if image_like else f"not an image ({mime or 'unknown type'})")
        uow.commit()


def _files(graph: GraphClient, folder_id: str, recursive: bool) -> Iterator[dict[str, Any]]:
    """The files of a folder (breadth-first through subfolders when recursive)."""
    queue, seen = [(folder_id, 0)], {folder_id}
    while queue:
        current, depth = queue.pop(0)
        for child in graph.paged(item_path(current) + "/children", {"$top": drive.PAGE_SIZE},
                                 max_items=MAX_JOB_FILES * 2):
            if "folder" in child:
                if recursive and depth < MAX_DEPTH and child["id"] not in seen:
                    seen.add(child["id"])
                    queue.append((str(child["id"]), depth + 1))
            elif "file" in child:
                yield child


def _add_missing_root(job: dict[str, Any], root: dict[str, Any]) -> None:
    with unit_of_work() as uow:
        uow.run("INSERT INTO onedrive_import_items (job_id, drive_item_id, name, source_ref, status,"
                " reason, finished_at) VALUES (:j, :i, :n, '', 'failed', 'no longer in OneDrive', now())"
                " ON CONFLICT (job_id, drive_item_id) DO NOTHING",
                j=job["id"], i=root["id"], n=str(root.get("name") or root["id"])[:255])
        uow.commit()


def _enumerate(job: dict[str, Any], graph: GraphClient) -> None:
    """List every file the job covers into its rows (idempotent: rows are unique per item)."""
    request = job["request"]
    count, note = 0, None
    for root in request.get("roots", []):
        batch: list[tuple[dict[str, Any], int | None]] = []
        try:
            files = ([graph.get_json(item_path(root["id"]))] if root["kind"] == "file"
                     else _files(graph, root["id"], bool(request.get("recursive"))))
            for item in files:
                if count >= MAX_JOB_FILES:
                    note = f"only the first {MAX_JOB_FILES} files were queued"
                    break
                count += 1
                batch.append((item, root.get("groupId")))
                if len(batch) >= 200:
                    _add_items(job, batch)
                    batch = []
        except NotFound:
            _add_missing_root(job, root)
        _add_items(job, batch)
    with unit_of_work() as uow:
        uow.run("UPDATE onedrive_import_jobs SET status = 'running', note = :note, updated_at = now()"
                " WHERE id = :j AND status = 'listing'", j=job["id"], note=note)
        uow.commit()


def _claim_item() -> str:
    return (
        "UPDATE onedrive_import_items SET status = 'processing', claimed_at = now(),"
        " attempts = attempts + 1 WHERE id = ("
        " SELECT id FROM onedrive_import_items WHERE job_id = :j AND (status = 'pending'"
        " OR (status = 'processing' AND claimed_at < now() - make_interval(secs => :stale)))"
        " ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " RETURNING id, drive_item_id, name, size, source_ref, group_id, attempts")


def _finish_item(item_id: int, status: str, reason: str | None = None, image_id: int | None = None,
                 uow: UnitOfWork | None = None) -> None:
    sql = ("UPDATE onedrive_import_items SET status = :s, reason = :r, image_id = :img,"
           " finished_at = CASE WHEN :s = 'pending' THEN NULL ELSE now() END WHERE id = :id")
    if uow is not None:
        uow.run(sql, s=status, r=reason, img=image_id, id=item_id)
        return
    with unit_of_work() as own:
        own.run(sql, s=status, r=reason, img=image_id, id=item_id)
        own.commit()


def _release_item(item_id: int) -> None:
    with unit_of_work() as uow:
        uow.run("UPDATE onedrive_import_items SET status = 'pending', finished_at = NULL,"
                " attempts = greatest(attempts - 1, 0) WHERE id = :id", id=item_id)
        uow.commit()


def _existing_image(ref: str) -> int | None:
    with unit_of_work() as uow:
        found = uow.scalar("SELECT id FROM images WHERE source = :src AND source_ref = :ref",
                           src=SOURCE, ref=ref)
    return int(found) if found is not None else None



@contextmanager
def _spool() -> Iterator[BinaryIO]:
    with tempfile.TemporaryFile() as fp:
        yield cast("BinaryIO", fp)


def _is_source_conflict(exc: pg8000.exceptions.DatabaseError) -> bool:
    return unique_violation(exc) == "images_source_key"


def _import_one(job: dict[str, Any], item: dict[str, Any], graph: GraphClient, owner: Principal) -> None:
    item_id, ref = int(item["id"]), str(item["source_ref"])
    existing = _existing_image(ref)
    if existing is not None:
        _finish_item(item_id, "skipped", f"unchanged since imported as image {existing}", existing)
        return
    s = settings()
    limit = s.max_large_upload_bytes
    if int(item["size"] or 0) > limit:
        _finish_item(item_id, "skipped", f"too large: {item['size']} bytes, the limit is {limit}")
        return
    with _spool() as spool:
        try:
            size = graph.download(item_path(item["drive_item_id"]) + "/content", spool, max_bytes=limit)
        except FileTooLarge as exc:
            _finish_item(item_id, "skipped", f"too large: {exc}")
            return
        except NotFound:
            _finish_item(item_id, "failed", "no longer in OneDrive")
            return
        spool.seek(0)
        try:
            info = imaging.inspect_image(spool, max_pixels=s.max_image_pixels)
        except AppError as exc:
            if exc.status >= 500:
                raise
            _finish_item(item_id, "skipped", f"not an importable image: {exc.message}")
            return

        # A private import gets a key like any private image; stored hashed, the owner
        # obtains a readable one with POST /images/{id}/access-key.
        private = bool(job["request"].get("isPrivate"))
        key_hash = hash_secret(generate_access_key()) if private else None
        try:
            with unit_of_work() as uow:
                blob = default_store().put_stream(uow, rewinding(spool))
                image_id = images.insert(uow, images.Record(
                    owner_id=owner.user_id, sha256=blob.sha256,
                    name=images.sanitize_filename(item["name"]), description="",
                    is_private=private, access_key_hash=key_hash,
                    group_id=item["group_id"], info=info, size=size, source=SOURCE, source_ref=ref))
                _finish_item(item_id, "done", None, image_id, uow=uow)
                uow.commit()
        except pg8000.exceptions.DatabaseError as exc:
            if not _is_source_conflict(exc):
                raise
            other = _existing_image(ref)
            _finish_item(item_id, "skipped", f"imported meanwhile as image {other}", other)
            return
    logger.info("onedrive file imported", extra={"job_id": str(job["id"]), "image_id": image_id,
                                                 "sha256": blob.sha256, "bytes": size})


def _process(job: dict[str, Any], item: dict[str, Any], graph: GraphClient, owner: Principal) -> None:
    """One file; every outcome is written to its row. Re-raises what ends the whole job."""
    item_id = int(item["id"])
    if int(item["attempts"]) > MAX_ATTEMPTS:
        _finish_item(item_id, "failed", f"gave up after {MAX_ATTEMPTS} attempts")
        return
    try:
        _import_one(job, item, graph, owner)
    except (ReauthorizationRequired, GraphThrottled):
        _release_item(item_id)  # not the file's fault: back to pending, attempt not counted
        raise
    except AppError as exc:
        if exc.status < 500:
            _finish_item(item_id, "failed", exc.message)
        elif int(item["attempts"]) < MAX_ATTEMPTS:
            _finish_item(item_id, "pending", exc.message)
        else:
            _finish_item(item_id, "failed", exc.message)
    except Exception:  # noqa: BLE001 - one file's bug must not stop the job; logged, retried
        logger.exception("onedrive import of one file failed", extra={"job_id": str(job["id"])})
        retry = int(item["attempts"]) < MAX_ATTEMPTS
        _finish_item(item_id, "pending" if retry else "failed", "internal error while importing")


def _throttled(job_id: str, exc: GraphThrottled) -> dict[str, Any]:
    """Record until when Graph asked us to wait; the job as claimed again."""
    wait = exc.retry_after if exc.retry_after is not None else THROTTLE_DEFAULT_SECONDS
    with unit_of_work() as uow:
        uow.run("UPDATE onedrive_import_jobs SET resume_at = now() + make_interval(secs => :w),"
                " updated_at = now() WHERE id = CAST(:id AS uuid)", id=job_id, w=float(wait))
        uow.commit()
    logger.info("onedrive import throttled", extra={"job_id": job_id, "retry_after": wait})
    job = _claim_job(job_id)
    if job is None:
        raise AppError("the import job disappeared while throttled")
    return job


def _wait_until(resume_at: Any, remaining_ms: Callable[[], int], continue_with: str | None,
                job_id: str) -> bool:
    """Sleep until ``resume_at`` if this invocation's budget allows; else sleep what it
    can, re-invoke the worker (it waits the rest) and answer False."""
    if resume_at is None:
        return True
    wait = (resume_at - dt.datetime.now(dt.UTC)).total_seconds()
    if wait <= 0:
        return True
    budget = (remaining_ms() - SAFETY_MS) / 1000
    if wait <= budget or not continue_with:
        time.sleep(max(0.0, min(wait, budget)) if continue_with else wait)
        return True
    time.sleep(max(0.0, budget))
    invoke_async(continue_with, {"jobId": job_id})
    return False


def _work(job: dict[str, Any], remaining_ms: Callable[[], int], continue_with: str | None) -> str | None:
    """List (once) and import files until none is left (None) or time runs short."""
    job_id = str(job["id"])
    owner = users.get(int(job["admin_id"])).principal
    graph = drive.client_for(owner.user_id, worker=True)
    if job["status"] == "listing":
        _enumerate(job, graph)
    while True:
        if continue_with and remaining_ms() < SAFETY_MS:
            invoke_async(continue_with, {"jobId": job_id})
            return "continued"
        with unit_of_work() as uow:
            item = uow.one(_claim_item(), j=job["id"], stale=STALE_CLAIM_SECONDS)
            uow.commit()
        if item is None:
            return None
        _process(job, item, graph, owner)


def run(job_id: str, remaining_ms: Callable[[], int], *, continue_with: str | None = None) -> str:
    """Work on a job until it is done or time runs short; returns what happened.

    ``continue_with`` is this function's own name, re-invoked asynchronously when
    less than ``SAFETY_MS`` is left (the rows say where to resume).
    """
    job_id = _job_uuid(job_id)
    job = _claim_job(job_id)
    if job is None:
        return "nothing to do"
    try:
        while True:
            if not _wait_until(job.get("resume_at"), remaining_ms, continue_with, job_id):
                return "waiting"  # handed over to a later invocation, still throttled
            try:
                outcome = _work(job, remaining_ms, continue_with)
            except GraphThrottled as exc:  # a listing or a download: the job waits, never fails
                job = _throttled(job_id, exc)
                continue
            if outcome is not None:
                return outcome
            break
    except ReauthorizationRequired as exc:
        _fail_job(job_id, f"OneDrive authorization is needed again ({exc.message})")
        return "failed"
    except AppError as exc:
        _fail_job(job_id, exc.message)
        return "failed"
    with unit_of_work() as uow:
        finished = uow.scalar(
            "UPDATE onedrive_import_jobs SET status = 'finished', finished_at = now(), updated_at = now()"
            " WHERE id = :j AND status = 'running' AND NOT EXISTS (SELECT 1 FROM onedrive_import_items"
            " WHERE job_id = :j AND status IN ('pending', 'processing')) RETURNING id", j=job["id"])
        uow.commit()
    return "finished" if finished else "running"
