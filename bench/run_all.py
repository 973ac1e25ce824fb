"""`make bench`: run every bench/bench_*.py, print ONE table, write BENCHMARKS.md.

Each script measures its figures beside their peers in the same run and reports them as
rows (see bench/common.py); their full output (detail tables, profiles) goes into
BENCHMARKS.md after the table, with the machine the run came from.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "imagerepo")]

from bench.common import CORPUS, Row, machine, markdown  # noqa: E402

ORDER = ["bench_dedup.py", "bench_thumbnails.py", "bench_coldstart.py", "bench_http.py",
         "bench_paging.py", "bench_store.py", "bench_contention.py"]
ARGS = {"bench_store.py": ["--files", "16", "--stream-mib", "50", "fastcdc:16KiB:64KiB:256KiB"],
        "bench_paging.py": ["--runs", "15"]}


def git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return out.stdout.strip()


def main() -> int:
    started = time.monotonic()
    scripts = sorted(HERE.glob("bench_*.py"), key=lambda p: (ORDER.index(p.name) if p.name in ORDER
                                                                else len(ORDER), p.name))
    details: list[tuple[str, float, str]] = []
    failed = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        rows_file = Path(tmp) / "rows.jsonl"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "layers" / "imagerepo")]),
               "BENCH_ROWS": str(rows_file), "BENCH_PROFILE_DIR": tmp}
        for script in scripts:
            print(f"running {script.name} ...", end=" ", flush=True)
            t = time.monotonic()
            proc = subprocess.run([sys.executable, str(script), *ARGS.get(script.name, [])], env=env,
                                  capture_output=True, text=True, check=False)
            seconds = time.monotonic() - t
            print(f"{'ok' if proc.returncode == 0 else 'FAILED'} ({seconds:.0f} s)", flush=True)
            output = proc.stdout + (f"\n```\n{proc.stderr[-3000:]}\n```\n" if proc.returncode else "")
            details.append((script.name, seconds, output))
            if proc.returncode != 0:
                failed.append(script.name)
        rows = [Row(**json.loads(line)) for line in rows_file.read_text().splitlines()] \
            if rows_file.exists() else []
    total = time.monotonic() - started
    table = markdown(rows)
    print()
    print(table)
    met = [r for r in rows if r.met is not None]
    print(f"\n{sum(1 for r in met if r.met)} of {len(met)} targets met; {total:.0f} s in all"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    write_report(table, details, total, failed)
    print("BENCHMARKS.md written")
    return 1 if failed else 0


def write_report(table: str, details: list[tuple[str, float, str]], total: float, failed: list[str]) -> None:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    corpus = f"the shared corpus ({CORPUS})" if CORPUS.is_dir() else "generated images (no corpus)"
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    parts = [
        "# Benchmarks\n",
        "Written by `make bench` (`bench/run_all.py`); every figure is measured beside its peer in the",
        "same run. Performance is never asserted in tests.\n",
        f"* machine: {machine()}",
        f"* run: {when}, commit `{git('rev-parse', '--short', 'HEAD')}`"
        f"{' (uncommitted changes)' if git('status', '--porcelain', '--untracked-files=no') else ''},"
        f" {total:.0f} s in all",
        f"* load average at the end: {', '.join(f'{x:.1f}' for x in load)}" if load else "",
        f"* images: {corpus}",
        f"* failed: {', '.join(failed)}" if failed else "",
        "",
        table,
        "",
        "## Details",
        "",
    ]
    for name, seconds, output in details:
        parts += [f"### {name} ({seconds:.0f} s)", "", output.strip(), ""]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(p for p in parts if p is not None) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
