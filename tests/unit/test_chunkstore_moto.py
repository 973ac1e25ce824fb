"""The database-free parts of the chunk store, against moto's in-memory S3.

The database side (upserts, refcounts, GC) is in tests/integration: here a tiny fake
unit of work only answers the two read-only queries these code paths make.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from imagerepo.chunking import KiB, chunker_from_config
from imagerepo.chunkstore import (
    ChunkStore,
    StoreIntegrityError,
    blob_keys,
    blob_of_key,
    build_manifest,
    check_hash,
    chunk_key,
    legacy_thumbnail_key,
    manifest_key,
    parse_manifest,
    thumbnail_key,
)
from imagerepo.errors import NotFound
from imagerepo.lru import ChunkCache

BUCKET = "chunkstore-unit"
H = "ab" + "0" * 62


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FakeUow:
    """Stands in for UnitOfWork: ``run`` returns the chunk-list rows, ``scalar`` None."""

    def __init__(self, rows: list[list[Any]] | None = None) -> None:
        self.rows = rows or []
        self.queries: list[str] = []

    def run(self, sql: str, **params: Any) -> list[list[Any]]:
        self.queries.append(sql)
        return self.rows

    def scalar(self, sql: str, **params: Any) -> Any:
        self.queries.append(sql)
        return None


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def make_store(s3: Any, cache: ChunkCache | None = None, **kw: Any) -> ChunkStore:
    return ChunkStore(s3, BUCKET, chunker_from_config("fixed:4KiB"), cache, **kw)


def store_blob(s3: Any, data: bytes, chunk: int = 4 * KiB) -> tuple[str, FakeUow]:
    """Upload ``data``'s chunks as the store would and return a fake uow listing them."""
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    rows = []
    for piece in pieces:
        s3.put_object(Bucket=BUCKET, Key=chunk_key(sha(piece)), Body=piece)
        rows.append([len(data), len(pieces), sha(piece), len(piece)])
    return sha(data), FakeUow(rows)


def count_calls(s3: Any, operation: str) -> list[str]:
    calls: list[str] = []
    s3.meta.events.register(f"before-call.s3.{operation}",
                            lambda params, **_: calls.append(params["url_path"]))
    return calls


# -- keys and manifest -------------------------------------------------------------------

def test_key_derivation() -> None:
    assert chunk_key(H) == f"chunks/ab/{H}"
    assert manifest_key(H) == f"manifests/{H}.json"
    # Thumbnails fan out over 256 prefixes like chunks (S3 limits request rates per prefix).
    assert thumbnail_key(H, "small") == f"thumbnails/ab/{H}/small.webp"
    assert thumbnail_key(H, "preview") == f"thumbnails/ab/{H}/preview.jpg"
    # The layout before that is still read, and deleted with its blob.
    assert legacy_thumbnail_key(H, "small") == f"thumbnails/{H}/small.webp"
    assert legacy_thumbnail_key(H, "preview") == f"thumbnails/{H}/preview.jpg"
    assert blob_keys(H) == [f"manifests/{H}.json", f"thumbnails/ab/{H}/small.webp",
                            f"thumbnails/ab/{H}/preview.jpg", f"thumbnails/{H}/small.webp",
                            f"thumbnails/{H}/preview.jpg"]


@pytest.mark.parametrize(("key", "owner"), [
    (f"thumbnails/ab/{H}/small.webp", H),
    (f"thumbnails/{H}/preview.jpg", H),
    (f"manifests/{H}.json", H),
    (f"thumbnails/cd/{H}/small.webp", None),  # fan-out that does not match the hash
    (f"thumbnails/ab/{H}", None),
    (f"thumbnails/{H}", None),
    (f"thumbnails/ab/{H}/x/small.webp", None),
    (f"manifests/{H}.txt", None),
    (f"chunks/ab/{H}", None),
    ("thumbnails/" + "AB" * 32 + "/small.webp", None),
])
def test_blob_of_key(key: str, owner: str | None) -> None:
    assert blob_of_key(key) == owner


