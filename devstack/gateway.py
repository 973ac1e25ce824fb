"""A local HTTP API (payload 2.0) serving the routes of template.yaml.

Modelled on API Gateway's behaviour, so what works here works in the cloud:
- routes matched most-specific first; no match → 404 ``{"message":"Not Found"}``;
- the Lambda authorizer: a missing identity source → 401 without invoking it;
  its answers cached per identity value for the template's TTL; a denial → 403;
  its context passed in ``requestContext.authorizer.lambda``;
- v2.0 events: lower-cased headers, comma-joined repeated headers and query
  parameters, ``cookies``, binary bodies base64-encoded;
- limits: 10 MB request → 413, 6 MB Lambda request or response → 413 / 502,
  30 s integration timeout → 503; a function error (or its own Timeout) → 500, a
  crashed runtime → 502, a throttled function → 429;
- any method, TRACE or QUERY included, goes through the same routing: an unrouted one
  is the same 404 JSON (after the web gallery's static files, see devstack/static.py).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from devstack import static
from devstack.lambda_runtime import Invocation, LambdaRuntime, Throttled
from devstack.template import Authorizer, Route, Template

log = logging.getLogger("devstack.gateway")

MAX_REQUEST_BYTES = 10 * 1024 * 1024
MAX_LAMBDA_PAYLOAD = 6 * 1024 * 1024
INTEGRATION_TIMEOUT = 30.0
AUTHORIZER_TIMEOUT = 10.0

_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript",
               "application/x-www-form-urlencoded", "+json", "+xml")


@dataclass
class Request:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str = "127.0.0.1"


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    function: str = "-"
    request_id: str = "-"


def _message(status: int, text: str, request_id: str = "-") -> Reply:
    return Reply(status, [("content-type", "application/json"),
                          ("apigw-requestid", request_id)],
                 json.dumps({"message": text}).encode(), request_id=request_id)


def _request_id() -> str:
    return base64.b64encode(secrets.token_bytes(10)).decode().rstrip("=")


def _is_text(content_type: str) -> bool:
    ct = content_type.split(";")[0].strip().lower()
    return any(ct.startswith(t) or ct.endswith(t) for t in _TEXT_TYPES) if ct else True


class AuthorizerCache:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, tuple[str, ...]], tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, tuple[str, ...]]) -> dict[str, Any] | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None or hit[0] < time.monotonic():
                self._entries.pop(key, None)
                return None
            return hit[1]

    def put(self, key: tuple[str, tuple[str, ...]], ttl: int, verdict: dict[str, Any]) -> None:
        if ttl <= 0:
            return
        with self._lock:
            if len(self._entries) > 10000:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + ttl, verdict)


class LocalGateway:
    def __init__(self, template: Template, runtime: LambdaRuntime,
                 integration_timeout: float = INTEGRATION_TIMEOUT) -> None:
        self.template = template
        self.runtime = runtime
        self.integration_timeout = integration_timeout
        self.auth_cache = AuthorizerCache()
        self.authorizer_invocations = 0

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.template.routes:
            if route.method not in (method, "ANY"):
                continue
            m = route.regex.match(path)
            if m:
                return route, m.groupdict()
        return None

    # -- event translation ------------------------------------------------------
    def build_event(self, req: Request, route: Route, params: dict[str, str],
                    request_id: str) -> dict[str, Any]:
        url = urlsplit(req.target)
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for name, value in req.headers:
            key = name.lower()
            if key == "cookie":
                cookies.extend(c.strip() for c in value.split(";") if c.strip())
                continue
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        query: dict[str, str] = {}
        for k, v in parse_qsl(url.query, keep_blank_values=True):
            query[k] = f"{query[k]},{v}" if k in query else v
        now = dt.datetime.now(dt.UTC)
        host = headers.get("host", "localhost").split(":")[0]
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.route_key,
            "rawPath": url.path,
            "rawQueryString": url.query,
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "local",
                "domainName": host,
                "domainPrefix": host.split(".")[0],
                "http": {"method": req.method, "path": url.path, "protocol": "HTTP/1.1",
                         "sourceIp": req.source_ip, "userAgent": headers.get("user-agent", "")},
                "requestId": request_id,
                "routeKey": route.route_key,
                "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now.timestamp() * 1000),
            },
            "isBase64Encoded": False,
        }
        if cookies:
            event["cookies"] = cookies
        if query:
            event["queryStringParameters"] = query
        if params:
            event["pathParameters"] = params
        if req.body:
            if _is_text(headers.get("content-type", "")):
                try:
                    event["body"] = req.body.decode("utf-8")
                except UnicodeDecodeError:
                    event["body"], event["isBase64Encoded"] = base64.b64encode(req.body).decode(), True
            else:
                event["body"], event["isBase64Encoded"] = base64.b64encode(req.body).decode(), True
        return event

    def _authorizer_event(self, event: dict[str, Any], auth: Authorizer,
                          identity: list[str]) -> dict[str, Any]:
        return {
            "version": "2.0", "type": "REQUEST",
            "routeArn": f"arn:aws:execute-api:us-east-1:123456789012:local/$default/"
                        f"{event['requestContext']['http']['method']}{event['rawPath']}",
            "identitySource": identity,
            **{k: event[k] for k in ("routeKey", "rawPath", "rawQueryString", "headers",
                                     "requestContext") if k in event},
            **{k: event[k] for k in ("cookies", "queryStringParameters", "pathParameters")
               if k in event},
        }

    def authorize(self, event: dict[str, Any], auth: Authorizer) -> Reply | dict[str, Any]:
        request_id = event["requestContext"]["requestId"]
        identity = [event["headers"].get(h, "") for h in auth.identity_headers]
        if not all(identity):
            return _message(401, "Unauthorized", request_id)
        key = (auth.name, tuple(identity))
        verdict = self.auth_cache.get(key)
        if verdict is None:
            self.authorizer_invocations += 1
            invocation = self._call(auth.function, self._authorizer_event(event, auth, identity),
                                    AUTHORIZER_TIMEOUT)
            result = invocation.value() if invocation is not None and invocation.outcome == "ok" \
                else None
            if not isinstance(result, dict) or not isinstance(result.get("isAuthorized"), bool):
                log.error("authorizer %s failed or returned a malformed answer", auth.name)
                return _message(500, "Internal Server Error", request_id)
            verdict = result
            self.auth_cache.put(key, auth.ttl, verdict)
        if not verdict["isAuthorized"]:
            return _message(403, "Forbidden", request_id)
        return dict(verdict.get("context") or {})

    # -- request handling -------------------------------------------------------
    def _call(self, function: str, event: dict[str, Any], wait: float) -> Invocation | None:
        """Invoke and wait up to ``wait`` s (the function may run on to its own Timeout);
        None when it did not answer in time. Raises Throttled."""
        invocation = self.runtime.start(function, event)  # Lambda has its own request ids
        return invocation if invocation.done.wait(wait) else None

    def handle(self, req: Request) -> Reply:
        request_id = _request_id()
        if len(req.body) > MAX_REQUEST_BYTES:
            return _message(413, "Request Entity Too Large", request_id)
        path = urlsplit(req.target).path
        found = self.match(req.method, path)
        if found is None:  # the web gallery's files (CloudFront's default behaviour on AWS)
            page = static.serve(req.method, req.target, req.headers, self.template.routes)
            if page is not None:
                return Reply(page.status, page.headers, page.body, "static", request_id)
            return _message(404, "Not Found", request_id)
        route, params = found
        event = self.build_event(req, route, params, request_id)
        try:
            reply = self._integrate(route, event, request_id)
        except Throttled:
            reply = _message(429, "Too Many Requests", request_id)
        reply.function, reply.request_id = route.function, request_id
        return reply

    def _integrate(self, route: Route, event: dict[str, Any], request_id: str) -> Reply:
        if route.authorizer:
            verdict = self.authorize(event, self.template.authorizers[route.authorizer])
            if isinstance(verdict, Reply):
                return verdict
            event["requestContext"]["authorizer"] = {"lambda": verdict}
        if len(json.dumps(event)) > MAX_LAMBDA_PAYLOAD:
            return _message(413, "Request Entity Too Large", request_id)
        invocation = self._call(route.function, event, self.integration_timeout)
        if invocation is None:
            return _message(503, "Service Unavailable", request_id)
        if invocation.outcome == "ok":
            return self.to_reply(invocation.result, request_id)
        if invocation.outcome == "crash":
            return _message(502, "Internal Server Error", request_id)
        return _message(500, "Internal Server Error", request_id)  # error, or its own Timeout

    def to_reply(self, raw: bytes, request_id: str) -> Reply:
        if len(raw) > MAX_LAMBDA_PAYLOAD:
            log.error("function response of %d bytes is over the 6 MB Lambda limit", len(raw))
            return _message(502, "Internal Server Error", request_id)
        try:
            result = json.loads(raw)
        except ValueError:
            log.error("function returned a value that is not JSON")
            return _message(502, "Internal Server Error", request_id)
        if not (isinstance(result, dict) and "statusCode" in result):
            # Payload 2.0 inference: anything else is a 200 JSON body.
            return Reply(200, [("content-type", "application/json"),
                               ("apigw-requestid", request_id)], raw)
        try:
            status = int(result["statusCode"])
            body_field = result.get("body") or ""
            body = (base64.b64decode(body_field) if result.get("isBase64Encoded")
                    else str(body_field).encode())
        except (TypeError, ValueError):
            return _message(500, "Internal Server Error", request_id)
        headers = [(str(k).lower(), str(v)) for k, v in (result.get("headers") or {}).items()]
        headers += [("set-cookie", str(c)) for c in result.get("cookies") or []]
        if not any(k == "content-type" for k, _ in headers) and body:
            headers.append(("content-type", "application/json"))
        headers.append(("apigw-requestid", request_id))
        return Reply(status, headers, body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one segment: no Nagle / delayed-ACK stall on keep-alive.
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024
    server: GatewayServer

    def _read_body(self) -> bytes | None:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0] or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                total += size
                if total > MAX_REQUEST_BYTES:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_REQUEST_BYTES:
            return None
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        started = time.monotonic()
        body = self._read_body()
        if body is None:
            reply = _message(413, "Request Entity Too Large")
            self.close_connection = True
        else:
            req = Request(self.command, self.path, list(self.headers.items()), body,
                          self.client_address[0])
            reply = self.server.gateway.handle(req)
        self.send_response(reply.status)
        for k, v in reply.headers:
            if k not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(k, v)
        payload = b"" if self.command == "HEAD" else reply.body
        self.send_header("content-length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(payload)
        log.info('%s "%s %s" %d %dB %.0fms fn=%s requestId=%s', self.client_address[0],
                 self.command, self.path.split("?")[0], reply.status, len(reply.body),
                 (time.monotonic() - started) * 1000, reply.function, reply.request_id)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, QUERY, ...) is routed too: unrouted, it is the 404 JSON.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request is written by _serve


class GatewayServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, gateway: LocalGateway, host: str, port: int) -> None:
        super().__init__((host, port), _Handler)
        self.gateway = gateway
