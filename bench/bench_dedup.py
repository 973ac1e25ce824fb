"""Chunker choice: dedup, S3 requests and AWS cost on the corpus' edited copies, side by side.

    PYTHONPATH=.:layers/imagerepo .venv/bin/python bench/bench_dedup.py [--corpus DIR]

The edited-copies set is the corpus' Nokia trio: one 9 MP photo, the same with a
replaced EXIF block (everything after it shifted by -62 B) and the same with a 20 011 B
COM segment inserted near the start (generated stand-ins when the corpus is absent).
*Unique content* is what an ideal byte-level dedup keeps: the base file plus the bytes
each copy does not share with it (prefix and suffix compared). For each chunker:

* stored bytes ÷ unique content, when the trio is uploaded in turn (whole-file dedup
  alone stores all three: ~3x);
* S3 requests per upload (a PUT per new chunk + the manifest) and per download (a GET
  per chunk), on the trio and on the whole corpus (mostly distinct photos);
* cost per million uploads at AWS's public prices (us-east-1, S3 Standard):
  storage $0.023 per GB-month, PUT $0.005 per 1,000, GET $0.0004 per 1,000;
  a cohort of a million uploads kept 12 months is the yardstick.
* chunking throughput of the compiled chunker beside the package's pure-Python one.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "imagerepo")]

from bench.common import CORPUS, MB, MiB, Row, emit  # noqa: E402
from imagerepo.chunking import DEFAULT_CHUNKER_SPEC, chunker_from_config  # noqa: E402

SPECS = [
    "fixed:1MiB",
    "fixed:256KiB",
    "fastcdc:8KiB:32KiB:128KiB",
    "fastcdc:16KiB:64KiB:256KiB",
    "fastcdc:32KiB:128KiB:512KiB",
    "fastcdc:64KiB:256KiB:1MiB",
    "fastcdc:128KiB:512KiB:2MiB",
]
TRIO = ("photo_nokia83_9mp_gps.jpg", "dedup_nokia83_exif_replaced.jpg",
        "dedup_nokia83_com20011_inserted.jpg")
STORAGE_GB_MONTH = 0.023
PUT_PER_1000 = 0.005
GET_PER_1000 = 0.0004
MONTHS = 12
TARGET_STORED = 1.1


def edited_copies(corpus: Path) -> tuple[str, list[bytes]]:
    if all((corpus / n).is_file() for n in TRIO):
        return "corpus Nokia trio", [(corpus / n).read_bytes() for n in TRIO]
    base = random.Random(42).randbytes(2_190_194)
    return "generated trio (corpus absent)", [
        base, base[:2] + random.Random(1).randbytes(502) + base[566:],
        base[:584] + random.Random(2).randbytes(20011) + base[584:]]


def all_files(corpus: Path, trio: list[bytes]) -> list[bytes]:
    files = [p.read_bytes() for p in sorted(corpus.glob("*")) if p.is_file() and p.suffix != ".md"]
    return [f for f in files if f] or trio


def unique_content(files: list[bytes]) -> int:
    """Base + for each copy the bytes outside its longest common prefix and suffix with the base."""
    base = files[0]
    total = len(base)
    for v in files[1:]:
        n = min(len(base), len(v))
        p = 0
        while p < n and base[p] == v[p]:
            p += 1
        s = 0
        while s < n - p and base[-1 - s] == v[-1 - s]:
            s += 1
        total += len(v) - p - s
    return total


@dataclass
class Upload:
    stored: int
    puts: float
    gets: float


def upload_all(spec: str, files: list[bytes]) -> Upload:
    chunker = chunker_from_config(spec)
    seen: dict[bytes, int] = {}
    puts = gets = 0
    blobs: set[bytes] = set()
    for data in files:
        sha = hashlib.sha256(data).digest()
        pieces = list(chunker.split_bytes(data))
        gets += len(pieces)
        if sha in blobs:
            continue  # an identical file: one row update, no request
        blobs.add(sha)
        puts += 1  # the manifest
        for p in pieces:
            h = hashlib.sha256(p).digest()
            if h not in seen:
                seen[h] = len(p)
                puts += 1
    return Upload(sum(seen.values()), puts / len(files), gets / len(files))


def cost(u: Upload, n_files: int) -> tuple[float, float, float]:
    """(storage $/month, PUT $, GET $ per million downloads) per million uploads of this mix."""
    per_upload = u.stored / n_files
    return (per_upload * 1e6 / 1e9 * STORAGE_GB_MONTH, u.puts * 1e6 / 1000 * PUT_PER_1000,
            u.gets * 1e6 / 1000 * GET_PER_1000)


def throughput(spec: str, data: bytes, runs: int = 3) -> float:
    """MB/s, best of ``runs`` (the machine may be shared)."""
    chunker = chunker_from_config(spec)
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        n = sum(len(c) for c in chunker.split_bytes(data))
        best = min(best, time.perf_counter() - start)
    return n / MB / best


def reference_throughput(data: bytes) -> float:
    from pyfastcdc.py import FastCDC

    start = time.perf_counter()
    n = sum(c.length for c in FastCDC(64 * 1024, min_size=16 * 1024, max_size=256 * 1024).cut_buf(data))
    return n / MB / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args(argv)
    label, trio = edited_copies(args.corpus)
    everything = all_files(args.corpus, trio)
    unique = unique_content(trio)
    print(f"Edited copies: {label}, {len(trio)} files, {sum(map(len, trio)) / MB:.2f} MB, unique content "
          f"{unique / MB:.3f} MB. Whole corpus: {len(everything)} files, "
          f"{sum(map(len, everything)) / MB:.1f} MB.")
    print(f"Prices: S3 Standard ${STORAGE_GB_MONTH}/GB-month, PUT ${PUT_PER_1000}/1000, GET "
          f"${GET_PER_1000}/1000 (us-east-1); a cohort of 10^6 uploads kept {MONTHS} months.\n")
    print("| chunker | stored ÷ unique (trio) | PUT/upload trio | GET/download trio | PUT/upload corpus "
          "| GET/download corpus | trio $/10^6 uploads: storage/month, PUTs | GET $/10^6 downloads trio "
          "| 12-month $ trio | 12-month $ corpus |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    results = {}
    for spec in SPECS:
        t, c = upload_all(spec, trio), upload_all(spec, everything)
        ts, tp, tg = cost(t, len(trio))
        cs, cp, _ = cost(c, len(everything))
        results[spec] = (t, c, ts * MONTHS + tp, cs * MONTHS + cp)
        print(f"| `{spec}` | {t.stored / unique:.3f} | {t.puts:.1f} | {t.gets:.1f} | {c.puts:.1f} "
              f"| {c.gets:.1f} | {ts:.2f}, {tp:.2f} | {tg:.2f} | {ts * MONTHS + tp:.0f} "
              f"| {cs * MONTHS + cp:.0f} |")
    eligible = [s for s in SPECS if results[s][0].stored / unique <= TARGET_STORED]
    winner = min(eligible or SPECS, key=lambda s: results[s][2] + results[s][3])
    print(f"\nLowest 12-month cost (trio + corpus) among chunkers at ≤ {TARGET_STORED}x on the trio: "
          f"`{winner}`; configured default: `{DEFAULT_CHUNKER_SPEC}`.\n")

    sample = random.Random(7).randbytes(4 * MiB)
    compiled = throughput(DEFAULT_CHUNKER_SPEC if DEFAULT_CHUNKER_SPEC.startswith("fastcdc") else
                          "fastcdc:16KiB:64KiB:256KiB", sample * 8)
    pure = reference_throughput(sample)
    fixed = throughput("fixed:1MiB", sample * 8)
    d = DEFAULT_CHUNKER_SPEC
    dt, dc, d12, dc12 = results.get(d) or (upload_all(d, trio), upload_all(d, everything), 0.0, 0.0)
    ft, fc, f12, fc12 = results["fixed:1MiB"]
    whole = sum(map(len, trio)) / unique
    ratio = dt.stored / unique
    emit([
        Row("chunking", "compiled FastCDC (pyfastcdc.cy), 32 MiB", f"{compiled:.0f} MB/s",
            "pure-Python FastCDC (pyfastcdc.py)", f"{pure:.1f} MB/s", f"{compiled / pure:.0f}x"),
        Row("chunking", "fixed-size, 32 MiB", f"{fixed:.0f} MB/s", "compiled FastCDC", f"{compiled:.0f} MB/s",
            f"{fixed / compiled:.1f}x"),
        Row("dedup", f"edited copies: stored ÷ unique content, `{d}`", f"{ratio:.3f}",
            "whole-file dedup (`fixed:1MiB`)", f"{whole:.3f}", f"{whole / ratio:.2f}x less",
            f"≤ {TARGET_STORED}", ratio <= TARGET_STORED),
        Row("dedup", f"S3 requests per upload / download, trio, `{d}`", f"{dt.puts:.1f} / {dt.gets:.1f}",
            "`fixed:1MiB`", f"{ft.puts:.1f} / {ft.gets:.1f}", ""),
        Row("dedup", f"S3 requests per upload / download, whole corpus, `{d}`",
            f"{dc.puts:.1f} / {dc.gets:.1f}", "`fixed:1MiB`", f"{fc.puts:.1f} / {fc.gets:.1f}", ""),
        Row("dedup", "12-month $ per 10^6 uploads (trio mix + corpus mix)", f"${d12 + dc12:.0f}",
            "`fixed:1MiB`", f"${f12 + fc12:.0f}", f"{(f12 + fc12) / (d12 + dc12):.2f}x cheaper"
            if d12 + dc12 else ""),
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
