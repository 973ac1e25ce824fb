"""Numbered ``.sql`` migrations, each applied once and recorded in a table.

An advisory lock makes concurrent runners (two cold starts, a deploy hook)
apply each file exactly once.

In AWS the deploy applies them: the ``DatabaseSchema`` custom resource invokes
the migrate function, which calls :func:`custom_resource`. The layer carries the
files (``imagerepo/migrations``, copied from ``shared/migrations`` by the layer's
build); locally they are read from ``shared/migrations``.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from imagerepo.db import unit_of_work

_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x1A6E_5E90


def migrations_dir() -> Path:
    """Where the SQL files are: inside the built layer, else the repository's shared/migrations."""
    packaged = Path(__file__).with_name("migrations")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "shared" / "migrations"


def pending(directory: Path, applied: set[str]) -> list[Path]:
    files = sorted(p for p in directory.iterdir() if _NAME.match(p.name))
    return [p for p in files if p.name not in applied]


def apply_migrations(directory: Path | None = None) -> list[str]:
    """Apply what is not applied yet; returns the names applied now."""
    directory = directory or migrations_dir()
    done: list[str] = []
    with unit_of_work() as uow:
        uow.run("SELECT pg_advisory_xact_lock(:k)", k=_LOCK_KEY)
        uow.run(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {row[0] for row in uow.run("SELECT name FROM schema_migrations")}
        for path in pending(directory, applied):
            uow.run(path.read_text())
            uow.run("INSERT INTO schema_migrations (name) VALUES (:n)", n=path.name)
            done.append(path.name)
        uow.commit()
    return done


# -- CloudFormation custom resource -------------------------------------------------------
PHYSICAL_ID = "imagerepo-schema"


def custom_resource(event: dict[str, Any], log_stream: str) -> dict[str, Any]:
    """Handle a ``DatabaseSchema`` request and answer CloudFormation at its ResponseURL.

    Create and Update apply the pending migrations; Delete keeps the data (the
    schema goes with the database). Any failure is reported as FAILED with the
    error's type and message (no stack trace, no secret), so the deploy rolls back
    instead of waiting an hour for an answer.
    """
    response: dict[str, Any] = {
        "Status": "SUCCESS", "PhysicalResourceId": PHYSICAL_ID,
        "StackId": event.get("StackId"), "RequestId": event.get("RequestId"),
        "LogicalResourceId": event.get("LogicalResourceId"), "Data": {},
        "Reason": f"see CloudWatch log stream {log_stream}",
    }
    try:
        if event.get("RequestType") in ("Create", "Update"):
            applied = apply_migrations()
            response["Data"] = {"Applied": ",".join(applied) or "none"}
    except Exception as exc:  # noqa: BLE001 - reported to CloudFormation, then logged by the caller
        response["Status"] = "FAILED"
        response["Reason"] = f"migrations failed: {type(exc).__name__}: {str(exc)[:300]} ({log_stream})"
    _respond(str(event["ResponseURL"]), response)
    return response


def _respond(url: str, body: dict[str, Any]) -> None:
    parts = urllib.parse.urlsplit(url)
    loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")  # tests
    if parts.scheme != "https" and not loopback:
        raise ValueError("the ResponseURL must be https")
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="PUT",  # noqa: S310 - scheme checked above
                                     headers={"Content-Type": "", "Content-Length": str(len(data))})
    with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
        reply.read()
