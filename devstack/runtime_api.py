"""The Lambda Runtime API of one execution environment, as AWS's Runtime Interface Emulator serves it.

The environment's worker (awslambdaric) long-polls ``GET /2018-06-01/runtime/invocation/next``
for its next event and answers with ``POST …/invocation/{id}/response`` or ``…/error``;
a failed init is ``POST /2018-06-01/runtime/init/error``. Each environment has its own
server on 127.0.0.1, whose address the worker gets in ``AWS_LAMBDA_RUNTIME_API``.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devstack.lambda_runtime import Environment

PREFIX = "/2018-06-01/runtime"
_INVOCATION = re.compile(rf"^{PREFIX}/invocation/(?P<id>.+)/(?P<kind>response|error)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: RuntimeApiServer

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def do_GET(self) -> None:
        if self.path != f"{PREFIX}/invocation/next":
            self._json(404, {"errorType": "NotFound", "errorMessage": self.path})
            return
        invocation = self.server.environment.next_invocation()
        if invocation is None:  # the environment is shutting down
            self._json(410, {"errorType": "EnvironmentStopped", "errorMessage": "shutting down"})
            self.close_connection = True
            return
        self._send(200, invocation.payload, invocation.runtime_headers())

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        env = self.server.environment
        if self.path == f"{PREFIX}/init/error":
            env.init_failed(_error_body(body, self.headers.get("Lambda-Runtime-Function-Error-Type")))
            self._json(202, {"status": "OK"})
            return
        m = _INVOCATION.match(self.path)
        if not m:
            self._json(404, {"errorType": "NotFound", "errorMessage": self.path})
            return
        if m["kind"] == "response":
            accepted = env.invocation_response(m["id"], body)
        else:
            accepted = env.invocation_error(m["id"], _error_body(
                body, self.headers.get("Lambda-Runtime-Function-Error-Type")))
        if accepted:
            self._json(202, {"status": "OK"})
        else:
            self._json(400, {"errorType": "InvalidRequestID", "errorMessage": "Invalid request ID"})

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _error_body(body: bytes, error_type: str | None) -> dict[str, Any]:
    try:
        error = json.loads(body) if body else {}
    except ValueError:
        error = {}
    if not isinstance(error, dict):
        error = {}
    error.setdefault("errorType", error_type or "Unknown")
    error.setdefault("errorMessage", "")
    return error


class RuntimeApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, environment: Environment) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.environment = environment
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.5},
                                        name=f"runtime-api-{environment.id}", daemon=True)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a worker killed mid-request (timeout, crash, shutdown) is the environment's to report

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
