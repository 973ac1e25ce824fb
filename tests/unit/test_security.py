"""Passwords, tokens and the authorizer, with no database."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from imagerepo import security
from imagerepo.config import settings
from imagerepo.errors import Unauthorized
from tests.helpers import invoke, load_event

SECRET = "unit-test-secret-with-enough-entropy-0123456789"
PREVIOUS = "the-key-before-the-last-rotation-0123456789abcdef"
SID = "6f1c1a52-8d1e-4a57-9d43-1f7d1c2b3a4e"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("JWT_ISSUER", "imagerepo")
    monkeypatch.setenv("JWT_AUDIENCE", "imagerepo-api")
    settings.cache_clear()
    yield
    settings.cache_clear()


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": "7", "role": "user", "name": "bob", "iat": now, "exp": now + 600,
              "iss": "imagerepo", "aud": "imagerepo-api", "jti": "abc", "sid": SID}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _token(claims: dict[str, Any], key: str = SECRET, alg: str = "HS256",
           kid: str | None = "auto") -> str:
    headers = {"kid": security.key_id(key) if kid == "auto" else kid} if kid else None
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def _alg_none(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def test_password_hash_is_salted_and_verifies() -> None:
    a, b = security.hash_secret("pw-123456"), security.hash_secret("pw-123456")
    assert a != b and a.startswith("scrypt$16384$8$1$")
    assert security.verify_secret("pw-123456", a)
    assert not security.verify_secret("pw-1234567", a)
    assert not security.verify_secret("pw-123456", "garbage")


def test_issued_token_has_required_claims() -> None:
    token, ttl = security.issue_token(security.Principal(3, "admin", "root"), SID)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="imagerepo-api")
    assert set(security.REQUIRED_CLAIMS) <= set(claims)
    assert claims["sub"] == "3" and claims["role"] == "admin" and claims["exp"] - claims["iat"] == ttl
    assert ttl == 900  # access tokens last 15 minutes by default
    assert jwt.get_unverified_header(token)["kid"] == security.key_id(SECRET)
    assert security.decode_token(token) == security.Principal(3, "admin", "root", session_id=SID,
                                                              expires_at=claims["exp"])


@pytest.mark.parametrize("token", [
    _token(_claims(), key="another-secret-another-secret-another-secret"),
    _alg_none(_claims()),
    _token(_claims(exp=int(time.time()) - 60)),
    _token(_claims(iss="someone-else")),
    _token(_claims(aud="another-api")),
    _token(_claims(jti=None)),
    _token(_claims(sub="not-a-number")),
    _token(_claims(sid=None)),
    _token(_claims(), kid=None),
    _token(_claims(), key="another-secret-another-secret-another-secret", kid=security.key_id(SECRET)),
    _token(_claims(), key=PREVIOUS),
    "not.a.jwt",
    "",
], ids=["bad-signature", "alg-none", "expired", "wrong-iss", "wrong-aud", "missing-jti",
        "bad-sub", "missing-sid", "missing-kid", "forged-kid", "previous-key-not-configured",
        "garbage", "empty"])
def test_decode_refuses(token: str) -> None:
    with pytest.raises(Unauthorized):
        security.decode_token(token)


@pytest.mark.parametrize("header", ["", "Basic abc", "Bearer", "Bearer a b", "token"])
def test_malformed_authorization_header(header: str) -> None:
    with pytest.raises(Unauthorized):
        security.parse_bearer(header)


def test_authorizer_allows_valid_token_with_context() -> None:
    event = load_event("authorizer")
    claims = _claims()
    token = _token(claims)
    event["headers"]["authorization"] = f"Bearer {token}"
    event["identitySource"] = [f"Bearer {token}"]
    assert invoke("authorizer", event) == {
        "isAuthorized": True, "context": {"sub": "7", "role": "user", "name": "bob", "sid": SID,
                                          "exp": claims["exp"]}}


@pytest.mark.parametrize("header", [
    f"Bearer {_token(_claims(), key='wrong-key-wrong-key-wrong-key-wrong-key')}",
    f"Bearer {_alg_none(_claims())}",
    f"Bearer {_token(_claims(exp=int(time.time()) - 60))}",
    f"Bearer {_token(_claims(iss='x'))}",
    f"Bearer {_token(_claims(aud='x'))}",
    "Bearer",
    "Basic dXNlcjpwYXNz",
])
def test_authorizer_denies(header: str) -> None:
    event = load_event("authorizer")
    event["headers"]["authorization"] = header
    assert invoke("authorizer", event) == {"isAuthorized": False}


def test_sample_authorizer_event_is_denied() -> None:
    """tests/events/authorizer.json carries a placeholder token: `sam local invoke` gets a denial."""
    assert invoke("authorizer", load_event("authorizer")) == {"isAuthorized": False}


def test_key_ring_signs_with_the_current_key_and_verifies_both() -> None:
    ring = security.key_ring(SECRET, PREVIOUS)
    assert ring.signing_kid == security.key_id(SECRET) and ring.signing_secret == SECRET
    assert ring.keys == {security.key_id(SECRET): SECRET, security.key_id(PREVIOUS): PREVIOUS}
    assert security.key_ring(SECRET, SECRET).keys == {security.key_id(SECRET): SECRET}
    assert security.key_ring(SECRET).keys == {security.key_id(SECRET): SECRET}
    assert SECRET not in security.key_id(SECRET) and len(security.key_id(SECRET)) == 16
    with pytest.raises(RuntimeError):
        security.key_ring("")


def test_rotation_keeps_tokens_of_the_previous_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a rotation, tokens signed with the old key stay valid until they expire (one
    token lifetime); new tokens carry the new kid; a key two rotations old is refused."""
    old_token = _token(_claims(), key=PREVIOUS)
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("JWT_PREVIOUS_SECRET", PREVIOUS)
    settings.cache_clear()
    assert security.decode_token(old_token).session_id == SID
    new_token, _ = security.issue_token(security.Principal(7, "user", "bob"), SID)
    assert jwt.get_unverified_header(new_token)["kid"] == security.key_id(SECRET)
    with pytest.raises(Unauthorized):
        security.decode_token(_token(_claims(exp=int(time.time()) - 60), key=PREVIOUS))
    monkeypatch.setenv("JWT_SECRET", "a-third-key-after-another-rotation-0123456789")
    monkeypatch.setenv("JWT_PREVIOUS_SECRET", SECRET)
    settings.cache_clear()
    with pytest.raises(Unauthorized):
        security.decode_token(old_token)
    assert security.decode_token(new_token).user_id == 7


def test_refresh_tokens_are_random_and_stored_as_digests() -> None:
    token, digest = security.refresh_token()
    other, _ = security.refresh_token()
    assert token != other and len(token) >= 43
    assert digest == security.token_digest(token) and len(digest) == 32
    security.token_digest("\ud800")  # a lone surrogate from JSON does not raise
