"""Property-based conformance with schemathesis, from shared/openapi.yaml, through the gateway.

OneDrive is configured against the local Graph stand-in (the admin is connected), so
its routes answer from a real flow rather than 503 onedrive_not_configured.
For each role (a user, an admin) every operation of the spec gets generated requests
(positive data: what the spec says is valid) until at least ``MIN_REQUESTS`` have been
sent for that role; every response must be non-5xx, have a status the spec documents
for that operation, the documented content type and a body matching the schema.
Bounded: ``SCHEMATHESIS_REQUESTS`` (default 1,000 per role) and hypothesis deadlines off.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_onedrive import StandIn, connect, standin  # noqa: F401 - the stand-in fixture
from tests.helpers import Api, register_and_login, unique

pytestmark = pytest.mark.e2e
schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

ROOT = Path(__file__).resolve().parents[2]
MIN_REQUESTS = int(os.environ.get("SCHEMATHESIS_REQUESTS", "1000"))
SOURCE = {"user": "127.0.0.61", "admin": "127.0.0.62"}


def _checks() -> list[Any]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [not_a_server_error, status_code_conformance, content_type_conformance,
            response_headers_conformance, response_schema_conformance]


def _operations() -> list[Any]:
    """Every operation; POST /logout last (it ends the session the others run with)."""
    schema = schemathesis.openapi.from_path(str(ROOT / "shared" / "openapi.yaml"))
    operations = [result.ok() for result in schema.get_all_operations()]
    return sorted(operations, key=lambda op: op.path == "/logout")


def _run(base_url: str, token: str, label: str, victim: int) -> Counter[str]:
    """``victim``: the only account PATCH /admin/users/{id} may change (not the suite's admin)."""
    from hypothesis import HealthCheck, given, settings

    operations = _operations()
    per_operation = math.ceil(1.25 * MIN_REQUESTS / len(operations))  # some take fewer examples
    sent: Counter[str] = Counter()
    failures: list[str] = []
    checks = _checks()
    headers = {"Authorization": f"Bearer {token}"}
    # Its own loopback address: the generated failed logins must not count against the
    # per-source login limit of the rest of the suite.
    session = Api(base_url, source=SOURCE[label]).session

    def probe(case: Any) -> None:
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=60,
                             allow_redirects=False)
        route = f"{case.operation.method.upper()} {case.operation.path}"
        sent[f"{route} {response.status_code}"] += 1
        sent["total"] += 1
        try:
            case.validate_response(response, checks=checks)
        except BaseExceptionGroup as group:  # schemathesis' FailureGroup: collect, fail once at the end
            for exc in group.exceptions:
                title = getattr(exc, "title", type(exc).__name__)
                failures.append(f"{label} {route} -> {response.status_code}: {title}:"
                                f" {str(exc).strip().splitlines()[-1][:200]} | {response.text[:160]}")

    for operation in operations:
        pinned = {"id": victim} if operation.path == "/admin/users/{id}" else None
        strategy = operation.as_strategy(path_parameters=pinned)
        settings(max_examples=per_operation, deadline=None, derandomize=True, database=None,
                 suppress_health_check=list(HealthCheck))(given(case=strategy)(probe))()
    statuses: Counter[str] = Counter()
    for key, count in sent.items():
        if key != "total":
            statuses[key.rsplit(" ", 1)[1]] += count
    print(f"schemathesis {label}: {sent['total']} requests over {len(operations)} operations,"
          f" status classes {dict(sorted(statuses.items()))}, {len(failures)} failing")
    distinct = sorted(set(failures))
    assert not distinct, f"{len(failures)} failing responses:\n" + "\n".join(distinct[:40])
    assert sent["total"] >= MIN_REQUESTS, sent
    return sent


def test_generated_requests_as_a_user(base_url: str, standin: StandIn) -> None:  # noqa: F811
    api, _ = register_and_login(base_url)
    _, victim = register_and_login(base_url)
    assert api.token
    sent = _run(base_url, api.token, "user", victim["id"])
    assert sent["total"] >= MIN_REQUESTS


def test_generated_requests_as_an_admin(base_url: str, standin: StandIn) -> None:  # noqa: F811
    """An admin of its own (the suite's admin must stay an admin); OneDrive configured
    against the Graph stand-in and connected: its routes really run."""
    from imagerepo.users import ensure_admin

    name = unique("stadmin")
    ensure_admin(f"{name}@example.com", "schemathesis admin 1", name=name)
    admin = Api(base_url)
    r = admin.post("/login", json={"username": name, "password": "schemathesis admin 1"})
    assert r.status_code == 200, r.text
    admin.token = r.json()["access_token"]
    connect(admin, standin)
    _, victim = register_and_login(base_url)
    sent = _run(base_url, admin.token, "admin", victim["id"])
    assert sent["total"] >= MIN_REQUESTS
