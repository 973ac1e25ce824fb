"""One decorator gives every function Logger, Tracer and Metrics; metrics are EMF lines in the log."""

from __future__ import annotations

import ast
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imagerepo import observability
from imagerepo.api import make_app
from tests.helpers import FakeContext, load_event

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = sorted(p for p in (ROOT / "functions").glob("*/app.py"))


def _is_observed(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "handler" and \
        isinstance(node.value, ast.Name) and node.value.id == "observability"


@pytest.mark.parametrize("path", FUNCTIONS, ids=[p.parent.name for p in FUNCTIONS])
def test_every_handler_is_one_observed_line(path: Path) -> None:
    tree = ast.parse(path.read_text())
    text = path.read_text()
    assert "inject_lambda_context" not in text and "log_metrics" not in text, "use observability.handler"
    found = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "lambda_handler"
                                                for t in node.targets):
            call = node.value
            assert isinstance(call, ast.Call) and _is_observed(call.func), ast.unparse(node)
            found.append(node)
        if isinstance(node, ast.FunctionDef) and node.name == "lambda_handler":
            assert node.decorator_list and _is_observed(node.decorator_list[0]), "outermost decorator"
            found.append(node)
    assert len(found) == 1


@pytest.fixture
def log(capsys: pytest.CaptureFixture[str]) -> Iterator[io.StringIO]:
    """What the function writes to stdout: the logger's records, then the EMF lines (print)."""
    observability.metrics.clear_metrics()  # what code run outside a handler left behind
    handler = observability.logger.registered_handler
    buf = io.StringIO()
    previous = handler.setStream(buf)  # type: ignore[attr-defined]
    try:
        yield buf
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]
        buf.write(capsys.readouterr().out)


def _out(log: io.StringIO, capsys: pytest.CaptureFixture[str]) -> str:
    return log.getvalue() + capsys.readouterr().out


def _value(v: Any) -> float:
    return float(v[0] if isinstance(v, list) else v)


def _emf_lines(out: str) -> list[dict[str, Any]]:
    docs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [d for d in docs if "_aws" in d]


def test_metrics_are_published_as_emf_when_the_handler_returns(
        log: io.StringIO, capsys: pytest.CaptureFixture[str]) -> None:
    @observability.handler
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        observability.stored(1000, 250)
        observability.cache_lookups(3, 1)
        observability.count(observability.FAILED_LOGINS)
        with observability.timed(observability.INGEST_LATENCY):
            pass
        observability.logger.info("inside")
        return {"ok": True}

    assert lambda_handler({}, FakeContext(function_name="IngestFunction")) == {"ok": True}
    out = _out(log, capsys)
    emf = _emf_lines(out)
    assert emf, out
    doc = {k: v for d in emf for k, v in d.items()}
    directive = emf[-1]["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "ImageRepo"
    assert doc["service"] == "imagerepo"
    assert (_value(doc["LogicalBytes"]), _value(doc["StoredBytes"])) == (1000.0, 250.0)
    assert [_value(doc[k]) for k in ("ChunkCacheHits", "ChunkCacheMisses", "ChunkCacheHitRatio")] == \
        [3.0, 1.0, 75.0]
    assert _value(doc["FailedLogins"]) == 1.0
    assert _value(doc["IngestLatency"]) >= 0
    units = {m["Name"]: m["Unit"] for d in emf for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units["StoredBytes"] == "Bytes" and units["ChunkCacheHitRatio"] == "Percent"
    assert units["IngestLatency"] == "Milliseconds"
    record = next(json.loads(line) for line in out.splitlines() if '"inside"' in line)
    assert record["function_name"] == "IngestFunction" and record["cold_start"] in (True, False)


def test_http_handler_logs_the_request_id_as_correlation_id(
        log: io.StringIO, capsys: pytest.CaptureFixture[str]) -> None:
    app = make_app()

    @app.get("/health")
    def health() -> Any:
        observability.logger.info("answering")
        return {"status": "ok"}

    lambda_handler = observability.handler(app)
    event = load_event("health")
    result = lambda_handler(event, FakeContext(function_name="HealthFunction"))
    assert result["statusCode"] == 200
    record = next(json.loads(line) for line in _out(log, capsys).splitlines() if '"answering"' in line)
    assert record["correlation_id"] == event["requestContext"]["requestId"]
