"""Abuse limits: failed attempts counted per subject in a sliding window (Postgres).

A check *reserves* a failure before the secret is verified: under an advisory
lock per subject it counts the window, refuses with 429 when the limit is
reached, and otherwise inserts one failure row, all in one short transaction.
A success then deletes its reservation, so successes are never counted, and
concurrent guesses cannot slip past the limit between a count and an insert.
A refused attempt is not counted, so the wait ends when the window passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from imagerepo.db import UnitOfWork, unit_of_work
from imagerepo.errors import TooManyRequests

_KEEP = "interval '1 day'"


@dataclass(frozen=True)
class Limit:
    scope: str
    max_failures: int
    window_seconds: int
    code: str
    message: str


@dataclass(frozen=True)
class Reservation:
    ids: tuple[int, ...]

    def release(self) -> None:
        """The attempt succeeded: it does not count."""
        if self.ids:
            with unit_of_work() as uow:
                uow.run("DELETE FROM auth_failures WHERE id = ANY(CAST(:ids AS bigint[]))",
                        ids=list(self.ids))
                uow.commit()


def _retry_after(uow: UnitOfWork, limit: Limit, subject: str) -> int | None:
    """Seconds until the count in the window drops below the limit; None when under it."""
    if limit.max_failures < 1:
        return None
    pivot = uow.scalar(
        "SELECT ceil(extract(epoch FROM at + make_interval(secs => :w) - clock_timestamp()))"
        " FROM auth_failures WHERE scope = :s AND subject = :k"
        " AND at > clock_timestamp() - make_interval(secs => :w)"
        " ORDER BY at DESC OFFSET :n LIMIT 1",
        s=limit.scope, k=subject, w=limit.window_seconds, n=limit.max_failures - 1)
    return None if pivot is None else max(1, int(pivot))


def reserve(checks: Sequence[tuple[Limit, str]]) -> Reservation:
    """Refuse (429) if any subject is at its limit; otherwise count one failure for each."""
    checks = sorted(checks, key=lambda c: (c[0].scope, c[1]))  # one lock order: no deadlock
    with unit_of_work() as uow:
        for limit, subject in checks:
            uow.run("SELECT pg_advisory_xact_lock(hashtextextended(:k, 7))",
                    k=f"{limit.scope}\x1f{subject}")
        for limit, subject in checks:
            wait = _retry_after(uow, limit, subject)
            if wait is not None:
                raise TooManyRequests(limit.message, retry_after=wait, code=limit.code)
        ids = tuple(int(uow.scalar(
            "INSERT INTO auth_failures (scope, subject) VALUES (:s, :k) RETURNING id",
            s=limit.scope, k=subject)) for limit, subject in checks)
        uow.run(f"DELETE FROM auth_failures WHERE id IN (SELECT id FROM auth_failures"
                f" WHERE at < clock_timestamp() - {_KEEP} ORDER BY at LIMIT 100)")
        uow.commit()
    return Reservation(ids)
