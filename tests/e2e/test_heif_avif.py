"""HEIC/HEIF and AVIF over HTTP: accepted by decoding, display dimensions, thumbnails, original bytes."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.e2e.conftest import Upload
from tests.helpers import Api, wait_for
from tests.helpers import assert_error as _error
from tests.helpers import db as _db

pytestmark = pytest.mark.e2e


def _pillow_avif(size: tuple[int, int], orientation: int = 1) -> bytes:
    img = Image.new("RGB", size, (220, 20, 20))
    img.paste((20, 20, 220), (size[0] // 2, 0, size[0], size[1]))  # right half blue
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    img.save(out, "AVIF", quality=70, exif=exif.tobytes())
    return out.getvalue()


def _thumbnails_ready(api: Api, image: dict[str, Any]) -> tuple[Image.Image, Image.Image]:
    sha = image["sha256"]
    assert wait_for(lambda: _db("SELECT thumb_status FROM blobs WHERE sha256 = :s", s=sha)[0][0] == "ready",
                    timeout=20)
    # A file already rendered for an earlier uploader (the browser test uploads the same HEIC)
    # reads pending for this image for its first seconds: wait for the image's own status too.
    info = f"/images/{image['id']}/info"
    assert wait_for(lambda: api.get(info).json()["thumbnails"]["status"] == "ready", timeout=20)
    small = api.get(f"/images/{image['id']}/thumbnail?size=small")
    preview = api.get(f"/images/{image['id']}/thumbnail?size=preview")
    assert (small.status_code, small.headers["content-type"]) == (200, "image/webp")
    assert (preview.status_code, preview.headers["content-type"]) == (200, "image/jpeg")
    return Image.open(io.BytesIO(small.content)), Image.open(io.BytesIO(preview.content))


def _check_original(api: Api, image: dict[str, Any], data: bytes, content_type: str) -> None:
    r = api.get(f"/images/{image['id']}")
    assert r.status_code == 200
    assert r.headers["content-type"] == content_type
    assert r.content == data
    assert r.headers["etag"].strip('"') == hashlib.sha256(data).hexdigest()


def test_heic_photo_from_the_corpus(corpus: Path, user: tuple[Api, dict[str, Any]], upload: Upload) -> None:
    path = corpus / "heic_iphone11_photo.heic"
    if not path.is_file():
        pytest.skip(f"{path} not present: the HEIC end-to-end test needs it")
    api, _ = user
    data = path.read_bytes()
    image = upload(api, data, name="IMG_5195.HEIC")
    # pillow-heif applies the file's irot/imir: a portrait phone photo stays portrait.
    assert (image["contentType"], image["width"], image["height"]) == ("image/heic", 2566, 3313)
    assert image["size"] == len(data) and image["sha256"] == hashlib.sha256(data).hexdigest()
    _check_original(api, image, data, "image/heic")
    small, preview = _thumbnails_ready(api, image)
    assert small.size == (194, 250)
    assert preview.size == (1115, 1440)


def test_heic_truncated_is_refused_and_stores_nothing(corpus: Path, user: tuple[Api, dict[str, Any]]) -> None:
    path = corpus / "heic_iphone11_photo.heic"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    api, _ = user
    before = _db("SELECT (SELECT count(*) FROM images), (SELECT count(*) FROM blobs)")[0]
    data = path.read_bytes()
    _error(api.post("/images", files={"file": ("a.heic", data[: len(data) // 2])}), 400, "invalid_image")
    assert _db("SELECT (SELECT count(*) FROM images), (SELECT count(*) FROM blobs)")[0] == before


def test_avif_made_by_pillow_with_orientation(user: tuple[Api, dict[str, Any]], upload: Upload) -> None:
    api, _ = user
    data = _pillow_avif((400, 300), orientation=6)
    image = upload(api, data, name="rotated.avif")
    assert (image["contentType"], image["width"], image["height"]) == ("image/avif", 300, 400)
    _check_original(api, image, data, "image/avif")
    small, preview = _thumbnails_ready(api, image)
    assert small.size == (188, 250)
    assert preview.size == (300, 400)  # never upscaled
    # Rotated 90° clockwise: the right half (blue) of the stored pixels ends up at the bottom.
    bottom = preview.convert("RGB").getpixel((150, 390))
    top = preview.convert("RGB").getpixel((150, 10))
    assert isinstance(bottom, tuple) and isinstance(top, tuple)
    assert bottom[2] > 150 > bottom[0]
    assert top[0] > 150 > top[2]


def test_avif_from_the_corpus(corpus: Path, user: tuple[Api, dict[str, Any]], upload: Upload) -> None:
    path = corpus / "avif_olympus_mountains.avif"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    api, _ = user
    data = path.read_bytes()
    image = upload(api, data, name="mountains.avif")
    assert (image["contentType"], image["width"], image["height"]) == ("image/avif", 1920, 1080)
    _check_original(api, image, data, "image/avif")
    small, preview = _thumbnails_ready(api, image)
    assert (small.size, preview.size) == ((250, 141), (1440, 810))
