"""The deduplicating chunk store: chunk objects in S3, reference counts in Postgres.

Layout in the bucket::

    chunks/<h[:2]>/<h>                 one object per distinct chunk (h = SHA-256 of its bytes)
    manifests/<sha256>.json            one per blob (whole-file SHA-256); its creation is the
                                       S3 event that triggers thumbnailing
    thumbnails/<s[:2]>/<s>/small.webp  thumbnails, keyed by blob (s = its SHA-256) so identical
    thumbnails/<s[:2]>/<s>/preview.jpg files share them; fanned out over 256 prefixes like
                                       chunks, as S3 limits request rates per prefix
    thumbnails/<s>/small.webp          the layout before that: still read when the new key is
    thumbnails/<s>/preview.jpg         missing, swept as orphans, and deleted with its blob

Reference counts (tables ``chunks``, ``blobs``, ``blob_chunks`` of migration 001):
``chunks.refcount`` = number of ``blob_chunks`` rows naming the chunk; ``blobs.refcount``
= number of images naming the blob. ``zero_since`` is set when a count reaches 0 and
cleared when it rises; :mod:`imagerepo.gc` removes what stayed at 0 for a grace period.

Why uploads cannot lose a chunk to a concurrent GC:

* An object is only deleted by GC while it holds a lock on the chunk row at refcount 0
  (``FOR UPDATE SKIP LOCKED``), or, for an object without any row (orphan), while it
  holds a freshly inserted claim row for that hash.
* An upload first upserts its chunk rows (taking their row locks until the caller
  commits) and only then PUTs every object whose row was new or at refcount 0, so GC
  skips those rows, or, if GC got the lock first, the upload waits, sees the row
  deleted, re-inserts it and PUTs the object again. :meth:`ChunkStore.put_stream`
  PUTs before taking locks (it cannot hold a 100 MB file in memory), so it HEADs
  those objects under the locks instead and starts over if one has gone.
* Chunk rows are always locked in hash order (``COLLATE "C"``), by uploads and by
  GC, so concurrent uploads sharing chunks do not deadlock.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import re
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from imagerepo import observability, s3
from imagerepo.chunking import Chunker, Readable, chunker_from_config
from imagerepo.config import settings
from imagerepo.db import UnitOfWork, unit_of_work
from imagerepo.errors import AppError, BadRequest, NotFound, UpstreamError
from imagerepo.lru import ChunkCache, shared_cache

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

THUMBNAIL_SIZES = ("small", "preview")
CHUNK_PREFIX = "chunks/"
MANIFEST_PREFIX = "manifests/"
THUMBNAIL_PREFIX = "thumbnails/"
MANIFEST_CONTENT_TYPE = "application/json"

_HASH = re.compile(r"^[0-9a-f]{64}$")


class StoreIntegrityError(AppError):
    """Stored data does not match its address (corrupt or missing chunk object,
    inconsistent rows). Never the client's fault: a 500."""

    status = 500
    code = "store_integrity_error"


class RetryableStoreError(AppError):
    """:meth:`ChunkStore.put_stream` kept losing staged chunk objects to GC.

    The caller should roll back and try again later (the ingest event is redelivered).
    """

    status = 503
    code = "store_busy"


def check_hash(value: str) -> str:
    """``value`` if it is a lowercase hex SHA-256, else ``ValueError``."""
    if not isinstance(value, str) or not _HASH.match(value):
        raise ValueError(f"not a lowercase hex SHA-256: {value!r}")
    return value


def chunk_key(h: str) -> str:
    check_hash(h)
    return f"{CHUNK_PREFIX}{h[:2]}/{h}"


def manifest_key(sha: str) -> str:
    check_hash(sha)
    return f"{MANIFEST_PREFIX}{sha}.json"


def thumbnail_key(sha: str, size: str) -> str:
    """Where a thumbnail is written: ``thumbnails/<sha[:2]>/<sha>/<size>.<ext>``."""
    return f"{THUMBNAIL_PREFIX}{sha[:2]}/{_thumbnail_name(sha, size)}"


