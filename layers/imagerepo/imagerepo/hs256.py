"""Import PyJWT without ``cryptography``, for processes that only handle HS256 tokens.

PyJWT imports ``cryptography`` when it is installed, for RSA, EC and EdDSA keys; loading
its Rust extension is most of the authorizer's cold start, and HS256 needs only the
standard library's ``hmac``. Importing this module first (the authorizer does) makes
PyJWT's own import see ``cryptography`` as absent, then puts it back, so any module
may still import ``cryptography`` itself afterwards. PyJWT then refuses asymmetric
algorithms in this process, which it never uses. Nothing happens if PyJWT or
``cryptography`` is already loaded.
"""

from __future__ import annotations

import sys


def _import_jwt_without_cryptography() -> None:
    if "jwt" in sys.modules or "cryptography" in sys.modules:
        return
    sys.modules["cryptography"] = None  # type: ignore[assignment]  # import now raises ModuleNotFoundError
    try:
        import jwt  # noqa: F401
    finally:
        del sys.modules["cryptography"]


_import_jwt_without_cryptography()
