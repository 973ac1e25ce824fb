"""Fault injection for the functions' S3 traffic: they run in worker processes of their own,
so a test reaches them through their environment (S3_ENDPOINT_URL), as an operator would."""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (method, path) -> an error status to answer instead of forwarding, or None to forward
Rule = Callable[[str, str], int | None]


class _Proxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, rule: Rule) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream = urllib.parse.urlsplit(upstream)
        self.rule = rule
        self.lock = threading.Lock()


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Proxy

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        with self.server.lock:
            status = self.server.rule(self.command, self.path)
        if status is not None:
            payload = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        up = self.server.upstream
        conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port, timeout=60)
        # The Host header stays the one the client signed (SigV4 covers it).
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in self.headers.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        reply = conn.getresponse()
        data = reply.read()
        self.send_response(reply.status)
        for k, v in reply.getheaders():
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def faulty_s3(stack: Any, rule: Rule) -> Iterator[None]:
    """Every function started inside the block reaches S3 through a proxy applying ``rule``."""
    proxy = _Proxy(stack.s3_endpoint, rule)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    env = stack.runtime.env_overrides
    saved = env["S3_ENDPOINT_URL"]
    env["S3_ENDPOINT_URL"] = f"http://127.0.0.1:{proxy.server_address[1]}"
    try:
        yield
    finally:
        env["S3_ENDPOINT_URL"] = saved
        proxy.shutdown()
        proxy.server_close()
