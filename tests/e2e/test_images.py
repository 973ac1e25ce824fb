"""The image API over HTTP: status codes, exact bytes, privacy, dedup, refcounts and bucket contents."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from typing import Any

import pytest
from PIL import Image

from tests.e2e.conftest import Upload, make_jpeg, make_png
from tests.e2e.faults import faulty_s3
from tests.helpers import Api
from tests.helpers import assert_error as _error
from tests.helpers import db as _db

pytestmark = pytest.mark.e2e




def _chunk_hashes(sha: str) -> set[str]:
    return {r[0].strip() for r in _db("SELECT chunk_hash FROM blob_chunks WHERE blob_sha256 = :s", s=sha)}


def _bucket_keys(stack: Any, prefix: str) -> set[str]:
    s3 = stack.s3.client()
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.s3_bucket, Prefix=prefix):
        keys.update(o["Key"] for o in page.get("Contents", []))
    return keys


def _storage_snapshot(stack: Any) -> tuple[int, int, int, set[str]]:
    blobs, chunks, stored = _db("SELECT (SELECT count(*) FROM blobs), (SELECT count(*) FROM chunks),"
                                " (SELECT coalesce(sum(size), 0) FROM chunks)")[0]
    return int(blobs), int(chunks), int(stored), _bucket_keys(stack, "chunks/")


def _noisy_jpeg(width: int, height: int) -> bytes:
    """Random pixels compress badly: a multi-chunk JPEG of a few MB."""
    img = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=95, subsampling=0)
    return out.getvalue()


# -- upload and download -------------------------------------------------------------------
def test_upload_then_download_exact_bytes(user: tuple[Api, dict[str, Any]], upload: Upload) -> None:
    api, me = user
    data = make_jpeg(120, 80)
    image = upload(api, data, name="../../etc/passwd\x00 my photo.jpg", description="a cat")
    sha = hashlib.sha256(data).hexdigest()
    assert image["name"] == "passwd my photo.jpg"
    assert {k: image[k] for k in ("description", "creator", "isPrivate", "locked", "contentType",
                                  "size", "width", "height", "sha256", "groupId")} == {
        "description": "a cat", "creator": me["id"], "isPrivate": False, "locked": False,
        "contentType": "image/jpeg", "size": len(data), "width": 120, "height": 80,
        "sha256": sha, "groupId": None}
    assert image["thumbnails"]["status"] in ("pending", "ready") and "accessKey" not in image
    r = api.anonymous().get(f"/images/{image['id']}")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["etag"] == f'"{sha}"'
    assert r.headers["cache-control"].startswith("public")
    r = api.anonymous().get(f"/images/{image['id']}", headers={"If-None-Match": f'"{sha}"'})
    assert r.status_code == 304 and r.content == b""
    r = api.anonymous().get(f"/images/{image['id']}", headers={"If-None-Match": '"other"'})
    assert r.status_code == 200
    info = api.anonymous().get(f"/images/{image['id']}/info")
    assert info.status_code == 200 and info.json()["sha256"] == sha


@pytest.mark.parametrize("maker,content_type", [
    (lambda: make_png(40, 30), "image/png"),
    (lambda: _encode("GIF", frames=3), "image/gif"),
    (lambda: _encode("WEBP"), "image/webp"),
    (lambda: _encode("TIFF"), "image/tiff"),
])
def test_accepted_formats(user: tuple[Api, dict[str, Any]], upload: Upload, maker: Any,
                          content_type: str) -> None:
    api, _ = user
    data = maker()
    image = upload(api, data, name="file.bin")
    assert image["contentType"] == content_type
    r = api.get(f"/images/{image['id']}")
    assert r.content == data and r.headers["content-type"] == content_type


def _encode(fmt: str, frames: int = 1) -> bytes:
    imgs = [Image.new("RGB", (20, 10), (i * 60, 0, 0)) for i in range(frames)]
    out = io.BytesIO()
    if frames > 1:
        imgs[0].save(out, fmt, save_all=True, append_images=imgs[1:])
    else:
        imgs[0].save(out, fmt)
    return out.getvalue()


def _png_header_bomb(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


@pytest.mark.parametrize("data,status,code", [
    (b"", 400, "empty_file"),
    (b"this is plain text, not an image\n", 400, "invalid_image"),
    (make_jpeg(200, 200, seed=1)[:1500], 400, "invalid_image"),
    (_png_header_bomb(60000, 60000), 400, "too_many_pixels"),
    (_encode("BMP"), 415, "unsupported_format"),
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\0" * 64, 400, "invalid_image"),
], ids=["empty", "text", "truncated", "bomb", "bmp", "heic-header-only"])
def test_bad_uploads_store_nothing(stack: Any, user: tuple[Api, dict[str, Any]], data: bytes,
                                   status: int, code: str) -> None:
    api, _ = user
    before_images = _db("SELECT count(*) FROM images")[0][0]
    before = _storage_snapshot(stack)
    r = api.post("/images", files={"file": ("x.jpg", data, "image/jpeg")})
    _error(r, status, code)
    assert _db("SELECT count(*) FROM images")[0][0] == before_images
    assert _storage_snapshot(stack) == before


def test_corpus_bad_files_refused(stack: Any, corpus: Any, user: tuple[Api, dict[str, Any]]) -> None:
    api, _ = user
    expected = {"bad_empty_zero_bytes.jpg": 400, "bad_not_an_image.txt": 400,
                "bad_truncated_half.jpg": 400, "bad_decompression_bomb_65535x66601.gif": 400}
    before = _storage_snapshot(stack)
    for name, status in expected.items():
        r = api.post("/images", files={"file": (name, (corpus / name).read_bytes(), "image/jpeg")})
        _error(r, status)
    assert _storage_snapshot(stack) == before


def test_multipart_errors(user: tuple[Api, dict[str, Any]]) -> None:
    api, _ = user
    _error(api.post("/images", files={"description": (None, "no file")}), 400, "missing_file")
    _error(api.post("/images", json={"file": "x"}), 400, "expected_multipart")
    _error(api.post("/images", data=b"--x\r\nbroken", headers={
        "Content-Type": "multipart/form-data; boundary=x"}), 400, "invalid_multipart")
    _error(api.post("/images", files={"file": ("a.jpg", make_jpeg())}, data={"isPrivate": "maybe"}),
           400, "invalid_field")
    _error(api.post("/images", files={"file": ("a.jpg", make_jpeg())}, data={"groupId": "999999999"}),
           400, "unknown_group")
    _error(api.post("/images", files={"file": ("a.jpg", make_jpeg())}, data={"accessKey": "a b"}),
           400, "invalid_access_key")
    r = api.anonymous().post("/images", files={"file": ("a.jpg", make_jpeg())})
    assert (r.status_code, r.json()) == (401, {"message": "Unauthorized"})


def test_too_large_for_direct_upload_says_use_uploads(user: tuple[Api, dict[str, Any]]) -> None:
    api, _ = user
    data = b"\xff\xd8" + b"\0" * 4_500_000  # just over MAX_UPLOAD_BYTES, still within the 6 MB event
    err = _error(api.post("/images", files={"file": ("big.jpg", data)}), 413, "use_uploads")
    assert "/uploads" in err["message"]


# -- privacy ---------------------------------------------------------------------------------
def test_privacy_matrix(user: tuple[Api, dict[str, Any]], other: tuple[Api, dict[str, Any]],
                        admin: Api, upload: Upload) -> None:
    owner, _ = user
    stranger, _ = other
    anon = owner.anonymous()
    data = make_jpeg()
    image = upload(owner, data, isPrivate=1, accessKey="open-sesame")
    assert image["isPrivate"] is True and image["locked"] is True
    assert image["accessKey"] == "open-sesame"
    iid = image["id"]
    for path in (f"/images/{iid}", f"/images/{iid}/info"):
        assert owner.get(path).status_code == 200
        assert admin.get(path).status_code == 200
        _error(stranger.get(path), 403, "private_image")
        _error(anon.get(path), 403, "private_image")
        _error(anon.get(path + "?accessKey=wrong-key"), 403, "private_image")
        assert anon.get(path + "?accessKey=open-sesame").status_code == 200
        assert stranger.get(path + "?accesskey=open-sesame").status_code == 200
    r = anon.get(f"/images/{iid}?accessKey=open-sesame")
    assert r.content == data and r.headers["cache-control"].startswith("private")
    info = stranger.get(f"/images/{iid}/info?accessKey=open-sesame").json()
    assert "accessKey" not in info and "access_key_hash" not in str(info)
    assert "accessKey" not in owner.get(f"/images/{iid}/info").json(), "stored hashed: shown once"


def test_private_without_key_gets_generated_key(user: tuple[Api, dict[str, Any]], upload: Upload) -> None:
    owner, _ = user
    image = upload(owner, isPrivate=1)
    key = image["accessKey"]
    assert len(key) >= 20
    assert owner.anonymous().get(f"/images/{image['id']}?accessKey={key}").status_code == 200


def test_unknown_and_invalid_ids(user: tuple[Api, dict[str, Any]]) -> None:
    api, _ = user
    _error(api.get("/images/987654321"), 404, "image_not_found")
    _error(api.get("/images/987654321/info"), 404, "image_not_found")
    _error(api.get("/images/abc"), 400, "invalid_id")
    _error(api.delete("/images/987654321"), 404, "image_not_found")
    _error(api.put("/images/987654321", json={"description": "x"}), 404, "image_not_found")


# -- update and delete -------------------------------------------------------------------------
def test_update_rules(user: tuple[Api, dict[str, Any]], other: tuple[Api, dict[str, Any]],
                      admin: Api, upload: Upload) -> None:
    owner, _ = user
    stranger, _ = other
    iid = upload(owner)["id"]
    r = owner.put(f"/images/{iid}", json={"description": "new words"})
    assert r.status_code == 200 and r.json()["description"] == "new words"
    r = owner.put(f"/images/{iid}", json={"isPrivate": 1})
    body = r.json()
    assert body["isPrivate"] is True and len(body["accessKey"]) >= 20
    assert owner.anonymous().get(f"/images/{iid}?accessKey={body['accessKey']}").status_code == 200
    r = owner.put(f"/images/{iid}", json={"accessKey": "new-key-1"})
    assert r.json()["accessKey"] == "new-key-1"
    _error(owner.anonymous().get(f"/images/{iid}?accessKey={body['accessKey']}"), 403)
    assert owner.anonymous().get(f"/images/{iid}?accessKey=new-key-1").status_code == 200
    _error(stranger.put(f"/images/{iid}", json={"description": "mine now"}), 403, "not_owner")
    r = admin.put(f"/images/{iid}", json={"isPrivate": 0, "description": "by admin"})
    assert r.status_code == 200 and r.json()["isPrivate"] is False and "accessKey" not in r.json()
    assert owner.anonymous().get(f"/images/{iid}").status_code == 200
    _error(owner.put(f"/images/{iid}", json={"owner": 5}), 400, "unknown_fields")
    _error(owner.put(f"/images/{iid}", json={"description": 5}), 400, "invalid_field")
    _error(owner.put(f"/images/{iid}", json={"description": "d" * 2001}), 400, "invalid_field")
    _error(owner.put(f"/images/{iid}", json=[1]), 400, "invalid_json")
    r = owner.anonymous().put(f"/images/{iid}", json={"description": "x"})
    assert r.status_code == 401


def test_delete_rules(user: tuple[Api, dict[str, Any]], other: tuple[Api, dict[str, Any]],
                      admin: Api, upload: Upload) -> None:
    owner, _ = user
    stranger, _ = other
    iid = upload(owner)["id"]
    _error(stranger.delete(f"/images/{iid}"), 403, "not_owner")
    r = owner.delete(f"/images/{iid}")
    assert r.status_code == 204 and r.content == b""
    _error(owner.delete(f"/images/{iid}"), 404, "image_not_found")
    _error(owner.get(f"/images/{iid}"), 404)
    iid2 = upload(owner)["id"]
    assert admin.delete(f"/images/{iid2}").status_code == 204


# -- listing ----------------------------------------------------------------------------------
def test_list_shows_public_plus_own(user: tuple[Api, dict[str, Any]], other: tuple[Api, dict[str, Any]],
                                    upload: Upload) -> None:
    owner, _ = user
    stranger, _ = other
    public = upload(owner)["id"]
    private = upload(owner, isPrivate=1)["id"]
    mine = owner.get("/images?owner=me&pageSize=100").json()
    assert {i["id"] for i in mine["items"]} >= {public, private}
    assert all(i["creator"] == mine["items"][0]["creator"] for i in mine["items"])
    theirs = stranger.get("/images?pageSize=100").json()
    ids = {i["id"] for i in theirs["items"]}
    assert public in ids and private not in ids
    anon = owner.anonymous().get("/images?pageSize=100").json()
    assert private not in {i["id"] for i in anon["items"]}
    assert set(anon) >= {"items", "page", "pageSize", "total", "totalPages"}
    assert anon["totalPages"] == -(-anon["total"] // 100)
    r = owner.anonymous().get("/images?owner=me")
    _error(r, 401)


@pytest.mark.parametrize("query", ["page=0", "page=-1", "page=x", "pageSize=0", "pageSize=101",
                                   "pageSize=abc", "page=1.5"])
def test_list_paging_errors(base_url: str, query: str) -> None:
    _error(Api(base_url).get(f"/images?{query}"), 400, "invalid_paging")


def test_list_page_past_end(base_url: str) -> None:
    body = Api(base_url).get("/images?page=100000&pageSize=5").json()
    assert body["items"] == [] and body["page"] == 100000 and body["total"] >= 0
    assert body["totalPages"] == -(-body["total"] // 5)


# -- dedup, stats, gc ---------------------------------------------------------------------------
def test_two_users_same_photo_dedup_delete_and_gc(stack: Any, user: tuple[Api, dict[str, Any]],
                                                   other: tuple[Api, dict[str, Any]], admin: Api,
                                                   upload: Upload) -> None:
    alice, _ = user
    bob, _ = other
    data = _noisy_jpeg(900, 700)  # a couple of chunks at the default 1 MiB
    sha = hashlib.sha256(data).hexdigest()
    stats0 = admin.get("/admin/stats").json()
    a = upload(alice, data)
    b = upload(bob, data)
    assert a["sha256"] == b["sha256"] == sha and a["id"] != b["id"]
    assert _db("SELECT refcount FROM blobs WHERE sha256 = :s", s=sha) == [[2]]
    chunks = _chunk_hashes(sha)
    assert chunks and all(_db("SELECT refcount FROM chunks WHERE hash = :h", h=h) == [[1]] for h in chunks)
    stats1 = admin.get("/admin/stats").json()
    assert stats1["blobs"] - stats0["blobs"] == 1
    assert stats1["images"] - stats0["images"] == 2
    assert stats1["storedBytes"] - stats0["storedBytes"] == len(data)
    assert stats1["logicalBytes"] - stats0["logicalBytes"] == 2 * len(data)
    assert {f"chunks/{h[:2]}/{h}" for h in chunks} <= _bucket_keys(stack, "chunks/")

    assert alice.delete(f"/images/{a['id']}").status_code == 204
    assert bob.get(f"/images/{b['id']}").content == data
    assert admin.post("/admin/gc").status_code == 200
    assert bob.get(f"/images/{b['id']}").content == data, "GC freed nothing still in use"
    assert bob.delete(f"/images/{b['id']}").status_code == 204
    r = admin.post("/admin/gc")
    assert r.status_code == 200 and r.json()["deletedChunks"] >= len(chunks)
    assert r.json()["freedBytes"] >= len(data)
    assert _db("SELECT count(*) FROM blobs WHERE sha256 = :s", s=sha) == [[0]]
    assert all(_db("SELECT count(*) FROM chunks WHERE hash = :h", h=h) == [[0]] for h in chunks)
    assert not ({f"chunks/{h[:2]}/{h}" for h in chunks} & _bucket_keys(stack, "chunks/"))
    assert not (_bucket_keys(stack, f"manifests/{sha}") | _bucket_keys(stack, f"thumbnails/{sha[:2]}/{sha}")
                | _bucket_keys(stack, f"thumbnails/{sha}"))


def test_stats_dedup_ratio_shape(admin: Api, user: tuple[Api, dict[str, Any]]) -> None:
    body = admin.get("/admin/stats").json()
    assert set(body) == {"users", "images", "blobs", "chunks", "logicalBytes", "storedBytes",
                         "dedupRatio"}
    if body["storedBytes"]:
        assert body["dedupRatio"] == round(body["logicalBytes"] / body["storedBytes"], 4)
    api, _ = user
    _error(api.get("/admin/stats"), 403, "admin_only")
    _error(api.post("/admin/gc"), 403, "admin_only")
    assert api.anonymous().get("/admin/stats").status_code == 401


def test_object_store_failure_mid_upload(stack: Any, user: tuple[Api, dict[str, Any]], admin: Api) -> None:
    """The second chunk PUT fails: 5xx JSON, no image row, and after GC storage is as before."""
    api, _ = user
    data = _noisy_jpeg(1000, 800)
    sha = hashlib.sha256(data).hexdigest()
    assert admin.post("/admin/gc").status_code == 200
    before = _storage_snapshot(stack)
    images_before = _db("SELECT count(*) FROM images")[0][0]
    calls = {"n": 0}

    def fail_after_first(method: str, path: str) -> int | None:
        if method != "PUT" or "/chunks/" not in path:
            return None
        calls["n"] += 1
        return 500 if calls["n"] > 1 else None

    # The function runs in its own worker process: the fault is injected on its way to S3.
    with faulty_s3(stack, fail_after_first):
        r = api.post("/images", files={"file": ("p.jpg", data)})
    assert r.status_code in (500, 502, 503), r.text
    assert r.json()["error"]["code"] in ("upstream_error", "internal_error")
    assert "Traceback" not in r.text
    assert calls["n"] >= 2
    assert _db("SELECT count(*) FROM images")[0][0] == images_before
    assert _db("SELECT count(*) FROM blobs WHERE sha256 = :s", s=sha) == [[0]]
    assert admin.post("/admin/gc").status_code == 200
    assert _storage_snapshot(stack) == before


def test_list_cursor_walk_matches_pages(user: tuple[Api, dict[str, Any]], upload: Upload) -> None:
    api, _ = user
    ids = [upload(api)["id"] for _ in range(5)]
    by_page = []
    for page in (1, 2, 3):
        by_page += [i["id"] for i in api.get(f"/images?owner=me&pageSize=2&page={page}").json()["items"]]
    by_cursor, cursor = [], ""
    while True:
        body = api.get(f"/images?owner=me&pageSize=2{cursor}").json()
        by_cursor += [i["id"] for i in body["items"]]
        if not body["nextCursor"]:
            break
        cursor = f"&cursor={body['nextCursor']}"
    assert by_page == by_cursor == sorted(ids, reverse=True)
    _error(api.get("/images?cursor=garbage"), 400, "invalid_cursor")
