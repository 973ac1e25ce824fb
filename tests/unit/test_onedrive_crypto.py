"""Token-cache encryption: HKDF-derived AES-GCM keys, random nonces, row binding."""

from __future__ import annotations

import pytest

from imagerepo.onedrive import crypto

SECRET = "a-long-local-secret-for-tests-0123456789"


def test_round_trip() -> None:
    plain = b'{"RefreshToken": {"secret": "rt-abc"}}'
    sealed = crypto.seal(SECRET, "cache", plain, "cache:7")
    assert plain not in sealed and b"rt-abc" not in sealed
    assert crypto.open_sealed(SECRET, "cache", sealed, "cache:7") == plain


def test_each_record_has_its_own_nonce() -> None:
    a = crypto.seal(SECRET, "cache", b"same", "cache:1")
    b = crypto.seal(SECRET, "cache", b"same", "cache:1")
    assert a != b and a[1:13] != b[1:13]


@pytest.mark.parametrize(("secret", "purpose", "aad"), [
    ("another-secret-entirely-0123456789", "cache", "cache:7"),  # key changed
    (SECRET, "flow", "cache:7"),  # another purpose derives another key
    (SECRET, "cache", "cache:8"),  # copied to another admin's row
])
def test_wrong_key_purpose_or_row_does_not_open(secret: str, purpose: str, aad: str) -> None:
    sealed = crypto.seal(SECRET, "cache", b"tokens", "cache:7")
    with pytest.raises(crypto.DecryptionError):
        crypto.open_sealed(secret, purpose, sealed, aad)


def test_tampering_is_detected() -> None:
    sealed = bytearray(crypto.seal(SECRET, "cache", b"tokens", "cache:7"))
    sealed[-1] ^= 1
    with pytest.raises(crypto.DecryptionError):
        crypto.open_sealed(SECRET, "cache", bytes(sealed), "cache:7")
    with pytest.raises(crypto.DecryptionError):
        crypto.open_sealed(SECRET, "cache", b"\x02" + bytes(sealed[1:]), "cache:7")
    with pytest.raises(crypto.DecryptionError):
        crypto.open_sealed(SECRET, "cache", b"short", "cache:7")
