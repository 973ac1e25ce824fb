"""The gallery's files on the API's origin, over HTTP through the local gateway."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import pytest

from tests.helpers import Api

pytestmark = pytest.mark.e2e

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def raw_get(base_url: str, target: str) -> tuple[int, bytes]:
    """A request line sent exactly as written (no client-side dot-segment clean-up)."""
    u = urlsplit(base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request("GET", target, headers=HTML)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_the_app_and_its_files(base_url: str) -> None:
    api = Api(base_url)
    index = api.get("/", headers=HTML)
    assert index.status_code == 200
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    assert b'<script type="module" src="/js/app.js"></script>' in index.content
    assert "script-src 'self'" in index.headers["content-security-policy"]
    js = api.get("/js/app.js")
    assert js.status_code == 200 and js.headers["content-type"] == "text/javascript; charset=utf-8"
    assert api.get("/js/app.js", headers={"If-None-Match": js.headers["etag"]}).status_code == 304
    assert api.get("/css/app.css").headers["content-type"] == "text/css; charset=utf-8"
    head = api.request("HEAD", "/js/app.js")
    assert head.status_code == 200 and head.content == b""


def test_client_routes_and_api_routes(base_url: str) -> None:
    api = Api(base_url)
    for path in ("/image/5", "/mine", "/group/2?page=3", "/manage"):
        r = api.get(path, headers=HTML)
        assert r.status_code == 200 and b"/js/app.js" in r.content, path
    # without text/html (an API client), and for other methods: the gateway's 404
    r = api.get("/image/5")
    assert r.status_code == 404 and r.json() == {"message": "Not Found"}
    assert api.post("/image/5", headers=HTML).status_code == 404
    # API paths stay the API's, even for a browser
    assert api.get("/login", headers=HTML).json() == {"message": "Not Found"}
    r = api.get("/images/999999999/info", headers=HTML)
    assert r.status_code == 404 and r.json()["error"]["code"] == "image_not_found"
    assert api.get("/health", headers=HTML).json() == {"status": "ok"}


@pytest.mark.parametrize("target", ["/../template.yaml", "/js/../../template.yaml", "/%2e%2e/template.yaml",
                                    "/.gitignore", "/js/missing.js", "/js/"])
def test_nothing_outside_web_and_no_listing(base_url: str, target: str) -> None:
    status, body = raw_get(base_url, target)
    assert b"AWSTemplateFormatVersion" not in body and b"Resources:" not in body
    assert b"app.js\n" not in body and b"<li>" not in body
    if target.endswith((".yaml", ".js", ".gitignore")):
        assert status == 404, target
