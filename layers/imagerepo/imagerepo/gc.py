"""Garbage collection of blobs, chunks and orphan objects. Never stop-the-world.

Every step is a short transaction that picks its work with ``FOR UPDATE SKIP
LOCKED`` (rows an upload holds are left for a later round), re-checks ``refcount = 0``
under the lock, and deletes S3 objects before it commits, so an upload that takes the
row back (and re-PUTs the object) always comes after the delete. Step 1 also waits
for the chunk rows it decrements, locking them in hash order like uploads do. See :mod:`imagerepo.chunkstore`
for the upload side of the protocol.

1. Blobs at refcount 0 for ``grace_seconds``: release their chunk references (chunks
   reaching 0 get ``zero_since``), delete manifest and thumbnails, delete the rows.
2. Chunks at refcount 0 for ``grace_seconds``: delete rows and objects.
3. Orphans, objects without a row (a crash between PUT and commit, a rolled-back
   upload, a thumbnail written after its blob went): older than the grace period,
   they are deleted after *claiming* the key with a placeholder row, so an upload
   that has PUT the object but not committed its row yet makes the claim wait and
   then conflict (a lock timeout skips the key for this round).

Runs in its own transactions on this thread's connection: do not call it inside a
unit of work.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pg8000.exceptions

from imagerepo import observability
from imagerepo.chunkstore import (
    CHUNK_PREFIX,
    MANIFEST_PREFIX,
    THUMBNAIL_PREFIX,
    ChunkStore,
    StoreIntegrityError,
    blob_keys,
    blob_of_key,
    chunk_key,
    default_store,
)
from imagerepo.db import unit_of_work

LOCK_NOT_AVAILABLE = "55P03"

_CHUNK_KEY = re.compile(r"^chunks/([0-9a-f]{2})/([0-9a-f]{64})$")


@dataclass
class GcResult:
    deleted_blobs: int = 0
    deleted_chunks: int = 0
    freed_bytes: int = 0
    orphans_removed: int = 0
    orphans_skipped: int = 0  # claims that timed out behind an in-flight upload
    expired_objects: int = 0  # incoming/ and materialized/ objects past their lifetime

    def to_json(self) -> dict[str, int]:
        return {
            "deletedBlobs": self.deleted_blobs,
            "deletedChunks": self.deleted_chunks,
            "freedBytes": self.freed_bytes,
            "orphansRemoved": self.orphans_removed,
            "orphansSkipped": self.orphans_skipped,
            "expiredObjects": self.expired_objects,
        }

    def add(self, other: GcResult) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


# The scheduled GC lists at most this many pages (1000 keys each) per prefix and run,
# resuming where the last run stopped (table gc_sweep_cursor); POST /admin/gc sweeps all.
SCHEDULED_SWEEP_PAGES = 10


def collect(grace_seconds: int, *, store: ChunkStore | None = None, batch: int = 100,
            sweep_orphans: bool = True, sweep_pages: int | None = None,
            sweep_page_size: int = 1000) -> GcResult:
    """One GC pass: blobs, then chunks (incl. those just released), then orphans.

    With ``sweep_pages`` the orphan sweep is bounded: per prefix it lists at most that
    many pages after the key where the previous bounded sweep stopped, and wraps around
    at the end, so its cost per run does not grow with the bucket.
    """
    if grace_seconds < 0 or batch < 1:
        raise ValueError("grace_seconds must be >= 0 and batch >= 1")
    store = store or default_store()
    result = GcResult()
    while _collect_blobs(store, grace_seconds, batch, result) == batch:
        pass
    while _collect_chunks(store, grace_seconds, batch, result) == batch:
        pass
    if sweep_orphans:
        _sweep_orphans(store, grace_seconds, result, sweep_pages, sweep_page_size)
        result.expired_objects = expire_transient(store)
    observability.metric(observability.GC_FREED_BYTES, result.freed_bytes, observability.MetricUnit.Bytes)
    return result


# What the bucket's lifecycle rules expire in AWS (template.yaml); S3-compatible servers
# without lifecycle support get the same from here.
TRANSIENT_PREFIXES = ("incoming/", "materialized/")
TRANSIENT_MAX_AGE = timedelta(days=1)


def expire_transient(store: ChunkStore, max_age: timedelta = TRANSIENT_MAX_AGE) -> int:
    """Delete abandoned large uploads and stale materialized copies."""
    cutoff = datetime.now(UTC) - max_age
    old = [o["Key"] for prefix in TRANSIENT_PREFIXES for page in store.list_objects(prefix)
           for o in page if _as_utc(o["LastModified"]) < cutoff]
    return store.delete_objects(old) if old else 0


def _collect_blobs(store: ChunkStore, grace: int, batch: int, result: GcResult) -> int:
    """One batch of step 1; returns how many blobs it locked."""
    with unit_of_work() as uow:
        shas = [r[0] for r in uow.run(
            "SELECT sha256 FROM blobs"
            " WHERE refcount = 0 AND zero_since <= now() - CAST(:grace AS integer) * interval '1 second'"
            " ORDER BY zero_since LIMIT :batch FOR UPDATE SKIP LOCKED",
            grace=grace, batch=batch,
        )]
        if not shas:
            return 0
        # Lock the chunk rows in hash order first (as uploads do), then decrement each
        # by the number of references these blobs hold on it.
        uow.run(
            "SELECT hash FROM chunks WHERE hash IN (SELECT chunk_hash FROM blob_chunks"
            " WHERE blob_sha256 = ANY(CAST(:shas AS char(64)[])))"
            ' ORDER BY hash COLLATE "C" FOR UPDATE',
            shas=shas,
        )
        uow.run(
            "UPDATE chunks c SET refcount = c.refcount - r.n,"
            " zero_since = CASE WHEN c.refcount = r.n THEN now() ELSE c.zero_since END"
            " FROM (SELECT chunk_hash, count(*)::integer AS n FROM blob_chunks"
            "  WHERE blob_sha256 = ANY(CAST(:shas AS char(64)[])) GROUP BY chunk_hash) r"
            " WHERE c.hash = r.chunk_hash",
            shas=shas,
        )
        store.delete_objects(key for sha in shas for key in blob_keys(sha))
        deleted = uow.run(
            "DELETE FROM blobs WHERE sha256 = ANY(CAST(:shas AS char(64)[])) AND refcount = 0"
            " RETURNING sha256",
            shas=shas,
        )
        if len(deleted) != len(shas):
            raise StoreIntegrityError("a blob locked at refcount 0 changed under its row lock")
        uow.commit()
    result.deleted_blobs += len(shas)
    return len(shas)


def _collect_chunks(store: ChunkStore, grace: int, batch: int, result: GcResult) -> int:
    """One batch of step 2; returns how many chunks it locked."""
    with unit_of_work() as uow:
        rows = uow.run(
            "SELECT hash FROM chunks"
            " WHERE refcount = 0 AND zero_since <= now() - CAST(:grace AS integer) * interval '1 second'"
            " ORDER BY zero_since LIMIT :batch FOR UPDATE SKIP LOCKED",
            grace=grace, batch=batch,
        )
        if not rows:
            return 0
        deleted = uow.run(
            "DELETE FROM chunks WHERE hash = ANY(CAST(:hashes AS char(64)[])) AND refcount = 0"
            " RETURNING hash, size",
            hashes=[r[0] for r in rows],
        )
        # A failure raises before COMMIT: the rows stay at 0 and a later round retries.
        store.delete_objects(chunk_key(h) for h, _ in deleted)
        uow.commit()
    result.deleted_chunks += len(deleted)
    result.freed_bytes += sum(int(size) for _, size in deleted)
    return len(rows)


# -- orphans ---------------------------------------------------------------------------

def _chunk_of_key(key: str) -> str | None:
    m = _CHUNK_KEY.match(key)
    return m.group(2) if m is not None and m.group(1) == m.group(2)[:2] else None


@dataclass(frozen=True)
class _Kind:
    """How to find the row an object belongs to, and how to claim that key."""

    prefix: str
    parse: Callable[[str], str | None]  # the owning row's hash, None for a foreign key
    exists_sql: str
    claim_sql: str
    unclaim_sql: str


_CHUNKS = _Kind(
    CHUNK_PREFIX, _chunk_of_key,
    "SELECT hash FROM chunks WHERE hash = ANY(CAST(:keys AS char(64)[]))",
    "INSERT INTO chunks (hash, size, refcount, zero_since)"
    " SELECT t.k, 1, 0, now() FROM unnest(CAST(:keys AS char(64)[])) AS t(k)"
    ' ORDER BY t.k COLLATE "C" ON CONFLICT DO NOTHING RETURNING hash',
    "DELETE FROM chunks WHERE hash = ANY(CAST(:keys AS char(64)[])) AND refcount = 0",
)
_BLOB_CLAIM = (
    "INSERT INTO blobs (sha256, size, chunker, chunk_count, refcount, zero_since)"
    " SELECT t.k, 1, 'gc-claim', 0, 0, now() FROM unnest(CAST(:keys AS char(64)[])) AS t(k)"
    ' ORDER BY t.k COLLATE "C" ON CONFLICT DO NOTHING RETURNING sha256'
)
_BLOB_EXISTS = "SELECT sha256 FROM blobs WHERE sha256 = ANY(CAST(:keys AS char(64)[]))"
_BLOB_UNCLAIM = "DELETE FROM blobs WHERE sha256 = ANY(CAST(:keys AS char(64)[])) AND refcount = 0"
# Both thumbnail layouts (see imagerepo.chunkstore) are listed under one prefix and swept.
_MANIFESTS = _Kind(MANIFEST_PREFIX, blob_of_key, _BLOB_EXISTS, _BLOB_CLAIM, _BLOB_UNCLAIM)
_THUMBNAILS = _Kind(THUMBNAIL_PREFIX, blob_of_key, _BLOB_EXISTS, _BLOB_CLAIM, _BLOB_UNCLAIM)


def _sweep_orphans(store: ChunkStore, grace: int, result: GcResult, max_pages: int | None = None,
                   page_size: int = 1000) -> None:
    cutoff = datetime.now(UTC) - timedelta(seconds=grace)
    for kind in (_CHUNKS, _MANIFESTS, _THUMBNAILS):
        start_after = _cursor(kind.prefix) if max_pages is not None else ""
        pages = store.list_objects(kind.prefix, start_after=start_after, page_size=page_size)
        last_key, finished = start_after, True
        for number, page in enumerate(pages, start=1):
            if page:
                last_key = page[-1]["Key"]
            _sweep_page(store, kind, page, cutoff, result)
            if max_pages is not None and number >= max_pages:
                finished = False
                break
        if max_pages is not None:
            _save_cursor(kind.prefix, "" if finished else last_key, finished)


def _cursor(prefix: str) -> str:
    with unit_of_work() as uow:
        value = uow.scalar("SELECT start_after FROM gc_sweep_cursor WHERE prefix = :p", p=prefix)
    return str(value or "")


def _save_cursor(prefix: str, start_after: str, finished: bool) -> None:
    with unit_of_work() as uow:
        uow.run("INSERT INTO gc_sweep_cursor (prefix, start_after, passes) VALUES (:p, :s, :n)"
                " ON CONFLICT (prefix) DO UPDATE SET start_after = EXCLUDED.start_after,"
                " passes = gc_sweep_cursor.passes + EXCLUDED.passes, updated_at = now()",
                p=prefix, s=start_after, n=int(finished))
        uow.commit()


def _sweep_page(store: ChunkStore, kind: _Kind, page: list[dict[str, Any]], cutoff: datetime,
                result: GcResult) -> None:
    candidates: dict[str, list[str]] = {}
    for obj in page:
        owner = kind.parse(obj["Key"])
        if owner is not None and _as_utc(obj["LastModified"]) <= cutoff:
            candidates.setdefault(owner, []).append(obj["Key"])
    if not candidates:
        return
    with unit_of_work() as uow:
        known = {r[0] for r in uow.run(kind.exists_sql, keys=sorted(candidates))}
    orphans = {k: v for k, v in candidates.items() if k not in known}
    if orphans:
        _remove_orphans(store, kind, orphans, result)


def _remove_orphans(store: ChunkStore, kind: _Kind, orphans: dict[str, list[str]],
                    result: GcResult) -> None:
    """Claim, delete, unclaim; on a lock timeout retry one key at a time, then skip it."""
    if _claim_and_delete(store, kind, orphans, result):
        return
    if len(orphans) == 1:
        result.orphans_skipped += sum(len(v) for v in orphans.values())
        return
    for owner, keys in orphans.items():
        _remove_orphans(store, kind, {owner: keys}, result)


def _claim_and_delete(store: ChunkStore, kind: _Kind, orphans: dict[str, list[str]],
                      result: GcResult) -> bool:
    """False if a claim timed out waiting for an in-flight transaction on the same key."""
    try:
        with unit_of_work() as uow:
            uow.run("SET LOCAL lock_timeout = '2s'")
            claimed = [r[0] for r in uow.run(kind.claim_sql, keys=sorted(orphans))]
            if claimed:
                removed = store.delete_objects(_keys(orphans[k] for k in claimed))
                uow.run(kind.unclaim_sql, keys=claimed)
                uow.commit()
                result.orphans_removed += removed
    except pg8000.exceptions.DatabaseError as exc:
        if _sqlstate(exc) != LOCK_NOT_AVAILABLE:
            raise
        return False
    return True


def _keys(groups: Iterable[list[str]]) -> list[str]:
    return [k for group in groups for k in group]


def _sqlstate(exc: pg8000.exceptions.DatabaseError) -> str | None:
    info: Any = exc.args[0] if exc.args else None
    return str(info.get("C")) if isinstance(info, dict) else None


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
