"""A strict multipart/form-data parser for bodies that are already in memory.

API Gateway hands the whole (base64-decoded) body to the function, so there is
nothing to stream; splitting on the CRLF-prefixed delimiter keeps file bytes exact.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from imagerepo import inputs
from imagerepo.errors import BadRequest

MAX_PARTS = 32
MAX_FIELD_BYTES = 16 * 1024
_BOUNDARY = re.compile(r'boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))', re.IGNORECASE)
_PARAM = re.compile(r';\s*([\w*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))')


@dataclass(frozen=True)
class FilePart:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Form:
    fields: dict[str, str]
    files: dict[str, FilePart]


def _params(header: str) -> dict[str, str]:
    out = {}
    for key, quoted, bare in _PARAM.findall(header):
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted else bare
        key = key.lower()
        if key.endswith("*"):  # RFC 5987: charset'lang'percent-encoded
            _, _, encoded = value.partition("'")
            _, _, encoded = encoded.partition("'")
            out[key[:-1]] = urllib.parse.unquote(encoded, errors="replace")
        else:
            out.setdefault(key, value)
    return out


def parse(body: bytes, content_type: str) -> Form:
    if not content_type.lower().startswith("multipart/form-data"):
        raise BadRequest("expected a multipart/form-data body", code="expected_multipart")
    m = _BOUNDARY.search(content_type)
    if not m:
        raise BadRequest("multipart body without a boundary", code="invalid_multipart")
    delimiter = b"\r\n--" + (m.group(1) or m.group(2)).encode("latin-1")
    pieces = (b"\r\n" + body).split(delimiter)
    if len(pieces) < 3 or not pieces[-1].startswith(b"--"):
        raise BadRequest("multipart body is truncated or malformed", code="invalid_multipart")
    if len(pieces) - 2 > MAX_PARTS:
        raise BadRequest(f"more than {MAX_PARTS} multipart parts", code="invalid_multipart")
    fields: dict[str, str] = {}
    files: dict[str, FilePart] = {}
    for piece in pieces[1:-1]:
        head, sep, data = piece.partition(b"\r\n\r\n")
        if not sep:
            raise BadRequest("multipart part without headers", code="invalid_multipart")
        headers = {}
        for line in inputs.decode_utf8(head, "a multipart part header").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        params = _params(disposition)
        name = params.get("name", "")
        if not disposition.lower().startswith("form-data") or not name:
            raise BadRequest("multipart part without a form-data name", code="invalid_multipart")
        inputs.check_text(name, "a multipart field name", max_chars=256)
        if "filename" in params:
            # A filename is not typed by the user: it is sanitized (images.sanitize_filename)
            # rather than refused, so a control character in it is dropped, not a 400.
            content_type = headers.get("content-type", "application/octet-stream")
            files[name] = FilePart(params["filename"][:1024], content_type, data)
        else:
            if len(data) > MAX_FIELD_BYTES:
                raise BadRequest(f"form field {name!r} is too long", code="field_too_long")
            fields[name] = inputs.check_text(inputs.decode_utf8(data, f"form field {name!r}"),
                                             f"form field {name!r}")
    return Form(fields, files)
