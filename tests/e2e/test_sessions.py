"""Sessions and account management over HTTP through the local gateway: refresh rotation and
reuse detection, logout, password change, account deletion, administration of accounts.

Every revocation is checked on the very next request, while the gateway still holds the
authorizer's cached verdict for the token (300 s)."""

from __future__ import annotations

import hashlib
from typing import Any

import jwt
import pytest

from tests.e2e.conftest import Upload, make_jpeg
from tests.helpers import Api, assert_error, db, register_and_login, unique

pytestmark = pytest.mark.e2e

PASSWORD = "s3cret-passw0rd"


def _login(base_url: str, username: str, password: str = PASSWORD) -> Api:
    api = Api(base_url)
    r = api.post("/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    api.token, api.refresh_token = r.json()["access_token"], r.json()["refresh_token"]
    return api


def _session_of(api: Api) -> str:
    return str(jwt.decode(api.token or "", options={"verify_signature": False})["sid"])


def test_refresh_rotates_and_a_replay_ends_the_session(base_url: str) -> None:
    api, me = register_and_login(base_url)
    assert api.get("/me").status_code == 200  # the authorizer's verdict is now cached
    anon = api.anonymous()
    first = api.refresh_token
    r = anon.post("/token/refresh", json={"refresh_token": first})
    assert r.status_code == 200, r.text
    pair = r.json()
    assert set(pair) == {"access_token", "token_type", "expires_in", "refresh_token",
                         "refresh_expires_in"}
    assert pair["refresh_token"] != first and pair["access_token"] != api.token
    assert _session_of(Api(base_url, pair["access_token"])) == _session_of(api)
    fresh = Api(base_url, pair["access_token"])
    assert fresh.get("/me").json()["id"] == me["id"]

    # the used token is dead, and presenting it again ends the whole session
    assert_error(anon.post("/token/refresh", json={"refresh_token": first}), 401,
                 "refresh_token_reused")
    assert_error(anon.post("/token/refresh", json={"refresh_token": pair["refresh_token"]}), 401,
                 "invalid_refresh_token")
    assert_error(fresh.get("/me"), 401, "invalid_token")
    assert_error(api.get("/me"), 401, "invalid_token")


def test_a_raced_refresh_is_a_replay(base_url: str) -> None:
    """Two clients presenting one refresh token at once: one gets the new pair, the other a
    401, and the session ends for both (one of them is not the owner)."""
    from concurrent.futures import ThreadPoolExecutor

    api, _ = register_and_login(base_url)

    def use(_: int) -> int:
        return int(Api(base_url).post("/token/refresh",
                                      json={"refresh_token": api.refresh_token}).status_code)

    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(use, range(2))) == [200, 401]
    assert_error(api.get("/me"), 401, "invalid_token")


@pytest.mark.parametrize("body,status,code", [
    ({}, 400, "invalid_refresh_token_format"),
    ({"refresh_token": 5}, 400, "invalid_refresh_token_format"),
    ({"refresh_token": "x" * 129}, 400, "invalid_refresh_token_format"),
    ({"refresh_token": "not-a-token-we-issued"}, 401, "invalid_refresh_token"),
])
def test_refresh_bad_input(base_url: str, body: dict[str, Any], status: int, code: str) -> None:
    assert_error(Api(base_url).post("/token/refresh", json=body), status, code)


def test_logout_ends_the_session_at_once(base_url: str) -> None:
    api, me = register_and_login(base_url)
    other_session = _login(base_url, me["name"])
    assert api.get("/me").status_code == 200
    r = api.post("/logout")
    assert (r.status_code, r.content) == (204, b"")
    assert_error(api.get("/me"), 401, "invalid_token")  # though the authorizer's verdict is cached
    assert_error(api.anonymous().post("/token/refresh", json={"refresh_token": api.refresh_token}),
                 401, "invalid_refresh_token")
    assert other_session.get("/me").status_code == 200  # only that session ended
    # a public route with the dead token: 401 too, not silently anonymous
    assert_error(api.get("/images"), 401, "invalid_token")


def test_logout_with_a_refresh_token_ends_that_session_too(base_url: str) -> None:
    api, me = register_and_login(base_url)
    second = _login(base_url, me["name"])
    stranger, _ = register_and_login(base_url)
    r = api.post("/logout", json={"refresh_token": second.refresh_token})
    assert r.status_code == 204
    assert_error(second.get("/me"), 401, "invalid_token")
    # somebody else's refresh token is ignored, not revoked
    third = _login(base_url, me["name"])
    assert stranger.post("/logout", json={"refresh_token": third.refresh_token}).status_code == 204
    assert third.get("/me").status_code == 200
    assert api.anonymous().post("/logout").status_code == 401  # the gateway, before the authorizer


