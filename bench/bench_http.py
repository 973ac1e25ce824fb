"""Ingest and download over HTTP, each beside a plain boto3 call of the same bytes to the same S3.

    PYTHONPATH=.:layers/imagerepo .venv/bin/python bench/bench_http.py [--runs 5] [--large-mb 50]

It starts its own local stack (Postgres, SeaweedFS, the gateway serving template.yaml,
whatever function runtime devstack has) in a temporary folder and measures, alternating
the API call and its plain peer so drifting load hits both alike (medians of ``--runs``):

* ``POST /images`` of a ~3 MB photo (a fresh variant each time) vs ``put_object``;
* the same upload again (content already stored) vs ``put_object``;
* ``GET /images/{id}`` of such a photo, first fetch (cold chunk cache) and again, vs
  ``get_object``;
* the chunk store's read of the photo, cold cache vs warm cache (in-process);
* ``--large-mb`` through ``POST /uploads`` (presigned POST, then polling until ready)
  vs ``put_object``, and its first download on the 307 path (following the redirect)
  vs ``get_object``.

Throughput ratios are plain time ÷ API time (1.0 = as fast as plain S3). Then it
profiles one upload and one download handler call in-process with pyinstrument (what
the function itself spends, without the gateway) and prints the profiles.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "imagerepo")]

import requests  # noqa: E402

from bench.common import MB, Row, corpus_file, emit  # noqa: E402

PROFILE_OUT = Path(os.environ.get("BENCH_PROFILE_DIR", tempfile.gettempdir()))


def photo_3mb() -> tuple[str, bytes]:
    from PIL import Image

    path = corpus_file("photo_xiaomi_mi9t_12mp_orientation6.jpg")
    if path is not None:
        with Image.open(path) as im:
            exif = im.info.get("exif", b"")
            out = io.BytesIO()
            im.save(out, "JPEG", quality=96, exif=exif)
        return "the corpus' 12 MP photo re-encoded at q96", out.getvalue()
    im = Image.effect_mandelbrot((4000, 3000), (-2.0, -1.2, 1.0, 1.2), 200).convert("RGB")
    out = io.BytesIO()
    im.save(out, "JPEG", quality=95)
    return "a generated 12 MP JPEG", out.getvalue()


def variant(jpeg: bytes) -> bytes:
    """The same picture with a random COM segment after SOI: new bytes, new SHA-256."""
    return jpeg[:2] + b"\xff\xfe\x00\x12" + os.urandom(16) + jpeg[2:]


def large_png(mb: int) -> bytes:
    from PIL import Image

    side = int((mb * MB / 3) ** 0.5)
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, "PNG", compress_level=0)
    return out.getvalue()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


class Bench:
    def __init__(self, stack: Any) -> None:
        import boto3

        self.stack = stack
        self.url = stack.url
        self.bucket = stack.s3_bucket
        self.s3 = boto3.client("s3", endpoint_url=stack.s3_endpoint, region_name="us-east-1")
        name = f"bench{uuid.uuid4().hex[:8]}"
        r = requests.post(f"{self.url}/register", json={"name": name, "email": f"{name}@example.com",
                                                        "password": "bench password"}, timeout=30)
        assert r.status_code == 201, r.text
        r = requests.post(f"{self.url}/login", json={"username": name, "password": "bench password"},
                          timeout=30)
        token = r.json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}
        from imagerepo.security import decode_token

        # What the authorizer hands the functions (user, role, session), for in-process calls.
        self.context = decode_token(token).context()

    def plain_put(self, data: bytes) -> str:
        key = f"bench/{uuid.uuid4().hex}"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        return key

    def plain_get(self, key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def upload(self, data: bytes) -> int:
        r = requests.post(f"{self.url}/images", headers=self.headers, timeout=60,
                          files={"file": ("photo.jpg", data, "image/jpeg")}, data={"isPrivate": "0"})
        assert r.status_code == 201, r.text[:300]
        return int(r.json()["id"])

    def download(self, image_id: int) -> bytes:
        """The image's bytes, following a 307; read in one call like boto3's ``Body.read()``
        (requests' ``.content`` iterates 10 KB pieces and would bias the comparison)."""
        url = f"{self.url}/images/{image_id}"
        for _ in range(2):
            r = requests.get(url, timeout=120, stream=True, allow_redirects=False)
            if r.status_code == 307:
                url = r.headers["Location"]
                r.close()
                continue
            assert r.status_code == 200, r.text[:300]
            return bytes(r.raw.read(decode_content=True))
        raise AssertionError("redirected twice")

    def large_upload(self, data: bytes) -> int:
        r = requests.post(f"{self.url}/uploads", headers=self.headers, timeout=60, json={
            "fileName": "large.png", "contentType": "image/png", "size": len(data)})
        assert r.status_code == 201, r.text[:300]
        ticket = r.json()
        post = requests.post(ticket["url"], data=ticket["fields"], timeout=300,
                             files={"file": ("large.png", data, "image/png")})
        assert post.status_code in (200, 201, 204), post.text[:300]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            status = requests.get(f"{self.url}/uploads/{ticket['uploadId']}", headers=self.headers,
                                  timeout=30).json()
            if status["status"] == "ready":
                return int(status["imageId"])
            assert status["status"] in ("pending", "processing"), status
            time.sleep(0.02)
        raise TimeoutError("large upload never became ready")


def ratio_row(figure: str, api_s: float, peer: str, plain_s: float, target: float | None, *,
              size: int) -> Row:
    r = plain_s / api_s
    return Row("HTTP", figure,
               f"{api_s * 1000:.0f} ms ({size / MB / api_s:.0f} MB/s)", peer,
               f"{plain_s * 1000:.0f} ms ({size / MB / plain_s:.0f} MB/s)", f"{r:.2f}x",
               f"≥ {target}x" if target is not None else "", None if target is None else r >= target)


def run(stack: Any, runs: int, large_mb: int) -> list[Row]:
    from imagerepo.chunkstore import default_store

    b = Bench(stack)
    label, photo = photo_3mb()
    print(f"Photo: {label}, {len(photo) / MB:.2f} MB; large file: {large_mb} MB PNG; medians of {runs}.")
    samples: dict[str, list[float]] = {k: [] for k in (
        "api_new", "plain_new", "api_dup", "plain_dup", "api_cold", "api_warm", "plain_get",
        "store_cold", "store_warm")}
    dup = variant(photo)
    b.upload(dup)  # the content the duplicate uploads repeat
    store = default_store()
    for i in range(runs + 1):
        data = variant(photo)
        t_api, image_id = timed(lambda data=data: b.upload(data))
        t_plain, key = timed(lambda data=data: b.plain_put(data))
        t_dup, _ = timed(lambda: b.upload(dup))
        t_dup_plain, _ = timed(lambda: b.plain_put(dup))
        t_cold, body = timed(lambda image_id=image_id: b.download(image_id))
        assert body == data
        t_warm, _ = timed(lambda image_id=image_id: b.download(image_id))
        t_get, _ = timed(lambda key=key: b.plain_get(key))
        sha = __import__("hashlib").sha256(data).hexdigest()
        if store.cache is not None:
            for h, _n in store.chunk_list(sha):
                store.cache._items.pop(h, None)  # cold for this blob only
        t_scold, _ = timed(lambda sha=sha: store.read(sha))
        t_swarm, _ = timed(lambda sha=sha: store.read(sha))
        if i == 0:
            continue  # warm-up round
        for k, v in zip(samples, (t_api, t_plain, t_dup, t_dup_plain, t_cold, t_warm, t_get, t_scold,
                                  t_swarm), strict=True):
            samples[k].append(v)
    m = {k: statistics.median(v) for k, v in samples.items()}
    n = len(photo)
    rows = [
        ratio_row(f"POST /images, new {n / MB:.1f} MB photo", m["api_new"], "put_object", m["plain_new"], 0.8,
                  size=n),
        ratio_row("POST /images, same photo again (stored)", m["api_dup"], "put_object", m["plain_dup"], 3.0,
                  size=n),
        ratio_row("GET /images/{id}, first fetch (cold cache)", m["api_cold"], "get_object", m["plain_get"],
                  0.6, size=n),
        ratio_row("GET /images/{id}, again", m["api_warm"], "get_object", m["plain_get"], None, size=n),
    ]
    r = m["store_cold"] / m["store_warm"]
    chunks = len(store.chunk_list(sha))
    rows.append(Row("store", f"chunk store read of the photo ({chunks} chunks), warm cache",
                    f"{m['store_warm'] * 1000:.1f} ms", "cold cache", f"{m['store_cold'] * 1000:.1f} ms",
                    f"{r:.1f}x", "≥ 3x", r >= 3))

    large_samples: dict[str, list[float]] = {"api_up": [], "plain_up": [], "api_307": [], "plain_get": []}
    for _ in range(max(2, runs // 2)):
        data = large_png(large_mb)
        t_up, image_id = timed(lambda data=data: b.large_upload(data))
        t_plain, key = timed(lambda data=data: b.plain_put(data))
        t_307, body = timed(lambda image_id=image_id: b.download(image_id))
        assert len(body) == len(data)
        t_get, _ = timed(lambda key=key: b.plain_get(key))
        for k, v in zip(large_samples, (t_up, t_plain, t_307, t_get), strict=True):
            large_samples[k].append(v)
    lm = {k: statistics.median(v) for k, v in large_samples.items()}
    n = len(data)
    rows.append(ratio_row(f"POST /uploads, {n / MB:.0f} MB until ready", lm["api_up"], "put_object",
                          lm["plain_up"], 0.8, size=n))
    rows.append(ratio_row(f"GET /images/{{id}}, {n / MB:.0f} MB, 307 path, first fetch", lm["api_307"],
                          "get_object", lm["plain_get"], 0.9, size=n))
    rows += gateway_share(b, photo, runs)
    profile(photo, b.context)
    return rows


def create_event(data: bytes, context: dict[str, Any]) -> dict[str, Any]:
    from tests.helpers import load_event

    boundary = "----benchboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"isPrivate\"\r\n\r\n0\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode()
    body += data + f"\r\n--{boundary}--\r\n".encode()
    event = load_event("images_create")
    event["headers"]["content-type"] = f"multipart/form-data; boundary={boundary}"
    event["body"] = base64.b64encode(body).decode()
    event["requestContext"]["authorizer"]["lambda"] = context
    return event


def get_event(image_id: int) -> dict[str, Any]:
    from tests.helpers import load_event

    event = load_event("image_get")
    event["pathParameters"] = {"id": str(image_id)}
    event["rawPath"] = f"/images/{image_id}"
    return event


def gateway_share(b: Bench, photo: bytes, runs: int) -> list[Row]:
    """The same duplicate upload and warm download, handler called in-process vs over HTTP:
    the difference is the gateway, the HTTP client and the base64 of the v2.0 event."""
    from tests.helpers import invoke

    data = variant(photo)
    image_id = b.upload(data)
    b.download(image_id)
    event, fetch = create_event(data, b.context), get_event(image_id)
    times: dict[str, list[float]] = {"dup_direct": [], "dup_http": [], "get_direct": [], "get_http": []}
    for _ in range(runs):
        times["dup_direct"].append(timed(lambda: invoke("images_create", event))[0])
        times["dup_http"].append(timed(lambda: b.upload(data))[0])
        times["get_direct"].append(timed(lambda: invoke("image_get", fetch))[0])
        times["get_http"].append(timed(lambda: b.download(image_id))[0])
    m = {k: statistics.median(v) * 1000 for k, v in times.items()}
    return [
        Row("gateway", "duplicate POST /images: the handler alone (in-process event)",
            f"{m['dup_direct']:.0f} ms",
            "the same over HTTP through the local gateway", f"{m['dup_http']:.0f} ms",
            f"{m['dup_direct'] / m['dup_http']:.0%} in the handler"),
        Row("gateway", "warm GET /images/{id}: the handler alone (in-process event)",
            f"{m['get_direct']:.0f} ms",
            "the same over HTTP through the local gateway", f"{m['get_http']:.0f} ms",
            f"{m['get_direct'] / m['get_http']:.0%} in the handler"),
    ]


def profile(photo: bytes, context: dict[str, Any]) -> None:
    """pyinstrument over the upload and download handlers called in-process (no gateway)."""
    from pyinstrument import Profiler

    from tests.helpers import invoke

    event = create_event(variant(photo), context)
    profiler = Profiler(interval=0.0005)
    profiler.start()
    created = invoke("images_create", event)
    profiler.stop()
    assert created["statusCode"] == 201, created["body"][:200]
    image_id = json.loads(created["body"])["id"]
    upload_text = profiler.output_text(unicode=False, color=False)
    profiler = Profiler(interval=0.0005)
    profiler.start()
    got = invoke("image_get", get_event(image_id))
    profiler.stop()
    assert got["statusCode"] == 200, got["body"][:200]
    download_text = profiler.output_text(unicode=False, color=False)
    (PROFILE_OUT / "profile_upload.txt").write_text(upload_text)
    (PROFILE_OUT / "profile_download.txt").write_text(download_text)
    print("\nProfile: POST /images handler, in-process (pyinstrument)\n\n```\n" + upload_text + "```")
    print("\nProfile: GET /images/{id} handler, cold cache, in-process (pyinstrument)\n\n```\n"
          + download_text + "```")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--large-mb", type=int, default=50)
    args = parser.parse_args(argv)
    from devstack.stack import Stack

    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        stack = Stack(Path(tmp), port=0, env={"POWERTOOLS_LOG_LEVEL": "WARNING",
                                             "MAX_LARGE_UPLOAD_BYTES": str(200 * 1024 * 1024)})
        stack.start()
        try:
            emit(run(stack, args.runs, args.large_mb))
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
