"""The chunk store against the real local Postgres and SeaweedFS (the ``stack`` fixture).

Other tests share the database and the bucket: every test uses fresh random content
and asserts on its own rows and objects, never on global counts.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from imagerepo import gc
from imagerepo.chunking import KiB, MiB, chunker_from_config
from imagerepo.chunkstore import (
    ChunkStore,
    StoreIntegrityError,
    blob_keys,
    chunk_key,
    legacy_thumbnail_key,
    manifest_key,
    thumbnail_key,
)
from imagerepo.config import settings
from imagerepo.db import discard_connection, unit_of_work
from imagerepo.errors import NotFound
from imagerepo.lru import ChunkCache

pytestmark = pytest.mark.integration

BLOCK = 64 * KiB


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_client() -> Any:
    """A client of our own, so event hooks a test registers do not leak."""
    from imagerepo import s3

    return s3.client.__wrapped__()


def make_store(spec: str = "fixed:64KiB", **kw: Any) -> ChunkStore:
    return ChunkStore(new_client(), settings().bucket, chunker_from_config(spec), ChunkCache(8 * MiB), **kw)


@pytest.fixture
def store(stack: Any) -> Iterator[ChunkStore]:
    s = make_store()
    yield s
    s.close()


def blocks(n: int) -> list[bytes]:
    return [os.urandom(BLOCK) for _ in range(n)]


def keys(store: ChunkStore, prefix: str = "") -> set[str]:
    return {o["Key"] for page in store.list_objects(prefix) for o in page}


def exists(store: ChunkStore, key: str) -> bool:
    return store._exists(key)


def chunk_rows(hashes: set[str] | list[str]) -> dict[str, tuple[int, Any]]:
    with unit_of_work() as uow:
        rows = uow.run("SELECT hash, refcount, zero_since FROM chunks WHERE hash = ANY(CAST(:h AS text[]))",
                       h=sorted(set(hashes)))
    return {h: (rc, zs) for h, rc, zs in rows}


def blob_row(digest: str) -> dict[str, Any] | None:
    with unit_of_work() as uow:
        return uow.one("SELECT * FROM blobs WHERE sha256 = :s", s=digest)


def put(store: ChunkStore, data: bytes) -> Any:
    with unit_of_work() as uow:
        stored = store.put(uow, data)
        uow.commit()
    return stored


def release(store: ChunkStore, digest: str) -> int:
    with unit_of_work() as uow:
        left = store.release(uow, digest)
        uow.commit()
    return left


def collect_until(store: ChunkStore, done: Callable[[], bool], timeout: float = 15) -> gc.GcResult:
    """collect(0) until ``done()``: GC skips rows another transaction holds (e.g. the
    thumbnailer updating a blob row right then), so one round may not be enough."""
    total = gc.GcResult()
    deadline = time.monotonic() + timeout
    while True:
        total.add(gc.collect(0, store=store))
        if done():
            return total
        assert time.monotonic() < deadline, "GC did not get there in time"
        time.sleep(0.05)


def test_identical_files_share_one_blob(store: ChunkStore) -> None:
    a, b = blocks(2)
    data = a + a + b + b[:1000]  # a repeated chunk inside the file as well
    first = put(store, data)
    second = put(store, data)
    assert first.created and not second.created
    assert first.sha256 == second.sha256 == sha(data)
    assert (first.size, first.chunk_count) == (second.size, second.chunk_count) == (len(data), 4)

    row = blob_row(sha(data))
    assert row is not None
    assert row["refcount"] == 2 and row["zero_since"] is None and row["chunk_count"] == 4
    assert row["chunker"] == "fixed:64KiB"
    # chunk refcount = number of blob_chunks rows naming it, not number of uploads
    rows = chunk_rows([sha(a), sha(b), sha(b[:1000])])
    assert {h: rc for h, (rc, _) in rows.items()} == {sha(a): 2, sha(b): 1, sha(b[:1000]): 1}
    stored = keys(store, "chunks/")
    for h in rows:
        assert chunk_key(h) in stored
    assert exists(store, manifest_key(sha(data)))
    assert store.read(sha(data)) == data


def test_shared_chunks_and_gc_frees_exactly_the_unshared(store: ChunkStore) -> None:
    a, b, c, d = blocks(4)
    f1, f2 = a + b + c, a + b + d
    put(store, f1)
    s2 = put(store, f2)
    assert s2.created
    hashes = {sha(x) for x in (a, b, c, d)}
    assert {h: rc for h, (rc, _) in chunk_rows(hashes).items()} == {
        sha(a): 2, sha(b): 2, sha(c): 1, sha(d): 1}

    # Thumbnails in both layouts (hashed prefix, and the flat one before issue 12).
    for size in ("small", "preview"):
        for key in (thumbnail_key(sha(f2), size), legacy_thumbnail_key(sha(f2), size)):
            store.put_object(key, b"thumb", "image/webp")
    assert release(store, sha(f2)) == 0
    row = blob_row(sha(f2))
    assert row is not None and row["refcount"] == 0 and row["zero_since"] is not None
    # Chunks keep their references until GC deletes the blob.
    assert chunk_rows([sha(d)])[sha(d)][0] == 1
    assert store.read(sha(f2)) == f2

    result = collect_until(store, lambda: blob_row(sha(f2)) is None)
    assert result.deleted_blobs >= 1 and result.deleted_chunks >= 1
    assert result.freed_bytes >= BLOCK
    assert blob_row(sha(f2)) is None
    assert {h: rc for h, (rc, _) in chunk_rows(hashes).items()} == {sha(a): 1, sha(b): 1, sha(c): 1}
    stored = keys(store, "chunks/")
    assert chunk_key(sha(d)) not in stored
    assert {chunk_key(sha(x)) for x in (a, b, c)} <= stored
    assert not any(exists(store, k) for k in blob_keys(sha(f2)))
    assert exists(store, manifest_key(sha(f1)))
    assert store.read(sha(f1)) == f1


def test_reupload_of_a_released_blob_before_gc_revives_it(store: ChunkStore) -> None:
    data = b"".join(blocks(2))
    put(store, data)
    release(store, sha(data))
    again = put(store, data)
    assert not again.created
    row = blob_row(sha(data))
    assert row is not None and row["refcount"] == 1 and row["zero_since"] is None
    gc.collect(0, store=store)
    assert store.read(sha(data)) == data


def test_reupload_after_gc_stores_everything_again(store: ChunkStore) -> None:
    data = b"".join(blocks(3))
    put(store, data)
    release(store, sha(data))
    collect_until(store, lambda: blob_row(sha(data)) is None)
    assert not chunk_rows([sha(data[:BLOCK])])
    assert put(store, data).created
    store.cache.clear()  # type: ignore[union-attr]
    assert store.read(sha(data)) == data


def test_chunk_at_zero_is_put_again_even_if_its_object_is_gone(store: ChunkStore) -> None:
    """A zero-ref row's object may be mid-GC: an upload that revives the row re-PUTs it."""
    a, b = blocks(2)
    put(store, a + b)
    release(store, sha(a + b))
    # Step 1 of GC only: the chunks drop to 0 but keep their rows; then their objects
    # vanish as if a step-2 run had deleted them and failed to commit.
    deadline = time.monotonic() + 15
    while blob_row(sha(a + b)) is not None:
        assert time.monotonic() < deadline
        gc._collect_blobs(store, 0, 100, gc.GcResult())
    assert {rc for rc, _ in chunk_rows([sha(a), sha(b)]).values()} == {0}
    store.delete_objects([chunk_key(sha(a)), chunk_key(sha(b))])
    put(store, b + a)
    assert {rc for rc, _ in chunk_rows([sha(a), sha(b)]).values()} == {1}
    assert store.read(sha(b + a)) == b + a