def test_password_change_ends_every_other_session(base_url: str) -> None:
    api, me = register_and_login(base_url)
    other = _login(base_url, me["name"])
    assert other.get("/me").status_code == 200
    assert_error(api.put("/me/password", json={"currentPassword": "not it at all",
                                               "newPassword": "a brand new passphrase"}),
                 403, "wrong_password")
    assert_error(api.put("/me/password", json={"currentPassword": PASSWORD,
                                               "newPassword": "Password1"}), 400, "common_password")
    assert_error(api.put("/me/password", json={"currentPassword": PASSWORD, "newPassword": "short"}),
                 400, "invalid_password")
    r = api.put("/me/password", json={"currentPassword": PASSWORD,
                                      "newPassword": "a brand new passphrase"})
    assert (r.status_code, r.content) == (204, b"")
    assert api.get("/me").status_code == 200  # this session goes on
    assert_error(other.get("/me"), 401, "invalid_token")
    assert_error(other.anonymous().post("/token/refresh", json={"refresh_token": other.refresh_token}),
                 401, "invalid_refresh_token")
    assert_error(Api(base_url).post("/login", json={"username": me["name"], "password": PASSWORD}),
                 401, "invalid_credentials")
    _login(base_url, me["name"], "a brand new passphrase")


def _refcount(sha: str) -> int | None:
    rows = db("SELECT refcount FROM blobs WHERE sha256 = :s", s=sha)
    return int(rows[0][0]) if rows else None


def _bucket_keys(stack: Any) -> set[str]:
    s3 = stack.s3.client()
    keys: set[str] = set()
    for prefix in ("chunks/", "manifests/", "incoming/"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.s3_bucket,
                                                                 Prefix=prefix):
            keys.update(o["Key"] for o in page.get("Contents", []))
    return keys


def test_delete_account_releases_its_images(stack: Any, base_url: str, upload: Upload,
                                            other: tuple[Api, dict[str, Any]]) -> None:
    api, me = register_and_login(base_url)
    shared = make_jpeg(40, 30)
    own = make_jpeg(50, 30)
    sha_shared, sha_own = hashlib.sha256(shared).hexdigest(), hashlib.sha256(own).hexdigest()
    theirs = upload(other[0], shared)
    upload(api, shared)
    upload(api, shared, isPrivate=1)
    upload(api, own)
    before_shared, before_own = _refcount(sha_shared), _refcount(sha_own)
    assert before_shared is not None and before_own is not None
    second = _login(base_url, me["name"])

    assert_error(api.delete("/me", json={"password": "wrong password!"}), 403, "wrong_password")
    assert_error(api.delete("/me", json={}), 400)
    r = api.delete("/me", json={"password": PASSWORD})
    assert (r.status_code, r.content) == (204, b"")

    # references released exactly as three image deletes would
    assert _refcount(sha_shared) == before_shared - 2
    assert _refcount(sha_own) == before_own - 1
    assert db("SELECT count(*) FROM images WHERE owner_id = :u", u=me["id"]) == [[0]]
    assert db("SELECT count(*) FROM sessions WHERE user_id = :u", u=me["id"]) == [[0]]
    # the other user's copy of the shared file is untouched
    assert other[0].get(f"/images/{theirs['id']}").content == shared
    # every token of the account is dead: 401, never 500, and nothing is stored
    chunk_rows, objects = db("SELECT count(*) FROM chunks"), _bucket_keys(stack)
    for session in (api, second):
        assert_error(session.get("/me"), 401, "invalid_token")
        r = session.post("/images", files={"file": ("x.jpg", make_jpeg(), "image/jpeg")})
        assert_error(r, 401, "invalid_token")
        assert_error(session.post("/uploads", json={"fileName": "a.jpg", "contentType": "image/jpeg",
                                                    "size": 10}), 401, "invalid_token")
    assert db("SELECT count(*) FROM chunks") == chunk_rows
    assert _bucket_keys(stack) - objects == set()
    assert_error(Api(base_url).post("/login", json={"username": me["name"], "password": PASSWORD}),
                 401, "invalid_credentials")


def test_admin_lists_accounts(admin: Api, base_url: str, upload: Upload) -> None:
    api, me = register_and_login(base_url)
    upload(api)
    upload(api, isPrivate=1)
    total = int(db("SELECT count(*) FROM users")[0][0])
    last = (total + 99) // 100  # ordered by id: the newest account is on the last page
    r = admin.get("/admin/users", params={"page": last, "pageSize": 100})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == total and body["page"] == last and body["pageSize"] == 100
    row = next(u for u in body["items"] if u["id"] == me["id"])
    assert row == {"id": me["id"], "name": me["name"], "email": me["email"], "role": "user",
                   "disabled": False, "createdAt": row["createdAt"], "imageCount": 2}
    pages = (total + 1) // 2
    r = admin.get("/admin/users", params={"page": pages + 1, "pageSize": 2})
    assert r.json()["items"] == [] and r.json()["totalPages"] == pages
    for params in ({"page": 0}, {"pageSize": 101}, {"page": "x"}):
        assert_error(admin.get("/admin/users", params=params), 400, "invalid_paging")
    assert_error(api.get("/admin/users"), 403, "admin_only")


