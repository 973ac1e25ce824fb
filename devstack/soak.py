"""``make soak``: a bounded soak of the whole local stack, with a SIGKILL halfway.

* The stack (``python -m devstack run``) runs as a child process group in a fresh data
  folder, on fixed free ports, with GC grace 0.
* 16 clients (own accounts) send a mix of requests: uploads (some files shared across
  clients, so blobs are deduplicated), downloads checked byte for byte, info, thumbnails,
  listings, updates, deletes (then the image must answer 404), another client's private
  image without its key (must answer 403).
* An admin runs ``POST /admin/gc?graceSeconds=0`` every 2 s.
* Halfway the whole process group (gateway, functions, Postgres, SeaweedFS) gets SIGKILL;
  it is started again on the same data; clients carry on (requests refused while it is
  down are counted apart, and images whose fate the crash made unknown are forgotten).
* At the end: requests, errors by status, wrong answers, p50/p99 per route, and the
  invariant check of :mod:`devstack.invariants` after the sweeps and a GC at grace 0.

``SOAK_SECONDS`` (default 600) bounds the run; ``SOAK_CLIENTS`` (16). Exit status 1 on any
5xx, wrong answer or invariant violation.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from devstack.services import free_port, free_port_pair

ROOT = Path(__file__).resolve().parents[1]
ADMIN_PASSWORD = "soak admin passphrase " + secrets.token_hex(4)


def _jpeg(seed: int) -> bytes:
    from PIL import Image

    rng = random.Random(seed)
    img = Image.frombytes("RGB", (80, 60), rng.randbytes(80 * 60 * 3))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


SHARED = [_jpeg(10_000 + n) for n in range(12)]  # identical files across clients: dedup


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # 5xx and unexpected statuses
    wrong: list[str] = field(default_factory=list)
    down: int = 0  # refused while the stack was down
    samples: list[str] = field(default_factory=list)  # the first unexpected answers, with bodies
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def record(self, route: str, status: int, ms: float, expected: tuple[int, ...], body: str) -> None:
        with self.lock:
            self.requests += 1
            self.by_status[str(status)] += 1
            self.latency[route].append(ms)
            if status >= 500 or status not in expected:
                self.errors[f"{route} {status}"] += 1
                if len(self.samples) < 10:
                    self.samples.append(f"{route} {status}: {body[:200]}")

    def wrong_answer(self, what: str) -> None:
        with self.lock:
            self.wrong.append(what)


class Down(Exception):
    """The stack refused the connection (it is being killed or restarted)."""


class Client:
    def __init__(self, base: str, stats: Stats, private_pool: list[int], rng: random.Random) -> None:
        self.base, self.stats, self.private_pool, self.rng = base, stats, private_pool, rng
        self.session = requests.Session()
        self.token = ""
        self.images: dict[int, str] = {}  # id -> sha256 of what this client uploaded

    def call(self, route: str, method: str, path: str, expected: tuple[int, ...], **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        started = time.monotonic()
        try:
            r = self.session.request(method, self.base + path, headers=headers, timeout=60,
                                     allow_redirects=False, **kw)
        except requests.RequestException as exc:
            with self.stats.lock:
                self.stats.down += 1
            raise Down(route) from exc
        body = r.text if r.status_code not in expected else ""
        self.stats.record(route, r.status_code, (time.monotonic() - started) * 1000, expected, body)
        return r

    def register(self) -> None:
        name = "soak" + secrets.token_hex(4)
        password = "soak passphrase " + secrets.token_hex(4)
        self.call("POST /register", "POST", "/register", (201,),
                  json={"name": name, "email": f"{name}@example.com", "password": password})
        r = self.call("POST /login", "POST", "/login", (200,), json={"username": name, "password": password})
        self.token = r.json()["access_token"]

    def step(self) -> None:
        ops = [(self.upload, 28), (self.download, 20), (self.info, 10), (self.thumbnail, 8),
               (self.listing, 12), (self.update, 5), (self.delete, 12), (self.peek_private, 5)]
        op = self.rng.choices([o for o, _ in ops], weights=[w for _, w in ops])[0]
        op()

    def _some_image(self) -> int | None:
        return self.rng.choice(list(self.images)) if self.images else None

    def upload(self) -> None:
        data = self.rng.choice(SHARED) if self.rng.random() < 0.3 else _jpeg(self.rng.randrange(10**9))
        private = self.rng.random() < 0.2
        fields = {"description": "soak", **({"isPrivate": "1"} if private else {})}
        try:
            r = self.call("POST /images", "POST", "/images", (201,),
                          files={"file": ("s.jpg", data, "image/jpeg")}, data=fields)
        except Down:
            return  # maybe stored, maybe not: not tracked
        if r.status_code == 201:
            body = r.json()
            if body["sha256"] != hashlib.sha256(data).hexdigest():
                self.stats.wrong_answer(f"upload {body['id']} answered another sha256")
            self.images[body["id"]] = body["sha256"]
            if private:
                with self.stats.lock:
                    self.private_pool.append(body["id"])

    def download(self) -> None:
        image_id = self._some_image()
        if image_id is None:
            return
        r = self.call("GET /images/{id}", "GET", f"/images/{image_id}", (200,))
        if r.status_code == 200 and hashlib.sha256(r.content).hexdigest() != self.images.get(image_id):
            self.stats.wrong_answer(f"image {image_id}: bytes differ from the upload")

    def info(self) -> None:
        image_id = self._some_image()
        if image_id is None:
            return
        r = self.call("GET /images/{id}/info", "GET", f"/images/{image_id}/info", (200,))
        if r.status_code == 200 and r.json()["sha256"] != self.images.get(image_id):
            self.stats.wrong_answer(f"image {image_id}: info names another sha256"
                                    f" (answered for image {r.json()['id']})")

    def thumbnail(self) -> None:
        image_id = self._some_image()
        if image_id is None:
            return
        size = self.rng.choice(["small", "preview"])
        r = self.call("GET /images/{id}/thumbnail", "GET", f"/images/{image_id}/thumbnail?size={size}",
                      (200, 404))
        if r.status_code == 404 and r.json()["error"]["code"] not in ("thumbnail_not_ready",
                                                                      "thumbnail_missing"):
            self.stats.wrong_answer(f"image {image_id}: thumbnail 404 {r.json()['error']['code']}")

    def listing(self) -> None:
        mine = self.rng.random() < 0.5
        self.call("GET /images", "GET", "/images", (200,),
                  params={"pageSize": "20", **({"owner": "me"} if mine else {})})

    def update(self) -> None:
        image_id = self._some_image()
        if image_id is not None:
            self.call("PUT /images/{id}", "PUT", f"/images/{image_id}", (200,),
                      json={"description": f"soak {self.rng.randrange(1000)}\n\tedited"})

    def delete(self) -> None:
        image_id = self._some_image()
        if image_id is None:
            return
        self.images.pop(image_id)
        try:
            r = self.call("DELETE /images/{id}", "DELETE", f"/images/{image_id}", (204,))
        except Down:
            return
        if r.status_code == 204:
            after = self.call("GET /images/{id}/info", "GET", f"/images/{image_id}/info", (404,))
            if after.status_code != 404:
                self.stats.wrong_answer(f"image {image_id} answered {after.status_code} after its delete:"
                                        f" {after.text[:80]}")

    def peek_private(self) -> None:
        with self.stats.lock:
            pool = [i for i in self.private_pool if i not in self.images]
        if pool:
            image_id = self.rng.choice(pool)
            r = self.call("GET /images/{id} (other's private)", "GET", f"/images/{image_id}", (403, 404))
            if r.status_code == 200:
                self.stats.wrong_answer(f"private image {image_id} served to another user")


class StackProcess:
    """``python -m devstack run`` as its own process group, restartable on the same data."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.port, self.pg_port, self.s3_port = free_port(), free_port(), free_port_pair()
        self.admin_email = f"soak-admin-{secrets.token_hex(3)}@example.com"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = open(data / "stack.log", "ab")  # noqa: SIM115 - closed in stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "IMAGEREPO_DATA_DIR": str(self.data), "PORT": str(self.port),
                "IMAGEREPO_PG_PORT": str(self.pg_port), "IMAGEREPO_S3_PORT": str(self.s3_port),
                "IMAGEREPO_GC_GRACE_SECONDS": "0", "IMAGEREPO_ADMIN_EMAIL": self.admin_email,
                "IMAGEREPO_ADMIN_PASSWORD": ADMIN_PASSWORD, "IMAGEREPO_LOG_LEVEL": "WARNING"}

    def start(self, timeout: float = 180) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "devstack", "run"], cwd=ROOT, env=self.env(),
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"the stack exited ({self.proc.returncode}); see {self.data}/stack.log")
            time.sleep(0.5)
        raise RuntimeError("the stack did not become healthy in time")

    def kill(self) -> None:
        """SIGKILL to the whole group: gateway, functions, Postgres and SeaweedFS at once."""
        assert self.proc is not None
        group = self.proc.pid
        os.killpg(group, signal.SIGKILL)
        self.proc.wait()
        deadline = time.monotonic() + 30
        while _live_members(group) and time.monotonic() < deadline:
            time.sleep(0.2)
        # A container whose PID 1 does not reap leaves the killed postmaster a zombie, which
        # Postgres would take for a running server: its lock file is stale, remove it.
        pidfile = self.data / "postgres" / "pgdata" / "postmaster.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text().splitlines()[0])
            if _state(pid) in (None, "Z"):
                pidfile.unlink()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()

    def layer_env(self) -> dict[str, str]:
        """What the layer needs to reach this stack's Postgres and bucket (for the invariants)."""
        creds = json.loads((self.data / "secrets.json").read_text())
        return {"DB_HOST": "127.0.0.1", "DB_PORT": str(self.pg_port), "DB_NAME": "imagerepo",
                "DB_USER": "imagerepo", "DB_PASSWORD": creds["db_password"], "DB_SECRET_ARN": "",
                "JWT_SECRET": creds["jwt_secret"], "JWT_SECRET_ARN": "", "BUCKET_NAME": "imagerepo-local",
                "S3_ENDPOINT_URL": f"http://127.0.0.1:{self.s3_port}",
                "AWS_ACCESS_KEY_ID": creds["s3_access_key"],
                "AWS_SECRET_ACCESS_KEY": creds["s3_secret_key"], "AWS_REGION": "us-east-1",
                "AWS_DEFAULT_REGION": "us-east-1"}


