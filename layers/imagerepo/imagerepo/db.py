"""Postgres access through pg8000: one connection per thread, explicit transactions.

In Lambda a container runs one invocation at a time, so "per thread" is "per
warm container"; the local gateway runs handlers on threads, where it keeps
connections from being shared.

A unit of work is a context manager: it begins a transaction, the caller
commits explicitly, leaving the block without commit rolls back. Units of work
never nest on a thread (:class:`NestedUnitOfWork`): an inner one would silently
share, and commit, the outer transaction.

A connection is discarded after any failure while a statement was in flight
other than an error Postgres reported cleanly (``DatabaseError`` with a SQLSTATE:
the server answered, the protocol is in sync, ROLLBACK recovers it). Anything
else (an encoding error after Parse was sent, a timeout, a dropped socket) leaves
the wire protocol in an unknown state, so the connection is closed, never reused.
Callbacks registered with :meth:`UnitOfWork.after_commit` run once COMMIT has
succeeded: objects that trigger events (a manifest) are written only then.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pg8000.exceptions
import pg8000.native

from imagerepo import config
from imagerepo.config import settings

_local = threading.local()

# SQLSTATE class 28: invalid_authorization_specification (28000), invalid_password (28P01).
_AUTH_FAILED = ("28000", "28P01")


def _auth_failed(exc: pg8000.exceptions.DatabaseError) -> bool:
    details = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return details.get("C") in _AUTH_FAILED


class NestedUnitOfWork(RuntimeError):
    """unit_of_work() entered while this thread already has one open."""


def _server_error(exc: BaseException) -> bool:
    """An error Postgres answered with a SQLSTATE: the connection is still in sync."""
    if type(exc) is not pg8000.exceptions.DatabaseError:
        return False
    info = exc.args[0] if exc.args else None
    return isinstance(info, dict) and "C" in info


def _connect() -> pg8000.native.Connection:
    """Connect; refused credentials are re-read from the secret once (it may have rotated)."""
    try:
        return _open(settings())
    except pg8000.exceptions.DatabaseError as exc:
        if not _auth_failed(exc):
            raise
    return _open(config.refresh())


def _open(s: config.Settings) -> pg8000.native.Connection:
    con = pg8000.native.Connection(
        user=s.db_user,
        host=s.db_host,
        port=s.db_port,
        database=s.db_name,
        password=s.db_password or None,
        timeout=30,
        application_name="imagerepo",
        ssl_context=_ssl_context(s.db_ssl),
    )
    con.run("SET statement_timeout = '25s'")
    return con


def _ssl_context(mode: str) -> ssl.SSLContext | None:
    """DB_SSL: disable (local Postgres), require (encrypted), or verify-full.

    verify-full checks the server against ``DB_SSL_ROOT_CERT`` (e.g. the RDS CA bundle).
    """
    if mode == "disable":
        return None
    if mode == "verify-full":
        return ssl.create_default_context(cafile=os.environ.get("DB_SSL_ROOT_CERT") or None)
    if mode != "require":
        raise ValueError(f"DB_SSL must be disable, require or verify-full, not {mode!r}")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # encrypted inside the VPC; verify-full pins the RDS CA
    return ctx


def connection() -> pg8000.native.Connection:
    con: pg8000.native.Connection | None = getattr(_local, "con", None)
    if con is None:
        con = _connect()
        _local.con = con
    return con


def discard_connection() -> None:
    con = getattr(_local, "con", None)
    _local.con = None
    if con is not None:
        with contextlib.suppress(Exception):  # the socket may already be gone
            con.close()


class UnitOfWork:
    """A transaction on this thread's connection; SQL uses ``:name`` parameters."""

    def __init__(self, con: pg8000.native.Connection) -> None:
        self._con = con
        self.committed = False
        self.broken = False
        self._after_commit: list[Callable[[], None]] = []

    def _execute(self, sql: str, params: dict[str, Any]) -> list[list[Any]]:
        try:
            return self._con.run(sql, **params) or []
        except BaseException as exc:
            if not _server_error(exc):
                self.broken = True  # protocol state unknown: never reuse this connection
            raise

    def run(self, sql: str, **params: Any) -> list[list[Any]]:
        return self._execute(sql, params)

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        result = self._execute(sql, params)
        names = [c["name"] for c in self._con.columns or []]
        return [dict(zip(names, row, strict=True)) for row in result]

    def one(self, sql: str, **params: Any) -> dict[str, Any] | None:
        found = self.rows(sql, **params)
        return found[0] if found else None

    def scalar(self, sql: str, **params: Any) -> Any:
        result = self.run(sql, **params)
        return result[0][0] if result else None

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once this transaction has committed (never if it rolls back)."""
        self._after_commit.append(callback)

    def commit(self) -> None:
        self._execute("COMMIT", {})
        self.committed = True
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()


def _begin() -> pg8000.native.Connection:
    """BEGIN on this thread's connection, reconnecting once if it went stale."""
    for attempt in (1, 2):
        con = connection()
        try:
            con.run("BEGIN")
            return con
        except (pg8000.exceptions.InterfaceError, OSError):
            discard_connection()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@contextmanager
def unit_of_work() -> Iterator[UnitOfWork]:
    if getattr(_local, "open", False):
        raise NestedUnitOfWork("a unit of work is already open on this thread: pass it down")
    _local.open = True
    try:
        con = _begin()
        uow = UnitOfWork(con)
        try:
            yield uow
        except BaseException:
            if uow.broken:
                discard_connection()
            else:
                _rollback(con)
            raise
        else:
            if uow.broken:
                discard_connection()
            elif not uow.committed:
                _rollback(con)
    finally:
        _local.open = False


def _rollback(con: pg8000.native.Connection) -> None:
    try:
        con.run("ROLLBACK")
    except Exception:  # noqa: BLE001 - a broken connection is dropped instead
        discard_connection()


def unique_violation(exc: pg8000.exceptions.DatabaseError) -> str | None:
    """The constraint a unique violation (SQLSTATE 23505) names, else None."""
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return str(info.get("n")) if info.get("C") == "23505" else None


def ping() -> None:
    with unit_of_work() as uow:
        uow.scalar("SELECT 1")
