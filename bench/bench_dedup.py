"""Dedup benchmark: fixed-size vs content-defined (FastCDC) chunking, side by side.

Run from the repository root::

    PYTHONPATH=layers/imagerepo python bench/bench_dedup.py [--corpus DIR] [--json PATH]

For each chunker spec it reports the dedup ratio (logical bytes / unique chunk bytes)
over the whole corpus and over the Nokia trio alone (one photo, the same with a
replaced EXIF block, i.e. shifted by -62 B, and the same with a 20011-byte COM segment
inserted), the number of chunks and the chunking throughput. Chunking goes through
``Chunker.split()`` on an in-memory stream, the path the ingest function uses, so disk
I/O is not measured; hashing the chunks is not timed either.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from imagerepo.chunking import chunker_from_config

SPECS = [
    "fixed:64KiB",
    "fixed:256KiB",
    "fixed:1MiB",
    "fastcdc:16KiB:64KiB:256KiB",
    "fastcdc:64KiB:256KiB:1MiB",
]
DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
NOKIA_TRIO = (
    "photo_nokia83_9mp_gps.jpg",
    "dedup_nokia83_exif_replaced.jpg",
    "dedup_nokia83_com20011_inserted.jpg",
)
MB = 1_000_000


@dataclass
class Result:
    spec: str
    chunks: int
    unique_chunks: int
    logical_bytes: int
    unique_bytes: int
    dedup_ratio: float
    trio_dedup_ratio: float | None
    mean_chunk_bytes: float
    seconds: float
    throughput_mb_s: float


def load_corpus(corpus: Path) -> list[tuple[str, bytes]]:
    files = sorted(
        p
        for p in corpus.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(corpus).parts)
    )
    return [(str(p.relative_to(corpus)), p.read_bytes()) for p in files]


def synthetic_set() -> list[tuple[str, bytes]]:
    """A 4 MiB random buffer, the same with 20011 bytes inserted, the same with 62 removed."""
    base = random.Random(42).randbytes(4 * 1024 * 1024)
    middle = len(base) // 2
    inserted = base[:middle] + random.Random(43).randbytes(20011) + base[middle:]
    removed = base[:1000] + base[1062:]
    return [
        ("random_4MiB", base),
        ("random_4MiB_20011_inserted", inserted),
        ("random_4MiB_62_removed", removed),
    ]


def dedup_ratio(chunk_sets: list[list[tuple[bytes, int]]]) -> tuple[float, int, int, int]:
    """(ratio, logical bytes, unique bytes, unique chunks) over the given files' chunks."""
    unique: dict[bytes, int] = {}
    logical = 0
    for chunks in chunk_sets:
        for digest, size in chunks:
            logical += size
            unique[digest] = size
    stored = sum(unique.values())
    return (logical / stored if stored else 1.0), logical, stored, len(unique)


def run_spec(spec: str, files: list[tuple[str, bytes]], trio: list[str], repeat: int) -> Result:
    chunker = chunker_from_config(spec)
    per_file: dict[str, list[tuple[bytes, int]]] = {}
    seconds = 0.0
    for name, data in files:
        best = float("inf")
        chunks: list[bytes] = []
        for _ in range(repeat):
            start = time.perf_counter()
            chunks = list(chunker.split(io.BytesIO(data)))
            best = min(best, time.perf_counter() - start)
        seconds += best
        assert b"".join(chunks) == data, f"{spec} lost bytes of {name}"
        per_file[name] = [(hashlib.sha256(c).digest(), len(c)) for c in chunks]
    ratio, logical, stored, unique_chunks = dedup_ratio(list(per_file.values()))
    trio_ratio = dedup_ratio([per_file[n] for n in trio])[0] if trio else None
    n_chunks = sum(len(c) for c in per_file.values())
    return Result(
        spec=chunker.describe(),
        chunks=n_chunks,
        unique_chunks=unique_chunks,
        logical_bytes=logical,
        unique_bytes=stored,
        dedup_ratio=round(ratio, 4),
        trio_dedup_ratio=None if trio_ratio is None else round(trio_ratio, 4),
        mean_chunk_bytes=round(logical / n_chunks, 1) if n_chunks else 0.0,
        seconds=round(seconds, 4),
        throughput_mb_s=round(logical / MB / seconds, 1) if seconds else 0.0,
    )


def markdown_table(results: list[Result], trio_label: str) -> str:
    header = (
        "| chunker | chunks | unique chunks | mean chunk | stored MB | dedup ratio (all) "
        f"| dedup ratio ({trio_label}) | throughput MB/s |"
    )
    lines = [header, "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for r in results:
        trio = "n/a" if r.trio_dedup_ratio is None else f"{r.trio_dedup_ratio:.3f}"
        lines.append(
            f"| `{r.spec}` | {r.chunks} | {r.unique_chunks} | {r.mean_chunk_bytes / 1024:.1f} KiB "
            f"| {r.unique_bytes / MB:.2f} | {r.dedup_ratio:.3f} | {trio} | {r.throughput_mb_s:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="directory of files to chunk")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    parser.add_argument("--specs", default=",".join(SPECS), help="comma-separated chunker specs")
    parser.add_argument("--repeat", type=int, default=1, help="time each file N times, keep the best")
    args = parser.parse_args(argv)

    if args.corpus.is_dir() and (files := load_corpus(args.corpus)):
        source = str(args.corpus)
        trio = [n for n in NOKIA_TRIO if n in dict(files)]
        if len(trio) != len(NOKIA_TRIO):
            trio = []
        trio_label = "Nokia trio"
        print(f"Corpus: {source} ({len(files)} files)")
    else:
        files = synthetic_set()
        source = "synthetic"
        trio = [name for name, _ in files]
        trio_label = "synthetic trio"
        print(
            f"Corpus {args.corpus} not found or empty: using a synthetic set instead "
            "(4 MiB random, +20011 B inserted in the middle, -62 B near the start)."
        )

    logical = sum(len(d) for _, d in files)
    distinct_files = {hashlib.sha256(d).digest(): len(d) for _, d in files}
    whole_file_ratio = logical / sum(distinct_files.values()) if distinct_files else 1.0
    print(f"{len(files)} files, {logical / MB:.2f} MB; whole-file dedup alone gives {whole_file_ratio:.3f}.")
    print()

    results = [run_spec(spec.strip(), files, trio, args.repeat) for spec in args.specs.split(",")]
    print(markdown_table(results, trio_label))
    print()
    print(
        "dedup ratio = logical bytes / unique chunk bytes; throughput = logical bytes / chunking "
        f"time (MB = 10^6 B, best of {args.repeat}), Python {sys.version.split()[0]}."
    )

    if args.json:
        payload = {
            "source": source,
            "files": len(files),
            "logical_bytes": logical,
            "whole_file_dedup_ratio": round(whole_file_ratio, 4),
            "trio": trio,
            "results": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
