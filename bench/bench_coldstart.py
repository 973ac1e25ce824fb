"""Cold start: import time of every function's ``app``, and the authorizer's verifications/s.

    PYTHONPATH=.:layers/imagerepo .venv/bin/python bench/bench_coldstart.py [--runs 5]

Each import runs in a fresh interpreter (``import app`` timed inside it, so interpreter
start-up is not counted), ``--runs`` times per function, one function after the other in
this one run; the median is compared with its budget: the authorizer 60 ms, functions
that only use the database 150 ms, S3 and imaging functions 300 ms. Beside them, the
same measurement of ``import json, logging`` calibrates how loaded the machine is.

Then, in-process: HS256 tokens verified per second by ``security.decode_token`` and by
the authorizer's whole handler (target 10,000/s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "imagerepo")]

from bench.common import Row, emit  # noqa: E402

DB_ONLY = {"login", "register", "me", "groups_get", "groups_list", "groups_create", "groups_update",
           "groups_delete", "group_images", "images_list", "image_info", "image_update",
           "image_delete", "uploads_get", "admin_stats", "onedrive_import_status"}
BUDGET_MS = {"authorizer": 60.0, "db": 150.0, "s3": 300.0}
_TIMED = "import time, sys\nt = time.perf_counter()\n{stmt}\nprint(time.perf_counter() - t)"


def import_ms(stmt: str, cwd: Path, runs: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers" / "imagerepo"), "AWS_DEFAULT_REGION": "us-east-1",
           "POWERTOOLS_SERVICE_NAME": "imagerepo"}
    times = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", _TIMED.format(stmt=stmt)], cwd=cwd, env=env,
                             capture_output=True, text=True, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]) * 1000)
    return statistics.median(times)


def category(name: str) -> str:
    return "authorizer" if name == "authorizer" else "db" if name in DB_ONLY else "s3"


def verifications_per_second(seconds: float = 2.0) -> tuple[float, float]:
    os.environ.setdefault("JWT_SECRET", "bench-secret-" + "x" * 32)
    sys.path.insert(0, str(ROOT / "functions" / "authorizer"))
    import app as authorizer  # type: ignore[import-not-found]

    from imagerepo.security import Principal, decode_token, issue_token

    token, _ = issue_token(Principal(1, "user", "bench"), "bench-session")
    event = {"headers": {"authorization": f"Bearer {token}"}, "requestContext": {"requestId": "bench"}}

    class Context:
        function_name = "authorizer"
        memory_limit_in_mb = 128
        invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:authorizer"
        aws_request_id = "bench"

    rates = []
    for fn in (lambda: decode_token(token), lambda: authorizer.lambda_handler(event, Context())):
        assert fn() is not None
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            for _ in range(200):
                fn()
            n += 200
        rates.append(n / elapsed)
    return rates[0], rates[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    rows = []
    baseline = import_ms("import json, logging", ROOT, args.runs)
    worst: dict[str, tuple[str, float]] = {}
    print("| function | kind | import ms (median) | budget |")
    print("|---|---|--:|--:|")
    for fn in sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "app.py").is_file()):
        ms = import_ms("import app", ROOT / "functions" / fn, args.runs)
        kind = category(fn)
        print(f"| {fn} | {kind} | {ms:.0f} | {BUDGET_MS[kind]:.0f} |", flush=True)
        if ms > worst.get(kind, ("", -1.0))[1]:
            worst[kind] = (fn, ms)
    for kind, label in (("authorizer", "authorizer"), ("db", "slowest database-only function"),
                        ("s3", "slowest S3/imaging function")):
        fn, ms = worst[kind]
        budget = BUDGET_MS[kind]
        rows.append(Row("cold start", f"import, median of {args.runs}: {label} (`{fn}`)", f"{ms:.0f} ms",
                        "budget", f"{budget:.0f} ms", f"{ms / budget:.2f}x the budget", f"≤ {budget:.0f} ms",
                        ms <= budget))
    rows.append(Row("cold start", "calibration: `import json, logging`", f"{baseline:.1f} ms", "", "", "", "",
                    None))
    decode, handler = verifications_per_second()
    rows.append(Row("authorizer", "HS256 token verifications/s, in-process (`decode_token`)",
                    f"{decode:,.0f}/s", "target", "10,000/s", f"{decode / 10_000:.1f}x", "≥ 10,000/s",
                    decode >= 10_000))
    rows.append(Row("authorizer", "whole authorizer handler calls/s (logger context included)",
                    f"{handler:,.0f}/s", "decode_token alone", f"{decode:,.0f}/s",
                    f"{handler / decode:.2f}x"))
    emit(rows)
    print(json.dumps({"baseline_ms": round(baseline, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
