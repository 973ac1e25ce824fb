"""Shared fixtures.

``stack`` starts the real local runtime once per test session (Postgres,
SeaweedFS, the gateway serving template.yaml) in a temporary data folder, on
free ports, so a `make run` on the same machine is not disturbed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "layers" / "imagerepo"))

CORPUS = Path(os.environ.get("IMAGEREPO_CORPUS_DIR") or ROOT.parent / "shared" / "corpus")


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"{CORPUS} not present: tests on the shared image corpus are skipped")
    return CORPUS


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from devstack.stack import Stack

    data = tmp_path_factory.mktemp("stack-data")
    os.environ.setdefault("IMAGEREPO_GC_GRACE_SECONDS", "0")
    s = Stack(data, port=0, env={"GC_GRACE_SECONDS": "0"})
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def base_url(stack: Any) -> str:
    return str(stack.url)
