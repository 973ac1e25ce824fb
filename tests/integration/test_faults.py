"""Fault injection: S3 or Postgres failing or timing out, or the process dying, at each step
of upload, delete, GC, thumbnailing and ingest. After each case the faults are lifted,
the events held meanwhile are delivered (S3 events are at least once), and the one
reusable checker (devstack.invariants) must pass after the sweeps and a GC at grace 0.
Then the same operation must work again and read back the exact bytes.

A crash is simulated by raising a BaseException at the step: the transaction in flight
is abandoned (rolled back, as Postgres does when a process dies) and the connection is
discarded, so no later statement of the "dead" process runs.
"""

from __future__ import annotations

import contextlib
import io
import random
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pg8000.exceptions
import pg8000.native
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from PIL import Image

from devstack import invariants
from imagerepo import db, gc, images, thumbnails, uploads
from imagerepo.chunkstore import default_store
from imagerepo.security import Principal
from imagerepo.users import register
from tests.helpers import unique

pytestmark = pytest.mark.integration


class Crash(BaseException):
    """The process dies at this step."""


def _jpeg(seed: int) -> bytes:
    rng = random.Random(seed)
    img = Image.frombytes("RGB", (96, 64), rng.randbytes(96 * 64 * 3))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


@dataclass(frozen=True)
class Fault:
    where: str  # "s3:<operation>:<key prefix>" or "sql:<regex>"
    kind: str  # error | timeout | crash
    nth: int = 1

    def exception(self) -> BaseException:
        if self.kind == "crash":
            return Crash(self.where)
        if self.where.startswith("s3:"):
            if self.kind == "timeout":
                return ReadTimeoutError(endpoint_url="injected")
            return ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "injected")
        if self.kind == "timeout":  # what pg8000 raises when the socket times out
            return pg8000.exceptions.InterfaceError("network error: injected timeout")
        return pg8000.exceptions.DatabaseError({"S": "ERROR", "C": "XX000", "M": "injected"})

    def __str__(self) -> str:
        return f"{self.kind}@{self.where}#{self.nth}"


class _S3Proxy:
    """The store's boto3 client, failing the nth matching call."""

    def __init__(self, real: Any, op: str, prefix: str, fault: Fault, fired: list[Fault]) -> None:
        self._real, self._op, self._prefix, self._fault, self._fired = real, op, prefix, fault, fired
        self._count = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name != self._op:
            return attr

        def call(**kw: Any) -> Any:
            key = kw.get("Key") or kw.get("Prefix") or ""
            if "Delete" in kw:
                key = (kw["Delete"].get("Objects") or [{"Key": ""}])[0]["Key"]
            if key.startswith(self._prefix):
                with self._lock:
                    self._count += 1
                    fire = self._count == self._fault.nth
                if fire:
                    self._fired.append(self._fault)
                    raise self._fault.exception()
            return attr(**kw)

        return call


@pytest.fixture
def inject(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Fault | None], list[Fault]]]:
    """inject(fault) arms one fault (returns the list it is appended to once fired); S3 events
    are held while a case runs and delivered when the fixture ends (or on ``release``)."""
    held: list[dict[str, Any]] = []
    monkeypatch.setattr(stack.events, "deliver", held.append)
    store = default_store()
    real_s3 = store.s3
    real_run = pg8000.native.Connection.run

    def arm(fault: Fault | None) -> list[Fault]:
        fired: list[Fault] = []
        store.s3 = real_s3
        monkeypatch.setattr(pg8000.native.Connection, "run", real_run)
        if fault is None:
            return fired
        if fault.where.startswith("s3:"):
            _, op, prefix = fault.where.split(":", 2)
            store.s3 = _S3Proxy(real_s3, op, prefix, fault, fired)
        else:
            pattern = re.compile(fault.where.removeprefix("sql:"))
            count = [0]

            def run(con: Any, sql: str, stream: Any = None, types: Any = None, **params: Any) -> Any:
                if pattern.search(sql) and threading.current_thread() is threading.main_thread():
                    count[0] += 1
                    if count[0] == fault.nth:
                        fired.append(fault)
                        raise fault.exception()
                return real_run(con, sql, stream=stream, types=types, **params)

            monkeypatch.setattr(pg8000.native.Connection, "run", run)
        return fired

    yield arm
    store.s3 = real_s3
    monkeypatch.undo()
    for record in held:
        stack.events.deliver(record)


@pytest.fixture(scope="module")
def app_references_only(stack: Any) -> None:
    """The chunk-store tests share this database and hold blob references without images
    (legitimate at the store level, not for the application): drop those first, so the
    invariant "a blob's refcount is its images" describes only what the app did."""
    with db.unit_of_work() as uow:
        uow.run("UPDATE blobs b SET refcount = r.n, zero_since = CASE WHEN r.n = 0 THEN now()"
                " ELSE b.zero_since END FROM (SELECT b2.sha256, (SELECT count(*) FROM images i"
                " WHERE i.blob_sha256 = b2.sha256)::integer AS n FROM blobs b2) r"
                " WHERE r.sha256 = b.sha256 AND b.refcount <> r.n AND b.chunker <> 'gc-claim'")
        uow.commit()


@pytest.fixture(scope="module")
def owner(stack: Any, app_references_only: None) -> Principal:
    return register(unique("fault"), f"{unique('fault')}@example.com", "fault passphrase 1").principal


# -- the operations: (setup without faults, the step under fault) --------------------------
def op_upload(who: Principal, data: bytes) -> Callable[[], Any]:
    return lambda: images.create(who, images.NewImage("f.jpg", data))


def op_delete(who: Principal, data: bytes) -> Callable[[], Any]:
    image, _ = images.create(who, images.NewImage("d.jpg", data))
    return lambda: images.delete(image.id, who)


