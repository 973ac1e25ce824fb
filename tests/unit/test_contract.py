"""The machine-readable contract (shared/openapi.yaml) names exactly the template's routes,
with the same authorizer requirements, and the template keeps the design card's shape."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from devstack.template import Template

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"get", "post", "put", "delete", "patch"}


def _template_routes() -> dict[tuple[str, str], bool]:
    t = Template(ROOT / "template.yaml")
    return {(r.method, r.path): r.authorizer is not None for r in t.routes}


def _openapi_routes() -> dict[tuple[str, str], bool]:
    spec = yaml.safe_load((ROOT / "shared" / "openapi.yaml").read_text())
    out = {}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method in METHODS:
                out[(method.upper(), path)] = bool(op.get("security"))
    return out


def test_openapi_matches_template_routes() -> None:
    assert _openapi_routes() == _template_routes()


def test_every_function_has_its_own_code_and_sample_event_format() -> None:
    t = Template(ROOT / "template.yaml")
    dirs = [f.code_dir for f in t.functions.values()]
    assert len(dirs) == len(set(dirs)), "one function per code folder"
    for fn in t.functions.values():
        assert (fn.code_dir / "app.py").exists(), fn.logical_id
    http = [r.function for r in t.routes]
    assert len(http) == len(set(http)), "one route per function"


def test_template_shape() -> None:
    raw = (ROOT / "template.yaml").read_text()
    assert "Runtime: python3.13" in raw
    assert re.search(r"EnableSimpleResponses: true", raw)
    assert "AuthorizerPayloadFormatVersion: \"2.0\"" in raw
    env = Template(ROOT / "template.yaml").globals["Environment"]["Variables"]
    assert "JWT_SECRET" not in env and "DB_PASSWORD" not in env, "secrets come from Secrets Manager"
    assert env["JWT_SECRET_ARN"] == {"Ref": "JwtSecret"}
