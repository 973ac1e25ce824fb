"""The web gallery's files (``web/``) on the API's origin, as CloudFront serves them on AWS.

The gateway calls :func:`serve` only for requests that no API route answers. It serves:
- files under the web root, resolved safely (no ``..``, no symlink out of the root, no
  dot-files), with their content type and an ETag (``If-None-Match`` → 304);
- ``/`` and a directory that holds an ``index.html`` as that file; never a listing;
- ``index.html`` for the single-page app's client routes (``/image/12``, ``/mine``…):
  a GET or HEAD whose ``Accept`` takes ``text/html``, whose path has no file extension
  and matches no API route under any method (those keep the API's 404, as on AWS where
  CloudFront sends the API's paths to API Gateway).
Everything else is ``None``: the gateway answers its usual 404.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

WEB_ROOT = Path(os.environ.get("IMAGEREPO_WEB_DIR") or Path(__file__).resolve().parents[1] / "web")

_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json", ".svg": "image/svg+xml", ".png": "image/png",
    ".ico": "image/x-icon", ".webp": "image/webp", ".jpg": "image/jpeg", ".txt": "text/plain; charset=utf-8",
    ".webmanifest": "application/manifest+json",
}
# The same policy as the CloudFront response headers policy in template.yaml.
SECURITY_HEADERS = [
    ("content-security-policy", "default-src 'self'; script-src 'self'; style-src 'self'; "
     "img-src 'self' blob: data:; connect-src 'self' http: https:; object-src 'none'; "
     "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
]
MAX_FILE_BYTES = 5 * 1024 * 1024


@dataclass
class StaticReply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def resolve(root: Path, url_path: str) -> Path | None:
    """The file under ``root`` that ``url_path`` names, or None (outside, hidden, missing)."""
    parts = [p for p in unquote(url_path).split("/") if p]
    if any(p in ("..", ".") or p.startswith(".") or "\\" in p or "\x00" in p for p in parts):
        return None
    root = root.resolve()
    candidate = root.joinpath(*parts)
    if candidate.is_dir():
        candidate = candidate / "index.html"
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_relative_to(root) or not real.is_file():
        return None
    return real


def content_type(path: Path) -> str:
    return _TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _accepts_html(headers: Iterable[tuple[str, str]]) -> bool:
    accept = ",".join(v for k, v in headers if k.lower() == "accept")
    return "text/html" in accept.lower()


def _header(headers: Iterable[tuple[str, str]], name: str) -> str:
    return next((v for k, v in headers if k.lower() == name), "")


def _file_reply(path: Path, headers: Iterable[tuple[str, str]]) -> StaticReply:
    stat = path.stat()
    if stat.st_size > MAX_FILE_BYTES:
        return StaticReply(404, [("content-type", "application/json")], b'{"message":"Not Found"}')
    body = path.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    out = [("content-type", content_type(path)), ("etag", etag),
           ("cache-control", "no-cache"), *SECURITY_HEADERS]
    if etag in [t.strip() for t in _header(headers, "if-none-match").split(",")]:
        return StaticReply(304, out)
    return StaticReply(200, out, body)


def serve(method: str, target: str, headers: Iterable[tuple[str, str]], routes: Iterable[Any],
          root: Path | None = None) -> StaticReply | None:
    """The static answer for a request no API route matched, or None for the gateway's 404.

    ``routes`` are the template's routes (anything with a compiled ``regex``): a path that
    one of them matches under another method is the API's, never the app's.
    """
    if method not in ("GET", "HEAD"):
        return None
    root = root or WEB_ROOT
    if not root.is_dir():
        return None
    headers = list(headers)
    path = urlsplit(target).path or "/"
    found = resolve(root, path)
    if found is not None:
        return _file_reply(found, headers)
    last = path.rstrip("/").rsplit("/", 1)[-1]
    if "." in last or not _accepts_html(headers):
        return None
    if any(route.regex.match(path) for route in routes):
        return None
    index = resolve(root, "/index.html")
    return _file_reply(index, headers) if index is not None else None
