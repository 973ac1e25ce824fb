"""The local gateway over HTTP, with a small template of its own: event translation,
response mapping, the authorizer's protocol, per-function environments, AWS's limits."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.gateway import GatewayServer, LocalGateway
from devstack.lambda_runtime import LambdaRuntime
from devstack.template import Template

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