def _state(pid: int) -> str | None:
    """The process state letter from /proc (None if there is no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _live_members(group: int) -> list[int]:
    """Processes of this process group that are not zombies."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def run(seconds: float, clients: int) -> int:
    data = Path(tempfile.mkdtemp(prefix="imagerepo-soak-"))
    stack = StackProcess(data)
    stats = Stats()
    stop = threading.Event()
    private_pool: list[int] = []
    print(f"soak: {seconds:.0f} s, {clients} clients, data in {data}", flush=True)
    stack.start()
    started = time.monotonic()
    try:
        workers = [Client(stack.url, stats, private_pool, random.Random(n)) for n in range(clients)]
        for w in workers:
            w.register()

        def loop(client: Client) -> None:
            while not stop.is_set():
                try:
                    client.step()
                except Down:
                    time.sleep(0.5)
                except Exception as exc:  # noqa: BLE001 - a client bug is reported, not fatal
                    stats.wrong_answer(f"client error: {type(exc).__name__}: {exc}"[:200])

        def gc_loop() -> None:
            admin = Client(stack.url, stats, private_pool, random.Random(-1))
            while not stop.wait(2):
                try:
                    if not admin.token:
                        r = admin.call("POST /login", "POST", "/login", (200,),
                                       json={"username": stack.admin_email, "password": ADMIN_PASSWORD})
                        admin.token = r.json()["access_token"]
                    admin.call("POST /admin/gc", "POST", "/admin/gc?graceSeconds=0", (200,))
                except Down:
                    continue

        threads = [threading.Thread(target=loop, args=(w,), daemon=True) for w in workers]
        threads.append(threading.Thread(target=gc_loop, daemon=True))
        for t in threads:
            t.start()
        time.sleep(seconds / 2)
        print(f"soak: SIGKILL of the stack at {time.monotonic() - started:.0f} s"
              f" after {stats.requests} requests", flush=True)
        stack.kill()
        restart = time.monotonic()
        stack.start()
        print(f"soak: restarted in {time.monotonic() - restart:.1f} s", flush=True)
        time.sleep(max(0.0, started + seconds - time.monotonic()))
        stop.set()
        for t in threads:
            t.join(timeout=90)
        time.sleep(5)  # let asynchronous thumbnails and ingests finish
        report = _invariants(stack)
    finally:
        stop.set()
        stack.stop()
    return _print(stats, report, time.monotonic() - started)


