"""What every HTTP function shares: the resolver, error mapping, caller identity, input parsing.

Errors are raised as exceptions anywhere and mapped to
``{"error": {"code", "message"}}`` here, once. An unexpected exception is
logged with its request id and answered 500 without any detail.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import ServiceError

from imagerepo import users
from imagerepo.errors import AppError, BadRequest, Forbidden, TooManyRequests, Unauthorized
from imagerepo.log import logger
from imagerepo.security import Principal, decode_token, parse_bearer

__all__ = ["logger"]  # re-exported: HTTP functions log through api

MAX_JSON_BODY = 64 * 1024
MAX_PAGE_SIZE = 100


def error_response(status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                   **extra: Any) -> Response:
    body = {"error": {"code": code, "message": message, **extra}}
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                    body=json.dumps(body), headers={"Cache-Control": "no-store", **(headers or {})})


def make_app() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver()

    @app.exception_handler(AppError)
    def _app_error(exc: AppError) -> Response:
        if exc.status >= 500:
            logger.exception("dependency failure", extra={"code": exc.code})
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else None
        return error_response(exc.status, exc.code, exc.message, headers=headers)

    @app.exception_handler(ServiceError)
    def _service_error(exc: ServiceError) -> Response:
        return error_response(exc.status_code, "http_error", str(exc.msg))

    @app.not_found
    def _not_found(exc: Exception) -> Response:
        return error_response(404, "route_not_found", "no such route")

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        request_id = app.current_event.request_context.request_id
        logger.exception("unhandled error", extra={"request_id": request_id})
        return error_response(500, "internal_error", "internal error; quote the request id",
                              requestId=request_id)

    return app


def caller(app: APIGatewayHttpResolver) -> Principal | None:
    """Who calls, as the database knows them now (session live, account enabled, its role).

    The identity is the authorizer's verdict on protected routes (which API Gateway may
    have cached for minutes) or an optional bearer token on public ones; either way
    :func:`users.current` checks it with one indexed read, once per request.
    """
    if "caller" in app.context:
        return app.context["caller"]
    ctx = (app.current_event.raw_event.get("requestContext") or {}).get("authorizer") or {}
    lam = ctx.get("lambda")
    header = app.current_event.headers.get("authorization")
    if lam:
        claimed: Principal | None = Principal.from_context(lam)
    elif header:
        claimed = decode_token(parse_bearer(header))
    else:
        claimed = None
    principal = users.current(claimed) if claimed is not None else None
    app.append_context(caller=principal)
    return principal


def source_ip(app: APIGatewayHttpResolver) -> str | None:
    """The client's address as API Gateway saw it (the key of per-source abuse limits)."""
    http = (app.current_event.raw_event.get("requestContext") or {}).get("http") or {}
    ip = http.get("sourceIp")
    return str(ip)[:64] if ip else None


def require_caller(app: APIGatewayHttpResolver) -> Principal:
    principal = caller(app)
    if principal is None:
        raise Unauthorized("a bearer token is required", code="unauthorized")
    return principal


def require_admin(app: APIGatewayHttpResolver) -> Principal:
    principal = require_caller(app)
    if not principal.is_admin:
        raise Forbidden("administrators only", code="admin_only")
    return principal


def access_key(app: APIGatewayHttpResolver) -> str | None:
    """A private image's key from the query (``accessKey``, or the original API's ``accesskey``)."""
    return query(app, "accessKey") or query(app, "accesskey")


def json_body(app: APIGatewayHttpResolver) -> dict[str, Any]:
    raw = app.current_event.decoded_body or ""
    if len(raw) > MAX_JSON_BODY:
        raise BadRequest(f"JSON body over {MAX_JSON_BODY} bytes", code="body_too_large")
    try:
        body = json.loads(raw) if raw else None
    except ValueError as exc:
        raise BadRequest("body is not valid JSON", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object", code="invalid_json")
    return body


def path_id(app: APIGatewayHttpResolver, name: str = "id") -> int:
    raw = (app.current_event.path_parameters or {}).get(name, "")
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest(f"{name} must be a positive integer", code="invalid_id")
    return int(raw)


def query(app: APIGatewayHttpResolver, name: str) -> str | None:
    return (app.current_event.query_string_parameters or {}).get(name)


def paging(app: APIGatewayHttpResolver, default_size: int) -> tuple[int, int]:
    """``page`` >= 1 and ``pageSize`` 1..100; anything else is a 400."""
    values = []
    for name, default, upper in (("page", 1, 10**9), ("pageSize", default_size, MAX_PAGE_SIZE)):
        raw = query(app, name)
        if raw is None or raw == "":
            values.append(default)
            continue
        if not raw.isdigit() or not 1 <= int(raw[:12]) <= upper:
            raise BadRequest(f"{name} must be an integer from 1 to {upper}", code="invalid_paging")
        values.append(int(raw))
    return values[0], values[1]


def page_json(items: list[dict[str, Any]], page: int, page_size: int, total: int) -> dict[str, Any]:
    return {"items": items, "page": page, "pageSize": page_size, "total": total,
            "totalPages": (total + page_size - 1) // page_size}


def raw_body(app: APIGatewayHttpResolver) -> bytes:
    """The request body as bytes (API Gateway base64-encodes binary bodies)."""
    event = app.current_event.raw_event
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode("utf-8")


def etag_matches(app: APIGatewayHttpResolver, etag: str) -> bool:
    header = app.current_event.headers.get("if-none-match") or ""
    candidates = {c.strip().removeprefix("W/") for c in header.split(",")}
    return "*" in candidates or etag in candidates


def content_disposition(filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "'").replace("?", "_")
    return f"inline; filename=\"{ascii_name}\"; filename*=UTF-8''{urllib.parse.quote(filename)}"


def cache_control(is_private: bool, public_max_age: int) -> str:
    """Shared caches may keep public images; private ones are revalidated (ETag) every time."""
    return "private, max-age=0, must-revalidate" if is_private else f"public, max-age={public_max_age}"


def binary_response(data: bytes, *, content_type: str, etag: str, cache_control: str,
                    filename: str | None = None) -> Response:
    headers = {"ETag": etag, "Cache-Control": cache_control, "X-Content-Type-Options": "nosniff"}
    if filename:
        headers["Content-Disposition"] = content_disposition(filename)
    return Response(status_code=200, content_type=content_type, body=data, headers=headers)


def not_modified(etag: str, cache_control: str) -> Response:
    return Response(status_code=304, body="", headers={"ETag": etag, "Cache-Control": cache_control})
