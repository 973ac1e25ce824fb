"""Rotated secrets take effect without a redeploy: a TTL on settings, and at once on an auth failure."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from imagerepo import config, db

pytestmark = pytest.mark.integration


def _in_new_thread(fn: Any) -> Any:
    """Run ``fn`` on a fresh thread: db keeps one connection per thread, so this one connects anew."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def test_a_refused_password_is_re_read_at_once(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    good = config.settings().db_password
    assert good
    monkeypatch.setenv("SETTINGS_TTL_SECONDS", "3600")
    # The container cached the password before the rotation...
    monkeypatch.setenv("DB_PASSWORD", "the-password-before-rotation")
    config.settings.cache_clear()
    assert config.settings().db_password == "the-password-before-rotation"
    # ...then the secret rotated: the cached value is refused, re-read, and the connection works.
    monkeypatch.setenv("DB_PASSWORD", good)
    assert config.settings().db_password == "the-password-before-rotation"  # TTL not reached
    assert _in_new_thread(lambda: db.connection().run("SELECT current_user")) == [["imagerepo"]]
    assert config.settings().db_password == good
    _in_new_thread(db.discard_connection)


def test_a_wrong_password_still_fails_after_the_re_read(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import pg8000.exceptions

    monkeypatch.setenv("DB_PASSWORD", "not-the-password")
    config.settings.cache_clear()
    try:
        with pytest.raises(pg8000.exceptions.DatabaseError) as exc:
            _in_new_thread(db.connection)
        assert exc.value.args[0]["C"] == "28P01"
    finally:
        monkeypatch.undo()
        config.settings.cache_clear()


def test_settings_are_re_read_after_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SETTINGS_TTL_SECONDS", "3600")
    monkeypatch.setenv("JWT_SECRET", "key-one-0123456789abcdef")
    config.settings.cache_clear()
    try:
        assert config.settings().jwt_secret == "key-one-0123456789abcdef"
        monkeypatch.setenv("JWT_SECRET", "key-two-0123456789abcdef")
        monkeypatch.setenv("JWT_PREVIOUS_SECRET", "key-one-0123456789abcdef")
        assert config.settings().jwt_secret == "key-one-0123456789abcdef"  # cached
        monkeypatch.setenv("SETTINGS_TTL_SECONDS", "0")  # the TTL has passed
        assert config.settings().jwt_secret == "key-two-0123456789abcdef"
        assert config.settings().jwt_previous_secret == "key-one-0123456789abcdef"
    finally:
        monkeypatch.undo()
        config.settings.cache_clear()


def test_jwt_current_and_previous_keys_come_from_the_secret_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    from aws_lambda_powertools.utilities import parameters

    for var in ("JWT_SECRET", "JWT_PREVIOUS_SECRET", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with moto.mock_aws():
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        arn = sm.create_secret(Name="jwt", SecretString="first-key-0123456789")["ARN"]
        monkeypatch.setenv("JWT_SECRET_ARN", arn)
        parameters.clear_caches()
        config.settings.cache_clear()
        try:
            assert (config.settings().jwt_secret, config.settings().jwt_previous_secret) == \
                ("first-key-0123456789", None)
            sm.put_secret_value(SecretId=arn, SecretString="second-key-0123456789")  # a rotation
            config.refresh()
            assert (config.settings().jwt_secret, config.settings().jwt_previous_secret) == \
                ("second-key-0123456789", "first-key-0123456789")
        finally:
            monkeypatch.undo()
            parameters.clear_caches()
            config.settings.cache_clear()
