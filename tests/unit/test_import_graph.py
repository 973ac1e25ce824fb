"""The layer's import graph: what each function and domain module loads at cold start.

Each function's ``app`` (and each domain module) is imported in a fresh interpreter and
its ``sys.modules`` inspected: the authorizer loads no HTTP resolver and no
cryptography, functions that only use the database load neither boto3 nor Pillow,
domain modules never load the HTTP module. The static rules (no import cycle, S3 only
through the store or the S3 module, one helper per repeated check) are read from the
source with ``ast``. Import *times* are measured by ``make bench``, never asserted here.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "imagerepo"
PACKAGE = LAYER / "imagerepo"

HTTP = ("imagerepo.api", "aws_lambda_powertools.event_handler")
# boto3 only: the X-Ray SDK behind Powertools' Tracer (imagerepo.observability, every
# function) loads botocore's client and exceptions modules to patch them.
S3 = ("boto3",)
IMAGING = ("PIL",)

# Functions that only read or write rows: no S3 client, no image decoder at import.
DB_ONLY = ("login", "register", "me", "groups_get", "groups_list", "groups_create", "groups_update",
           "groups_delete", "group_images", "images_list", "image_info", "image_update",
           "image_delete", "uploads_get")
# Domain modules and what they may not load (the HTTP side is never theirs).
DOMAIN = {
    "imagerepo.images": HTTP + S3 + IMAGING,
    "imagerepo.groups": HTTP + S3 + IMAGING,
    "imagerepo.users": HTTP + S3 + IMAGING,
    "imagerepo.listing": HTTP + S3 + IMAGING,
    "imagerepo.uploads": HTTP + IMAGING,
    "imagerepo.thumbnails": HTTP + IMAGING,
    "imagerepo.downloads": HTTP + IMAGING,
    "imagerepo.chunkstore": (*HTTP, "boto3", *IMAGING),
    "imagerepo.gc": HTTP + IMAGING,
}


def _modules_after(statement: str, cwd: Path) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(LAYER), "AWS_DEFAULT_REGION": "us-east-1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    return set(json.loads(out.stdout.splitlines()[-1]))


@cache
def loaded() -> dict[str, set[str]]:
    """sys.modules after importing each function checked here and each domain module."""
    jobs = {f"functions/{name}": ("import app", ROOT / "functions" / name)
            for name in ("authorizer", *DB_ONLY)}
    jobs.update({module: (f"import {module}", ROOT) for module in DOMAIN})
    with ThreadPoolExecutor(4) as pool:
        results = pool.map(lambda job: _modules_after(*job), jobs.values())
        return dict(zip(jobs, results, strict=True))


def offending(modules: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted({f for f in forbidden for m in modules if m == f or m.startswith(f + ".")})


def test_authorizer_loads_no_http_resolver_s3_pillow_or_cryptography() -> None:
    modules = loaded()["functions/authorizer"]
    assert "imagerepo.security" in modules
    assert offending(modules, HTTP + S3 + IMAGING + ("cryptography",)) == []


@pytest.mark.parametrize("name", DB_ONLY)
def test_database_only_functions_load_neither_boto3_nor_pillow(name: str) -> None:
    modules = loaded()[f"functions/{name}"]
    assert offending(modules, S3 + IMAGING) == []


@pytest.mark.parametrize("module", DOMAIN)
def test_domain_modules_load_no_http_module(module: str) -> None:
    assert offending(loaded()[module], DOMAIN[module]) == []


def _layer_modules() -> dict[str, ast.Module]:
    trees = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(LAYER).with_suffix("").parts).removesuffix(".__init__")
        trees[name] = ast.parse(path.read_text(), str(path))
    return trees


def _top_level_imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """Layer modules imported when ``name`` is imported (not in functions, not TYPE_CHECKING)."""
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m in known and m != name}


def test_no_import_cycle_in_the_layer() -> None:
    trees = _layer_modules()
    graph = {name: _top_level_imports(name, tree, set(trees)) for name, tree in trees.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt):], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_s3_calls_go_through_the_store_or_the_s3_module() -> None:
    """No ``<something>.s3.<call>`` outside chunkstore.py and s3.py (the store's client is its own)."""
    bad = []
    for name, tree in _layer_modules().items():
        if name in ("imagerepo.chunkstore", "imagerepo.s3"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "s3":
                bad.append(f"{name}:{node.lineno}")
    assert bad == []


@pytest.mark.parametrize(("text", "home"), [("unknown fields:", "errors.py"), ("NoSuchKey", "s3.py")])
def test_one_helper_for_each_repeated_check(text: str, home: str) -> None:
    holders = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if text in p.read_text())
    assert holders == [home]
