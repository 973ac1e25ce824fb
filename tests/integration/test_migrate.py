"""The DatabaseSchema custom resource: migrations applied by the deploy, once, under an advisory lock."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from imagerepo import db, migrate
from tests.helpers import db as _db
from tests.helpers import load_event

pytestmark = pytest.mark.integration


class _CloudFormation(HTTPServer):
    """Stands in for the presigned S3 URL CloudFormation waits on."""

    def __init__(self) -> None:
        self.answers: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers["Content-Length"])
                outer.answers.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/response?X-Amz-Signature=x"


@pytest.fixture
def cloudformation() -> Iterator[_CloudFormation]:
    server = _CloudFormation()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _event(kind: str, url: str) -> dict[str, Any]:
    event = load_event("migrate")
    event["RequestType"] = kind
    event["ResponseURL"] = url
    return event


@pytest.mark.parametrize("kind", ["Create", "Update", "Delete"])
def test_the_custom_resource_answers_cloudformation(stack: Any, cloudformation: _CloudFormation,
                                                    kind: str) -> None:
    result = stack.runtime.invoke("MigrateFunction", _event(kind, cloudformation.url))
    assert cloudformation.answers == [result]
    answer = result
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == "imagerepo-schema"
    assert answer["LogicalResourceId"] == "DatabaseSchema"
    assert answer["RequestId"] == load_event("migrate")["RequestId"]
    # The stack applied everything at start: nothing is pending, nothing is re-applied.
    assert answer["Data"] == ({"Applied": "none"} if kind != "Delete" else {})
    applied = {r[0] for r in _db("SELECT name FROM schema_migrations")}
    assert applied == {p.name for p in migrate.migrations_dir().glob("[0-9][0-9][0-9]_*.sql")}


def test_a_failing_migration_is_reported_failed(stack: Any, cloudformation: _CloudFormation,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "998_broken.sql").write_text("CREATE TABLE wt11_broken (;")
    monkeypatch.setattr(migrate, "migrations_dir", lambda: tmp_path)
    answer = migrate.custom_resource(_event("Update", cloudformation.url), "stream-1")
    assert answer["Status"] == "FAILED"
    assert answer["Reason"].startswith("migrations failed: DatabaseError") and "stream-1" in answer["Reason"]
    assert cloudformation.answers == [answer]
    assert _db("SELECT count(*) FROM schema_migrations WHERE name = '998_broken.sql'") == [[0]]


def test_concurrent_runs_apply_each_file_once(stack: Any, tmp_path: Path) -> None:
    (tmp_path / "997_wt11_probe.sql").write_text(
        "CREATE TABLE wt11_probe (id int); INSERT INTO wt11_probe VALUES (1);")
    results: list[list[str]] = []

    def run() -> None:
        try:
            results.append(migrate.apply_migrations(tmp_path))
        finally:
            db.discard_connection()  # this thread's own connection

    try:
        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [[], [], [], ["997_wt11_probe.sql"]]
        assert _db("SELECT count(*) FROM wt11_probe") == [[1]]
    finally:
        _db("DROP TABLE IF EXISTS wt11_probe")
        _db("DELETE FROM schema_migrations WHERE name = '997_wt11_probe.sql'")
