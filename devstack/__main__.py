"""``python -m devstack run``: the API on 127.0.0.1:$PORT with everything it needs."""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack")
    parser.add_argument("command", choices=["run", "services", "migrate"], help="run: services + API; "
                        "services: Postgres and S3 only, printing their environment; "
                        "migrate: apply shared/migrations to the database named by DB_* variables")
    args = parser.parse_args(argv)
    if args.command == "migrate":
        return _migrate()
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
