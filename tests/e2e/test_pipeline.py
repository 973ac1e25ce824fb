"""The S3-event pipeline over the real local stack: thumbnails, large uploads, large downloads."""

from __future__ import annotations

import hashlib
import io
import os
import time
from typing import Any

import pytest
import requests
from PIL import Image

from tests.e2e.conftest import Upload, make_jpeg
from tests.helpers import Api, wait_for
from tests.helpers import db as _db

pytestmark = pytest.mark.e2e



def _thumb_status(sha: str) -> str | None:
    rows = _db("SELECT thumb_status FROM blobs WHERE sha256 = :s", s=sha)
    return rows[0][0] if rows else None


def _keys(stack: Any, prefix: str) -> list[dict[str, Any]]:
    reply = stack.s3.client().list_objects_v2(Bucket=stack.s3_bucket, Prefix=prefix)
    return list(reply.get("Contents", []))


def _manifest_record(stack: Any, sha: str) -> dict[str, Any]:
    from devstack.events import s3_record

    return s3_record({"event_type": "create", "key": f"/buckets/{stack.s3_bucket}/manifests/{sha}.json",
                      "message": {"new_entry": {"attributes": {"file_size": 100}}}}, stack.s3_bucket) or {}


def _twelve_megapixel_jpeg(corpus_dir: Any) -> tuple[bytes, tuple[int, int]]:
    """The corpus's 12 MP phone photo (EXIF orientation 6), or a generated one like it."""
    if corpus_dir is not None:
        path = corpus_dir / "photo_xiaomi_mi9t_12mp_orientation6.jpg"
        if path.exists():
            return path.read_bytes(), (3000, 4000)
    img = Image.new("RGB", (4000, 3000))
    img.paste((220, 20, 20), (0, 0, 2000, 3000))  # left half red, right half blue
    img.paste((20, 20, 220), (2000, 0, 4000, 3000))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue(), (3000, 4000)


@pytest.fixture(scope="module")
def corpus_or_none() -> Any:
    from tests.conftest import CORPUS

    return CORPUS if CORPUS.is_dir() else None


def test_thumbnails_made_by_the_event(stack: Any, user: tuple[Api, dict[str, Any]], upload: Upload,
                                      corpus_or_none: Any) -> None:
    api, _ = user
    data, displayed = _twelve_megapixel_jpeg(corpus_or_none)
    image = upload(api, data, name="phone.jpg")
    assert (image["width"], image["height"]) == displayed
    sha = image["sha256"]
    # No GET of the image is needed: the manifest's S3 event drives the work.
    assert wait_for(lambda: _thumb_status(sha) == "ready", timeout=10)
    info = api.get(f"/images/{image['id']}/info").json()
    assert info["thumbnails"] == {"status": "ready",
                                  "small": f"/images/{image['id']}/thumbnail?size=small",
                                  "preview": f"/images/{image['id']}/thumbnail?size=preview"}
    small = api.get(info["thumbnails"]["small"])
    preview = api.get(info["thumbnails"]["preview"])
    assert small.headers["content-type"] == "image/webp"
    assert preview.headers["content-type"] == "image/jpeg"
    s_img, p_img = Image.open(io.BytesIO(small.content)), Image.open(io.BytesIO(preview.content))
    assert s_img.format == "WEBP" and p_img.format == "JPEG"
    # Orientation applied: portrait, like the displayed image.
    assert max(s_img.size) == 250 and s_img.size[0] < s_img.size[1]
    assert max(p_img.size) == 1440 and p_img.size == (1080, 1440)
    etag = preview.headers["etag"]
    assert api.get(info["thumbnails"]["preview"], headers={"If-None-Match": etag}).status_code == 304


def test_thumbnail_privacy_and_errors(user: tuple[Api, dict[str, Any]], other: tuple[Api, dict[str, Any]],
                                      upload: Upload) -> None:
    owner, _ = user
    stranger, _ = other
    image = upload(owner, make_jpeg(300, 200), isPrivate=1, accessKey="thumb-key")
    wait_for(lambda: _thumb_status(image["sha256"]) == "ready", timeout=10)
    path = f"/images/{image['id']}/thumbnail"
    assert owner.get(path + "?size=small").status_code == 200
    assert stranger.get(path + "?size=small").status_code == 403
    assert owner.anonymous().get(path + "?size=preview&accessKey=thumb-key").status_code == 200
    assert owner.get(path + "?size=huge").status_code == 400
    assert owner.get("/images/987654321/thumbnail").status_code == 404


