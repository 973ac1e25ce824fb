"""The sweep re-invokes OneDrive import jobs that stopped advancing, and gives up on old ones."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.helpers import db as _db
from tests.helpers import load_event, register_and_login, wait_for

pytestmark = pytest.mark.integration


def _job(admin_id: int, *, stale: str, age: str) -> str:
    job_id = str(uuid.uuid4())
    _db("INSERT INTO onedrive_import_jobs (id, admin_id, status, request, created_at, started_at, updated_at)"
        " VALUES (CAST(:id AS uuid), :a, 'running', CAST('{}' AS jsonb), now() - CAST(:age AS interval),"
        " now() - CAST(:age AS interval), now() - CAST(:stale AS interval))",
        id=job_id, a=admin_id, stale=stale, age=age)
    return job_id


def _status(job_id: str) -> tuple[str, str | None]:
    row = _db("SELECT status, error FROM onedrive_import_jobs WHERE id = CAST(:id AS uuid)", id=job_id)[0]
    return str(row[0]), row[1]


def test_stalled_job_is_re_invoked_and_old_job_given_up(stack: Any, base_url: str) -> None:
    _, user = register_and_login(base_url)
    stalled = _job(user["id"], stale="1 hour", age="2 hours")
    fresh = _job(user["id"], stale="1 minute", age="2 hours")
    ancient = _job(user["id"], stale="3 days", age="3 days")
    try:
        swept = stack.runtime.invoke("SweepFunction", load_event("sweep"))
        assert stalled in swept["importJobs"]["redriven"]
        assert ancient in swept["importJobs"]["failed"]
        assert fresh not in swept["importJobs"]["redriven"] + swept["importJobs"]["failed"]
        assert _status(ancient) == ("failed", "the import stopped and was given up after a day")
        # The worker really ran again: without an OneDrive app here, it ends the job failed.
        assert wait_for(lambda: _status(stalled)[0] == "failed", timeout=30)
        assert _status(fresh) == ("running", None)
    finally:
        for job_id in (stalled, fresh, ancient):
            _db("DELETE FROM onedrive_import_jobs WHERE id = CAST(:id AS uuid)", id=job_id)
