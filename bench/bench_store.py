"""Throughput of the chunk store against the local stack (Postgres + SeaweedFS).

    .venv/bin/python bench/bench_store.py [--files 40] [--size-mib 4] [--stream-mib 100] [SPEC ...]

For each chunker spec (default ``fixed:1MiB``) it stores ``--files`` files built from a
shared pool of random blocks (so they deduplicate), reads them back with a cold and a
warm cache, streams one large file through ``put_stream``, then releases everything
and runs the GC. Numbers are MiB/s of logical (client-side) bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "imagerepo")]

MiB = 1024 * 1024


class Generated(io.RawIOBase):
    def __init__(self, size: int, seed: int) -> None:
        self.left = size
        self.rng = random.Random(seed)

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), self.left)
        buf[:n] = self.rng.randbytes(n)
        self.left -= n
        return n


def rate(nbytes: int, seconds: float) -> str:
    return f"{nbytes / MiB / seconds:8.1f} MiB/s ({seconds:6.2f}s)"


def bench(spec: str, files: int, size: int, stream_size: int) -> None:
    from imagerepo import gc, s3
    from imagerepo.chunking import chunker_from_config
    from imagerepo.chunkstore import ChunkStore
    from imagerepo.config import settings
    from imagerepo.db import unit_of_work
    from imagerepo.lru import ChunkCache

    cache = ChunkCache(256 * MiB)
    store = ChunkStore(s3.client(), settings().bucket, chunker_from_config(spec), cache)
    rng = random.Random(1)
    block = 256 * 1024
    pool = [os.urandom(block) for _ in range(max(8, size // block * 2))]
    datas = []
    for _ in range(files):
        parts = [pool[rng.randrange(len(pool))] for _ in range(size // block)]
        datas.append(b"".join(parts))
    logical = sum(len(d) for d in datas)

    t = time.perf_counter()
    shas = []
    for data in datas:
        with unit_of_work() as uow:
            shas.append(store.put(uow, data).sha256)
            uow.commit()
    put_s = time.perf_counter() - t
    with unit_of_work() as uow:
        stats = store.stats(uow)

    cache.clear()
    t = time.perf_counter()
    for sha in shas:
        store.read(sha)
    cold_s = time.perf_counter() - t
    t = time.perf_counter()
    for sha in shas:
        store.read(sha)
    warm_s = time.perf_counter() - t

    t = time.perf_counter()
    with unit_of_work() as uow:
        big = store.put_stream(uow, lambda: Generated(stream_size, rng.randrange(1 << 30)))
        uow.commit()
    stream_s = time.perf_counter() - t
    t = time.perf_counter()
    digest = hashlib.sha256()
    for part in store.iter_chunks(big.sha256):
        digest.update(part)
    iter_s = time.perf_counter() - t
    assert digest.hexdigest() == big.sha256

    with unit_of_work() as uow:
        for sha in [*shas, big.sha256]:
            store.release(uow, sha)
        uow.commit()
    t = time.perf_counter()
    result = gc.collect(0, store=store)
    gc_s = time.perf_counter() - t
    store.close()

    print(f"== {spec}: {files} files x {size / MiB:.0f} MiB, stored {stats['storedBytes'] / MiB:.1f} MiB"
          f" in {stats['chunks']} chunks")
    print(f"  put          {rate(logical, put_s)}")
    print(f"  read cold    {rate(logical, cold_s)}")
    print(f"  read warm    {rate(logical, warm_s)}   cache {cache.stats()}")
    print(f"  put_stream   {rate(stream_size, stream_s)}  ({big.chunk_count} chunks)")
    print(f"  iter_chunks  {rate(stream_size, iter_s)}")
    print(f"  gc           {gc_s:6.2f}s  {result.to_json()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="*", default=["fixed:1MiB"])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--size-mib", type=int, default=4)
    parser.add_argument("--stream-mib", type=int, default=100)
    args = parser.parse_args()

    from devstack.stack import Stack

    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        stack = Stack(Path(tmp), port=0)
        stack.start_services()
        try:
            for spec in args.specs:
                bench(spec, args.files, args.size_mib * MiB, args.stream_mib * MiB)
        finally:
            from imagerepo.db import discard_connection

            discard_connection()
            if stack.s3 is not None:
                stack.s3.stop()
            if stack.pg is not None:
                stack.pg.stop()


if __name__ == "__main__":
    main()
