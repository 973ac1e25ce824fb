"""Downloads too big for a Lambda response: a materialized copy behind a presigned URL.

The copy (``materialized/<sha256>``) is assembled from the chunks with a
multipart upload (bounded memory), reused while it is fresh, and expired by
the bucket's lifecycle rule (locally, by the garbage collector's sweep).
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any

from imagerepo.chunkstore import check_hash, default_store
from imagerepo.config import settings
from imagerepo.s3 import presigning_client

PREFIX = "materialized/"
PART_BYTES = 8 * 1024 * 1024
# The lifecycle rule deletes copies after a day: reuse one only well within that.
REUSE_FOR = dt.timedelta(hours=12)


def materialized_key(sha256: str) -> str:
    return PREFIX + check_hash(sha256)


def _fresh(head: dict[str, Any] | None) -> bool:
    return head is not None and bool(dt.datetime.now(dt.UTC) - head["LastModified"] < REUSE_FOR)


def _parts(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Regroup chunks into parts of ``size`` bytes (the last one shorter, never empty)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


def ensure_materialized(sha256: str, content_type: str) -> str:
    store = default_store()
    key = materialized_key(sha256)
    if not _fresh(store.head(key)):
        store.put_multipart(key, _parts(store.iter_chunks(sha256), PART_BYTES), content_type)
    return key


def presigned_url(sha256: str, content_type: str, filename: str) -> str:
    key = ensure_materialized(sha256, content_type)
    disposition = f"inline; filename*=UTF-8''{urllib.parse.quote(filename)}"
    url: str = presigning_client().generate_presigned_url(
        "get_object",
        Params={"Bucket": default_store().bucket, "Key": key,
                "ResponseContentType": content_type, "ResponseContentDisposition": disposition},
        ExpiresIn=settings().presign_ttl_seconds)
    return url
