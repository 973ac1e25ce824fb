"""Downloads too big for a Lambda response: a materialized copy behind a presigned URL.

The copy (``materialized/<sha256>``) is assembled from the chunks with a
multipart upload (bounded memory), reused while it is fresh, and expired by
the bucket's lifecycle rule (locally, by the garbage collector's sweep).
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Any

from botocore.exceptions import ClientError

from imagerepo.chunkstore import check_hash, default_store
from imagerepo.config import settings
from imagerepo.s3 import presigning_client

PREFIX = "materialized/"
PART_BYTES = 8 * 1024 * 1024
# The lifecycle rule deletes copies after a day: reuse one only well within that.
REUSE_FOR = dt.timedelta(hours=12)


def materialized_key(sha256: str) -> str:
    return PREFIX + check_hash(sha256)


def _fresh(head: dict[str, Any]) -> bool:
    modified = head["LastModified"]
    return bool(dt.datetime.now(dt.UTC) - modified < REUSE_FOR)


def ensure_materialized(sha256: str, content_type: str) -> str:
    store = default_store()
    key = materialized_key(sha256)
    try:
        if _fresh(store.s3.head_object(Bucket=store.bucket, Key=key)):
            return key
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
    upload = store.s3.create_multipart_upload(Bucket=store.bucket, Key=key, ContentType=content_type)
    parts: list[dict[str, Any]] = []
    buffer = bytearray()
    try:
        for chunk in store.iter_chunks(sha256):
            buffer += chunk
            while len(buffer) >= PART_BYTES:
                parts.append(_upload_part(store, key, upload["UploadId"], len(parts) + 1,
                                          bytes(buffer[:PART_BYTES])))
                del buffer[:PART_BYTES]
        if buffer or not parts:
            parts.append(_upload_part(store, key, upload["UploadId"], len(parts) + 1, bytes(buffer)))
        store.s3.complete_multipart_upload(Bucket=store.bucket, Key=key, UploadId=upload["UploadId"],
                                           MultipartUpload={"Parts": parts})
    except BaseException:
        store.s3.abort_multipart_upload(Bucket=store.bucket, Key=key, UploadId=upload["UploadId"])
        raise
    return key


def _upload_part(store: Any, key: str, upload_id: str, number: int, data: bytes) -> dict[str, Any]:
    reply = store.s3.upload_part(Bucket=store.bucket, Key=key, UploadId=upload_id,
                                 PartNumber=number, Body=data)
    return {"PartNumber": number, "ETag": reply["ETag"]}


def presigned_url(sha256: str, content_type: str, filename: str) -> str:
    key = ensure_materialized(sha256, content_type)
    disposition = f"inline; filename*=UTF-8''{urllib.parse.quote(filename)}"
    url: str = presigning_client().generate_presigned_url(
        "get_object",
        Params={"Bucket": default_store().bucket, "Key": key,
                "ResponseContentType": content_type, "ResponseContentDisposition": disposition},
        ExpiresIn=settings().presign_ttl_seconds)
    return url