@pytest.mark.parametrize("bad", ["", "AB" + "0" * 62, "ab" * 31, "../" + "0" * 61, "g" * 64])
def test_keys_reject_anything_but_lowercase_sha256(bad: str) -> None:
    with pytest.raises(ValueError):
        check_hash(bad)
    with pytest.raises(ValueError):
        chunk_key(bad)
    with pytest.raises(ValueError):
        manifest_key(bad)


def test_thumbnail_key_rejects_unknown_size() -> None:
    with pytest.raises(ValueError):
        thumbnail_key(H, "large")


def test_manifest_format() -> None:
    when = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    chunks = [(H, 10), ("cd" * 32, 5)]
    raw = build_manifest("ef" * 32, 15, "fixed:1MiB", chunks, when)
    doc = json.loads(raw)
    assert doc == {
        "sha256": "ef" * 32,
        "size": 15,
        "chunker": "fixed:1MiB",
        "chunks": [{"hash": H, "size": 10}, {"hash": "cd" * 32, "size": 5}],
        "createdAt": "2024-05-06T07:08:09.123Z",
    }
    assert parse_manifest(raw) == doc
    with pytest.raises(StoreIntegrityError):
        parse_manifest(build_manifest("ef" * 32, 16, "fixed:1MiB", chunks, when))


# -- reading -----------------------------------------------------------------------------

def test_read_reassembles_in_order(s3: Any) -> None:
    data = random.Random(1).randbytes(10 * 4 * KiB + 123)
    digest, uow = store_blob(s3, data)
    store = make_store(s3)
    assert store.read(digest, uow) == data  # type: ignore[arg-type]
    assert b"".join(store.iter_chunks(digest, uow)) == data  # type: ignore[arg-type]


def test_unknown_blob_is_not_found(s3: Any) -> None:
    with pytest.raises(NotFound):
        make_store(s3).read(H, FakeUow([]))  # type: ignore[arg-type]


def test_inconsistent_chunk_list_is_an_integrity_error(s3: Any) -> None:
    data = random.Random(2).randbytes(3 * 4 * KiB)
    digest, uow = store_blob(s3, data)
    uow.rows = uow.rows[:2]  # a chunk row is missing: sizes no longer add up
    with pytest.raises(StoreIntegrityError):
        make_store(s3).read(digest, uow)  # type: ignore[arg-type]


def test_corrupted_chunk_object_is_detected(s3: Any) -> None:
    data = random.Random(3).randbytes(3 * 4 * KiB)
    digest, uow = store_blob(s3, data)
    victim = uow.rows[1][2]
    s3.put_object(Bucket=BUCKET, Key=chunk_key(victim), Body=b"\0" + data[4 * KiB + 1:8 * KiB])
    cache = ChunkCache(1 << 20)
    store = make_store(s3, cache)
    with pytest.raises(StoreIntegrityError) as info:
        store.read(digest, uow)  # type: ignore[arg-type]
    assert info.value.status == 500
    assert victim not in cache  # a corrupt chunk is never cached
    with pytest.raises(StoreIntegrityError):
        b"".join(store.iter_chunks(digest, uow))  # type: ignore[arg-type]


def test_missing_chunk_object_is_detected(s3: Any) -> None:
    data = random.Random(4).randbytes(2 * 4 * KiB)
    digest, uow = store_blob(s3, data)
    s3.delete_object(Bucket=BUCKET, Key=chunk_key(uow.rows[0][2]))
    with pytest.raises(StoreIntegrityError):
        make_store(s3).read(digest, uow)  # type: ignore[arg-type]