def op_gc(who: Principal, data: bytes) -> Callable[[], Any]:
    image, _ = images.create(who, images.NewImage("g.jpg", data))
    thumbnails.process(image.sha256)  # objects to delete: manifest and thumbnails
    images.delete(image.id, who)
    return lambda: gc.collect(0)


def op_thumbnail(who: Principal, data: bytes) -> Callable[[], Any]:
    image, _ = images.create(who, images.NewImage("t.jpg", data))
    return lambda: thumbnails.process(image.sha256)


def op_ingest(who: Principal, data: bytes) -> Callable[[], Any]:
    ticket = uploads.create(who, {"fileName": "big.jpg", "contentType": "image/jpeg", "size": len(data)})
    store = default_store()
    store.s3.put_object(Bucket=store.bucket, Key=uploads.INCOMING + ticket.upload_id, Body=data)
    return lambda: uploads.ingest(ticket.upload_id)


OPERATIONS: dict[str, Callable[[Principal, bytes], Callable[[], Any]]] = {
    "upload": op_upload, "delete": op_delete, "gc": op_gc, "thumbnail": op_thumbnail,
    "ingest": op_ingest,
}

CASES: list[tuple[str, Fault]] = [
    ("upload", Fault("s3:put_object:chunks/", "error")),
    ("upload", Fault("s3:put_object:chunks/", "timeout")),
    ("upload", Fault("s3:put_object:chunks/", "crash")),
    ("upload", Fault("s3:put_object:manifests/", "error")),  # after the commit
    ("upload", Fault("sql:^INSERT INTO chunks", "timeout")),
    ("upload", Fault("sql:^INSERT INTO blob_chunks", "error")),
    ("upload", Fault("sql:^INSERT INTO images", "crash")),
    ("upload", Fault("sql:^COMMIT", "timeout")),
    ("delete", Fault("sql:^DELETE FROM images", "error")),
    ("delete", Fault("sql:^UPDATE blobs SET refcount = refcount - 1", "timeout")),
    ("delete", Fault("sql:^COMMIT", "crash")),
    ("gc", Fault("s3:delete_objects:manifests/", "error")),
    ("gc", Fault("s3:delete_objects:manifests/", "timeout")),
    ("gc", Fault("sql:^DELETE FROM blobs", "crash")),  # objects deleted, row not: the case
    ("gc", Fault("s3:delete_objects:chunks/", "timeout")),
    ("gc", Fault("sql:^DELETE FROM chunks", "crash")),
    ("thumbnail", Fault("s3:get_object:chunks/", "error")),
    ("thumbnail", Fault("s3:put_object:thumbnails/", "timeout")),
    ("thumbnail", Fault("s3:put_object:thumbnails/", "crash", nth=2)),
    ("thumbnail", Fault("sql:^UPDATE blobs SET thumb_status = :st", "error")),
    ("ingest", Fault("s3:get_object:incoming/", "timeout")),
    ("ingest", Fault("s3:put_object:chunks/", "error")),
    ("ingest", Fault("sql:^INSERT INTO images", "timeout")),
    ("ingest", Fault("sql:^UPDATE uploads SET status = 'ready'", "crash")),
    ("ingest", Fault("s3:delete_objects:incoming/", "error")),  # after the commit
]


@pytest.mark.parametrize(("operation", "fault"), CASES, ids=[f"{o}-{f}" for o, f in CASES])
def test_fault_then_invariants_hold(operation: str, fault: Fault, owner: Principal,
                                    inject: Callable[[Fault | None], list[Fault]]) -> None:
    data = _jpeg(random.randrange(10**9))
    step = OPERATIONS[operation](owner, data)
    fired = inject(fault)
    with contextlib.suppress(Exception, Crash):
        step()
    inject(None)
    assert fired == [fault], f"the fault {fault} was never reached"
    if fault.kind in ("timeout", "crash") and fault.where.startswith("sql:"):
        db.discard_connection()  # a dead process's connection is gone (a timeout's is discarded)
    report = invariants.settle_and_check()
    assert report.ok, str(report)
    # The system still works: the same bytes upload and read back exactly.
    image, _ = images.create(owner, images.NewImage("again.jpg", data))
    assert images.read_bytes(image) == data
    thumbnails.process(image.sha256)
    assert thumbnails.read(image.sha256, "small", images.get(image.id).thumb_status)


def test_a_connection_whose_protocol_state_is_unknown_is_discarded(stack: Any) -> None:
    """The issue's poisoning: a lone surrogate fails after Parse was sent; the connection
    must not be reused (later statements would read other statements' results)."""
    with db.unit_of_work() as uow:
        assert uow.scalar("SELECT 1") == 1
    before = db.connection()
    with pytest.raises(UnicodeEncodeError), db.unit_of_work() as uow:
        uow.run("SELECT CAST(:x AS text)", x="\ud800")
    after = db.connection()
    assert after is not before
    with db.unit_of_work() as uow:  # and the new one answers its own statements
        assert uow.scalar("SELECT CAST(:x AS text)", x="fine") == "fine"
        assert uow.scalar("SELECT 41 + 1") == 42


def test_a_server_error_keeps_the_connection(stack: Any) -> None:
    before = db.connection()
    with pytest.raises(pg8000.exceptions.DatabaseError), db.unit_of_work() as uow:
        uow.run("SELECT 1/0")
    assert db.connection() is before


def test_units_of_work_never_nest(stack: Any) -> None:
    with db.unit_of_work(), pytest.raises(db.NestedUnitOfWork), db.unit_of_work():
        pass
    with db.unit_of_work() as uow:  # the outer one closed cleanly
        assert uow.scalar("SELECT 1") == 1
