"""Handlers called directly with the sample events of tests/events (what `sam local invoke -e`
sends), against the real local Postgres and S3 server."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest

from tests.helpers import invoke, json_of, load_event, unique

pytestmark = pytest.mark.integration


def test_health_event(stack: Any) -> None:
    result = invoke("health", load_event("health"))
    assert result["statusCode"] == 200 and json_of(result) == {"status": "ok"}


def test_register_login_me_events(stack: Any) -> None:
    name = unique("direct")
    event = load_event("register")
    event["body"] = json.dumps({"name": name, "email": f"{name}@example.com", "password": "pw-long-enough"})
    result = invoke("register", event)
    assert result["statusCode"] == 201
    user = json_of(result)

    event = load_event("login")
    event["body"] = json.dumps({"username": name, "password": "pw-long-enough"})
    result = invoke("login", event)
    assert result["statusCode"] == 200 and json_of(result)["token_type"] == "Bearer"
    token = json_of(result)["access_token"]
    sid = jwt.decode(token, options={"verify_signature": False})["sid"]

    event = load_event("me")
    event["requestContext"]["authorizer"]["lambda"] = {"sub": str(user["id"]), "role": "user",
                                                       "name": name, "sid": sid}
    result = invoke("me", event)
    assert result["statusCode"] == 200 and json_of(result) == user


def test_sample_register_event_is_valid(stack: Any) -> None:
    """The committed sample registers alice once; a second run answers 409, never 5xx."""
    first = invoke("register", load_event("register"))["statusCode"]
    assert first in (201, 409)
    assert invoke("register", load_event("register"))["statusCode"] == 409


def test_unexpected_error_is_500_with_request_id(stack: Any, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from imagerepo import users

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database exploded: secret detail")

    monkeypatch.setattr(users, "authenticate", broken)
    result = invoke("login", load_event("login"))
    assert result["statusCode"] == 500
    body = json_of(result)
    assert body["error"]["code"] == "internal_error"
    assert body["error"]["requestId"] == load_event("login")["requestContext"]["requestId"]
    assert "secret detail" not in result["body"] and "Traceback" not in result["body"]
