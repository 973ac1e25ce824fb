"""The scheduled sweep: work whose asynchronous event was lost, or whose worker died, is re-driven.

An upload still ``pending`` after its presigned POST expired, or ``processing`` past
the ingest's deadline (the function was killed, timed out, or all its retries failed
into the failure queue), is sent to the ingest function again when its file is in
``incoming/``: the object is copied onto itself, and that new ObjectCreated event runs
ingest through the bucket's own notification (no Lambda API call, so no NAT or Lambda
endpoint is needed in the VPC). It ends ``failed`` when the file is gone or after ``GIVE_UP``. OneDrive
import jobs not advanced for longer than the worker's timeout are re-invoked the same
way (the worker resumes from its rows), and failed after ``GIVE_UP``.

Re-driving is idempotent: ingest and the import worker claim their work with a
conditional UPDATE, so a re-drive racing a late original event does the work once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from imagerepo import uploads
from imagerepo.chunkstore import default_store
from imagerepo.db import unit_of_work
from imagerepo.errors import AppError
from imagerepo.lambdas import invoke_async
from imagerepo.observability import logger

#: An upload in ``processing`` this long has no live ingest (its timeout is 5 minutes).
UPLOAD_STALE_SECONDS = 600
#: A job not advanced this long has no live worker (its timeout is 15 minutes).
JOB_STALE_SECONDS = 1200
#: After this, stop re-driving and report failure (incoming/ objects expire after a day too).
GIVE_UP_SECONDS = 86400
BATCH = 50


@dataclass
class SweepResult:
    uploads_redriven: list[str] = field(default_factory=list)
    uploads_failed: list[str] = field(default_factory=list)
    jobs_redriven: list[str] = field(default_factory=list)
    jobs_failed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"uploads": {"redriven": self.uploads_redriven, "failed": self.uploads_failed},
                "importJobs": {"redriven": self.jobs_redriven, "failed": self.jobs_failed}}


def sweep(*, worker_function: str | None = None) -> SweepResult:
    """One pass over stuck uploads and import jobs; the worker's name defaults to the environment."""
    result = SweepResult()
    _sweep_uploads(result)
    _sweep_jobs(worker_function or os.environ.get("ONEDRIVE_WORKER_FUNCTION", ""), result)
    return result


def _incoming(upload_id: str) -> dict[str, Any] | None:
    """HEAD of incoming/<id>; None when absent."""
    return default_store().head(uploads.INCOMING + upload_id)


def _touch_incoming(upload_id: str, head: dict[str, Any]) -> None:
    """Copy the object onto itself: a new ObjectCreated:Copy event for the ingest function."""
    key = uploads.INCOMING + upload_id
    default_store().copy_object(key, key, str(head.get("ContentType") or "application/octet-stream"),
                                metadata={"redriven-by": "sweep"})


def _sweep_uploads(result: SweepResult) -> None:
    with unit_of_work() as uow:
        rows = uow.rows(
            "SELECT id::text AS id, status, attempts,"
            " created_at < now() - make_interval(secs => :give_up) AS too_old"
            " FROM uploads WHERE status IN ('pending', 'processing')"
            " AND expires_at < now() AND updated_at < now() - make_interval(secs => :stale)"
            " ORDER BY updated_at LIMIT :batch",
            stale=UPLOAD_STALE_SECONDS, give_up=GIVE_UP_SECONDS, batch=BATCH)
    for row in rows:
        upload_id = row["id"]
        head = None if row["too_old"] or row["attempts"] >= uploads.MAX_ATTEMPTS else _incoming(upload_id)
        if row["too_old"] or row["attempts"] >= uploads.MAX_ATTEMPTS:
            _fail_upload(upload_id, row["status"], "could not be processed (gave up after retries)")
            result.uploads_failed.append(upload_id)
        elif head is None:
            reason = ("no file was uploaded before the upload URL expired" if row["status"] == "pending"
                      else "the upload was interrupted and its file is gone; upload it again")
            _fail_upload(upload_id, row["status"], reason)
            result.uploads_failed.append(upload_id)
        elif _requeue_upload(upload_id, row["status"]):
            _touch_incoming(upload_id, head)
            result.uploads_redriven.append(upload_id)
    if result.uploads_redriven or result.uploads_failed:
        logger.info("stuck uploads swept", extra=result.to_json()["uploads"])


def _requeue_upload(upload_id: str, status: str) -> bool:
    """Back to ``pending`` (so ingest can claim it), unless it moved on meanwhile."""
    with unit_of_work() as uow:
        row = uow.one("UPDATE uploads SET status = 'pending', updated_at = now()"
                      " WHERE id = CAST(:id AS uuid) AND status = :st RETURNING id", id=upload_id, st=status)
        uow.commit()
    return row is not None


def _fail_upload(upload_id: str, status: str, reason: str) -> None:
    with unit_of_work() as uow:
        uow.run("UPDATE uploads SET status = 'failed', error = :err, updated_at = now()"
                " WHERE id = CAST(:id AS uuid) AND status = :st", id=upload_id, st=status, err=reason)
        uow.commit()
    default_store().delete_objects([uploads.INCOMING + upload_id])


def _sweep_jobs(worker_function: str, result: SweepResult) -> None:
    with unit_of_work() as uow:
        rows = uow.rows(
            "SELECT id::text AS id, created_at < now() - make_interval(secs => :give_up) AS too_old"
            " FROM onedrive_import_jobs WHERE status IN ('queued', 'listing', 'running')"
            " AND updated_at < now() - make_interval(secs => :stale) ORDER BY updated_at LIMIT :batch",
            stale=JOB_STALE_SECONDS, give_up=GIVE_UP_SECONDS, batch=BATCH)
    for row in rows:
        if row["too_old"]:
            from imagerepo.onedrive import importer  # MSAL and Graph only when needed

            importer.fail_job(row["id"], "the import stopped and was given up after a day")
            result.jobs_failed.append(row["id"])
        elif worker_function:
            with unit_of_work() as uow:  # one re-drive per stale period
                uow.run("UPDATE onedrive_import_jobs SET updated_at = now() WHERE id = CAST(:id AS uuid)",
                        id=row["id"])
                uow.commit()
            try:
                invoke_async(worker_function, {"jobId": row["id"]})
            except AppError:
                logger.exception("re-drive failed; the next sweep tries again", extra={"job_id": row["id"]})
                continue
            result.jobs_redriven.append(row["id"])