def test_duplicate_event_does_nothing_twice(stack: Any, user: tuple[Api, dict[str, Any]],
                                            upload: Upload) -> None:
    api, _ = user
    image = upload(api, make_jpeg(200, 100))
    sha = image["sha256"]
    wait_for(lambda: _thumb_status(sha) == "ready", timeout=10)
    attempts = _db("SELECT thumb_attempts FROM blobs WHERE sha256 = :s", s=sha)[0][0]
    before = {o["Key"]: o["LastModified"] for o in _keys(stack, f"thumbnails/{sha[:2]}/{sha}/")}
    assert sorted(before) == [f"thumbnails/{sha[:2]}/{sha}/preview.jpg",
                              f"thumbnails/{sha[:2]}/{sha}/small.webp"]
    record = _manifest_record(stack, sha)
    result = stack.runtime.invoke("ThumbnailerFunction", {"Records": [record, record]})
    assert result == {"thumbnails": {sha: "skipped"}}
    assert _db("SELECT thumb_attempts FROM blobs WHERE sha256 = :s", s=sha)[0][0] == attempts
    assert {o["Key"]: o["LastModified"] for o in _keys(stack, f"thumbnails/{sha[:2]}/{sha}/")} == before


def test_late_event_for_deleted_image(stack: Any, user: tuple[Api, dict[str, Any]], admin: Api,
                                      upload: Upload) -> None:
    api, _ = user
    image = upload(api, make_jpeg(210, 110))
    sha = image["sha256"]
    wait_for(lambda: _thumb_status(sha) == "ready", timeout=10)
    assert api.delete(f"/images/{image['id']}").status_code == 204
    assert admin.post("/admin/gc").status_code == 200
    assert _thumb_status(sha) is None and not _keys(stack, f"thumbnails/{sha[:2]}/{sha}/")
    result = stack.runtime.invoke("ThumbnailerFunction", {"Records": [_manifest_record(stack, sha)]})
    assert result == {"thumbnails": {sha: "skipped"}}
    assert not _keys(stack, f"thumbnails/{sha[:2]}/{sha}/")


def _png_of_size(target: int) -> bytes:
    """An incompressible PNG a little over ``target`` bytes."""
    side = int((target / 3) ** 0.5) + 1
    img = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    img.save(out, "PNG", compress_level=1)
    return out.getvalue()


def _post_to_s3(ticket: dict[str, Any], data: bytes, name: str) -> requests.Response:
    return requests.post(ticket["url"], data=ticket["fields"], files={"file": (name, data)}, timeout=120)


def test_large_upload_ready_then_307_download(stack: Any, user: tuple[Api, dict[str, Any]]) -> None:
    api, _ = user
    data = _png_of_size(60 * 1024 * 1024)
    r = api.post("/uploads", json={"fileName": "huge.png", "contentType": "image/png",
                                   "size": len(data), "description": "sixty megabytes"})
    assert r.status_code == 201, r.text
    ticket = r.json()
    assert set(ticket) == {"uploadId", "url", "fields", "expiresAt", "maxSize"}
    assert ticket["fields"]["key"] == f"incoming/{ticket['uploadId']}"
    assert _post_to_s3(ticket, data, "huge.png").status_code in (200, 201, 204)
    status = wait_for(lambda: (s := api.get(f"/uploads/{ticket['uploadId']}").json())["status"]
                      in ("ready", "failed") and s, timeout=120)
    assert status["status"] == "ready", status
    assert not _keys(stack, "incoming/"), "the incoming object is deleted"
    image_id = status["imageId"]
    info = api.get(f"/images/{image_id}/info").json()
    assert info["size"] == len(data) and info["sha256"] == hashlib.sha256(data).hexdigest()
    assert info["description"] == "sixty megabytes"
    r = api.get(f"/images/{image_id}")
    assert r.status_code == 307
    location = r.headers["location"]
    assert "materialized/" in location
    got = requests.get(location, timeout=120)
    assert got.status_code == 200 and got.content == data
    # The materialized copy is reused while it lives.
    key = f"materialized/{info['sha256']}"
    first = _keys(stack, key)[0]["LastModified"]
    assert api.get(f"/images/{image_id}").status_code == 307
    assert _keys(stack, key)[0]["LastModified"] == first
    assert api.get(f"/uploads/{ticket['uploadId']}").json()["imageId"] == image_id


