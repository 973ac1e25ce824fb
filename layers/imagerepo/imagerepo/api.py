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

from imagerepo import inputs, users
from imagerepo.errors import AppError, Forbidden, TooManyRequests, Unauthorized
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


def _check_parameters(app: APIGatewayHttpResolver, next_middleware: Any) -> Response:
    """Edge check on every route: query and path parameters are clean, bounded text."""
    event = app.current_event
    inputs.check_params(event.query_string_parameters, "query")
    inputs.check_params(event.path_parameters, "path", percent_encoded=True)
    return next_middleware(app)


def make_app() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver()
    app.use(middlewares=[_check_parameters])

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
    """The body as a checked JSON object (UTF-8, bounded size and depth, clean strings)."""
    return inputs.parse_json_object(raw_body(app), max_bytes=MAX_JSON_BODY)


def path_id(app: APIGatewayHttpResolver, name: str = "id") -> int:
    return inputs.parse_id((app.current_event.path_parameters or {}).get(name, ""), name)


def query(app: APIGatewayHttpResolver, name: str) -> str | None:
    return (app.current_event.query_string_parameters or {}).get(name)


def paging(app: APIGatewayHttpResolver, default_size: int) -> tuple[int, int]:
    """``page`` >= 1 and ``pageSize`` 1..100; anything else is a 400."""
    values = []
    for name, default, upper in (("page", 1, 10**9), ("pageSize", default_size, MAX_PAGE_SIZE)):
        value = inputs.parse_int(query(app, name), name, low=1, high=upper, code="invalid_paging")
        values.append(default if value is None else value)
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
    return body.encode("utf-8", errors="surrogatepass")  # a lone surrogate fails the UTF-8 check


def etag_matches(app: APIGatewayHttpResolver, etag: str) -> bool:
    header = app.current_event.headers.get("if-none-match") or ""
    candidates = {c.strip().removeprefix("W/") for c in header.split(",")}
    return "*" in candidates or etag in candidates


def content_disposition(filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "'").replace("?", "_")
    return f"inline; filename=\"{ascii_name}\"; filename*=UTF-8''{urllib.parse.quote(filename)}"


PUBLIC_MAX_AGE = 60  # a privacy change reaches shared caches within this many seconds


def cache_control(is_private: bool, public_max_age: int = PUBLIC_MAX_AGE) -> str:
    """Shared caches may keep public images for at most a minute, then revalidate (ETag):
    making an image private takes effect everywhere within PUBLIC_MAX_AGE seconds.
    Private ones are never stored by shared caches and are revalidated every time."""
    if is_private:
        return "private, max-age=0, must-revalidate"
    return f"public, max-age={min(public_max_age, PUBLIC_MAX_AGE)}, must-revalidate"


def binary_response(data: bytes, *, content_type: str, etag: str, cache_control: str,
                    filename: str | None = None) -> Response:
    headers = {"ETag": etag, "Cache-Control": cache_control, "X-Content-Type-Options": "nosniff"}
    if filename:
        headers["Content-Disposition"] = content_disposition(filename)
    return Response(status_code=200, content_type=content_type, body=data, headers=headers)


def not_modified(etag: str, cache_control: str) -> Response:
    return Response(status_code=304, body="", headers={"ETag": etag, "Cache-Control": cache_control})
