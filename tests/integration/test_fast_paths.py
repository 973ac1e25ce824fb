"""Fast paths of the performance work, against the real local Postgres and S3 server:
a duplicate upload is neither decoded nor chunked nor sent to S3, and a large upload's
incoming object becomes the materialized copy its 307 downloads point at."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from tests.helpers import db, unique, wait_for

pytestmark = pytest.mark.integration


def photo(size: tuple[int, int] = (640, 480)) -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture
def owner(stack: Any) -> Any:
    from imagerepo.security import Principal

    name = unique("fast")
    user_id = db("INSERT INTO users (name, email, password_hash) VALUES (:n, :e, 'x') RETURNING id",
                 n=name, e=f"{name}@example.com")[0][0]
    return Principal(int(user_id), "user", name)


@pytest.fixture
def s3_requests(stack: Any) -> Iterator[list[tuple[str, str]]]:
    """(operation, key) of every S3 request the process-wide store's client sends meanwhile
    (the local stack's own functions share it: callers filter by key)."""
    from imagerepo.chunkstore import default_store

    seen: list[tuple[str, str]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        seen.append((model.name, str(params.get("Key", ""))))

    events = default_store().s3.meta.events
    events.register("provide-client-params.s3", record)
    yield seen
    events.unregister("provide-client-params.s3", record)


def test_duplicate_upload_is_not_decoded_chunked_or_stored_again(
        owner: Any, s3_requests: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    from imagerepo import images, imaging
    from imagerepo.chunkstore import chunk_key, default_store, manifest_key

    data = photo()
    first, _ = images.create(owner, images.NewImage("a.jpg", data))
    chunks = default_store().chunk_list(first.sha256)
    own_keys = {manifest_key(first.sha256), *(chunk_key(h) for h, _ in chunks)}
    assert {key for op, key in s3_requests if op == "PutObject"} >= own_keys

    def no_decoding(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a duplicate upload was decoded again")

    monkeypatch.setattr(imaging, "inspect_image", no_decoding)
    s3_requests.clear()
    second, _ = images.create(owner, images.NewImage("b.jpg", data))
    # The thumbnailer may still be busy with the first upload's blob: only its writes are excused.
    assert [key for op, key in s3_requests if op == "PutObject" and not key.startswith("thumbnails/")] == []
    assert second.sha256 == first.sha256 and second.id != first.id
    assert (second.content_type, second.width, second.height) == ("image/jpeg", 640, 480)
    assert db("SELECT refcount FROM blobs WHERE sha256 = :s", s=first.sha256) == [[2]]


def test_new_content_is_still_validated(owner: Any) -> None:
    from imagerepo import images
    from imagerepo.errors import BadRequest

    with pytest.raises(BadRequest):
        images.create(owner, images.NewImage("x.jpg", b"not an image " + os.urandom(64)))


def test_large_upload_leaves_its_materialized_copy(owner: Any) -> None:
    """The ingest copies incoming/<id> to materialized/<sha> in S3 (files served by a 307),
    so the first download finds a fresh copy instead of reassembling the chunks."""
    from imagerepo import downloads, uploads
    from imagerepo.chunkstore import default_store
    from imagerepo.config import settings

    side = 1400  # 1400x1400 RGB, stored uncompressed: over the 4.4 MB response limit
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, "PNG", compress_level=0)
    data = out.getvalue()
    assert len(data) > settings().max_response_bytes
    upload_id = db("INSERT INTO uploads (id, owner_id, file_name, content_type, size, description,"
                   " is_private, expires_at) VALUES (gen_random_uuid(), :o, 'big.png', 'image/png', :n, '',"
                   " false, now() + interval '5 minutes') RETURNING id::text", o=owner.user_id,
                   n=len(data))[0][0]
    store = default_store()
    store.put_object(uploads.INCOMING + upload_id, data, "image/png")  # the S3 event runs the ingest
    rows = wait_for(lambda: db("SELECT i.blob_sha256 FROM uploads u JOIN images i ON i.id = u.image_id"
                               " WHERE u.id = CAST(:u AS uuid) AND u.status = 'ready'", u=upload_id), 60)
    sha = rows[0][0].strip()
    head = store.head(downloads.materialized_key(sha))
    assert head is not None and head["ContentType"] == "image/png" and head["ContentLength"] == len(data)
    assert store.get_object_bytes(downloads.materialized_key(sha)) == data
    assert wait_for(lambda: store.head(uploads.INCOMING + upload_id) is None, 20)
