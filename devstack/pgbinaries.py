"""Fetch Postgres binaries for machines without them, from the `pgserver` wheel.

pgserver ships a relocatable Postgres build (``pgserver/pginstall``) but only cp39 to cp312
wheels, so it cannot be a dependency of our Python 3.13 virtualenv. The binaries inside do
not depend on Python's version, so we download the cp311 wheel for this platform with pip
and unpack only ``pginstall`` and the libraries it links (``pgserver.libs``, found through
an ``$ORIGIN`` RPATH, so the layout is kept) into ``<venv>/pgserver``, where
:func:`devstack.services.find_pg_bindir` looks.

Usage: ``python -m devstack.pgbinaries <venv>`` (the Makefile runs it). Failing to fetch is
not fatal when the machine has its own Postgres binaries.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PGSERVER = "pgserver==0.1.4"
KEEP = ("pgserver/pginstall/", "pgserver.libs/")
BINDIR = Path("pgserver", "pginstall", "bin")


def install(venv: Path) -> Path:
    target = venv / "pgserver"
    if (target / BINDIR / "postgres").exists():
        return target / BINDIR
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--only-binary=:all:", "--python-version", "3.11", "-d", tmp, PGSERVER],
            check=True,
        )
        wheel = next(Path(tmp).glob("pgserver-*.whl"))
        partial = venv / "pgserver.partial"
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                if not info.filename.startswith(KEEP) or info.is_dir():
                    continue
                dest = partial / info.filename
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(zf.read(info))
                mode = (info.external_attr >> 16) & 0o777
                dest.chmod(mode or 0o644)
        partial.rename(target)
    return target / BINDIR


def main() -> int:
    venv = Path(sys.argv[1] if len(sys.argv) > 1 else ".venv")
    try:
        where = install(venv)
    except (subprocess.CalledProcessError, StopIteration, OSError) as exc:
        from devstack.services import find_pg_bindir

        try:
            print(f"pgserver binaries unavailable ({exc}); using {find_pg_bindir()}", file=sys.stderr)
            return 0
        except RuntimeError as missing:
            print(f"error: {missing}", file=sys.stderr)
            return 1
    print(f"Postgres binaries: {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