def test_read_and_iter_chunks_return_exact_bytes(store: ChunkStore) -> None:
    data = os.urandom(5 * BLOCK + 12345)
    put(store, data)
    assert store.read(sha(data)) == data
    parts = list(store.iter_chunks(sha(data), window=2))
    assert [len(p) for p in parts] == [BLOCK] * 5 + [12345]
    assert b"".join(parts) == data
    with unit_of_work() as uow:  # inside a caller's transaction, pass its uow
        assert store.read(sha(data), uow) == data
    with pytest.raises(NotFound):
        store.read(sha(os.urandom(10)))
    with pytest.raises(StoreIntegrityError):
        release(store, sha(os.urandom(10)))


def test_stats(store: ChunkStore) -> None:
    def stats() -> dict[str, int]:
        with unit_of_work() as uow:
            return store.stats(uow)

    before = stats()
    a, b = blocks(2)
    put(store, a + b)
    put(store, a + b)
    put(store, b + a)
    after = stats()
    assert after["blobs"] - before["blobs"] == 2
    assert after["blobReferences"] - before["blobReferences"] == 3
    assert after["chunks"] - before["chunks"] == 2
    assert after["storedBytes"] - before["storedBytes"] == 2 * BLOCK
    assert after["uniqueBytes"] - before["uniqueBytes"] == 4 * BLOCK


