"""Issue 10, deliverables 3 and 6 over HTTP: ingest events, missing thumbnails, caching,
new access keys, and what thumbnails.status tells about other users' files."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Upload, make_jpeg
from tests.helpers import Api, wait_for

pytestmark = pytest.mark.e2e


def _ready(api: Api, image_id: int) -> bool:
    return bool(api.get(f"/images/{image_id}/info").json()["thumbnails"]["status"] == "ready")


def test_missing_thumbnail_object_is_a_404_that_says_so_then_rendered_again(
        stack: Any, user: tuple[Api, dict[str, Any]], upload: Upload) -> None:
    from imagerepo import thumbnails
    from imagerepo.chunkstore import default_store, thumbnail_key

    api, _ = user
    image = upload(api, make_jpeg(120, 90))
    wait_for(lambda: _ready(api, image["id"]), timeout=30)
    store = default_store()
    store.s3.delete_object(Bucket=store.bucket, Key=thumbnail_key(image["sha256"], "small"))
    r = api.get(f"/images/{image['id']}/thumbnail?size=small")
    assert r.status_code == 404 and r.json()["error"]["code"] == "thumbnail_missing", r.text
    assert api.get(f"/images/{image['id']}/info").json()["thumbnails"]["status"] == "pending"
    thumbnails.sweep()  # what the 2-minute schedule runs
    r = api.get(f"/images/{image['id']}/thumbnail?size=small")
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/webp"


def test_thumbnails_in_the_layout_before_hashed_prefixes_are_still_served(
        stack: Any, user: tuple[Api, dict[str, Any]], upload: Upload) -> None:
    """Blobs rendered before thumbnails moved to thumbnails/<h[:2]>/<h>/ keep working."""
    from imagerepo.chunkstore import default_store, legacy_thumbnail_key, thumbnail_key

    api, _ = user
    image = upload(api, make_jpeg(130, 70))
    wait_for(lambda: _ready(api, image["id"]), timeout=30)
    store, sha = default_store(), image["sha256"]
    served = {}
    for size in ("small", "preview"):
        served[size] = api.get(f"/images/{image['id']}/thumbnail?size={size}").content
        store.copy_object(thumbnail_key(sha, size), legacy_thumbnail_key(sha, size),
                          "image/webp" if size == "small" else "image/jpeg")
        store.delete_objects([thumbnail_key(sha, size)])
    for size in ("small", "preview"):
        r = api.get(f"/images/{image['id']}/thumbnail?size={size}")
        assert r.status_code == 200 and r.content == served[size], r.text
    assert api.get(f"/images/{image['id']}/info").json()["thumbnails"]["status"] == "ready"


def test_public_responses_are_cached_for_a_minute_and_revalidated(user: tuple[Api, dict[str, Any]],
                                                                 upload: Upload) -> None:
    api, _ = user
    image = upload(api, make_jpeg())
    wait_for(lambda: _ready(api, image["id"]), timeout=30)
    for path in (f"/images/{image['id']}", f"/images/{image['id']}/thumbnail"):
        r = api.anonymous().get(path)
        assert r.status_code == 200 and r.headers["Cache-Control"] == "public, max-age=60, must-revalidate"
        again = api.anonymous().get(path, headers={"If-None-Match": r.headers["ETag"]})
        assert again.status_code == 304
    assert api.put(f"/images/{image['id']}", json={"isPrivate": 1}).status_code == 200
    r = api.get(f"/images/{image['id']}")
    assert r.headers["Cache-Control"] == "private, max-age=0, must-revalidate"
    assert api.anonymous().get(f"/images/{image['id']}").status_code == 403


def test_new_access_key_for_the_owner_or_an_admin(user: tuple[Api, dict[str, Any]],
                                                  other: tuple[Api, dict[str, Any]], admin: Api,
                                                  upload: Upload) -> None:
    owner, _ = user
    stranger, _ = other
    image = upload(owner, make_jpeg())
    # An admin makes it private: the generated key reaches nobody...
    made = admin.put(f"/images/{image['id']}", json={"isPrivate": 1})
    assert made.status_code == 200 and "accessKey" not in made.json()
    # ...so the owner asks for a new one.
    r = owner.post(f"/images/{image['id']}/access-key")
    assert r.status_code == 200 and set(r.json()) == {"accessKey"}
    key = r.json()["accessKey"]
    anon = owner.anonymous()
    assert anon.get(f"/images/{image['id']}/info", params={"accessKey": key}).status_code == 200
    by_admin = admin.post(f"/images/{image['id']}/access-key").json()["accessKey"]
    assert anon.get(f"/images/{image['id']}/info", params={"accessKey": key}).status_code == 403
    assert anon.get(f"/images/{image['id']}/info", params={"accessKey": by_admin}).status_code == 200
    r = stranger.post(f"/images/{image['id']}/access-key")
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_owner"
    assert anon.post(f"/images/{image['id']}/access-key").status_code == 401
    assert owner.post("/images/999999999/access-key").status_code == 404
    assert owner.post("/images/0/access-key").json()["error"]["code"] == "invalid_id"


def test_status_does_not_reveal_that_someone_else_holds_the_file(user: tuple[Api, dict[str, Any]],
                                                                other: tuple[Api, dict[str, Any]],
                                                                upload: Upload) -> None:
    first, _ = user
    second, _ = other
    data = make_jpeg(100, 80)
    mine = upload(first, data)
    wait_for(lambda: _ready(first, mine["id"]), timeout=30)
    theirs = upload(second, data)  # deduplicated against an already rendered blob
    assert theirs["sha256"] == mine["sha256"]
    assert theirs["thumbnails"] == {"status": "pending", "small": None, "preview": None}
    r = second.get(f"/images/{theirs['id']}/thumbnail")
    assert r.status_code == 404 and r.json()["error"]["code"] == "thumbnail_not_ready"
    wait_for(lambda: _ready(second, theirs["id"]), timeout=10)  # as soon as a new render could be


def test_a_duplicate_ingest_event_keeps_the_object_of_an_upload_in_progress(
        stack: Any, user: tuple[Api, dict[str, Any]]) -> None:
    from imagerepo import uploads
    from imagerepo.chunkstore import default_store
    from imagerepo.db import unit_of_work

    api, _ = user
    data = make_jpeg(64, 64)
    ticket = api.post("/uploads", json={"fileName": "d.jpg", "contentType": "image/jpeg",
                                        "size": len(data)}).json()
    upload_id = ticket["uploadId"]
    with unit_of_work() as uow:  # as if an ingest had claimed it and were still working
        uow.run("UPDATE uploads SET status = 'processing', attempts = 1 WHERE id = CAST(:i AS uuid)",
                i=upload_id)
        uow.commit()
    store = default_store()
    store.s3.put_object(Bucket=store.bucket, Key=uploads.INCOMING + upload_id, Body=data)
    assert uploads.ingest(upload_id) == "skipped"  # the duplicate (or concurrent) event
    assert store.exists(uploads.INCOMING + upload_id), "the duplicate event deleted the object"
    # The sweep takes an abandoned one over once it is stale; here: at once.
    assert uploads.sweep(stale_seconds=0)[upload_id] == "ready"
    assert not store.exists(uploads.INCOMING + upload_id)
    status = api.get(f"/uploads/{upload_id}").json()
    assert status["status"] == "ready"
    assert api.get(f"/images/{status['imageId']}").content == data
