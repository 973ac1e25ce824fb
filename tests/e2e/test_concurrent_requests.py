"""Concurrent requests through the local gateway never see each other's event.

Powertools keeps the current event on a class attribute shared by every resolver of a
process (``BaseRouter.current_event``); Lambda runs one event per container at a time,
so the local runtime must not let two HTTP invocations overlap in one process. Found by
parallel ``imagerepo upload`` (issue 13): files failed with ``expected_multipart`` or were
stored with another request's bytes.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.e2e.conftest import make_jpeg
from tests.helpers import register_and_login

pytestmark = pytest.mark.e2e


def test_parallel_uploads_and_json_calls_keep_their_own_events(base_url: str) -> None:
    api, user = register_and_login(base_url)
    photos = [make_jpeg(96, 64, seed=70_000 + i) for i in range(24)]

    def upload(data: bytes) -> tuple[int, str, str]:
        r = api.post("/images", files={"file": ("p.jpg", data, "image/jpeg")})
        return r.status_code, r.text, hashlib.sha256(data).hexdigest()

    def ticket(i: int) -> int:
        r = api.post("/uploads", json={"fileName": f"t{i}.jpg", "contentType": "image/jpeg", "size": 100})
        return r.status_code

    def me(_: int) -> Any:
        return api.get("/me").json()

    with ThreadPoolExecutor(12) as pool:
        uploads = [pool.submit(upload, p) for p in photos]
        tickets = [pool.submit(ticket, i) for i in range(12)]
        whoami = [pool.submit(me, i) for i in range(12)]
        results = [f.result() for f in uploads]
    assert [t.result() for t in tickets] == [201] * 12
    assert all(w.result()["id"] == user["id"] for w in whoami)
    assert [status for status, _, _ in results] == [201] * 24, [text for _, text, _ in results]
    stored = sorted(json.loads(text)["sha256"] for _, text, _ in results)
    assert stored == sorted(digest for _, _, digest in results)