def legacy_thumbnail_key(sha: str, size: str) -> str:
    """Where thumbnails rendered before the hashed prefixes are: ``thumbnails/<sha>/<size>.<ext>``.

    Up to 1,000 Lambdas writing thumbnails at 2 uploads/s each make 4,000 PUTs/s, over
    S3's 3,500 per prefix until S3 splits ``thumbnails/`` by itself; 256 fixed
    prefixes carry that from the start."""
    return f"{THUMBNAIL_PREFIX}{_thumbnail_name(sha, size)}"


def _thumbnail_name(sha: str, size: str) -> str:
    check_hash(sha)
    if size not in THUMBNAIL_SIZES:
        raise ValueError(f"thumbnail size must be one of {THUMBNAIL_SIZES}, got {size!r}")
    return f"{sha}/{size}.{'webp' if size == 'small' else 'jpg'}"


def blob_keys(sha: str) -> list[str]:
    """Every object that belongs to a blob itself (not its chunks), in either thumbnail layout."""
    return [manifest_key(sha), *(thumbnail_key(sha, s) for s in THUMBNAIL_SIZES),
            *(legacy_thumbnail_key(sha, s) for s in THUMBNAIL_SIZES)]


# manifests/<sha>.json, thumbnails/<sha[:2]>/<sha>/<name> and thumbnails/<sha>/<name>.
_BLOB_KEY = re.compile(r"^(?:manifests/(?P<manifest>[0-9a-f]{64})\.json"
                       r"|thumbnails/(?:(?P<fan>[0-9a-f]{2})/)?(?P<thumb>[0-9a-f]{64})/[^/]+)$")


def blob_of_key(key: str) -> str | None:
    """The blob a manifest or thumbnail key belongs to (either layout); None for other keys."""
    m = _BLOB_KEY.match(key)
    if m is None:
        return None
    sha = m.group("manifest") or m.group("thumb")
    fan = m.group("fan")
    return None if fan is not None and fan != sha[:2] else sha


