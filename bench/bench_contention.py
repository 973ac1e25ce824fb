"""The hot row of a popular blob: 16 and 64 concurrent uploads of ONE file vs of distinct files.

    PYTHONPATH=.:layers/imagerepo .venv/bin/python bench/bench_contention.py [--sizes 16,64]

Local Postgres + SeaweedFS (no gateway): N threads, each with its own database
connection (as N Lambda containers would have), call ``images.create`` at once. All
uploads of one file add a reference to the same ``blobs`` row, so they queue on its row
lock for the rest of their transaction (image insert + commit); the peer is the same
number of concurrent uploads of distinct files (same size), which share no row. It
reports the wall time, per-upload latency (median, p95, max) and the rows' final
refcount (must equal N: no lost update).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "imagerepo")]

from bench.common import Row, emit  # noqa: E402


def jpeg(seed: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.frombytes("RGB", (320, 240), os.urandom(320 * 240 * 3)).save(out, "JPEG", quality=90)
    return out.getvalue()


def burst(n: int, datas: list[bytes], owner: object) -> tuple[float, list[float]]:
    from imagerepo import images
    from imagerepo.db import discard_connection, unit_of_work

    barrier = threading.Barrier(n + 1)
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        with unit_of_work() as uow:  # connect before the start line
            uow.scalar("SELECT 1")
        barrier.wait()
        start = time.perf_counter()
        try:
            images.create(owner, images.NewImage(f"c{i}.jpg", datas[i % len(datas)]))  # type: ignore[arg-type]
        except BaseException as exc:
            errors.append(exc)
        with lock:
            latencies.append(time.perf_counter() - start)
        discard_connection()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return wall, latencies


def prefix_rates(lambdas: int = 1000, seconds: int = 10) -> list[Row]:
    """Simulated S3 request rates per key prefix for ``lambdas`` busy functions.

    Each Lambda uploads a new 2.2 MB photo every 0.5 s (34 chunk PUTs at the default
    FastCDC setting, a manifest, 2 thumbnails) or serves a cold download every 0.2 s
    (34 chunk GETs), and the thumbnail function serves 20 thumbnails/s per Lambda (a
    warm GET answers in about 50 ms). Chunk and thumbnail keys start with the first two
    hex digits of a SHA-256 (uniform), so they are drawn at random; the per-second count
    of the busiest of the 256 prefixes is compared with S3's per-prefix limits, beside
    the same load on thumbnails/ alone (their layout before issue 12) until S3 splits it.
    """
    import collections
    import random

    rng = random.Random(12)

    def busiest(per_s: int) -> int:
        return max(max(collections.Counter(rng.getrandbits(8) for _ in range(per_s)).values())
                   for _ in range(seconds))

    rows = []
    for what, kind, per_s, limit in (("PUT", "chunk", lambdas * 2 * 34, 3500),
                                     ("GET", "chunk", lambdas * 5 * 34, 5500),
                                     ("PUT", "thumbnail", lambdas * 2 * 2, 3500),
                                     ("GET", "thumbnail", lambdas * 20, 5500)):
        worst = busiest(per_s)
        prefix = f"{kind}s/xx/"
        rows.append(Row("scale", f"{lambdas} Lambdas: {kind} {what}s/s, busiest of 256 {prefix} prefixes "
                        f"(total {per_s:,}/s)", f"{worst:,}/s", f"S3 limit per prefix ({what})",
                        f"{limit:,}/s", f"{worst / limit:.2f}x", f"≤ {limit:,}/s", worst <= limit))
        if kind == "thumbnail":
            rows.append(Row("scale", f"{lambdas} Lambdas: thumbnail {what}s/s on one thumbnails/ prefix "
                            "(layout before issue 12, until S3 splits it)", f"{per_s:,}/s",
                            f"S3 limit per prefix ({what})", f"{limit:,}/s", f"{per_s / limit:.2f}x"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="16,64")
    args = parser.parse_args(argv)
    from devstack.stack import Stack

    with tempfile.TemporaryDirectory(prefix="bench-contention-") as tmp:
        stack = Stack(Path(tmp), port=0)
        stack.start_services()
        try:
            code = run([int(x) for x in args.sizes.split(",")])
            emit(prefix_rates())
            return code
        finally:
            from imagerepo.db import discard_connection

            discard_connection()
            if stack.s3 is not None:
                stack.s3.stop()
            if stack.pg is not None:
                stack.pg.stop()


def run(sizes: list[int]) -> int:
    import hashlib

    from imagerepo.db import unit_of_work
    from imagerepo.security import Principal

    with unit_of_work() as uow:
        user = uow.scalar("INSERT INTO users (name, email, password_hash)"
                          " VALUES ('hot', 'hot@example.com', 'x') RETURNING id")
        uow.commit()
    owner = Principal(int(user), "user", "hot")
    rows = []
    print("| uploads at once | of | wall ms | median ms | p95 ms | max ms | final refcount |")
    print("|--:|---|--:|--:|--:|--:|--:|")
    for n in sizes:
        one = jpeg(n)
        distinct = [jpeg(1000 * n + i) for i in range(n)]
        results = {}
        for label, datas in (("one file", [one]), ("distinct files", distinct)):
            wall, lat = burst(n, datas, owner)
            lat.sort()
            results[label] = (wall, lat)
            with unit_of_work() as uow:
                refcount = uow.scalar("SELECT refcount FROM blobs WHERE sha256 = :s",
                                      s=hashlib.sha256(datas[0]).hexdigest())
            print(f"| {n} | {label} | {wall * 1000:.0f} | {statistics.median(lat) * 1000:.0f} "
                  f"| {lat[int(0.95 * (len(lat) - 1))] * 1000:.0f} | {lat[-1] * 1000:.0f} | {refcount} |")
            if label == "one file" and refcount != n:
                raise AssertionError(f"lost update: refcount {refcount} after {n} uploads")
        (w1, l1), (w2, l2) = results["one file"], results["distinct files"]
        rows.append(Row("scale", f"{n} concurrent uploads of one file (hot blob row): wall, p95",
                        f"{w1 * 1000:.0f} ms, p95 {l1[int(0.95 * (n - 1))] * 1000:.0f} ms",
                        f"{n} concurrent uploads of distinct files",
                        f"{w2 * 1000:.0f} ms, p95 {l2[int(0.95 * (n - 1))] * 1000:.0f} ms",
                        f"{w2 / w1:.2f}x"))
    emit(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