# -- put_stream --------------------------------------------------------------------------

class GeneratedStream(io.RawIOBase):
    """``size`` pseudo-random bytes made on the fly (never all in memory), hashed as read."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.rng = random.Random(seed)
        self.pos = 0
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), self.size - self.pos, 256 * KiB)
        data = self.rng.randbytes(n)
        buf[:n] = data
        self.digest.update(data)
        self.pos += n
        return n


def test_put_stream_holds_only_a_few_chunks(stack: Any) -> None:
    chunk = 1 * MiB
    window = 3
    store = make_store("fixed:1MiB", stream_window=window)
    seed = random.randrange(1 << 30)
    size = 20 * MiB + 4321
    opened: list[GeneratedStream] = []
    stored_bytes = 0
    read_ahead = 0
    lock = threading.Lock()

    def open_source() -> GeneratedStream:
        opened.append(GeneratedStream(size, seed))
        return opened[-1]

    def before_put(params: Any, context: Any, **_: Any) -> None:
        nonlocal read_ahead
        body = params["body"]
        context["n"] = body.seek(0, io.SEEK_END)
        body.seek(0)
        with lock:
            read_ahead = max(read_ahead, opened[-1].pos - stored_bytes)

    def after_put(context: Any, **_: Any) -> None:
        nonlocal stored_bytes
        with lock:
            stored_bytes += context["n"]

    store.s3.meta.events.register("before-call.s3.PutObject", before_put)
    store.s3.meta.events.register("after-call.s3.PutObject", after_put)

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with unit_of_work() as uow:
            stored = store.put_stream(uow, open_source)
            uow.commit()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(opened) == 1
    assert stored.created and stored.size == size and stored.chunk_count == 21
    assert stored.sha256 == opened[0].digest.hexdigest()
    # The chunker buffers ~2 chunks, `window` PUTs are in flight, one is being read.
    assert read_ahead <= (2 + window + 1) * chunk, read_ahead
    assert peak < (2 + window + 3) * chunk, f"peak {peak / MiB:.1f} MiB for a {size / MiB:.0f} MiB file"

    check = hashlib.sha256()
    total = 0
    for part in store.iter_chunks(stored.sha256, window=2):
        check.update(part)
        total += len(part)
    assert (check.hexdigest(), total) == (stored.sha256, size)

    # The same stream again is one more reference, nothing uploaded.
    puts_before = stored_bytes
    with unit_of_work() as uow:
        again = store.put_stream(uow, open_source)
        uow.commit()
    assert not again.created and stored_bytes == puts_before
    assert blob_row(stored.sha256)["refcount"] == 2  # type: ignore[index]
    release(store, stored.sha256)
    release(store, stored.sha256)
    store.close()


def test_put_stream_starts_over_when_gc_took_a_staged_chunk(store: ChunkStore) -> None:
    data = b"".join(blocks(4))
    other = new_client()
    heads: list[str] = []

    def vanish_once(params: Any, **_: Any) -> None:
        # Between phase 1 and phase 2 "GC" removes a staged object: the first HEAD
        # finds it gone.
        heads.append(params["url_path"])
        if len(heads) == 1:
            other.delete_object(Bucket=store.bucket, Key=params["url_path"].lstrip("/"))

    store.s3.meta.events.register("before-call.s3.HeadObject", vanish_once)
    opens = 0

    def open_source() -> io.BytesIO:
        nonlocal opens
        opens += 1
        return io.BytesIO(data)

    with unit_of_work() as uow:
        stored = store.put_stream(uow, open_source)
        uow.commit()
    assert stored.created
    assert opens == 2 and store.stream_retries == 1
    assert len(heads) == 8  # 4 chunks, HEADed in both attempts
    hashes = [sha(data[i:i + BLOCK]) for i in range(0, len(data), BLOCK)]
    assert {rc for rc, _ in chunk_rows(hashes).values()} == {1}
    store.cache.clear()  # type: ignore[union-attr]
    assert store.read(stored.sha256) == data


def test_put_stream_gives_up_after_attempts(store: ChunkStore) -> None:
    from imagerepo.chunkstore import RetryableStoreError

    data = b"".join(blocks(2))
    other = new_client()

    def always_vanish(params: Any, **_: Any) -> None:
        other.delete_object(Bucket=store.bucket, Key=params["url_path"].lstrip("/"))

    store.s3.meta.events.register("before-call.s3.HeadObject", always_vanish)
    with unit_of_work() as uow, pytest.raises(RetryableStoreError):
        store.put_stream(uow, lambda: io.BytesIO(data), attempts=2)
    assert blob_row(sha(data)) is None
    assert not chunk_rows([sha(data[:BLOCK]), sha(data[BLOCK:])])


# -- failures and orphans ----------------------------------------------------------------

def fail_after(store: ChunkStore, n: int) -> Callable[[], int]:
    calls = 0
    lock = threading.Lock()

    def hook(**_: Any) -> None:
        nonlocal calls
        with lock:
            calls += 1
            if calls > n:
                raise ConnectionError("injected S3 failure")

    store.s3.meta.events.register("before-send.s3.PutObject", hook)
    return lambda: calls


def test_s3_failure_mid_put_rolls_back_and_gc_leaves_no_trace(store: ChunkStore) -> None:
    shared = blocks(1)[0]
    put(store, shared + os.urandom(100))  # a chunk that exists before, referenced once
    data = shared + b"".join(blocks(9))
    before = keys(store)
    refs_before = chunk_rows([sha(shared)])
    calls = fail_after(store, 4)
    with pytest.raises(ConnectionError), unit_of_work() as uow:
        store.put(uow, data)
        uow.commit()
    assert calls() >= 5
    hashes = [sha(data[i:i + BLOCK]) for i in range(0, len(data), BLOCK)]
    assert blob_row(sha(data)) is None
    assert chunk_rows(hashes) == refs_before  # only the pre-existing chunk, unchanged
    leftovers = keys(store) - before
    assert leftovers, "expected some chunk objects PUT before the failure"
    result = gc.collect(0, store=make_store())
    assert result.orphans_removed >= len(leftovers)
    after = keys(store)
    assert not (after - before) & ({chunk_key(h) for h in hashes} | {manifest_key(sha(data))})
    assert not {k for k in after - before if k.startswith(("chunks/", "manifests/"))}
    assert exists(store, chunk_key(sha(shared)))


def test_orphans_older_than_grace_are_removed(store: ChunkStore) -> None:
    chunk = os.urandom(1000)
    ghost = sha(os.urandom(32))
    live = os.urandom(2000)
    put(store, live)
    planted = [chunk_key(sha(chunk)), manifest_key(ghost), thumbnail_key(ghost, "small"),
               thumbnail_key(ghost, "preview"), legacy_thumbnail_key(ghost, "small"),
               legacy_thumbnail_key(ghost, "preview")]
    wrong_fan = "01" if ghost[:2] == "00" else "00"  # a hashed prefix that is not the hash's
    foreign = [f"incoming/{ghost}", f"chunks/zz/{ghost}", f"chunks/{ghost[:2]}/not-a-hash",
               f"thumbnails/{wrong_fan}/{ghost}/small.webp"]
    for key in planted + foreign:
        store._put_object(key, chunk)
    # A long grace period spares them ...
    gc.collect(3600, store=store)
    assert all(exists(store, k) for k in planted)
    # ... a zero one does not, and nothing live or foreign is touched.
    result = gc.collect(0, store=store)
    assert result.orphans_removed >= len(planted)
    assert not any(exists(store, k) for k in planted)
    assert all(exists(store, k) for k in foreign)
    assert exists(store, chunk_key(sha(live))) and exists(store, manifest_key(sha(live)))
    assert store.read(sha(live)) == live
    assert not chunk_rows([sha(chunk)]) and blob_row(ghost) is None  # claims are gone
    store.delete_objects(foreign)


def test_orphan_claimed_by_an_uncommitted_upload_survives(store: ChunkStore) -> None:
    """An upload that has inserted its row (uncommitted) and PUT the object keeps it."""
    data = os.urandom(3000)
    h = sha(data)
    inserted = threading.Event()
    finish = threading.Event()
    errors: list[BaseException] = []

    def uploader() -> None:
        try:
            with unit_of_work() as uow:
                uow.run("INSERT INTO chunks (hash, size, refcount) VALUES (:h, :n, 1)", h=h, n=len(data))
                store._put_object(chunk_key(h), data)
                inserted.set()
                finish.wait(30)
                # leave without commit: rolled back, the object becomes a real orphan
        except BaseException as exc:
            errors.append(exc)
            inserted.set()
        finally:
            discard_connection()

    thread = threading.Thread(target=uploader)
    thread.start()
    try:
        assert inserted.wait(10)
        result = gc.collect(0, store=store)
        assert result.orphans_skipped >= 1
        assert exists(store, chunk_key(h)), "GC removed an object an in-flight upload relies on"
    finally:
        finish.set()
        thread.join()
    assert not errors
    result = gc.collect(0, store=store)
    assert not exists(store, chunk_key(h))
    assert not chunk_rows([h])


def test_put_rejects_empty_files(store: ChunkStore) -> None:
    from imagerepo.errors import BadRequest

    with unit_of_work() as uow, pytest.raises(BadRequest):
        store.put(uow, b"")
    with unit_of_work() as uow, pytest.raises(BadRequest):
        store.put_stream(uow, lambda: io.BytesIO(b""))


def test_default_store_is_built_from_settings(stack: Any) -> None:
    from imagerepo.chunkstore import default_store
    from imagerepo.lru import shared_cache

    s = default_store()
    assert s is default_store()
    assert s.bucket == settings().bucket
    assert s.chunker.describe() == chunker_from_config(settings().chunker).describe()
    assert s.cache is shared_cache()
    data = os.urandom(5000)
    stored = put(s, data)
    assert s.read(stored.sha256) == data
    assert Counter(k.split("/")[0] for k in blob_keys(stored.sha256)) == {"manifests": 1, "thumbnails": 4}


def test_blobs_of_an_earlier_chunker_stay_readable_after_the_default_changes(stack: Any) -> None:
    """A blob stored with fixed 1 MiB chunks reads back through a FastCDC store, and an
    identical upload deduplicates against it whole, keeping its chunk list and chunker."""
    old, new = make_store("fixed:1MiB"), make_store("fastcdc:16KiB:64KiB:256KiB")
    try:
        data = os.urandom(2 * MiB + 123)
        stored = put(old, data)
        assert new.read(stored.sha256) == data
        assert b"".join(new.iter_chunks(stored.sha256)) == data
        again = put(new, data)
        assert not again.created
        assert [n for _, n in new.chunk_list(stored.sha256)] == [MiB, MiB, 123]
        with unit_of_work() as uow:
            assert uow.scalar("SELECT chunker FROM blobs WHERE sha256 = :s", s=stored.sha256) == "fixed:1MiB"
        assert new.read_manifest(stored.sha256)["chunker"] == "fixed:1MiB"
    finally:
        old.close()
        new.close()


def test_bounded_orphan_sweep_resumes_where_it_stopped(store: ChunkStore) -> None:
    """The scheduled GC lists a few pages per run, not the whole bucket: orphans beyond
    its slice wait for a later run, which starts after the last key listed."""
    planted = [chunk_key("0" * 60 + f"{i:04x}") for i in range(1, 4)]  # the first keys of chunks/
    for key in planted:
        store._put_object(key, b"orphan")
    with unit_of_work() as uow:
        uow.run("DELETE FROM gc_sweep_cursor")
        uow.commit()

    def cursor() -> list[Any]:
        with unit_of_work() as uow:
            return list(uow.run("SELECT start_after, passes FROM gc_sweep_cursor WHERE prefix = 'chunks/'"))

    first = gc.collect(0, store=store, sweep_pages=1, sweep_page_size=2)
    assert [exists(store, k) for k in planted] == [False, False, True]
    assert first.orphans_removed >= 2
    assert cursor() == [[planted[1], 0]]
    gc.collect(0, store=store, sweep_pages=1, sweep_page_size=2)
    assert not exists(store, planted[2])
    while cursor()[0][1] == 0:  # the rest of chunks/, two keys a run, until the pass ends
        gc.collect(0, store=store, sweep_pages=50, sweep_page_size=2)
    assert cursor() == [["", 1]]
