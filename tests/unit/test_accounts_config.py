"""Account limits with no database: the shipped password list, the defaults of the abuse
limits and token lifetimes, and the template's API throttling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devstack.template import Template
from imagerepo import users
from imagerepo.config import settings
from imagerepo.errors import BadRequest

ROOT = Path(__file__).resolve().parents[2]


def test_the_common_password_list_ships_10000_lowercase_entries() -> None:
    lines = users.COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(set(lines)) == 10_000
    assert lines[:4] == ["123456", "123456789", "qwerty", "password"]
    assert all(line == line.lower() and line for line in lines)


@pytest.mark.parametrize("password", ["12345678", "password", "PassWord", "iloveyou", "qwertyuiop",
                                      "1q2w3e4r5t"])
def test_common_passwords_are_refused(password: str) -> None:
    with pytest.raises(BadRequest) as err:
        users.validate_password(password)
    assert err.value.code == "common_password"


@pytest.mark.parametrize("password,ok", [("short", False), ("x" * 257, False), (12345678, False),
                                         ("correct horse staple", True), ("s3cret-passw0rd", True)])
def test_length_rule(password: Any, ok: bool) -> None:
    if ok:
        assert users.validate_password(password) == password
    else:
        with pytest.raises(BadRequest):
            users.validate_password(password)


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TOKEN_TTL_SECONDS", "REFRESH_TTL_SECONDS", "LOGIN_ACCOUNT_MAX_FAILURES",
                 "LOGIN_SOURCE_MAX_FAILURES", "ACCESS_KEY_MAX_FAILURES", "FAILURE_WINDOW_SECONDS",
                 "USER_QUOTA_BYTES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JWT_SECRET", "x" * 40)
    settings.cache_clear()
    try:
        s = settings()
        assert (s.token_ttl_seconds, s.refresh_ttl_seconds) == (900, 30 * 24 * 3600)
        assert (s.login_account_max_failures, s.login_source_max_failures,
                s.access_key_max_failures, s.failure_window_seconds) == (10, 100, 20, 900)
        assert s.user_quota_bytes == 10 * 1024**3
    finally:
        settings.cache_clear()


def test_template_wires_the_limits_and_api_throttling() -> None:
    t = Template(ROOT / "template.yaml")
    env = t.globals["Environment"]["Variables"]
    params = t.data["Parameters"]
    for var, param, default in (
            ("TOKEN_TTL_SECONDS", "TokenTtlSeconds", 900),
            ("REFRESH_TTL_SECONDS", "RefreshTokenTtlSeconds", 2592000),
            ("LOGIN_ACCOUNT_MAX_FAILURES", "LoginAccountMaxFailures", 10),
            ("LOGIN_SOURCE_MAX_FAILURES", "LoginSourceMaxFailures", 100),
            ("ACCESS_KEY_MAX_FAILURES", "AccessKeyMaxFailures", 20),
            ("FAILURE_WINDOW_SECONDS", "FailureWindowSeconds", 900),
            ("USER_QUOTA_BYTES", "UserQuotaBytes", 10 * 1024**3)):
        assert env[var] == {"Ref": param}
        assert params[param]["Default"] == default
    api = t.data["Resources"]["HttpApi"]["Properties"]
    assert api["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"}}
    assert {"ApiThrottlingRateLimit", "ApiThrottlingBurstLimit"} <= set(params)