def _invariants(stack: StackProcess) -> Any:
    os.environ.update(stack.layer_env())
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # the sweeps' logs are not the report
    sys.path.insert(0, str(ROOT / "layers" / "imagerepo"))
    from imagerepo.config import settings

    settings.cache_clear()
    from devstack import invariants

    return invariants.settle_and_check()


def _print(stats: Stats, report: Any, elapsed: float) -> int:
    print(f"\nrequests: {stats.requests} in {elapsed:.0f} s ({stats.requests / elapsed:.1f}/s);"
          f" refused while the stack was down: {stats.down}")
    print("by status: " + ", ".join(f"{k}: {v}" for k, v in sorted(stats.by_status.items())))
    five = sum(v for k, v in stats.by_status.items() if k.startswith("5"))
    print(f"5xx: {five}; unexpected answers: {sum(stats.errors.values())}")
    for key, count in stats.errors.most_common(20):
        print(f"  {key}: {count}")
    for sample in stats.samples:
        print(f"  e.g. {sample}")
    print(f"wrong answers: {len(stats.wrong)}")
    for line in stats.wrong[:20]:
        print(f"  {line}")
    print(f"{'route':<42} {'n':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for route, values in sorted(stats.latency.items()):
        print(f"{route:<42} {len(values):>7} {_percentile(values, 50):>8.1f} {_percentile(values, 99):>8.1f}")
    print(report)
    return 0 if five == 0 and not stats.wrong and report.ok else 1


def main() -> int:
    return run(float(os.environ.get("SOAK_SECONDS", "600")), int(os.environ.get("SOAK_CLIENTS", "16")))


if __name__ == "__main__":
    sys.exit(main())
