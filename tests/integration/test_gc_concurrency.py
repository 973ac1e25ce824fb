"""Acceptance test of the issue: uploads and deletes race with a GC running in a loop.

8 workers put and release "images" (a put or a release in its own transaction, as the
image service does) built from a shared pool of random 64 KiB blocks, so files share
chunks and some are identical, while another thread runs ``collect(0)`` back to back:
with a zero grace period every chunk that drops to 0 is collected at once, which is
the worst case for an upload reviving it. Afterwards every reference still held must
read back byte-identical and every refcount must equal its references.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import pg8000.exceptions
import pytest

from imagerepo import gc
from imagerepo.chunking import KiB, MiB, chunker_from_config
from imagerepo.chunkstore import ChunkStore, RetryableStoreError, chunk_key, manifest_key
from imagerepo.config import settings
from imagerepo.db import discard_connection, unit_of_work
from imagerepo.lru import ChunkCache

pytestmark = pytest.mark.integration

T = TypeVar("T")

WORKERS = 8
OPS_PER_WORKER = int(os.environ.get("IMAGEREPO_STRESS_OPS", "200"))
BLOCK = 64 * KiB
POOL_BLOCKS = 24
RECIPES = 40
LIVE_TARGET = 16
DEADLOCK = "40P01"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_store() -> ChunkStore:
    from imagerepo import s3

    return ChunkStore(s3.client.__wrapped__(), settings().bucket, chunker_from_config("fixed:64KiB"),
                      ChunkCache(16 * MiB))


def sqlstate(exc: pg8000.exceptions.DatabaseError) -> str | None:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return info.get("C")


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] += n


def test_uploads_and_deletes_race_with_gc(stack: Any) -> None:
    rng = random.Random(os.urandom(8))
    pool = [os.urandom(BLOCK) for _ in range(POOL_BLOCKS)]
    files: list[bytes] = []
    for _ in range(RECIPES):
        parts = [pool[rng.randrange(POOL_BLOCKS)] for _ in range(rng.randint(1, 6))]
        if rng.random() < 0.4:  # a chunk of its own, shorter than a block
            parts.append(os.urandom(rng.randint(1, BLOCK - 1)))
        files.append(b"".join(parts))
    content = {sha(f): f for f in files}
    our_chunks = {sha(f[i:i + BLOCK]) for f in files for i in range(0, len(f), BLOCK)}

    live: list[str] = []  # one entry per reference held (an "image")
    live_lock = threading.Lock()
    stats = Stats()
    errors: list[BaseException] = []
    stop_gc = threading.Event()
    store = make_store()
    gc_store = make_store()

    def retrying(what: str, fn: Callable[[], T]) -> T:
        for _ in range(10):
            try:
                return fn()
            except pg8000.exceptions.DatabaseError as exc:
                if sqlstate(exc) != DEADLOCK:
                    raise
                stats.add(f"{what}_deadlock_retries")
            except RetryableStoreError:
                stats.add(f"{what}_gc_retries")
        raise AssertionError(f"{what} kept failing")

    def upload(data: bytes, streamed: bool) -> str:
        with unit_of_work() as uow:
            stored = store.put_stream(uow, lambda: io.BytesIO(data)) if streamed else store.put(uow, data)
            uow.commit()
        return stored.sha256

    def delete(digest: str) -> None:
        with unit_of_work() as uow:
            store.release(uow, digest)
            uow.commit()

    def worker(seed: int) -> None:
        wrng = random.Random(seed)
        try:
            for _ in range(OPS_PER_WORKER):
                with live_lock:
                    # Releases get likelier as references pile up: about LIVE_TARGET stay
                    # held, so blobs keep dropping to 0, being collected and coming back.
                    n = len(live)
                    victim = live.pop(wrng.randrange(n)) if wrng.random() < n / (n + LIVE_TARGET) else None
                if victim is not None:
                    retrying("release", lambda v=victim: delete(v))  # type: ignore[misc]
                    stats.add("releases")
                    continue
                data = files[wrng.randrange(len(files))]
                streamed = wrng.random() < 0.25
                digest = retrying("put", lambda d=data, s=streamed: upload(d, s))  # type: ignore[misc]
                assert digest == sha(data)
                stats.add("stream_puts" if streamed else "puts")
                with live_lock:
                    live.append(digest)
        except BaseException as exc:
            errors.append(exc)
        finally:
            discard_connection()

    def collector() -> None:
        try:
            while not stop_gc.is_set():
                result = gc.collect(0, store=gc_store)
                stats.add("gc_rounds")
                stats.add("gc_deleted_blobs", result.deleted_blobs)
                stats.add("gc_deleted_chunks", result.deleted_chunks)
                stats.add("gc_orphans_removed", result.orphans_removed)
                stats.add("gc_orphans_skipped", result.orphans_skipped)
        except BaseException as exc:
            errors.append(exc)
        finally:
            discard_connection()

    started = time.monotonic()
    gc_thread = threading.Thread(target=collector, name="gc")
    gc_thread.start()
    threads = [threading.Thread(target=worker, args=(rng.randrange(1 << 30),), name=f"worker-{i}")
               for i in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    stop_gc.set()
    gc_thread.join(120)
    elapsed = time.monotonic() - started
    assert not errors, errors
    assert not any(t.is_alive() for t in [*threads, gc_thread])
    stats.counts["stream_retries"] = store.stream_retries
    print(f"\nconcurrency: {elapsed:.1f}s {dict(sorted(stats.counts.items()))}")
    assert stats.counts["gc_rounds"] >= 2, "GC did not run alongside the workers"
    assert stats.counts["gc_deleted_chunks"] > 0, "the race never happened: no chunk was collected"
    assert stats.counts["put_deadlock_retries"] == 0 and stats.counts["release_deadlock_retries"] == 0

    held = Counter(live)
    reader = make_store()  # no cache: everything comes from S3
    try:
        # Every blob still referenced reads back byte-identical, with the right refcount.
        with unit_of_work() as uow:
            refcounts = dict(uow.run(
                "SELECT sha256, refcount FROM blobs WHERE sha256 = ANY(CAST(:s AS text[]))",
                s=sorted(content)))
        for digest in content:
            assert refcounts.get(digest, 0) == held[digest], digest
        for digest in held:
            assert reader.read(digest) == content[digest]
        assert_refcounts_match_references()

        # After a final GC, this test's chunk objects are exactly its live chunk rows.
        collect_settled(gc_store, our_chunks)
        assert_objects_match_rows(reader, our_chunks)
        for digest in held:
            assert reader._exists(manifest_key(digest))

        # Release everything: nothing of this test is left, rows or objects.
        for digest in live:
            delete(digest)
        collect_settled(gc_store, our_chunks)
        assert_objects_match_rows(reader, our_chunks)
        assert not live_rows(our_chunks)
        assert not any(reader._exists(manifest_key(d)) for d in content)
        assert_refcounts_match_references()
    finally:
        for s in (store, gc_store, reader):
            s.close()


def live_rows(hashes: set[str]) -> dict[str, int]:
    with unit_of_work() as uow:
        return dict(uow.run("SELECT hash, refcount FROM chunks WHERE hash = ANY(CAST(:h AS text[]))",
                            h=sorted(hashes)))


def collect_settled(store: ChunkStore, hashes: set[str], timeout: float = 20) -> None:
    """collect(0) until no blob or chunk of this test waits at refcount 0 (a round can
    skip rows another transaction holds right then, e.g. the thumbnailer's)."""
    deadline = time.monotonic() + timeout
    while True:
        gc.collect(0, store=store)
        with unit_of_work() as uow:
            pending = uow.scalar(
                "SELECT (SELECT count(*) FROM chunks WHERE hash = ANY(CAST(:h AS text[])) AND refcount = 0)"
                " + (SELECT count(*) FROM blobs b WHERE refcount = 0 AND EXISTS ("
                "   SELECT 1 FROM blob_chunks bc WHERE bc.blob_sha256 = b.sha256"
                "   AND bc.chunk_hash = ANY(CAST(:h AS text[]))))",
                h=sorted(hashes))
        if pending == 0:
            return
        assert time.monotonic() < deadline, f"{pending} rows still waiting for GC"
        time.sleep(0.05)


def assert_objects_match_rows(store: ChunkStore, hashes: set[str]) -> None:
    rows = live_rows(hashes)
    assert all(rc > 0 for rc in rows.values())
    stored = {o["Key"] for page in store.list_objects("chunks/") for o in page}
    ours = {k for k in stored if k.rsplit("/", 1)[-1] in hashes}
    assert ours == {chunk_key(h) for h in rows}


def assert_refcounts_match_references() -> None:
    """For every chunk row (all tests'): refcount == number of blob_chunks rows naming it."""
    with unit_of_work() as uow:
        wrong = uow.run(
            "SELECT c.hash, c.refcount, coalesce(r.n, 0) FROM chunks c"
            " LEFT JOIN (SELECT chunk_hash, count(*) AS n FROM blob_chunks GROUP BY chunk_hash) r"
            " ON r.chunk_hash = c.hash WHERE c.refcount <> coalesce(r.n, 0)"
        )
        negative = uow.scalar("SELECT count(*) FROM blobs WHERE refcount < 0")
    assert not wrong
    assert negative == 0
