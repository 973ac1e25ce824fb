"""Accounts over HTTP through the local gateway serving template.yaml."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from tests.helpers import Api, register_and_login, unique
from tests.helpers import assert_error as _error

pytestmark = pytest.mark.e2e



def test_health(base_url: str) -> None:
    r = Api(base_url).get("/health")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


def test_register_login_me(base_url: str) -> None:
    api = Api(base_url)
    name = unique("alice")
    r = api.post("/register", json={"name": name, "email": f"{name.upper()}@Example.com",
                                    "password": "a long passphrase"})
    assert r.status_code == 201
    user = r.json()
    assert user == {"id": user["id"], "name": name, "email": f"{name}@example.com", "role": "user"}
    assert "password" not in r.text
    for username in (name, f"{name}@example.com", name.upper()):
        r = api.post("/login", json={"username": username, "password": "a long passphrase"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] == 900
        assert body["refresh_expires_in"] == 30 * 24 * 3600
        assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token",
                             "refresh_expires_in"}
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == str(user["id"]) and claims["role"] == "user"
    assert {"iat", "exp", "iss", "aud", "jti", "sid"} <= set(claims)
    assert jwt.get_unverified_header(body["access_token"])["kid"]
    api.token = body["access_token"]
    r = api.get("/me")
    assert (r.status_code, r.json()) == (200, user)


def test_register_conflicts(base_url: str) -> None:
    api, user = register_and_login(base_url)
    r = api.post("/register", json={"name": user["name"].upper(), "email": "other-" + user["email"],
                                    "password": "another passphrase"})
    _error(r, 409, "name_taken")
    r = api.post("/register", json={"name": unique("other"), "email": user["email"].upper(),
                                    "password": "another passphrase"})
    _error(r, 409, "email_taken")


@pytest.mark.parametrize("body,code", [
    ({"email": "x@example.com", "password": "long enough pw"}, "invalid_name"),
    ({"name": "has@sign", "email": "x@example.com", "password": "long enough pw"}, "invalid_name"),
    ({"name": "n" * 65, "email": "x@example.com", "password": "long enough pw"}, "invalid_name"),
    ({"name": "okname", "email": "not-an-email", "password": "long enough pw"}, "invalid_email"),
    ({"name": "okname", "email": "x@example.com", "password": "short"}, "invalid_password"),
    ({"name": "okname", "email": "x@example.com", "password": "p" * 300}, "invalid_password"),
    ({"name": "okname", "email": "x@example.com", "password": 12345678}, "invalid_password"),
])
def test_register_invalid(base_url: str, body: dict[str, Any], code: str) -> None:
    _error(Api(base_url).post("/register", json=body), 400, code)


def test_register_bad_json(base_url: str) -> None:
    api = Api(base_url)
    _error(api.post("/register", data="{nope", headers={"Content-Type": "application/json"}),
           400, "invalid_json")
    _error(api.post("/register", json=["a", "list"]), 400, "invalid_json")


def test_login_failures_look_the_same(base_url: str) -> None:
    _, user = register_and_login(base_url)
    anon = Api(base_url)
    bodies = {}
    for case, username in (("wrong-password", user["name"]), ("unknown-user", unique("ghost"))):
        r = anon.post("/login", json={"username": username, "password": "wrong passphrase"})
        assert r.status_code == 401
        bodies[case] = r.json()
    assert bodies["wrong-password"] == bodies["unknown-user"]
    assert bodies["unknown-user"]["error"]["code"] == "invalid_credentials"
    _error(anon.post("/login", json={"username": user["name"]}), 400)


def test_me_requires_token_and_rejects_bad_ones(base_url: str) -> None:
    anon = Api(base_url)
    r = anon.get("/me")
    assert (r.status_code, r.json()) == (401, {"message": "Unauthorized"})
    api, _ = register_and_login(base_url)
    claims = jwt.decode(api.token or "", options={"verify_signature": False})
    forged = jwt.encode({**claims, "role": "admin"}, "not-the-secret-not-the-secret-not-the", "HS256")
    expired = jwt.encode({**claims, "exp": int(time.time()) - 100}, "x" * 40, "HS256")
    for header in (f"Bearer {forged}", f"Bearer {expired}", "Bearer not-a-token", "Basic abc",
                   f"Bearer {api.token}x"):
        r = anon.get("/me", headers={"Authorization": header})
        assert (r.status_code, r.json()) == (403, {"message": "Forbidden"}), header


def test_admin_bootstrap_is_idempotent(stack: Any) -> None:
    from imagerepo.users import authenticate, ensure_admin

    email = f"{unique('root')}@example.com"
    first = ensure_admin(email, "first admin password")
    second = ensure_admin(email, "second admin password")
    assert first.id == second.id and second.role == "admin"
    assert authenticate(email, "second admin password").role == "admin"
