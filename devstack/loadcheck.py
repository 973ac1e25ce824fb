"""A mixed-load check of the local stack: N clients, each request's answer verified.

``python -m devstack.loadcheck [--clients 12] [--seconds 300] [--url URL]``

Without ``--url`` it starts its own stack (temporary data folder, free port) and also
measures the runtime's cost: cold starts of workers (Init Duration) and the memory of
the workers with every function warm (RSS, and PSS, which counts the pages the fork
server's children share once). Each client registers, then loops over uploads, downloads
(byte-identical), info, thumbnails with valid and invalid sizes, listings, updates,
deletes, bad uploads and /me; any answer that is not the expected one is a wrong answer.
Run by hand (it is not part of `make test`); a bounded run against 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import random
import secrets
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]


def _image(rng: random.Random) -> tuple[str, bytes]:
    from PIL import Image

    w, h = rng.randrange(16, 400), rng.randrange(16, 300)
    img = Image.frombytes("RGB", (w, h), rng.randbytes(w * h * 3))
    out = io.BytesIO()
    fmt = rng.choice(["JPEG", "PNG", "WEBP"])
    img.save(out, fmt)
    return f"x.{fmt.lower()}", out.getvalue()


class Client(threading.Thread):
    def __init__(self, url: str, seed: int, until: float, stats: Stats) -> None:
        super().__init__(daemon=True)
        self.url, self.rng, self.until, self.stats = url, random.Random(seed), until, stats
        self.http = requests.Session()
        self.images: dict[int, tuple[bytes, str]] = {}  # id -> (bytes, description)

    def call(self, op: str, method: str, path: str, expect: int, **kw: Any) -> requests.Response | None:
        started = time.monotonic()
        try:
            r = self.http.request(method, self.url + path, timeout=60, allow_redirects=False, **kw)
        except requests.RequestException as exc:
            self.stats.wrong(op, f"{exc!r}")
            return None
        self.stats.latency[op].append(time.monotonic() - started)
        if r.status_code != expect:
            self.stats.wrong(op, f"{method} {path}: {r.status_code} (expected {expect}) {r.text[:200]}")
            return None
        self.stats.ok[op] += 1
        return r

    def run(self) -> None:
        name = "load" + secrets.token_hex(5)
        if not self.call("register", "POST", "/register", 201, json={
                "name": name, "email": f"{name}@example.com", "password": "load-passw0rd"}):
            return
        r = self.call("login", "POST", "/login", 200, json={"username": name, "password": "load-passw0rd"})
        if r is None:
            return
        self.http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        me = self.call("me", "GET", "/me", 200)
        self.me = me.json()["id"] if me else None
        ops = [self.upload] * 4 + [self.download] * 4 + [self.info, self.thumbnail, self.thumbnail,
                                                          self.listing, self.update, self.delete,
                                                          self.bad_upload, self.whoami]
        while time.monotonic() < self.until:
            self.rng.choice(ops)()

    def _pick(self) -> int | None:
        return self.rng.choice(list(self.images)) if self.images else None

    def upload(self) -> None:
        name, data = _image(self.rng)
        desc = secrets.token_hex(6)
        r = self.call("upload", "POST", "/images", 201, files={"file": (name, data)},
                      data={"description": desc, "isPrivate": str(self.rng.randrange(2))})
        if r is None:
            return
        body = r.json()
        if body["sha256"] != hashlib.sha256(data).hexdigest() or body["description"] != desc:
            self.stats.wrong("upload", f"answer of another request: {body}")
            return
        self.images[body["id"]] = (data, desc)

    def download(self) -> None:
        image_id = self._pick()
        if image_id is None:
            return
        r = self.call("download", "GET", f"/images/{image_id}", 200)
        if r is not None and r.content != self.images[image_id][0]:
            self.stats.wrong("download", f"image {image_id}: bytes differ")

    def info(self) -> None:
        image_id = self._pick()
        if image_id is None:
            return
        r = self.call("info", "GET", f"/images/{image_id}/info", 200)
        if r is not None:
            body = r.json()
            data, desc = self.images[image_id]
            if (body["id"], body["sha256"], body["description"]) != (
                    image_id, hashlib.sha256(data).hexdigest(), desc):
                self.stats.wrong("info", f"image {image_id}: {body}")

    def thumbnail(self) -> None:
        image_id = self._pick()
        if image_id is None:
            return
        size = self.rng.choice(["small", "preview", "bogus", "LARGE"])
        if size in ("bogus", "LARGE"):
            r = self.call("thumbnail-invalid", "GET", f"/images/{image_id}/thumbnail?size={size}", 400)
            if r is not None and r.json()["error"]["code"] != "invalid_size":
                self.stats.wrong("thumbnail-invalid", r.text[:200])
            return
        info = self.http.get(f"{self.url}/images/{image_id}/info", timeout=60)
        if info.status_code != 200 or info.json()["thumbnails"]["status"] != "ready":
            return
        r = self.call("thumbnail", "GET", f"/images/{image_id}/thumbnail?size={size}", 200)
        want = "image/webp" if size == "small" else "image/jpeg"
        if r is not None and r.headers.get("content-type") != want:
            self.stats.wrong("thumbnail", f"size={size}: {r.headers.get('content-type')}")

    def listing(self) -> None:
        r = self.call("list", "GET", "/images?owner=me&pageSize=100", 200)
        if r is not None and len(self.images) <= 100:
            got = {i["id"] for i in r.json()["items"]}
            if got != set(self.images):
                self.stats.wrong("list", f"{sorted(got ^ set(self.images))[:10]}")

    def update(self) -> None:
        image_id = self._pick()
        if image_id is None:
            return
        desc = secrets.token_hex(6)
        r = self.call("update", "PUT", f"/images/{image_id}", 200, json={"description": desc})
        if r is not None:
            if r.json()["description"] != desc:
                self.stats.wrong("update", r.text[:200])
            self.images[image_id] = (self.images[image_id][0], desc)

    def delete(self) -> None:
        if len(self.images) < 5:
            return
        image_id = self._pick()
        assert image_id is not None
        if self.call("delete", "DELETE", f"/images/{image_id}", 204) is not None:
            del self.images[image_id]
            self.call("deleted-get", "GET", f"/images/{image_id}", 404)

    def bad_upload(self) -> None:
        if self.rng.randrange(2):
            self.call("bad-upload", "POST", "/images", 400,
                      files={"file": ("x.jpg", self.rng.randbytes(2000))})
        else:
            self.call("no-file", "POST", "/images", 400, files={"other": ("x.jpg", b"abc")})

    def whoami(self) -> None:
        r = self.call("me", "GET", "/me", 200)
        if r is not None and r.json()["id"] != self.me:
            self.stats.wrong("me", r.text[:200])


class Stats:
    def __init__(self) -> None:
        self.ok: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.examples: list[str] = []
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.lock = threading.Lock()

    def wrong(self, op: str, detail: str) -> None:
        with self.lock:
            self.errors[op] += 1
            if len(self.examples) < 20:
                self.examples.append(f"{op}: {detail}")


def warm_every_function(stack: Any) -> dict[str, Any]:
    """Invoke each function once with its sample event, then measure the warm workers."""
    events = ROOT / "tests" / "events"
    runtime = stack.runtime
    for fn in runtime.template.functions.values():
        path = events / f"{fn.code_dir.name}.json"
        # Unconfigured OneDrive functions and migrate's CloudFormation answer would reach
        # beyond this machine: an empty event warms them all the same.
        local = not fn.code_dir.name.startswith("onedrive_") and fn.code_dir.name != "migrate"
        try:
            runtime.invoke(fn.logical_id, json.loads(path.read_text()) if path.exists() and local else {})
        except Exception as exc:  # noqa: BLE001 - a failing sample still leaves a warm worker
            print(f"  ({fn.logical_id}: {exc})")
    pids = [e.pid for e in runtime.workers() if e.pid]
    rss = pss = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss += int(line.split()[1])
    return {"functions": len(runtime.template.functions), "workers": len(pids),
            "rss_mb": round(rss / 1024), "pss_mb": round(pss / 1024)}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.loadcheck")
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--url", help="a running stack (default: start one in a temporary folder)")
    args = parser.parse_args()
    stack = None
    url = args.url
    if url is None:
        from devstack.stack import Stack

        data = Path(tempfile.mkdtemp(prefix="loadcheck-"))
        handler = logging.FileHandler(data / "stack.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
        print(f"stack log: {data / 'stack.log'}")
        stack = Stack(data, port=0)
        stack.start()
        url = stack.url
        memory = warm_every_function(stack)
        cold = [ms for _, ms in stack.runtime.cold_starts]
        print(f"every function warm: {memory}")
        print(f"cold starts (Init Duration): n={len(cold)} median={statistics.median(cold):.0f} ms "
              f"max={max(cold):.0f} ms")
    stats = Stats()
    until = time.monotonic() + args.seconds
    clients = [Client(url, seed, until, stats) for seed in range(args.clients)]
    started = time.monotonic()
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    elapsed = time.monotonic() - started
    total = sum(stats.ok.values()) + sum(stats.errors.values())
    print(f"{args.clients} clients, {elapsed:.0f} s: {total} requests, "
          f"{sum(stats.errors.values())} wrong answers")
    for op in sorted(set(stats.ok) | set(stats.errors)):
        lat = sorted(stats.latency.get(op) or [0.0])
        print(f"  {op:18} ok={stats.ok[op]:6} wrong={stats.errors[op]:4} "
              f"p50={lat[len(lat) // 2] * 1000:6.0f} ms p95={lat[int(len(lat) * 0.95)] * 1000:6.0f} ms")
    for example in stats.examples:
        print("  !", example)
    if stack is not None:
        cold = [ms for _, ms in stack.runtime.cold_starts]
        print(f"workers at the end: {len(stack.runtime.workers())}; cold starts in all: {len(cold)}, "
              f"median {statistics.median(cold):.0f} ms; throttles: {stack.runtime.throttles}")
        stack.stop()
    return 1 if stats.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