def test_parallel_fetch_keeps_order_when_gets_finish_out_of_order(s3: Any) -> None:
    data = random.Random(5).randbytes(16 * 4 * KiB)
    digest, uow = store_blob(s3, data)
    first = uow.rows[0][2]
    active = 0
    peak = 0
    lock = threading.Lock()

    def slow_first(params: Any, **_: Any) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        # The first chunk's GET is the slowest: every later one overtakes it.
        time.sleep(0.3 if params["url_path"].endswith(first) else 0.01)

    def done(**_: Any) -> None:
        nonlocal active
        with lock:
            active -= 1

    s3.meta.events.register("before-call.s3.GetObject", slow_first)
    s3.meta.events.register("after-call.s3.GetObject", done)
    store = make_store(s3, max_workers=8)
    assert store.read(digest, uow) == data  # type: ignore[arg-type]
    assert peak > 1, "chunks were not fetched in parallel"

    peak = 0
    store = make_store(s3, max_workers=8, stream_window=3)
    assert list(store.iter_chunks(digest, uow)) == [  # type: ignore[arg-type]
        data[i:i + 4 * KiB] for i in range(0, len(data), 4 * KiB)
    ]
    assert 1 < peak <= 3, f"window of 3 exceeded: {peak} GETs in flight"


def test_second_read_is_served_from_the_cache(s3: Any) -> None:
    data = random.Random(6).randbytes(5 * 4 * KiB)
    digest, uow = store_blob(s3, data)
    gets = count_calls(s3, "GetObject")
    cache = ChunkCache(1 << 20)
    store = make_store(s3, cache)
    assert store.read(digest, uow) == data  # type: ignore[arg-type]
    assert len(gets) == 5
    assert store.read(digest, uow) == data  # type: ignore[arg-type]
    assert b"".join(store.iter_chunks(digest, uow)) == data  # type: ignore[arg-type]
    assert len(gets) == 5, "the second read went to S3"
    assert cache.stats()["hits"] == 10


def test_chunks_too_big_for_the_cache_are_fetched_every_time(s3: Any) -> None:
    data = random.Random(7).randbytes(2 * 4 * KiB)
    digest, uow = store_blob(s3, data)
    gets = count_calls(s3, "GetObject")
    store = make_store(s3, ChunkCache(4 * 4 * KiB - 1))  # max item = just under 4 KiB
    store.read(digest, uow)  # type: ignore[arg-type]
    store.read(digest, uow)  # type: ignore[arg-type]
    assert len(gets) == 4


# -- phase 1 of put_stream (no database writes) -----------------------------------------

class CountingStream(io.RawIOBase):
    """Generates ``size`` pseudo-random bytes on the fly and counts what was read."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.rng = random.Random(seed)
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), self.size - self.read_bytes)
        buf[:n] = self.rng.randbytes(n)
        self.read_bytes += n
        return n


def test_stage_streams_with_bounded_read_ahead(s3: Any) -> None:
    chunk = 4 * KiB
    source = CountingStream(200 * chunk + 7, seed=8)
    put_bytes = 0
    ahead = 0
    in_flight = 0
    peak_in_flight = 0
    lock = threading.Lock()

    def before_put(params: Any, context: Any, **_: Any) -> None:
        nonlocal ahead, in_flight, peak_in_flight
        body = params["body"]  # botocore has wrapped the bytes in a BytesIO
        context["chunk_size"] = body.seek(0, io.SEEK_END)
        body.seek(0)
        with lock:
            in_flight += 1
            peak_in_flight = max(peak_in_flight, in_flight)
            ahead = max(ahead, source.read_bytes - put_bytes)
        time.sleep(0.002)

    def after_put(context: Any, **_: Any) -> None:
        nonlocal put_bytes, in_flight
        with lock:
            in_flight -= 1
            put_bytes += context["chunk_size"]

    s3.meta.events.register("before-call.s3.PutObject", before_put)
    s3.meta.events.register("after-call.s3.PutObject", after_put)
    store = make_store(s3, max_workers=8, stream_window=3)
    staged = store._stage(FakeUow(), lambda: source)  # type: ignore[arg-type]
    assert staged.size == source.size
    assert len(staged.chunks) == 201
    assert peak_in_flight <= 3
    # What was read but not yet stored: the chunker's buffer (2 chunks) + the window.
    assert ahead <= (2 + 3 + 1) * chunk, ahead
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {chunk_key(h) for h, _ in staged.chunks}
