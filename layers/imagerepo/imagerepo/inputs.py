"""Text and number checks applied once, at the edge, to every client-supplied string.

Every string that reaches the domain (JSON values and keys, multipart fields,
query and path parameters) is valid Unicode with no lone surrogate, no NUL and
no other C0 control or DEL except tab, newline and carriage return (which only
descriptions keep: names and keys reject any control character). Numbers are
ASCII digits only (``str.isdigit`` accepts ``²``); ids are 1..2**63-1 (a Postgres
bigint). JSON bodies are UTF-8 objects at most :data:`MAX_JSON_DEPTH` deep, their
depth checked before parsing so that 30,000 ``[`` cost a scan, not a RecursionError.

Knows nothing of HTTP: it raises :class:`BadRequest` with a stable code.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any

from imagerepo.errors import BadRequest

MAX_JSON_DEPTH = 32
MAX_PARAM_CHARS = 2048  # one query or path parameter
MAX_JSON_STRING = 64 * 1024
MAX_ID = 2**63 - 1

_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_DIGITS = re.compile(r"[0-9]{1,19}")


def check_text(value: str, field: str, *, max_chars: int | None = None) -> str:
    """``value`` unchanged if it is clean text (tab, CR and LF allowed); else 400 ``invalid_text``."""
    bad = _FORBIDDEN.search(value)
    if bad is not None:
        kind = "a lone surrogate" if "\ud800" <= bad.group() <= "\udfff" else (
            f"the control character U+{ord(bad.group()):04X}")
        raise BadRequest(f"{field} contains {kind}", code="invalid_text")
    if max_chars is not None and len(value) > max_chars:
        raise BadRequest(f"{field} is longer than {max_chars} characters", code="too_long")
    return value


def decode_utf8(data: bytes, field: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{field} is not valid UTF-8", code="invalid_encoding") from exc


def parse_int(raw: str | None, field: str, *, low: int, high: int, code: str) -> int | None:
    """``None`` for absent/empty; ASCII digits within ``low..high``; else 400 ``code``."""
    if raw is None or raw == "":
        return None
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise BadRequest(f"{field} must be an integer from {low} to {high}", code=code)
    return int(raw)


def parse_id(raw: Any, field: str, *, code: str = "invalid_id") -> int:
    """A row id from a JSON number or a string of ASCII digits: 1..2**63-1."""
    if isinstance(raw, int) and not isinstance(raw, bool) and 1 <= raw <= MAX_ID:
        return raw
    if isinstance(raw, str) and _DIGITS.fullmatch(raw) and 1 <= int(raw) <= MAX_ID:
        return int(raw)
    raise BadRequest(f"{field} must be an integer from 1 to {MAX_ID}", code=code)


def json_depth_ok(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when no array/object nests deeper than ``limit`` (strings are skipped)."""
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def _check_strings(value: Any, where: str) -> None:
    if isinstance(value, str):
        check_text(value, where, max_chars=MAX_JSON_STRING)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, f"a key in {where}", max_chars=256)
            _check_strings(item, key)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item, where)


def parse_json_object(data: bytes, *, max_bytes: int) -> dict[str, Any]:
    """A UTF-8 JSON object of at most ``max_bytes``, ``MAX_JSON_DEPTH`` deep, with clean strings."""
    if len(data) > max_bytes:
        raise BadRequest(f"JSON body over {max_bytes} bytes", code="body_too_large")
    text = decode_utf8(data, "the JSON body")
    if not json_depth_ok(text):
        raise BadRequest(f"JSON nested deeper than {MAX_JSON_DEPTH} levels", code="invalid_json")
    try:
        body = json.loads(text) if text.strip() else None
    except (ValueError, RecursionError) as exc:
        raise BadRequest("body is not valid JSON", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object", code="invalid_json")
    _check_strings(body, "the JSON body")
    return body


def check_params(params: dict[str, str] | None, kind: str, *, percent_encoded: bool = False) -> None:
    """Every query or path parameter: clean text without any control character, bounded.

    ``percent_encoded``: the values may still be percent-encoded (path parameters are
    cut from the raw path), so their decoded form is checked too."""
    for name, value in (params or {}).items():
        if percent_encoded and "%" in value:
            try:
                decoded = urllib.parse.unquote(value, errors="strict")
            except UnicodeDecodeError as exc:
                raise BadRequest(f"{kind} parameter {name!r} is not valid UTF-8",
                                 code="invalid_encoding") from exc
            check_params({name: decoded}, kind)
        check_text(name, f"a {kind} parameter name", max_chars=256)
        check_text(value, f"{kind} parameter {name!r}", max_chars=MAX_PARAM_CHARS)
        if any(ch in value for ch in "\t\r\n"):
            raise BadRequest(f"{kind} parameter {name!r} contains a control character",
                             code="invalid_text")
