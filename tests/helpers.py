"""Test helpers: direct handler invocation with the sample events, and an HTTP client."""

from __future__ import annotations

import copy
import importlib.util
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import requests.adapters

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "tests" / "events"


@dataclass
class FakeContext:
    function_name: str = "test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test"
    aws_request_id: str = ""
    function_version: str = "$LATEST"

    def __post_init__(self) -> None:
        self.aws_request_id = self.aws_request_id or str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 29000


def load_event(name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))


_modules: dict[str, Any] = {}


def handler(function: str) -> Any:
    """functions/<function>/app.py's lambda_handler, loaded once under a unique name."""
    if function not in _modules:
        path = ROOT / "functions" / function / "app.py"
        spec = importlib.util.spec_from_file_location(f"fn_test_{function}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _modules[function] = module
    return _modules[function].lambda_handler


def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = handler(function)(event, FakeContext(function_name=function))
    return result


def json_of(result: dict[str, Any]) -> Any:
    return json.loads(result["body"])


def unique(prefix: str = "u") -> str:
    return f"{prefix}{secrets.token_hex(4)}"


class _SourceAddressAdapter(requests.adapters.HTTPAdapter):
    """Connect from a chosen loopback address (127.0.0.0/8 all reaches 127.0.0.1)."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


class Api:
    """A thin requests wrapper that remembers a bearer token.

    ``source`` (e.g. ``127.0.0.77``) makes the gateway see another client address, for
    tests of per-source limits that must not count against the rest of the suite."""

    def __init__(self, base_url: str, token: str | None = None, source: str | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.session = requests.Session()
        self.token = token
        self.refresh_token: str | None = None
        self.source = source
        if source:
            self.session.mount("http://", _SourceAddressAdapter(source))

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if self.token and "authorization" not in {k.lower() for k in headers}:
            headers["Authorization"] = f"Bearer {self.token}"
        kw.setdefault("timeout", 60)
        kw.setdefault("allow_redirects", False)
        return self.session.request(method, self.base + path, headers=headers, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> requests.Response:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, **kw)

    def patch(self, path: str, **kw: Any) -> requests.Response:
        return self.request("PATCH", path, **kw)

    def anonymous(self) -> Api:
        return Api(self.base, source=self.source)


def register_and_login(base_url: str, name: str | None = None,
                       password: str = "s3cret-passw0rd") -> tuple[Api, dict[str, Any]]:
    name = name or unique("user")
    api = Api(base_url)
    r = api.post("/register", json={"name": name, "email": f"{name}@example.com", "password": password})
    assert r.status_code == 201, r.text
    user = r.json()
    r = api.post("/login", json={"username": name, "password": password})
    assert r.status_code == 200, r.text
    api.token = r.json()["access_token"]
    api.refresh_token = r.json()["refresh_token"]
    return api, user


def wait_for(predicate: Any, timeout: float = 20, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def assert_error(r: requests.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is ``status`` with the API's JSON error body (and ``code`` when given)."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    if code:
        assert body["error"]["code"] == code, body
    return dict(body["error"])


def db(sql: str, **params: Any) -> list[list[Any]]:
    """Run SQL on the test stack's database (committed)."""
    from imagerepo.db import unit_of_work

    with unit_of_work() as uow:
        rows = uow.run(sql, **params)
        uow.commit()
    return rows
