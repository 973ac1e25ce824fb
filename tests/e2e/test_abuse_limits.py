"""Abuse limits over HTTP with the shipped defaults: failed logins per account (10 in 15
minutes) and per source address (100), wrong access keys per image and source (20),
owner-chosen access keys of 8+ characters, the storage quota per user (10 GiB).

Per-source tests connect from their own loopback address (127.0.0.x), which the gateway
reports as ``sourceIp``, so they never count against the rest of the suite."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.e2e.conftest import Upload, make_jpeg
from tests.helpers import Api, assert_error, db, register_and_login, unique

pytestmark = pytest.mark.e2e

PASSWORD = "s3cret-passw0rd"
_sources = itertools.count(20)


def _source() -> str:
    return f"127.0.0.{next(_sources)}"


def _retry_after(r: Any, window: int = 900) -> int:
    value = int(r.headers["Retry-After"])
    assert 1 <= value <= window, value
    return value


def _login(api: Api, username: str, password: str) -> Any:
    return api.post("/login", json={"username": username, "password": password})


def test_failed_logins_lock_the_account_even_for_the_right_password(base_url: str) -> None:
    _, me = register_and_login(base_url)
    api = Api(base_url, source=_source())
    for _ in range(10):
        assert_error(_login(api, me["name"], "wrong passphrase"), 401, "invalid_credentials")
    # the 11th attempt is refused before the password is looked at: right or wrong
    for username, password in ((me["name"], PASSWORD), (me["email"], PASSWORD),
                               (me["name"], "wrong passphrase")):
        r = _login(api, username, password)
        assert_error(r, 429, "login_throttled")
        _retry_after(r)
    # from another address too: the limit is the account's
    assert_error(_login(Api(base_url, source=_source()), me["name"], PASSWORD), 429, "login_throttled")
    # refused attempts are not counted; once the window has passed (aged here) it works again
    assert db("SELECT count(*) FROM auth_failures WHERE scope = 'login_account' AND subject = :s",
              s=f"user:{me['id']}") == [[10]]
    db("UPDATE auth_failures SET at = at - interval '15 minutes' WHERE subject = :s",
       s=f"user:{me['id']}")
    assert _login(api, me["name"], PASSWORD).status_code == 200


def test_parallel_guesses_cannot_slip_past_the_account_limit(base_url: str) -> None:
    """Count and insert are one locked step: of 24 simultaneous wrong guesses exactly 10 are
    looked at (401), the rest refused (429)."""
    from concurrent.futures import ThreadPoolExecutor

    _, me = register_and_login(base_url)
    source = _source()

    def guess(n: int) -> int:
        return int(_login(Api(base_url, source=source), me["name"], f"wrong passphrase {n}").status_code)

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(guess, range(24)))
    assert statuses == [401] * 10 + [429] * 14


def test_unknown_accounts_are_throttled_alike(base_url: str) -> None:
    api = Api(base_url, source=_source())
    ghost = unique("ghost")
    for _ in range(10):
        assert_error(_login(api, ghost, "wrong passphrase"), 401, "invalid_credentials")
    assert_error(_login(api, ghost, "wrong passphrase"), 429, "login_throttled")
    # what was typed as a name is not stored (it is often a password typed in the wrong field)
    assert db("SELECT count(*) FROM auth_failures WHERE strpos(subject, :g) > 0", g=ghost) == [[0]]


def test_failed_logins_are_limited_per_source_address(base_url: str) -> None:
    _, me = register_and_login(base_url)
    api = Api(base_url, source=_source())
    # successes are never counted
    for _ in range(3):
        assert _login(api, me["name"], PASSWORD).status_code == 200
    for _ in range(100):  # a spray: one guess per account, so no account limit is reached
        assert_error(_login(api, unique("spray"), "wrong passphrase"), 401, "invalid_credentials")
    r = _login(api, me["name"], PASSWORD)
    assert_error(r, 429, "login_throttled")
    _retry_after(r)
    # other addresses, and the account itself, are not affected
    assert _login(Api(base_url, source=_source()), me["name"], PASSWORD).status_code == 200
    assert db("SELECT count(*) FROM auth_failures WHERE scope = 'login_source' AND subject = :s",
              s=api.source) == [[100]]


def test_wrong_access_keys_are_limited_per_image_and_source(base_url: str, upload: Upload) -> None:
    owner, _ = register_and_login(base_url)
    image = upload(owner, isPrivate=1, accessKey="right-key-123")
    other_image = upload(owner, isPrivate=1, accessKey="right-key-123")
    path = f"/images/{image['id']}"
    guesser = Api(base_url, source=_source())
    for n in range(20):
        route = ("", "/info", "/thumbnail")[n % 3]  # every read route counts
        assert_error(guesser.get(path + route, params={"accessKey": f"guess-{n:04d}"}), 403,
                     "private_image")
    r = guesser.get(path + "/info", params={"accessKey": "right-key-123"})
    assert_error(r, 429, "access_key_throttled")
    _retry_after(r)
    assert_error(guesser.get(path, params={"accesskey": "another-guess"}), 429, "access_key_throttled")
    # another image, another address, the owner: not limited
    assert guesser.get(f"/images/{other_image['id']}/info",
                       params={"accessKey": "right-key-123"}).status_code == 200
    assert Api(base_url, source=_source()).get(path + "/info",
                                               params={"accessKey": "right-key-123"}).status_code == 200
    assert owner.get(path + "/info").status_code == 200


def test_right_access_keys_are_never_counted(base_url: str, upload: Upload) -> None:
    owner, _ = register_and_login(base_url)
    image = upload(owner, isPrivate=1, accessKey="right-key-456")
    reader = Api(base_url, source=_source())
    for _ in range(25):
        assert reader.get(f"/images/{image['id']}/info",
                          params={"accessKey": "right-key-456"}).status_code == 200


@pytest.mark.parametrize("key", ["abc", "seven77", "has space", "x" * 129])
def test_owner_chosen_access_keys_need_eight_characters(base_url: str, upload: Upload,
                                                        key: str) -> None:
    owner, _ = register_and_login(base_url)
    r = owner.post("/images", files={"file": ("a.jpg", make_jpeg(), "image/jpeg")},
                   data={"isPrivate": "1", "accessKey": key})
    assert_error(r, 400, "invalid_access_key")
    image = upload(owner, isPrivate=1)
    assert_error(owner.put(f"/images/{image['id']}", json={"accessKey": key}), 400,
                 "invalid_access_key")
    assert_error(owner.post("/uploads", json={"fileName": "a.jpg", "contentType": "image/jpeg",
                                              "size": 100, "accessKey": key}),
                 400, "invalid_access_key")
    assert upload(owner, isPrivate=1, accessKey="eight888")["accessKey"] == "eight888"


def test_storage_quota_per_user(base_url: str, upload: Upload) -> None:
    api, me = register_and_login(base_url)
    first = upload(api)
    quota = 10 * 1024**3
    # make the account hold just under its 10 GiB quota (logical bytes)
    db("UPDATE images SET size = :s WHERE id = :i", s=quota - 1000, i=first["id"])
    before = db("SELECT count(*) FROM images WHERE owner_id = :u", u=me["id"])
    r = api.post("/images", files={"file": ("b.jpg", make_jpeg(64, 64), "image/jpeg")})
    error = assert_error(r, 403, "quota_exceeded")
    assert "quota" in error["message"]
    assert db("SELECT count(*) FROM images WHERE owner_id = :u", u=me["id"]) == before
    assert_error(api.post("/uploads", json={"fileName": "big.jpg", "contentType": "image/jpeg",
                                            "size": 5000}), 403, "quota_exceeded")
    assert api.post("/uploads", json={"fileName": "small.jpg", "contentType": "image/jpeg",
                                      "size": 900}).status_code == 201
    # another user is not affected; deleting frees the space
    other, _ = register_and_login(base_url)
    upload(other)
    assert api.delete(f"/images/{first['id']}").status_code == 204
    upload(api)
