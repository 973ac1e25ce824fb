"""``python -m devstack run``: the API on 127.0.0.1:$PORT with everything it needs;
``python -m devstack invoke <LogicalId> [-e EVENT] [--env-vars FILE]``: one function once."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from devstack.stack import ROOT, Stack


def _data_dir() -> Path:
    return Path(os.environ.get("IMAGEREPO_DATA_DIR") or ROOT / ".data")


def _stop_with_make() -> None:
    """Under `make run`, stop cleanly when make itself is killed (even with SIGKILL)."""
    with contextlib.suppress(OSError):
        if Path(f"/proc/{os.getppid()}/comm").read_text().strip() == "make":
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["invoke"]:
        from devstack.invoke import main as invoke

        logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
        logging.getLogger("lambda").setLevel(logging.DEBUG)  # the function's log, START/END/REPORT
        return invoke(argv[1:], _data_dir())
    parser = argparse.ArgumentParser(prog="devstack")
    parser.add_argument("command", choices=["run", "services", "migrate", "invoke"],
                        help="run: services + API; services: Postgres and S3 only, printing their "
                        "environment; migrate: apply shared/migrations to the database named by DB_* "
                        "variables; invoke: one function once (invoke -h)")
    args = parser.parse_args(argv)
    if args.command == "migrate":
        return _migrate()
    _stop_with_make()
    logging.basicConfig(level=os.environ.get("IMAGEREPO_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started = time.monotonic()
    stack = Stack(_data_dir(), port=int(os.environ.get("PORT", "3000")))
    try:
        if args.command == "run":
            stack.start()
            logging.getLogger("devstack").info(
                "ImageRepo API on %s (ready in %.1fs, data in %s); Ctrl-C stops everything",
                stack.url, time.monotonic() - started, stack.data_dir)
        else:
            stack.start_services()
            stack.write_state()
            for k, v in sorted(stack.env_overrides.items()):
                print(f"export {k}={v}")
            sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        logging.getLogger("devstack").info("stopping")
        stack.stop()
    return 0


def _migrate() -> int:
    sys.path.insert(0, str(ROOT / "layers" / "imagerepo"))
    from imagerepo.migrate import apply_migrations

    applied = apply_migrations(ROOT / "shared" / "migrations")
    print("applied:", ", ".join(applied) or "nothing (up to date)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
