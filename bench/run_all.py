"""`make bench`: run every bench/bench_*.py in turn; each prints its own Markdown table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    paths = [str(HERE.parent), str(HERE.parent / "layers" / "imagerepo")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"\n## {script.name}\n", flush=True)
        if subprocess.run([sys.executable, str(script)], env=env, check=False).returncode != 0:
            failed.append(script.name)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
