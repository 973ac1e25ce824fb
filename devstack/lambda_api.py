"""The Lambda Invoke API over the local execution environments, like ``sam local start-lambda``.

``POST /2015-03-31/functions/{name}/invocations`` with ``X-Amz-Invocation-Type``
``Event`` (queued through :meth:`LambdaRuntime.invoke_async`, 202, retried twice on
error as Lambda does), ``RequestResponse`` (200 with the result, or
``X-Amz-Function-Error: Unhandled`` with Lambda's error body; 429 when throttled) or
``DryRun`` (204). Both run in the same execution environments as the gateway's calls. The name may be the
template's logical id (what ``!Ref`` of a function resolves to locally) or an ARN
ending in it. Functions reach it through boto3's standard ``AWS_ENDPOINT_URL_LAMBDA``
variable, which :func:`start_lambda_api` adds to the runtime's environment.
Bound to 127.0.0.1 and unauthenticated, like SAM's.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devstack.lambda_runtime import LambdaRuntime, Throttled

log = logging.getLogger("devstack.lambda_api")

_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")
MAX_SYNC_PAYLOAD = 6 * 1024 * 1024
MAX_ASYNC_PAYLOAD = 256 * 1024


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LambdaApiServer

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, kind: str, message: str) -> None:
        body = json.dumps({"Type": "User", "message": message}).encode()
        self._send(status, body, {"x-amzn-ErrorType": kind})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        payload = self.rfile.read(length) if length else b""
        m = _PATH.match(urllib.parse.urlsplit(self.path).path)
        if not m:
            self._error(404, "ResourceNotFoundException", "unknown path")
            return
        name = urllib.parse.unquote(m.group("name")).split(":function:")[-1].split(":")[0]
        runtime = self.server.runtime
        if name not in runtime.template.functions:
            self._error(404, "ResourceNotFoundException", f"Function not found: {name}")
            return
        kind = self.headers.get("x-amz-invocation-type") or "RequestResponse"
        try:
            event: Any = json.loads(payload) if payload else {}
        except ValueError:
            self._error(400, "InvalidRequestContentException", "payload is not JSON")
            return
        if kind == "DryRun":
            self._send(204)
        elif kind == "Event":
            if len(payload) > MAX_ASYNC_PAYLOAD:
                self._error(413, "RequestTooLargeException", "async payload over 256 KB")
                return
            runtime.invoke_async(name, event)
            self._send(202)
        elif kind == "RequestResponse":
            if len(payload) > MAX_SYNC_PAYLOAD:
                self._error(413, "RequestTooLargeException", "payload over 6 MB")
                return
            self._invoke_sync(runtime, name, event)
        else:
            self._error(400, "InvalidParameterValueException", f"unknown invocation type {kind}")
        log.info("invoke %s (%s)", name, kind)

    def _invoke_sync(self, runtime: LambdaRuntime, name: str, event: Any) -> None:
        headers = {"X-Amz-Executed-Version": "$LATEST"}
        try:
            invocation = runtime.start(name, event)
        except Throttled:
            body = json.dumps({"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                               "Type": "User", "message": "Rate Exceeded."}).encode()
            self._send(429, body, {"x-amzn-ErrorType": "TooManyRequestsException"})
            return
        invocation.done.wait()
        if invocation.outcome == "ok":
            body = invocation.result
        else:
            body = json.dumps(invocation.error or {}).encode()
            headers["X-Amz-Function-Error"] = "Unhandled"
        self._send(200, body, headers)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LambdaApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, runtime: LambdaRuntime, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.runtime = runtime
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="lambda-api", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def start_lambda_api(runtime: LambdaRuntime, host: str = "127.0.0.1", port: int = 0) -> LambdaApiServer:
    """Serve the Invoke API and point every function's boto3 at it."""
    server = LambdaApiServer(runtime, host, port)
    server.start()
    runtime.env_overrides["AWS_ENDPOINT_URL_LAMBDA"] = server.url
    return server
