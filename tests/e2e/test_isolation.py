"""Concurrent requests on the real stack each get their own answer: every function runs in
execution environments of its own, one event at a time (issue 9: with handlers sharing one
process, concurrent uploads were refused and thumbnail sizes answered for other requests)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.e2e.conftest import make_jpeg, make_png
from tests.helpers import Api, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def patient_gateway(stack: Any) -> Iterator[None]:
    """These tests check who gets which answer, not latency: on a machine shared with other
    jobs, dozens of simultaneous cold starts may take longer than API Gateway's 30 s."""
    saved = stack.gateway.integration_timeout
    stack.gateway.integration_timeout = 300.0
    yield
    stack.gateway.integration_timeout = saved


def test_32_concurrent_uploads_all_stored_exactly(user: tuple[Api, dict[str, Any]],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lambda")
    api, _ = user
    assert api.get("/me").status_code == 200  # the authorizer's answer for this token is cached
    files = [(f"p{i}.png", make_png(24 + i % 5, 20, seed=9000 + i)) if i % 3 == 0
             else (f"p{i}.jpg", make_jpeg(40 + i, 30, seed=9000 + i)) for i in range(32)]

    def upload(item: tuple[str, bytes]) -> tuple[int, Any]:
        name, data = item
        r = Api(api.base, api.token).post(
            "/images", files={"file": (name, data, "application/octet-stream")},
            data={"description": name, "isPrivate": "0"})
        return r.status_code, r.json()

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(upload, files))
    assert [status for status, _ in answers] == [201] * 32, [b for s, b in answers if s != 201]
    for (name, data), (_, image) in zip(files, answers, strict=True):
        assert (image["description"], image["sha256"]) == (name, hashlib.sha256(data).hexdigest())
        r = api.get(f"/images/{image['id']}")
        assert r.status_code == 200 and r.content == data, name
    # Each function's log lines carry its own name, and each upload its own correlation id.
    records = [(r.name, json.loads(r.getMessage())) for r in caplog.records
               if r.name.startswith("lambda.") and r.getMessage().startswith("{")]
    lines = [(name, line) for name, line in records if "level" in line]  # Logger's, not metrics
    assert lines and all(name == f"lambda.{line['function_name']}" for name, line in lines)
    created = [line for name, line in lines if line.get("message") == "image created"]
    assert {line["image_id"] for line in created} >= {image["id"] for _, image in answers}
    assert len({line["correlation_id"] for line in created}) == len(created)


def test_concurrent_thumbnail_requests_each_get_their_own_answer(
        user: tuple[Api, dict[str, Any]]) -> None:
    api, _ = user
    r = api.post("/images", files={"file": ("t.jpg", make_jpeg(300, 200, seed=77))})
    assert r.status_code == 201, r.text
    image_id = r.json()["id"]
    wait_for(lambda: api.get(f"/images/{image_id}/info").json()["thumbnails"]["status"] == "ready",
             timeout=60)
    sizes = ["small", "bogus", "preview", "", "SMALL", "small", "preview", "bogus"] * 8
    expected = {"small": (200, "image/webp"), "preview": (200, "image/jpeg"),
                "": (200, "image/webp")}

    def fetch(size: str) -> tuple[str, int, str, bytes]:
        query = f"?size={size}" if size else ""
        r = Api(api.base, api.token).get(f"/images/{image_id}/thumbnail{query}")
        return size, r.status_code, r.headers.get("content-type", ""), r.content

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(fetch, sizes))
    bodies: dict[str, set[bytes]] = {}
    for size, status, content_type, body in answers:
        if size in expected:
            assert (status, content_type) == expected[size], (size, status, body[:200])
            bodies.setdefault(size or "small", set()).add(body)
        else:
            assert status == 400 and b'"invalid_size"' in body, (size, status, body[:200])
    assert len(bodies["small"]) == 1 and len(bodies["preview"]) == 1
    assert bodies["small"] != bodies["preview"]


def test_authorizer_and_s3_events_run_in_execution_environments(
        stack: Any, user: tuple[Api, dict[str, Any]]) -> None:
    api, _ = user
    r = api.post("/images", files={"file": ("e.jpg", make_jpeg(64, 64, seed=5150))})
    assert r.status_code == 201, r.text
    image_id = r.json()["id"]
    wait_for(lambda: api.get(f"/images/{image_id}/info").json()["thumbnails"]["status"] == "ready",
             timeout=60)
    runtime = stack.runtime
    pids = {fid: {e.pid for e in runtime.workers(fid)}
            for fid in ("AuthorizerFunction", "ThumbnailerFunction", "ImagesCreateFunction")}
    assert all(pids.values()), pids  # each has worker processes of its own
    assert not set.intersection(*pids.values())
    assert os.getpid() not in set.union(*pids.values())
