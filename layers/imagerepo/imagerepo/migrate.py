"""Numbered ``.sql`` migrations, each applied once and recorded in a table.

An advisory lock makes concurrent runners (two cold starts, a deploy hook)
apply each file exactly once.
"""

from __future__ import annotations

import re
from pathlib import Path

from imagerepo.db import unit_of_work

_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x1A6E_5E90


def pending(directory: Path, applied: set[str]) -> list[Path]:
    files = sorted(p for p in directory.iterdir() if _NAME.match(p.name))
    return [p for p in files if p.name not in applied]


def apply_migrations(directory: Path) -> list[str]:
    """Apply what is not applied yet; returns the names applied now."""
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
