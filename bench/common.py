"""What every benchmark shares: result rows for the one table of ``make bench``.

Each ``bench_*.py`` measures a figure *and its peer side by side in the same run* and
reports them as :class:`Row` objects with :func:`emit`. Run alone, a script prints its
rows as a Markdown table; under ``bench/run_all.py`` (which sets ``BENCH_ROWS``) they
are also appended as JSON lines for the combined table and ``BENCHMARKS.md``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
KiB = 1024
MiB = 1024 * KiB
MB = 1_000_000


@dataclass
class Row:
    area: str
    figure: str
    value: str
    peer: str = ""
    peer_value: str = ""
    ratio: str = ""
    target: str = ""
    met: bool | None = None


def ratio_row(area: str, figure: str, value: float, peer: str, peer_value: float, unit: str, *,
              higher_is_better: bool = True, target: float | None = None, fmt: str = "{:.1f}") -> Row:
    """A row whose ratio is value/peer (or peer/value when lower is better), checked against target."""
    r = (value / peer_value if higher_is_better else peer_value / value) if value and peer_value else 0.0
    return Row(area, figure, f"{fmt.format(value)} {unit}", peer, f"{fmt.format(peer_value)} {unit}",
               f"{r:.2f}x", f"≥ {target}x" if target is not None else "",
               None if target is None else r >= target)


def emit(rows: Iterable[Row]) -> None:
    rows = list(rows)
    path = os.environ.get("BENCH_ROWS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(asdict(row)) + "\n")
    print(markdown(rows), flush=True)


def markdown(rows: Iterable[Row]) -> str:
    lines = ["| area | figure | value | peer (same run) | peer value | ratio | target | met |",
             "|---|---|--:|---|--:|--:|--:|:-:|"]
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.area} | {r.figure} | {r.value} | {r.peer} | {r.peer_value} | {r.ratio} "
                     f"| {r.target} | {met} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.system()} {platform.release()} {platform.machine()}, {cpu}, "
            f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")


def median_seconds(fn: Callable[[], Any], runs: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(fns: dict[str, Callable[[], Any]], runs: int, warmup: int = 1,
                        clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median seconds of each function, measured side by side: every round runs each once,
    in an order rotated per round, so a burst of load on a shared machine hits them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(runs):
        for name in names[i % len(names):] + names[:i % len(names)]:
            start = clock()
            fns[name]()
            times[name].append(clock() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def corpus_file(name: str) -> Path | None:
    path = CORPUS / name
    return path if path.is_file() else None