def test_demotion_and_disable_take_effect_on_the_next_request(admin: Api, base_url: str) -> None:
    api, me = register_and_login(base_url)
    r = admin.patch(f"/admin/users/{me['id']}", json={"role": "admin"})
    assert r.status_code == 200 and r.json()["role"] == "admin"
    assert api.get("/admin/stats").status_code == 200  # the token still says "user"
    r = admin.patch(f"/admin/users/{me['id']}", json={"role": "user"})
    assert (r.status_code, r.json()["role"]) == (200, "user")
    assert_error(api.get("/admin/stats"), 403, "admin_only")  # the token said "admin" a moment ago

    r = admin.patch(f"/admin/users/{me['id']}", json={"disabled": True})
    assert (r.status_code, r.json()["disabled"]) == (200, True)
    assert_error(api.get("/me"), 403, "account_disabled")
    assert_error(Api(base_url).post("/login", json={"username": me["name"], "password": PASSWORD}),
                 403, "account_disabled")
    assert_error(Api(base_url).post("/login", json={"username": me["name"], "password": "wrong one!"}),
                 401, "invalid_credentials")  # a wrong password does not learn the account's state
    assert_error(api.anonymous().post("/token/refresh", json={"refresh_token": api.refresh_token}),
                 401)
    r = admin.patch(f"/admin/users/{me['id']}", json={"disabled": False})
    assert r.json()["disabled"] is False
    assert_error(api.get("/me"), 401, "invalid_token")  # disabling ended the old sessions
    _login(base_url, me["name"])


@pytest.mark.parametrize("body,status,code", [
    ({"role": "root"}, 400, "invalid_field"),
    ({"disabled": "yes"}, 400, "invalid_field"),
    ({"name": "x"}, 400, "unknown_fields"),
])
def test_admin_update_validation(admin: Api, base_url: str, body: dict[str, Any], status: int,
                                 code: str) -> None:
    _, me = register_and_login(base_url)
    assert_error(admin.patch(f"/admin/users/{me['id']}", json=body), status, code)


def test_admin_update_limits(admin: Api, base_url: str, user: tuple[Api, dict[str, Any]]) -> None:
    assert_error(admin.patch("/admin/users/999999999", json={"role": "user"}), 404, "user_not_found")
    mine = admin.get("/me").json()["id"]
    assert_error(admin.patch(f"/admin/users/{mine}", json={"role": "user"}), 409, "own_account")
    assert_error(admin.patch(f"/admin/users/{mine}", json={"disabled": True}), 409, "own_account")
    api, me = user
    assert_error(api.patch(f"/admin/users/{me['id']}", json={"role": "admin"}), 403, "admin_only")
    assert admin.patch(f"/admin/users/{me['id']}", json={}).json()["role"] == "user"


def test_register_refuses_common_passwords(base_url: str) -> None:
    name = unique("common")
    for password in ("12345678", "Password1", "QWERTYUIOP", "iloveyou"):
        r = Api(base_url).post("/register", json={"name": name, "email": f"{name}@example.com",
                                                  "password": password})
        assert_error(r, 400, "common_password")
    assert db("SELECT count(*) FROM users WHERE name = :n", n=name) == [[0]]


def test_functions_refuse_an_expired_token_whatever_the_authorizer_cached(stack: Any,
                                                                          base_url: str) -> None:
    """API Gateway may reuse an authorizer verdict for 300 s: the function checks ``exp``
    (passed on in the context) and the session itself."""
    import json
    import time

    from tests.helpers import load_event

    api, me = register_and_login(base_url)
    event = load_event("me")
    event["requestContext"]["authorizer"]["lambda"].update(
        {"sub": str(me["id"]), "sid": _session_of(api), "exp": int(time.time()) + 60})
    result = stack.runtime.invoke("MeFunction", event)
    assert result["statusCode"] == 200, result
    event["requestContext"]["authorizer"]["lambda"]["exp"] = int(time.time()) - 60
    result = stack.runtime.invoke("MeFunction", event)
    assert result["statusCode"] == 401
    assert json.loads(result["body"])["error"]["code"] == "invalid_token"
    # a context of another user's session is refused too
    _, stranger = register_and_login(base_url)
    event["requestContext"]["authorizer"]["lambda"].update(
        {"sub": str(stranger["id"]), "exp": int(time.time()) + 60})
    assert stack.runtime.invoke("MeFunction", event)["statusCode"] == 401
