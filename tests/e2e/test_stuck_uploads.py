"""An ingest killed midway leaves its upload ``processing``; the scheduled sweep re-drives it.

The ingest runs in its own process (the real ``uploads.ingest`` against the real local
Postgres and S3 server) and is SIGKILLed while it waits on a table lock this test holds:
after the claim, the spool, the validation and the chunk PUTs, before the image row. The
upload's deadline is then moved into the past (instead of waiting for it) and the sweep
runs; the upload must end ``ready``, or ``failed`` with a reason when its file is gone.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pg8000.native
import pytest
import requests

from tests.e2e.conftest import make_jpeg
from tests.helpers import Api, load_event, wait_for
from tests.helpers import db as _db

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

# The real ingest, with its claim made to wait until the file is in the bucket: the claim is
# taken first, so the S3 event's own ingest finds the upload busy and leaves it alone.
_INGEST = """
import sys, time
from imagerepo import uploads
from imagerepo.chunkstore import default_store

real_claim = uploads._claim

def claim_then_wait_for_the_file(upload_id):
    job = real_claim(upload_id)
    print("claimed", flush=True)
    store = default_store()
    for _ in range(1200):
        try:
            store.s3.head_object(Bucket=store.bucket, Key=uploads.INCOMING + upload_id)
            break
        except Exception:
            time.sleep(0.05)
    return job

uploads._claim = claim_then_wait_for_the_file
print(uploads.ingest(sys.argv[1]), flush=True)
"""


def _locking_connection() -> pg8000.native.Connection:
    env = os.environ
    return pg8000.native.Connection(user=env["DB_USER"], password=env["DB_PASSWORD"], host=env["DB_HOST"],
                                    port=int(env["DB_PORT"]), database=env["DB_NAME"])


def _kill_an_ingest_midway(api: Api, data: bytes) -> str:
    """Create an upload, run its ingest in a process, kill it before it records the image."""
    ticket = api.post("/uploads", json={"fileName": "photo.jpg", "contentType": "image/jpeg",
                                        "size": len(data)}).json()
    upload_id = ticket["uploadId"]
    lock = _locking_connection()
    lock.run("BEGIN")
    lock.run("LOCK TABLE images IN SHARE MODE")  # inserts wait; reads go on
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "imagerepo"), str(ROOT)])}
    proc = subprocess.Popen([sys.executable, "-c", _INGEST, upload_id], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "claimed"
        r = requests.post(ticket["url"], data=ticket["fields"], files={"file": ("photo.jpg", data)},
                          timeout=60)
        assert r.status_code in (200, 201, 204)

        def blocked_insert() -> Any:
            lock.run("SELECT pg_stat_clear_snapshot()")  # else the transaction sees one snapshot
            rows = lock.run("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                            " AND query LIKE '%INSERT INTO images %'")
            return rows[0][0] if rows else None

        pid = wait_for(blocked_insert, timeout=60)
        assert pid, "the ingest never reached the image insert"
        proc.kill()  # SIGKILL: no except clause, no finally, nothing recorded
        proc.wait(timeout=30)
        lock.run("SELECT pg_terminate_backend(:pid)", pid=pid)  # what Postgres does once it notices
    finally:
        if proc.poll() is None:
            proc.kill()
        lock.run("ROLLBACK")
        lock.close()
    return str(upload_id)


def _keys(stack: Any, prefix: str) -> list[str]:
    reply = stack.s3.client().list_objects_v2(Bucket=stack.s3_bucket, Prefix=prefix)
    return [o["Key"] for o in reply.get("Contents", [])]


def _past_the_deadline(upload_id: str) -> None:
    _db("UPDATE uploads SET updated_at = now() - interval '1 hour', expires_at = now() - interval '1 hour'"
        " WHERE id = CAST(:id AS uuid)", id=upload_id)


def test_killed_ingest_is_re_driven_by_the_sweep_and_ends_ready(stack: Any,
                                                               user: tuple[Api, dict[str, Any]]) -> None:
    api, _ = user
    data = make_jpeg(640, 480)
    upload_id = _kill_an_ingest_midway(api, data)
    assert api.get(f"/uploads/{upload_id}").json() == {"uploadId": upload_id, "status": "processing"}
    assert _keys(stack, f"incoming/{upload_id}") == [f"incoming/{upload_id}"], "the file is kept for a retry"
    sha = hashlib.sha256(data).hexdigest()
    assert _db("SELECT count(*) FROM images WHERE blob_sha256 = :s", s=sha) == [[0]]

    _past_the_deadline(upload_id)
    swept = stack.runtime.invoke("SweepFunction", load_event("sweep"))
    assert upload_id in swept["uploads"]["redriven"]

    status = wait_for(lambda: (s := api.get(f"/uploads/{upload_id}").json())["status"]
                      in ("ready", "failed") and s, timeout=60)
    assert status["status"] == "ready", status
    r = api.get(f"/images/{status['imageId']}")
    assert r.status_code == 200 and r.content == data
    assert not _keys(stack, f"incoming/{upload_id}")
    assert _db("SELECT attempts FROM uploads WHERE id = CAST(:id AS uuid)", id=upload_id) == [[2]]


def test_killed_ingest_whose_file_is_gone_ends_failed(stack: Any, user: tuple[Api, dict[str, Any]]) -> None:
    api, _ = user
    upload_id = _kill_an_ingest_midway(api, make_jpeg(320, 240))
    stack.s3.client().delete_object(Bucket=stack.s3_bucket, Key=f"incoming/{upload_id}")
    _past_the_deadline(upload_id)
    swept = stack.runtime.invoke("SweepFunction", load_event("sweep"))
    assert upload_id in swept["uploads"]["failed"]
    assert api.get(f"/uploads/{upload_id}").json() == {
        "uploadId": upload_id, "status": "failed",
        "error": "the upload was interrupted and its file is gone; upload it again"}


def test_sweep_leaves_uploads_within_their_deadline_alone(stack: Any,
                                                          user: tuple[Api, dict[str, Any]]) -> None:
    api, _ = user
    ticket = api.post("/uploads", json={"fileName": "a.png", "contentType": "image/png", "size": 10}).json()
    swept = stack.runtime.invoke("SweepFunction", load_event("sweep"))
    assert ticket["uploadId"] not in swept["uploads"]["redriven"] + swept["uploads"]["failed"]
    assert api.get(f"/uploads/{ticket['uploadId']}").json()["status"] == "pending"
