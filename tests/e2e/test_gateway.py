"""The local gateway over HTTP, with a small template of its own: event translation,
response mapping, the authorizer's protocol, per-function environments, AWS's limits,
and the execution environments behind it (worker processes started with awslambdaric):
isolation, crashes, timeouts, throttling, REPORT lines, idle reaping."""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.gateway import GatewayServer, LocalGateway
from devstack.lambda_runtime import LambdaRuntime
from devstack.template import Template
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "gateway" / "template.yaml"


@pytest.fixture(scope="module")
def gw() -> Iterator[tuple[str, LocalGateway]]:
    template = Template(FIXTURE)
    runtime = LambdaRuntime(template, env_overrides={})
    gateway = LocalGateway(template, runtime, integration_timeout=2.0)
    server = GatewayServer(gateway, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", gateway
    finally:
        server.shutdown()
        server.server_close()
        runtime.shutdown()


def _echo(r: requests.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_v2_event_fields(gw: tuple[str, LocalGateway]) -> None:
    url, _ = gw
    r = requests.post(f"{url}/echo/thing-1?a=1&a=2&b=&c=x%20y", data=b'{"k": 1}',
                      headers={"Content-Type": "application/json", "X-Custom": "V",
                               "Cookie": "s=1; t=2"}, timeout=10)
    body = _echo(r)
    event, env = body["event"], body["env"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "ANY /echo/{thing}"
    assert event["rawPath"] == "/echo/thing-1"
    assert event["rawQueryString"] == "a=1&a=2&b=&c=x%20y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "", "c": "x y"}
    assert event["pathParameters"] == {"thing": "thing-1"}
    assert event["headers"]["x-custom"] == "V" and "cookie" not in event["headers"]
    assert event["cookies"] == ["s=1", "t=2"]
    assert event["body"] == '{"k": 1}' and event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["http"]["method"] == "POST" and ctx["stage"] == "$default" and ctx["requestId"]
    assert r.headers["apigw-requestid"] == ctx["requestId"]
    assert env == {"SHARED_VAR": "hello-us-east-1", "ONLY_ECHO": "yes",
                   "AWS_LAMBDA_FUNCTION_NAME": "EchoFunction"}


def test_static_route_wins_over_variable(gw: tuple[str, LocalGateway]) -> None:
    url, _ = gw
    assert _echo(requests.get(f"{url}/echo/static", timeout=10))["event"]["routeKey"] == \
        "GET /echo/static"


def test_binary_both_ways_and_cookies(gw: tuple[str, LocalGateway]) -> None:
    url, _ = gw
    payload = bytes(range(256)) * 3
    r = requests.post(f"{url}/echo/binary", data=payload,
                      headers={"Content-Type": "application/octet-stream"}, timeout=10)
    assert r.status_code == 201
    assert r.content == payload
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.raw.headers.getlist("set-cookie") == ["a=1; Path=/", "b=2"]


def test_binary_request_is_base64_in_event(gw: tuple[str, LocalGateway]) -> None:
    url, _ = gw
    payload = b"\x89PNG\r\n\x1a\n\x00\xff"
    event = _echo(requests.put(f"{url}/echo/x", data=payload,
                               headers={"Content-Type": "image/png"}, timeout=10))["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload


def test_inferred_response_format(gw: tuple[str, LocalGateway]) -> None:
    url, _ = gw
    r = requests.get(f"{url}/echo/inferred", timeout=10)
    assert r.status_code == 200 and r.json() == {"inferred": True}
    assert r.headers["content-type"] == "application/json"


def test_unknown_route_is_404(gw: tuple[str, LocalGateway]) -> None:
    url, _ = gw
    r = requests.get(f"{url}/nope", timeout=10)
    assert r.status_code == 404 and r.json() == {"message": "Not Found"}
    assert requests.delete(f"{url}/sleep", timeout=10).status_code == 404


def test_authorizer_protocol_and_cache(gw: tuple[str, LocalGateway]) -> None:
    url, gateway = gw
    before = gateway.authorizer_invocations
    r = requests.get(f"{url}/guarded", timeout=10)
    assert (r.status_code, r.json()) == (401, {"message": "Unauthorized"})
    assert gateway.authorizer_invocations == before, "no identity source: authorizer not invoked"
    r = requests.get(f"{url}/guarded", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert (r.status_code, r.json()) == (403, {"message": "Forbidden"})
    for _ in range(3):
        r = requests.get(f"{url}/guarded", headers={"Authorization": "Bearer good"}, timeout=10)
        assert r.status_code == 200
        assert r.json()["event"]["requestContext"]["authorizer"] == {
            "lambda": {"sub": "42", "role": "user", "name": "t"}}
    assert gateway.authorizer_invocations == before + 2, "answers are cached per identity value"
    r = requests.get(f"{url}/guarded", headers={"Authorization": "Bearer broken"}, timeout=10)
    assert (r.status_code, r.json()) == (500, {"message": "Internal Server Error"})


def test_request_over_10mb_is_413(gw: tuple[str, LocalGateway]) -> None:
    url, _ = gw
    r = requests.post(f"{url}/echo/x", data=b"0" * (10 * 1024 * 1024 + 1),
                      headers={"Content-Type": "application/octet-stream"}, timeout=30)
    assert r.status_code == 413


def test_lambda_request_payload_over_6mb_is_413(gw: tuple[str, LocalGateway]) -> None:
    url, _ = gw
    # 5 MB of binary is 6.7 MB once base64-encoded into the event.
    r = requests.post(f"{url}/echo/x", data=b"\x00" * (5 * 1024 * 1024),
                      headers={"Content-Type": "application/octet-stream"}, timeout=30)
    assert r.status_code == 413


def test_response_over_6mb_is_502(gw: tuple[str, LocalGateway]) -> None:
    url, _ = gw
    assert requests.get(f"{url}/big?n=1000", timeout=10).status_code == 200
    r = requests.get(f"{url}/big?n={6 * 1024 * 1024 + 1}", timeout=30)
    assert r.status_code == 502 and r.json() == {"message": "Internal Server Error"}


def test_integration_timeout_is_503(gw: tuple[str, LocalGateway]) -> None:
    url, _ = gw  # the fixture sets a 2 s integration timeout (30 s on the real stack)
    assert requests.get(f"{url}/sleep?s=0.1", timeout=10).status_code == 200
    r = requests.get(f"{url}/sleep?s=3", timeout=10)
    assert r.status_code == 503 and r.json() == {"message": "Service Unavailable"}


def test_function_error_is_500_without_detail(gw: tuple[str, LocalGateway]) -> None:
    url, _ = gw
    r = requests.get(f"{url}/boom", timeout=10)
    assert r.status_code == 500
    assert r.json() == {"message": "Internal Server Error"}
    assert "secret internal detail" not in r.text


# -- execution environments --------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.parametrize("method", ["TRACE", "QUERY", "PROPFIND", "DELETE"])
def test_unrouted_methods_get_the_json_404(gw: tuple[str, LocalGateway], method: str) -> None:
    url, _ = gw
    r = requests.request(method, f"{url}/guarded", timeout=10)
    assert (r.status_code, r.json()) == (404, {"message": "Not Found"})
    assert r.headers["content-type"] == "application/json"


def test_functions_see_their_own_environment(gw: tuple[str, LocalGateway]) -> None:
    """Two functions of one code folder, COLOR=red and COLOR=blue, called concurrently."""
    url, gateway = gw
    colors = ["red", "blue"] * 12

    def call(color: str) -> dict[str, Any]:
        r = requests.get(f"{url}/color/{color}?n={color}", timeout=30)
        assert r.status_code == 200, r.text
        return dict(r.json())

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, colors))
    for color, body in zip(colors, answers, strict=True):
        assert (body["color"], body["atInit"], body["echo"]) == (color, color, {"n": color})
    red = next(a for a in answers if a["color"] == "red")
    blue = next(a for a in answers if a["color"] == "blue")
    code_dir = str(FIXTURE.parent / "functions" / "env")
    for body, name, memory in ((red, "RedFunction", 256), (blue, "BlueFunction", 128)):
        env = body["environ"]
        assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
        assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == str(memory) == str(body["memoryLimit"])
        assert env["_HANDLER"] == "app.lambda_handler" and env["AWS_LAMBDA_RUNTIME_API"]
        assert env["SHARED_VAR"] == "hello-us-east-1" and "ONLY_ECHO" not in env
        assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.13"
        assert env["LAMBDA_TASK_ROOT"] == code_dir == body["cwd"] == body["path"][0]
        assert "PYTEST_CURRENT_TEST" not in env, "nothing leaks from the gateway's own environment"
        assert 0 < body["remainingMs"] <= 60_000
    expected = set(gateway.runtime.environment(gateway.template.functions["RedFunction"]))
    per_environment = {"AWS_LAMBDA_RUNTIME_API", "AWS_LAMBDA_LOG_STREAM_NAME", "_X_AMZN_TRACE_ID"}
    assert set(red["environ"]) - per_environment == expected
    pids = {a["pid"] for a in answers}
    assert {a["pid"] for a in answers if a["color"] == "red"}.isdisjoint(
        {a["pid"] for a in answers if a["color"] == "blue"}) and len(pids) >= 2


@pytest.mark.parametrize("how", ["exit", "segv", "oom"])
def test_crashed_worker_is_502_and_the_next_call_gets_a_fresh_one(
        gw: tuple[str, LocalGateway], how: str) -> None:
    url, _ = gw
    first = requests.get(f"{url}/crash", timeout=10)
    assert first.status_code == 200, first.text
    pid = first.json()["pid"]
    r = requests.get(f"{url}/crash?how={how}", timeout=30)
    assert (r.status_code, r.json()) == (502, {"message": "Internal Server Error"})
    wait_for(lambda: not _alive(pid), timeout=10)
    again = requests.get(f"{url}/crash", timeout=10)
    assert again.status_code == 200 and again.json()["pid"] != pid


def test_function_timeout_ends_the_worker(gw: tuple[str, LocalGateway]) -> None:
    """Timeout: 1 against a 2 s integration timeout: the function's own timeout is an error (500)."""
    url, _ = gw
    warm = requests.get(f"{url}/short?s=0", timeout=10)
    pid = int(warm.headers["x-pid"])
    r = requests.get(f"{url}/short?s=5", timeout=10)
    assert (r.status_code, r.json()) == (500, {"message": "Internal Server Error"})
    wait_for(lambda: not _alive(pid), timeout=5)
    again = requests.get(f"{url}/short?s=0", timeout=10)
    assert again.status_code == 200 and int(again.headers["x-pid"]) != pid


def test_integration_timeout_then_the_function_is_ended_at_its_own(gw: tuple[str, LocalGateway]) -> None:
    """Timeout: 4 behind a 2 s integration timeout: API Gateway's 503, and the worker ended at 4 s."""
    url, _ = gw
    pid = int(requests.get(f"{url}/sleep?s=0", timeout=10).headers["x-pid"])
    r = requests.get(f"{url}/sleep?s=30", timeout=10)
    assert (r.status_code, r.json()) == (503, {"message": "Service Unavailable"})
    assert _alive(pid), "the function runs on after API Gateway gave up"
    wait_for(lambda: not _alive(pid), timeout=10)


def test_function_at_its_concurrency_limit_is_throttled(gw: tuple[str, LocalGateway]) -> None:
    """ReservedConcurrentExecutions: 1, its one environment busy: the next request is a 429."""
    url, gateway = gw
    busy = gateway.runtime.start("SingleFunction", {"queryStringParameters": {"s": "5"}})
    r = requests.get(f"{url}/single?s=0", timeout=10)
    assert (r.status_code, r.json()) == (429, {"message": "Too Many Requests"})
    busy.done.wait()
    assert busy.outcome == "ok"
    assert requests.get(f"{url}/single?s=0", timeout=10).status_code == 200


def test_report_lines_cold_starts_and_idle_reaping(caplog: pytest.LogCaptureFixture) -> None:
    runtime = LambdaRuntime(Template(FIXTURE), env_overrides={}, idle_seconds=3600)
    try:
        with caplog.at_level(logging.INFO, logger="lambda.RedFunction"):
            assert runtime.invoke("RedFunction", {})["color"] == "red"
            pid = runtime.invoke("RedFunction", {})["pid"]
            runtime.idle_seconds = 0.3
            wait_for(lambda: not runtime.workers("RedFunction"), timeout=10)
            assert not _alive(pid)
            assert runtime.invoke("RedFunction", {})["pid"] != pid
        reports = [r.getMessage() for r in caplog.records if r.getMessage().startswith("REPORT ")]
        assert len(reports) == 3
        assert ["Init Duration" in line for line in reports] == [True, False, True]
        for line in reports:
            fields = dict(f.split(": ", 1) for f in line.split("\t"))
            assert fields["Memory Size"] == "256 MB"
            assert float(fields["Duration"].removesuffix(" ms")) >= 0
            assert 0 < int(fields["Max Memory Used"].removesuffix(" MB")) <= 256
    finally:
        runtime.shutdown()


def test_fresh_interpreter_workers_without_the_fork_server() -> None:
    """IMAGEREPO_LAMBDA_FORKSERVER=0: each worker is its own `python -m awslambdaric`."""
    runtime = LambdaRuntime(Template(FIXTURE), env_overrides={}, forkserver=False)
    try:
        body = runtime.invoke("BlueFunction", {"queryStringParameters": {"a": "1"}})
        assert (body["color"], body["echo"]) == ("blue", {"a": "1"})
        assert os.getpid() != body["pid"]
    finally:
        runtime.shutdown()
