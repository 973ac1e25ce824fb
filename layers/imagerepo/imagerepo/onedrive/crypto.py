"""Authenticated encryption of what is stored about a OneDrive connection.

A 256-bit key is derived from the configured secret with HKDF-SHA256 (one
``info`` label per purpose), and each record is sealed with AES-GCM under a
fresh random 96-bit nonce. The associated data binds a ciphertext to its row
(e.g. ``cache:<admin id>``), so a ciphertext copied to another row does not open.

Stored layout: ``version (1 byte) || nonce (12 bytes) || ciphertext+tag``.
"""

from __future__ import annotations

import functools
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = 1
_NONCE = 12
_SALT = b"imagerepo/onedrive"


class DecryptionError(Exception):
    """Wrong key, tampered data or a ciphertext moved to another row."""


@functools.lru_cache(maxsize=8)
def _key(secret: str, purpose: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=purpose.encode())
    return hkdf.derive(secret.encode())


def seal(secret: str, purpose: str, plaintext: bytes, associated: str) -> bytes:
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(_key(secret, purpose)).encrypt(nonce, plaintext, associated.encode())
    return bytes([VERSION]) + nonce + sealed


def open_sealed(secret: str, purpose: str, blob: bytes, associated: str) -> bytes:
    if len(blob) < 1 + _NONCE + 16 or blob[0] != VERSION:
        raise DecryptionError("unknown ciphertext format")
    nonce, sealed = blob[1:1 + _NONCE], blob[1 + _NONCE:]
    try:
        return AESGCM(_key(secret, purpose)).decrypt(nonce, sealed, associated.encode())
    except InvalidTag as exc:
        raise DecryptionError("ciphertext does not authenticate") from exc
