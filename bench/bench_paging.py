"""Paging benchmark: page 1 vs deep pages of a group with 100 000 images, engine vs OFFSET.

Run from the repository root::

    PYTHONPATH=.:layers/imagerepo .venv/bin/python bench/bench_paging.py [--images N] [--runs R]

It starts its own local stack (Postgres, SeaweedFS, the gateway serving template.yaml)
in a temporary folder, bulk-inserts the images into one group with one SQL statement
(generate_series; one user and one blob row they all point to; plus one private image
per 1000 public ones, interleaved, so the owner's merged view is exercised too), then
times, side by side:

* ``GET /groups/{id}/images?page=P&pageSize=40`` over HTTP through the gateway
  (anonymous, and as the owner of the private images), median of ``--runs`` requests,
  each on a new connection (on a kept-alive one the local gateway's separate header
  and body writes meet delayed ACKs, adding a constant ~40 ms to every request);
* the same page computed in-process by :mod:`imagerepo.listing` (database work only);
* the naive way (what ``images.list_visible`` did before): ``count(*)`` plus
  ``ORDER BY created_at DESC, id DESC LIMIT 40 OFFSET (P-1)*40``.

It prints a Markdown table with the ratios to page 1 and naive/engine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "imagerepo")]

PAGE_SIZE = 40


def timed_ms(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def seed(n: int) -> tuple[int, int, float]:
    """One user, one blob, one group; n public images and n/1000 private ones interleaved.

    Returns (user id, group id, seconds for the insert).
    """
    from imagerepo.db import unit_of_work

    with unit_of_work() as uow:
        user = uow.scalar("INSERT INTO users (name, email, password_hash)"
                          " VALUES ('bench', 'bench@example.com', 'x') RETURNING id")
        uow.run("INSERT INTO blobs (sha256, size, chunker, chunk_count, refcount, thumb_status)"
                " VALUES (repeat('b', 64), 1, 'fixed:1MiB', 1, 1, 'ready')")
        group = uow.scalar("INSERT INTO groups (name) VALUES ('bench') RETURNING id")
        uow.commit()
    start = time.perf_counter()
    with unit_of_work() as uow:
        uow.run("INSERT INTO images (owner_id, blob_sha256, name, content_type, width, height, size,"
                " group_id, is_private)"
                " SELECT :u, repeat('b', 64), 'img-' || s || '.jpg', 'image/jpeg', 640, 480, 1,"
                "        :g, s % 1001 = 0"
                " FROM generate_series(1, :n) AS s", u=user, g=group, n=n + n // 1000)
        uow.commit()  # the listing counters and blocks are built here, at commit
    seconds = time.perf_counter() - start
    with unit_of_work() as uow:
        uow.run("ANALYZE images")
        uow.commit()
    return int(user), int(group), seconds


def engine(who: Any, group: int, page: int) -> list[int]:
    from imagerepo import listing
    from imagerepo.db import unit_of_work

    with unit_of_work() as uow:
        listing.read_only(uow)
        found, _ = listing.images_window(uow, who, page, PAGE_SIZE, group_id=group)
    return [image.id for image in found]


def naive(who: Any, group: int, page: int) -> list[int]:
    """The pre-engine list_visible: count(*) and OFFSET."""
    from imagerepo.db import unit_of_work
    from imagerepo.images import _COLUMNS, _FROM, visibility_clause

    where, params = visibility_clause(who)
    condition = f"{where} AND i.group_id = :grp"
    with unit_of_work() as uow:
        uow.scalar(f"SELECT count(*) FROM images i WHERE {condition}", grp=group, **params)
        rows = uow.rows(f"SELECT {_COLUMNS} FROM {_FROM} WHERE {condition}"
                        " ORDER BY i.created_at DESC, i.id DESC LIMIT :limit OFFSET :offset",
                        grp=group, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, **params)
    return [row["id"] for row in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)

    from devstack.stack import Stack

    with tempfile.TemporaryDirectory(prefix="bench-paging-") as tmp:
        stack = Stack(Path(tmp), port=0, env={"POWERTOOLS_LOG_LEVEL": "WARNING"})
        stack.start()
        try:
            return run(stack, args.images, args.runs)
        finally:
            stack.stop()


def run(stack: Any, n: int, runs: int) -> int:
    from bench.common import Row, emit

    rows: list[Row] = []
    from imagerepo.db import unit_of_work
    from imagerepo.security import Principal
    from imagerepo.users import User, start_session

    user, group, seconds = seed(n)
    owner = Principal(user, "user", "bench")
    token = start_session(User(id=user, name="bench", email="", role="user"))["access_token"]
    with unit_of_work() as uow:
        blocks = uow.scalar("SELECT count(*) FROM listing_blocks WHERE kind = 1 AND scope = :g", g=group)
    url = f"{stack.url}/groups/{group}/images"
    print(f"Paging benchmark: one group, {n} public + {n // 1000} private images, pageSize {PAGE_SIZE},"
          f" median of {runs}\n")
    print(f"Bulk insert of {n + n // 1000} rows incl. listing counters and blocks at commit: {seconds:.1f} s;"
          f" public list of the group: {blocks} blocks.\n")
    print("| caller | page | HTTP engine ms | engine DB ms | naive OFFSET DB ms | HTTP vs page 1 |"
          " engine DB vs page 1 | naive vs page 1 | naive / engine |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, who, headers in (("anonymous", None, {}),
                                ("owner (public + own private)", owner,
                                 {"Authorization": f"Bearer {token}"})):
        total = n + n // 1000 if who is not None else n
        last = -(-total // PAGE_SIZE)
        pages = sorted({1, min(1000, last), last // 2, min(2500, last), last})
        variants: dict[tuple[int, str], Callable[[], Any]] = {}
        for page in pages:
            def http(page: int = page, headers: dict[str, str] = headers) -> None:
                r = requests.get(url, params={"page": page, "pageSize": PAGE_SIZE}, headers=headers,
                                 timeout=60)
                assert r.status_code == 200 and len(r.json()["items"]) > 0, r.text
            variants[page, "http"] = http
            variants[page, "engine"] = lambda page=page, who=who: engine(who, group, page)
            variants[page, "naive"] = lambda page=page, who=who: naive(who, group, page)
            # Both implementations must return the same page.
            assert engine(who, group, page) == naive(who, group, page)
        # Round-robin, so drifting machine load hits every variant alike; 3 warm-up rounds.
        samples: dict[tuple[int, str], list[float]] = {k: [] for k in variants}
        for round_ in range(runs + 3):
            for k, fn in variants.items():
                ms = timed_ms(fn)
                if round_ >= 3:
                    samples[k].append(ms)
        med = {k: statistics.median(v) for k, v in samples.items()}
        for page in pages:
            shown = f"{page} (last)" if page == last else str(page)
            http_ms, engine_ms, naive_ms = (med[page, v] for v in ("http", "engine", "naive"))
            print(f"| {label} | {shown} | {http_ms:.2f} | {engine_ms:.2f} | {naive_ms:.2f} |"
                  f" {http_ms / med[1, 'http']:.2f}x | {engine_ms / med[1, 'engine']:.2f}x |"
                  f" {naive_ms / med[1, 'naive']:.2f}x | {naive_ms / engine_ms:.1f}x |")
        page = min(1000, last)
        ratio = med[page, "http"] / med[1, "http"]
        rows.append(Row("paging", f"GET /groups/{{id}}/images page {page} of {total:,} images, {label}",
                        f"{med[page, 'http']:.1f} ms", "page 1", f"{med[1, 'http']:.1f} ms", f"{ratio:.2f}x",
                        "≤ 1.2x", ratio <= 1.2))
        rows.append(Row("paging", f"same page {page} by count(*) + OFFSET (DB only), {label}",
                        f"{med[page, 'naive']:.1f} ms", "the listing engine (DB only)",
                        f"{med[page, 'engine']:.1f} ms",
                        f"{med[page, 'naive'] / med[page, 'engine']:.1f}x slower"))
    emit(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
