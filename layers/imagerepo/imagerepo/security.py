"""Passwords, access tokens and access keys.

Passwords and access keys are hashed with scrypt (salted, memory-hard) and
compared in constant time. Tokens are HS256 JWTs with the claims the
authorizer requires.
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
REQUIRED_CLAIMS = ("sub", "role", "iat", "exp", "iss", "aud", "jti")


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


@dataclass(frozen=True)
class Principal:
    user_id: int
    role: str
    name: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def context(self) -> dict[str, Any]:
        """What the authorizer passes on in requestContext.authorizer.lambda."""
        return {"sub": str(self.user_id), "role": self.role, "name": self.name}

    @classmethod
    def from_context(cls, ctx: dict[str, Any]) -> Principal:
        return cls(user_id=int(ctx["sub"]), role=str(ctx["role"]), name=str(ctx.get("name", "")))


def issue_token(principal: Principal) -> tuple[str, int]:
    s = settings()
    now = int(time.time())
    claims = {
        "sub": str(principal.user_id),
        "role": principal.role,
        "name": principal.name,
        "iat": now,
        "exp": now + s.token_ttl_seconds,
        "iss": s.jwt_issuer,
        "aud": s.jwt_audience,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, s.jwt_secret, algorithm="HS256"), s.token_ttl_seconds


def decode_token(token: str) -> Principal:
    s = settings()
    try:
        claims = jwt.decode(
            token, s.jwt_secret, algorithms=["HS256"], audience=s.jwt_audience,
            issuer=s.jwt_issuer, options={"require": list(REQUIRED_CLAIMS)}, leeway=5,
        )
        return Principal(user_id=int(claims["sub"]), role=str(claims["role"]),
                         name=str(claims.get("name", "")))
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise Unauthorized("invalid or expired token", code="invalid_token") from exc


def parse_bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized("missing bearer token", code="invalid_token")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token or len(token) > 4096:
        raise Unauthorized("malformed Authorization header", code="invalid_token")
    return token