def build_manifest(sha256: str, size: int, chunker: str, chunks: Sequence[tuple[str, int]],
                   created_at: datetime | None = None) -> bytes:
    """The JSON manifest of a blob: enough to reassemble it from S3 alone."""
    created = (created_at or datetime.now(UTC)).astimezone(UTC)
    doc = {
        "sha256": sha256,
        "size": size,
        "chunker": chunker,
        "chunks": [{"hash": h, "size": n} for h, n in chunks],
        "createdAt": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def parse_manifest(data: bytes) -> dict[str, Any]:
    """Decode and sanity-check a manifest (chunk sizes must add up to the size)."""
    doc = json.loads(data)
    chunks = doc.get("chunks") if isinstance(doc, dict) else None
    if not isinstance(chunks, list) or sum(int(c["size"]) for c in chunks) != doc.get("size"):
        raise StoreIntegrityError("malformed manifest")
    return dict(doc)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int
    chunk_count: int
    created: bool  # this call created the blob row (False: an identical file existed)
    revived: bool = False  # the row existed at refcount 0: GC may have removed its objects


@dataclass(frozen=True)
class _Staged:
    """What phase 1 of put_stream leaves behind: only hashes and sizes, no bytes."""

    sha256: str
    size: int
    chunks: list[tuple[str, int]]
    written: int  # bytes of chunk objects PUT (the rest was already stored)


class ChunkStore:
    """Content-addressed storage of files as deduplicated chunks.

    ``s3_client`` is a boto3 S3 client (thread-safe; shared by the worker pool),
    ``cache`` an optional :class:`ChunkCache` for reads. ``max_workers`` bounds the
    parallel S3 requests of one call; ``stream_window`` bounds how many chunks
    :meth:`put_stream` and :meth:`iter_chunks` hold in flight.
    """

    def __init__(self, s3_client: Any, bucket: str, chunker: Chunker, cache: ChunkCache | None,
                 max_workers: int = 8, *, stream_window: int = 4) -> None:
        if max_workers < 1 or stream_window < 1:
            raise ValueError("max_workers and stream_window must be >= 1")
        self.s3 = s3_client
        self.bucket = bucket
        self.chunker = chunker
        self.cache = cache
        self.max_workers = max_workers
        self.stream_window = stream_window
        self.stream_retries = 0  # put_stream attempts restarted because GC took a staged chunk
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.max_workers, thread_name_prefix="chunkstore")
            return self._executor

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def _map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(i) for i in items]`` on the pool, in order.

        On a failure the calls not started yet are cancelled, the running ones are
        awaited (so no request lands after the caller has rolled back), then the
        first error is raised.
        """
        if len(items) <= 1:
            return [fn(i) for i in items]
        pool = self._pool()
        futures = [pool.submit(fn, i) for i in items]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        if pending:
            for f in pending:
                f.cancel()
            wait(futures)
        return [f.result() for f in futures]

    def _put_object(self, key: str, body: bytes, content_type: str = "application/octet-stream",
                    **extra: str) -> None:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, **extra)
        except (BotoCoreError, ClientError) as exc:
            raise UpstreamError(f"object store PUT {key} failed: {exc}") from exc

    def exists(self, key: str) -> bool:
        """HEAD ``key``: False when absent; other failures are an UpstreamError."""
        return self._exists(key)

    # -- other objects of the bucket (thumbnails, incoming/, materialized/) -----------
    # Every S3 call of the layer goes through the store or imagerepo.s3, never store.s3.

    def put_object(self, key: str, body: bytes, content_type: str, *,
                   cache_control: str | None = None) -> None:
        extra = {"CacheControl": cache_control} if cache_control else {}
        self._put_object(key, body, content_type, **extra)

    def get_object_bytes(self, key: str) -> bytes:
        """The object's bytes; :class:`StoreIntegrityError` if it is missing."""
        return self._get_object(key)

    def head(self, key: str) -> dict[str, Any] | None:
        """The object's metadata (``ContentLength``, ``LastModified``, ...), None if it is missing."""
        try:
            return dict(self.s3.head_object(Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if s3.is_missing(exc):
                return None
            raise UpstreamError(f"object store HEAD {key} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise UpstreamError(f"object store HEAD {key} failed: {exc}") from exc

    def open_object(self, key: str) -> tuple[int, Any]:
        """(size, streaming body) of an object; the caller closes the body."""
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if s3.is_missing(exc):
                raise StoreIntegrityError(f"object {key} is missing from the store") from exc
            raise UpstreamError(f"object store GET {key} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise UpstreamError(f"object store GET {key} failed: {exc}") from exc
        return int(obj["ContentLength"]), obj["Body"]

    def copy_object(self, source: str, target: str, content_type: str, *,
                    metadata: dict[str, str] | None = None) -> None:
        """A server-side copy within the bucket (one request, no bytes through Lambda)."""
        try:
            self.s3.copy_object(Bucket=self.bucket, Key=target,
                                CopySource={"Bucket": self.bucket, "Key": source},
                                ContentType=content_type, MetadataDirective="REPLACE",
                                Metadata=metadata or {})
        except (BotoCoreError, ClientError) as exc:
            raise UpstreamError(f"object store COPY {source} -> {target} failed: {exc}") from exc

    def put_multipart(self, key: str, parts: Iterable[bytes], content_type: str) -> None:
        """One object from ``parts`` (each >= 5 MiB but the last) by a multipart upload;
        aborted if anything fails, so no partial object is ever visible."""
        upload_id = self.s3.create_multipart_upload(Bucket=self.bucket, Key=key,
                                                    ContentType=content_type)["UploadId"]
        done: list[dict[str, Any]] = []
        try:
            for number, body in enumerate(parts, start=1):
                reply = self.s3.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                            PartNumber=number, Body=body)
                done.append({"PartNumber": number, "ETag": reply["ETag"]})
            self.s3.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                              MultipartUpload={"Parts": done})
        except BaseException:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    def _exists(self, key: str) -> bool:
        return self.head(key) is not None

    def _get_object(self, key: str) -> bytes:
        _, body = self.open_object(key)
        try:
            return bytes(body.read())
        except (BotoCoreError, ClientError) as exc:
            raise UpstreamError(f"object store GET {key} failed: {exc}") from exc
        finally:
            body.close()

    def delete_objects(self, keys: Iterable[str]) -> int:
        """Delete keys in batches of 1000 (absent keys are fine); any per-key error raises."""
        count = 0
        todo = iter(keys)
        while batch := list(itertools.islice(todo, 1000)):
            try:
                reply = self.s3.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            except (BotoCoreError, ClientError) as exc:
                raise UpstreamError(f"object store DELETE failed: {exc}") from exc
            errors = reply.get("Errors") or []
            if errors:
                first = errors[0]
                raise UpstreamError(
                    f"object store could not delete {len(errors)} object(s), e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
            count += len(batch)
        return count

    def list_objects(self, prefix: str, *, start_after: str = "",
                     page_size: int = 1000) -> Iterator[list[dict[str, Any]]]:
        """Pages (up to ``page_size``) of ``{"Key", "Size", "LastModified"}`` under ``prefix``,
        in key order, from the first key after ``start_after``."""
        paginator = self.s3.get_paginator("list_objects_v2")
        extra = {"StartAfter": start_after} if start_after else {}
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix,
                                           PaginationConfig={"PageSize": page_size}, **extra):
                yield list(page.get("Contents") or [])
        except (BotoCoreError, ClientError) as exc:
            raise UpstreamError(f"object store LIST {prefix} failed: {exc}") from exc

    # -- writing ----------------------------------------------------------------------

    def _upsert_blob(self, uow: UnitOfWork, sha: str, size: int, chunk_count: int) -> StoredBlob:
        """One more reference on the blob; ``created`` tells whether the row is new.

        ON CONFLICT DO UPDATE waits for a concurrent insert of the same blob (or a GC
        holding the row) and, if that row goes away, inserts instead.
        """
        row = uow.one(
            "INSERT INTO blobs (sha256, size, chunker, chunk_count, refcount)"
            " VALUES (:sha, :size, :chunker, :count, 1)"
            " ON CONFLICT (sha256) DO UPDATE SET refcount = blobs.refcount + 1, zero_since = NULL,"
            # A blob back from refcount 0 may have lost its manifest and thumbnails to a GC
            # that died before committing: render them again (see _revive).
            "  thumb_status = CASE WHEN blobs.refcount = 0 THEN 'pending' ELSE blobs.thumb_status END,"
            "  thumb_attempts = CASE WHEN blobs.refcount = 0 THEN 0 ELSE blobs.thumb_attempts END,"
            "  thumb_error = CASE WHEN blobs.refcount = 0 THEN NULL ELSE blobs.thumb_error END"
            " RETURNING (xmax = 0) AS inserted, refcount, size, chunk_count",
            sha=sha, size=size, chunker=self.chunker.describe(), count=chunk_count,
        )
        assert row is not None
        inserted = bool(row["inserted"])
        return StoredBlob(sha, int(row["size"]), int(row["chunk_count"]), inserted,
                          revived=not inserted and int(row["refcount"]) == 1)

    def _revive(self, uow: UnitOfWork, blob: StoredBlob) -> None:
        """Publish the manifest of a blob taken back from refcount 0 again, after commit."""
        if blob.revived:
            self._publish_after_commit(uow, blob, self._chunk_list(uow, blob.sha256))

    def add_reference(self, uow: UnitOfWork, sha256: str) -> StoredBlob | None:
        """One more reference on an existing blob (the duplicate upload's whole cost), else None.

        Like the upsert, it waits for a transaction holding the row (a concurrent upload
        of the same file, or GC); if GC deleted it meanwhile, nothing matches: None.
        """
        row = uow.one(
            "UPDATE blobs SET refcount = refcount + 1, zero_since = NULL WHERE sha256 = :sha"
            " RETURNING size, chunk_count",
            sha=check_hash(sha256),
        )
        if row is None:
            return None
        return StoredBlob(sha256, int(row["size"]), int(row["chunk_count"]), False)

    def _upsert_chunks(self, uow: UnitOfWork, chunks: Sequence[tuple[str, int]]) -> dict[str, int | None]:
        """Add each chunk's occurrences to its refcount, locking rows in hash order.

        Returns ``{hash: refcount before}`` (None for rows inserted now).
        """
        counts = Counter(h for h, _ in chunks)
        sizes = dict(chunks)
        hashes = sorted(counts)
        rows = uow.run(
            "INSERT INTO chunks (hash, size, refcount)"
            " SELECT t.h, t.s, t.n FROM unnest(CAST(:hashes AS char(64)[]), CAST(:sizes AS integer[]),"
            "  CAST(:counts AS integer[])) AS t(h, s, n)"
            ' ORDER BY t.h COLLATE "C"'
            " ON CONFLICT (hash) DO UPDATE SET refcount = chunks.refcount + EXCLUDED.refcount,"
            "  zero_since = NULL"
            " RETURNING hash, refcount, (xmax = 0) AS inserted",
            hashes=hashes, sizes=[sizes[h] for h in hashes], counts=[counts[h] for h in hashes],
        )
        return {h: None if inserted else refcount - counts[h] for h, refcount, inserted in rows}

    @staticmethod
    def _objects_at_risk(before: dict[str, int | None]) -> list[str]:
        """Chunks whose object may be absent: new rows, and rows at 0 (maybe mid-GC)."""
        return sorted(h for h, old in before.items() if not old)

    def _link(self, uow: UnitOfWork, blob: StoredBlob, chunks: Sequence[tuple[str, int]]) -> None:
        """Record the chunk list and publish the manifest (last: it triggers thumbnailing)."""
        uow.run(
            "INSERT INTO blob_chunks (blob_sha256, seq, chunk_hash)"
            " SELECT :sha, t.seq - 1, t.h"
            " FROM unnest(CAST(:hashes AS char(64)[])) WITH ORDINALITY AS t(h, seq)",
            sha=blob.sha256, hashes=[h for h, _ in chunks],
        )
        self._publish_after_commit(uow, blob, chunks)

    def _publish_after_commit(self, uow: UnitOfWork, blob: StoredBlob,
                              chunks: Sequence[tuple[str, int]]) -> None:
        """PUT the manifest once the blob row is committed: a rolled-back upload leaves no
        manifest (whose event would send the thumbnailer after a blob that never existed).
        If this PUT fails the upload still stands; the thumbnail sweep renders it anyway."""
        manifest = build_manifest(blob.sha256, blob.size, self.chunker.describe(), chunks)

        def publish() -> None:
            try:
                self._put_object(manifest_key(blob.sha256), manifest, MANIFEST_CONTENT_TYPE)
            except UpstreamError:
                log.warning("manifest PUT failed after commit; the sweep renders thumbnails",
                            extra={"sha256": blob.sha256})

        uow.after_commit(publish)

    def put(self, uow: UnitOfWork, data: bytes, *, sha256: str | None = None) -> StoredBlob:
        """Add one reference to the blob holding ``data``, inside the caller's transaction.

        ``sha256``, when given, must be the caller's own SHA-256 of ``data`` (saves hashing
        twice). Nothing is committed here: the caller records its image in ``uow`` and commits;
        if anything raises, its rollback undoes every refcount change (objects already
        PUT become orphans that GC removes after the grace period). Chunk row locks
        are held until that commit, which is what keeps GC away from them. Use one
        put per transaction: two could lock blob rows in opposite orders.
        """
        if not data:
            raise BadRequest("the file is empty", code="empty_file")
        sha = sha256 or _sha256(data)  # a caller that hashed already passes it
        known = self.add_reference(uow, sha)
        if known is not None:
            return known  # already stored: no chunking, no S3 request
        pieces = list(self.chunker.split_bytes(data))
        blob = self._upsert_blob(uow, sha, len(data), len(pieces))
        if not blob.created:
            observability.stored(len(data), 0)
            self._revive(uow, blob)
            return blob
        hashes = [_sha256(p) for p in pieces]
        by_hash = dict(zip(hashes, pieces, strict=True))
        chunks = [(h, len(p)) for h, p in zip(hashes, pieces, strict=True)]
        before = self._upsert_chunks(uow, chunks)
        at_risk = self._objects_at_risk(before)
        self._map(lambda h: self._put_object(chunk_key(h), by_hash[h]), at_risk)
        self._link(uow, blob, chunks)
        observability.stored(len(data), sum(len(by_hash[h]) for h in at_risk))
        return blob

    def put_stream(self, uow: UnitOfWork, open_source: Callable[[], Readable], *,
                   attempts: int = 3) -> StoredBlob:
        """Like :meth:`put` for files too large to hold in memory (at most a few chunks are).

        Phase 1, no locks: stream ``open_source()``, hash each chunk and the whole file,
        PUT every chunk whose row is absent or at refcount 0 (plain SELECTs in ``uow``),
        keep only the (hash, size) list. Phase 2, in a SAVEPOINT of ``uow``: the blob
        upsert; if the blob is new, the sorted chunk upsert, then HEAD (in parallel)
        every chunk whose row was new or at 0. If GC removed one between the phases,
        roll back to the savepoint and start over from phase 1, calling
        ``open_source()`` again; after ``attempts`` tries raise
        :class:`RetryableStoreError` (the caller rolls back and retries later).

        Call it first in the transaction: phase 1 may take seconds and should not run
        while the transaction holds locks. As with :meth:`put`, the caller commits.
        """
        for attempt in range(1, attempts + 1):
            staged = self._stage(uow, open_source)
            uow.run("SAVEPOINT chunkstore_put_stream")
            blob = self._commit_staged(uow, staged)
            if blob is not None:
                uow.run("RELEASE SAVEPOINT chunkstore_put_stream")
                observability.stored(staged.size, staged.written)
                return blob
            uow.run("ROLLBACK TO SAVEPOINT chunkstore_put_stream")
            uow.run("RELEASE SAVEPOINT chunkstore_put_stream")
            with self._lock:
                self.stream_retries += 1
            if attempt == attempts:
                break
        raise RetryableStoreError(
            f"chunks of the upload were garbage-collected before it could be recorded ({attempts} attempts)"
        )

    @staticmethod
    def _needing_objects(uow: UnitOfWork, hashes: Sequence[str]) -> set[str]:
        """Those of ``hashes`` whose row is absent or at refcount 0 (one query)."""
        live = uow.run("SELECT hash FROM chunks WHERE hash = ANY(CAST(:h AS char(64)[])) AND refcount > 0",
                       h=list(hashes))
        return set(hashes) - {str(h) for (h,) in live}

    def _stage(self, uow: UnitOfWork, open_source: Callable[[], Readable]) -> _Staged:
        """Phase 1 of put_stream: chunk, hash, PUT what is missing.

        Chunks are checked against the database ``stream_window`` at a time (one query
        per batch) and their PUTs overlap the chunking of the next batch; at most
        ``stream_window`` PUTs are in flight, so memory holds about two windows of chunks.
        """
        whole = hashlib.sha256()
        chunks: list[tuple[str, int]] = []
        written = 0
        seen: set[str] = set()
        batch: list[tuple[str, bytes]] = []
        inflight: deque[Future[None]] = deque()
        pool = self._pool()
        source = open_source()

        def flush() -> None:
            nonlocal written
            needed = self._needing_objects(uow, [h for h, _ in batch])
            for h, piece in batch:
                if h in needed:
                    while len(inflight) >= self.stream_window:
                        inflight.popleft().result()
                    inflight.append(pool.submit(self._put_object, chunk_key(h), piece))
                    written += len(piece)
            batch.clear()

        try:
            for piece in self.chunker.split(source):
                whole.update(piece)
                h = _sha256(piece)
                chunks.append((h, len(piece)))
                if h in seen:
                    continue
                seen.add(h)
                batch.append((h, piece))
                if len(batch) >= self.stream_window:
                    flush()
            if batch:
                flush()
            while inflight:
                inflight.popleft().result()
        finally:
            # On an error let the PUTs already started finish, so none lands after the
            # caller's rollback; the first error still propagates.
            wait(inflight)
            close = getattr(source, "close", None)
            if callable(close):
                close()
        if not chunks:
            raise BadRequest("the file is empty", code="empty_file")
        return _Staged(whole.hexdigest(), sum(n for _, n in chunks), chunks, written)

    def _commit_staged(self, uow: UnitOfWork, staged: _Staged) -> StoredBlob | None:
        """Phase 2 of put_stream; None when a staged chunk object has disappeared."""
        blob = self._upsert_blob(uow, staged.sha256, staged.size, len(staged.chunks))
        if not blob.created:
            self._revive(uow, blob)
            return blob
        before = self._upsert_chunks(uow, staged.chunks)
        present = self._map(lambda h: self._exists(chunk_key(h)), self._objects_at_risk(before))
        if not all(present):
            return None
        self._link(uow, blob, staged.chunks)
        return blob

    def release(self, uow: UnitOfWork, sha256: str) -> int:
        """One reference less on the blob, in the caller's transaction; returns what is left.

        Its chunks keep their references until GC deletes the blob (after the grace
        period at refcount 0), so re-uploading the same file meanwhile is free.
        """
        remaining = uow.scalar(
            "UPDATE blobs SET refcount = refcount - 1,"
            " zero_since = CASE WHEN refcount = 1 THEN now() ELSE zero_since END"
            " WHERE sha256 = :sha AND refcount > 0 RETURNING refcount",
            sha=check_hash(sha256),
        )
        if remaining is None:
            raise StoreIntegrityError(f"blob {sha256} has no reference left to release")
        return int(remaining)

    # -- reading ----------------------------------------------------------------------

    def chunk_list(self, sha256: str, uow: UnitOfWork | None = None) -> list[tuple[str, int]]:
        """The blob's ordered ``(hash, size)`` list; :class:`NotFound` if there is no blob.

        Without ``uow`` it runs in its own short transaction, so a caller that is inside
        a unit of work on this thread must pass it.
        """
        check_hash(sha256)
        if uow is None:
            with unit_of_work() as own:
                return self._chunk_list(own, sha256)
        return self._chunk_list(uow, sha256)

    @staticmethod
    def _chunk_list(uow: UnitOfWork, sha: str) -> list[tuple[str, int]]:
        rows = uow.run(
            "SELECT b.size, b.chunk_count, bc.chunk_hash, c.size FROM blobs b"
            " LEFT JOIN blob_chunks bc ON bc.blob_sha256 = b.sha256"
            " LEFT JOIN chunks c ON c.hash = bc.chunk_hash"
            " WHERE b.sha256 = :sha ORDER BY bc.seq",
            sha=sha,
        )
        if not rows:
            raise NotFound("no such blob", code="blob_not_found")
        size, count = rows[0][0], rows[0][1]
        chunks = [(str(r[2]), int(r[3])) for r in rows if r[2] is not None]
        if len(chunks) != count or sum(n for _, n in chunks) != size:
            raise StoreIntegrityError(f"blob {sha} has an inconsistent chunk list")
        return chunks

    def fetch_chunk(self, h: str, size: int | None = None) -> bytes:
        """One chunk, from the cache or S3, verified against its hash."""
        return self._fetch(h, size)[0]

    def _fetch(self, h: str, size: int | None = None) -> tuple[bytes, bool]:
        """:meth:`fetch_chunk`, and whether the cache had it."""
        if self.cache is not None:
            cached = self.cache.get(h)
            if cached is not None:
                return cached, True
        data = self._get_object(chunk_key(h))
        if _sha256(data) != h or (size is not None and len(data) != size):
            raise StoreIntegrityError(f"chunk {h} is corrupt in the object store")
        if self.cache is not None:
            self.cache.put(h, data)
        return data, False

    def read(self, sha256: str, uow: UnitOfWork | None = None) -> bytes:
        """The whole blob (chunks fetched in parallel). For small files; see iter_chunks."""
        chunks = self.chunk_list(sha256, uow)
        fetched = self._map(lambda c: self._fetch(*c), chunks)
        hits = sum(hit for _, hit in fetched)
        observability.cache_lookups(hits, len(fetched) - hits)
        return b"".join(data for data, _ in fetched)

    def iter_chunks(self, sha256: str, uow: UnitOfWork | None = None, *,
                    window: int | None = None) -> Iterator[bytes]:
        """The blob's chunks in order, with at most ``window`` fetched ahead.

        The chunk list is read now (so :class:`NotFound` is raised by this call); the
        chunks are fetched while the returned iterator is consumed.
        """
        chunks = self.chunk_list(sha256, uow)
        return self._stream(chunks, window or self.stream_window)

    def _stream(self, chunks: list[tuple[str, int]], window: int) -> Iterator[bytes]:
        if len(chunks) == 1:
            data, hit = self._fetch(*chunks[0])
            observability.cache_lookups(int(hit), int(not hit))
            yield data
            return
        pool = self._pool()
        todo = iter(chunks)
        pending: deque[Future[tuple[bytes, bool]]] = deque(
            pool.submit(self._fetch, *c) for c in itertools.islice(todo, window)
        )
        hits = 0
        try:
            while pending:
                data, hit = pending.popleft().result()
                hits += hit
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(self._fetch, *nxt))
                yield data
            observability.cache_lookups(hits, len(chunks) - hits)
        finally:
            for f in pending:
                f.cancel()

    def read_manifest(self, sha256: str) -> dict[str, Any]:
        """The blob's manifest from S3: lets a reader reassemble it without the database."""
        return parse_manifest(self._get_object(manifest_key(sha256)))

    # -- accounting -------------------------------------------------------------------

    def stats(self, uow: UnitOfWork) -> dict[str, int]:
        """Store-level numbers; the image service adds users, images and logicalBytes.

        ``storedBytes`` counts live chunks once each (what dedup leaves in S3);
        ``uniqueBytes`` counts live blobs once each (what whole-file dedup alone would
        store); ``collectable*`` is what GC will free once the grace period is over.
        """
        b = uow.one(
            "SELECT count(*) FILTER (WHERE refcount > 0) AS blobs,"
            " coalesce(sum(size) FILTER (WHERE refcount > 0), 0) AS unique_bytes,"
            " coalesce(sum(refcount), 0) AS blob_refs,"
            " count(*) FILTER (WHERE refcount = 0) AS collectable_blobs FROM blobs"
        )
        c = uow.one(
            "SELECT count(*) FILTER (WHERE refcount > 0) AS chunks,"
            " coalesce(sum(size) FILTER (WHERE refcount > 0), 0) AS stored_bytes,"
            " count(*) FILTER (WHERE refcount = 0) AS collectable_chunks,"
            " coalesce(sum(size) FILTER (WHERE refcount = 0), 0) AS collectable_bytes FROM chunks"
        )
        assert b is not None and c is not None
        return {
            "blobs": int(b["blobs"]),
            "blobReferences": int(b["blob_refs"]),
            "uniqueBytes": int(b["unique_bytes"]),
            "chunks": int(c["chunks"]),
            "storedBytes": int(c["stored_bytes"]),
            "collectableBlobs": int(b["collectable_blobs"]),
            "collectableChunks": int(c["collectable_chunks"]),
            "collectableBytes": int(c["collectable_bytes"]),
        }


@functools.lru_cache(maxsize=1)
def default_store() -> ChunkStore:
    """The process-wide store from settings (warm invocations reuse pool and cache)."""
    s = settings()
    # FastCDC chunks average 64 KiB: 16 requests in flight and windows of 32 chunks
    # (at most 32 x 256 KiB = 8 MiB held) keep S3 busy without much memory.
    return ChunkStore(s3.client(), s.bucket, chunker_from_config(s.chunker), shared_cache(),
                      max_workers=16, stream_window=32)


class _Unclosable:
    def __init__(self, fp: IO[bytes]) -> None:
        self._fp = fp

    def read(self, n: int = -1) -> bytes:
        return self._fp.read(n)

    def close(self) -> None:
        pass


def rewinding(spool: IO[bytes]) -> Callable[[], Readable]:
    """An ``open_source`` for :meth:`ChunkStore.put_stream` over a seekable spool file:
    each call rewinds it; the store's close() leaves it open for the caller."""

    def open_source() -> Readable:
        spool.seek(0)
        return _Unclosable(spool)

    return open_source