def test_corrupt_large_upload_fails_and_leaves_nothing(stack: Any, user: tuple[Api, dict[str, Any]],
                                                       admin: Api) -> None:
    api, _ = user
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(3 * 1024 * 1024)
    blobs_before = _db("SELECT count(*) FROM blobs")[0][0]
    ticket = api.post("/uploads", json={"fileName": "bad.png", "contentType": "image/png",
                                        "size": len(data)}).json()
    assert _post_to_s3(ticket, data, "bad.png").status_code in (200, 201, 204)
    status = wait_for(lambda: (s := api.get(f"/uploads/{ticket['uploadId']}").json())["status"]
                      in ("ready", "failed") and s, timeout=60)
    assert status["status"] == "failed" and status["error"]
    assert "imageId" not in status
    assert not _keys(stack, "incoming/")
    assert _db("SELECT count(*) FROM blobs")[0][0] == blobs_before


def test_presigned_post_enforces_declared_size(user: tuple[Api, dict[str, Any]]) -> None:
    api, _ = user
    ticket = api.post("/uploads", json={"fileName": "s.jpg", "contentType": "image/jpeg",
                                        "size": 1000}).json()
    r = _post_to_s3(ticket, make_jpeg(400, 400), "s.jpg")
    assert r.status_code == 400 and b"EntityTooLarge" in r.content


@pytest.mark.parametrize("body,code", [
    ({"contentType": "image/png", "size": 10}, "invalid_field"),
    ({"fileName": "a.png", "contentType": "text/plain", "size": 10}, "invalid_field"),
    ({"fileName": "a.png", "contentType": "image/png", "size": 0}, "invalid_field"),
    ({"fileName": "a.png", "contentType": "image/png", "size": 10**12}, "upload_too_large"),
    ({"fileName": "a.png", "contentType": "image/png", "size": 10, "extra": 1}, "unknown_fields"),
])
def test_upload_ticket_validation(user: tuple[Api, dict[str, Any]], body: dict[str, Any], code: str) -> None:
    api, _ = user
    r = api.post("/uploads", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == code


def test_upload_status_is_owner_only(user: tuple[Api, dict[str, Any]],
                                     other: tuple[Api, dict[str, Any]]) -> None:
    api, _ = user
    stranger, _ = other
    ticket = api.post("/uploads", json={"fileName": "a.png", "contentType": "image/png", "size": 10}).json()
    assert api.get(f"/uploads/{ticket['uploadId']}").json() == {"uploadId": ticket["uploadId"],
                                                                "status": "pending"}
    assert stranger.get(f"/uploads/{ticket['uploadId']}").status_code == 404
    assert api.get("/uploads/not-a-uuid").status_code == 404


def test_sweep_redrives_pending(stack: Any, user: tuple[Api, dict[str, Any]], upload: Upload) -> None:
    """A lost event leaves thumbnails pending: the scheduled sweep picks them up."""
    api, _ = user
    image = upload(api, make_jpeg(150, 90))
    sha = image["sha256"]
    wait_for(lambda: _thumb_status(sha) == "ready", timeout=10)
    _db("UPDATE blobs SET thumb_status = 'pending', thumb_attempts = 0,"
        " thumb_updated_at = now() - interval '10 minutes' WHERE sha256 = :s", s=sha)
    time.sleep(0.1)
    result = stack.runtime.invoke("ThumbnailerFunction", {"source": "aws.events", "detail": {}})
    assert "done" in result["swept"]
    assert _thumb_status(sha) == "ready"


def test_abandoned_upload_reports_failed_after_expiry(user: tuple[Api, dict[str, Any]]) -> None:
    api, _ = user
    ticket = api.post("/uploads", json={"fileName": "a.png", "contentType": "image/png", "size": 10}).json()
    _db("UPDATE uploads SET expires_at = now() - interval '1 hour' WHERE id = CAST(:id AS uuid)",
        id=ticket["uploadId"])
    assert api.get(f"/uploads/{ticket['uploadId']}").json() == {
        "uploadId": ticket["uploadId"], "status": "failed",
        "error": "no file was uploaded before the upload URL expired"}
