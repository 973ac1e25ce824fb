"""Passwords, access tokens, refresh tokens and access keys.

Passwords and access keys are hashed with scrypt (salted, memory-hard) and
compared in constant time. Access tokens are HS256 JWTs with the claims the
authorizer requires, a ``kid`` naming the signing key and a ``sid`` naming the
session (checked against the database on every request, see ``users.current``).
Refresh tokens are opaque random strings stored as their SHA-256.

Key rotation: tokens are signed with the current key; the previous key still
verifies (selected by ``kid``), so a rotation logs nobody out and tokens signed
before it simply expire within one token lifetime.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from imagerepo.config import settings
from imagerepo.errors import Unauthorized

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _DKLEN = 2**14, 8, 1, 32
REQUIRED_CLAIMS = ("sub", "role", "iat", "exp", "iss", "aud", "jti", "sid")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P,
                            dklen=_DKLEN, maxmem=64 * 1024 * 1024)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                                p=int(p), dklen=len(expected), maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@functools.lru_cache(maxsize=1)
def dummy_hash() -> str:
    """Verified against for unknown users, so both failures cost the same time."""
    return hash_secret(secrets.token_urlsafe(16))


def generate_access_key() -> str:
    return secrets.token_urlsafe(18)


def refresh_token() -> tuple[str, bytes]:
    """A new opaque refresh token and the digest stored for it (256 random bits: SHA-256 suffices)."""
    token = secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class Principal:
    user_id: int
    role: str
    name: str
    session_id: str | None = None
    expires_at: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def context(self) -> dict[str, Any]:
        """What the authorizer passes on in requestContext.authorizer.lambda."""
        ctx: dict[str, Any] = {"sub": str(self.user_id), "role": self.role, "name": self.name}
        if self.session_id:
            ctx["sid"] = self.session_id
        if self.expires_at is not None:
            ctx["exp"] = self.expires_at
        return ctx

    @classmethod
    def from_context(cls, ctx: dict[str, Any]) -> Principal:
        exp = ctx.get("exp")
        return cls(user_id=int(ctx["sub"]), role=str(ctx["role"]), name=str(ctx.get("name", "")),
                   session_id=str(ctx["sid"]) if ctx.get("sid") else None,
                   expires_at=int(exp) if exp is not None else None)


@dataclass(frozen=True)
class KeyRing:
    """The key that signs new tokens, and every key that verifies one, by ``kid``."""

    signing_kid: str
    keys: dict[str, str]

    @property
    def signing_secret(self) -> str:
        return self.keys[self.signing_kid]


def key_id(secret: str) -> str:
    """A key's public name: a digest prefix, so the key itself never appears in a token."""
    return hashlib.sha256(b"imagerepo-jwt-kid:" + secret.encode()).hexdigest()[:16]


def key_ring(current: str, previous: str | None = None) -> KeyRing:
    """Sign with ``current``; verify with ``current`` or, during a rotation, ``previous``.

    The one place that decides which keys count (config re-reads the secrets; this
    only takes the two values it was given)."""
    if not current:
        raise RuntimeError("no JWT signing key is configured")
    keys = {key_id(current): current}
    if previous and previous != current:
        keys.setdefault(key_id(previous), previous)
    return KeyRing(signing_kid=key_id(current), keys=keys)


def _ring() -> KeyRing:
    s = settings()
    return key_ring(s.jwt_secret, s.jwt_previous_secret)


def issue_token(principal: Principal, session_id: str) -> tuple[str, int]:
    s = settings()
    ring = _ring()
    now = int(time.time())
    claims = {
        "sub": str(principal.user_id),
        "role": principal.role,
        "name": principal.name,
        "sid": session_id,
        "iat": now,
        "exp": now + s.token_ttl_seconds,
        "iss": s.jwt_issuer,
        "aud": s.jwt_audience,
        "jti": uuid.uuid4().hex,
    }
    token = jwt.encode(claims, ring.signing_secret, algorithm="HS256",
                       headers={"kid": ring.signing_kid})
    return token, s.token_ttl_seconds


def decode_token(token: str) -> Principal:
    s = settings()
    ring = _ring()
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        secret = ring.keys.get(kid) if isinstance(kid, str) else None
        if secret is None:
            raise jwt.InvalidKeyError("unknown or missing kid")
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], audience=s.jwt_audience,
            issuer=s.jwt_issuer, options={"require": list(REQUIRED_CLAIMS)}, leeway=5,
        )
        return Principal(user_id=int(claims["sub"]), role=str(claims["role"]),
                         name=str(claims.get("name", "")), session_id=str(claims["sid"]),
                         expires_at=int(claims["exp"]))
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError) as exc:
        raise Unauthorized("invalid or expired token", code="invalid_token") from exc


def parse_bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized("missing bearer token", code="invalid_token")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token or len(token) > 4096:
        raise Unauthorized("malformed Authorization header", code="invalid_token")
    return token
