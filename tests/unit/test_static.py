"""devstack.static: the web gallery's files on the API's origin."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack import static


@dataclass
class FakeRoute:
    regex: re.Pattern[str]


ROUTES = [FakeRoute(re.compile(r"^/images/(?P<id>[^/]+)$")), FakeRoute(re.compile(r"^/login$")),
          FakeRoute(re.compile(r"^/admin/stats$"))]
HTML = [("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    web = tmp_path / "web"
    (web / "js").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>gallery</title>")
    (web / "js" / "app.js").write_text("export const x = 1;\n")
    (web / "css").mkdir()
    (web / "css" / "app.css").write_text("body{}")
    (web / ".hidden").write_text("secret")
    (tmp_path / "secrets.json").write_text('{"jwt_secret": "x"}')
    (web / "escape.js").symlink_to(tmp_path / "secrets.json")
    return web


def serve(root: Path, target: str, method: str = "GET",
          headers: list[tuple[str, str]] | None = None) -> static.StaticReply | None:
    return static.serve(method, target, headers or [], ROUTES, root=root)


def test_root_and_files_with_their_content_types(root: Path) -> None:
    index = serve(root, "/", headers=HTML)
    assert index is not None and index.status == 200
    assert index.body == b"<!doctype html><title>gallery</title>"
    assert dict(index.headers)["content-type"] == "text/html; charset=utf-8"
    assert "frame-ancestors 'none'" in dict(index.headers)["content-security-policy"]
    js = serve(root, "/js/app.js?v=1")
    assert js is not None and js.status == 200 and js.body == b"export const x = 1;\n"
    assert dict(js.headers)["content-type"] == "text/javascript; charset=utf-8"
    css = serve(root, "/css/app.css")
    assert css is not None and dict(css.headers)["content-type"] == "text/css; charset=utf-8"
    assert dict(css.headers)["x-content-type-options"] == "nosniff"


def test_etag_answers_304(root: Path) -> None:
    first = serve(root, "/js/app.js")
    assert first is not None
    etag = dict(first.headers)["etag"]
    again = serve(root, "/js/app.js", headers=[("If-None-Match", etag)])
    assert again is not None and again.status == 304 and again.body == b""


@pytest.mark.parametrize("target", [
    "/../secrets.json", "/%2e%2e/secrets.json", "/js/../../secrets.json", "/.hidden",
    "/escape.js", "/missing.js", "/js/missing.js", "/%00.js",
])
def test_refused_paths_fall_through_to_the_404(root: Path, target: str) -> None:
    assert serve(root, target, headers=HTML) is None


def test_a_directory_is_never_listed(root: Path) -> None:
    for target in ("/js", "/js/"):
        assert serve(root, target) is None
        page = serve(root, target, headers=HTML)  # a client route: the app, not a listing
        assert page is not None and page.body.startswith(b"<!doctype html>")


def test_client_routes_get_index_html_only_for_html_gets(root: Path) -> None:
    for target in ("/image/12", "/mine", "/group/3?page=2", "/manage"):
        reply = serve(root, target, headers=HTML)
        assert reply is not None and reply.status == 200, target
        assert reply.body.startswith(b"<!doctype html>")
    assert serve(root, "/image/12") is None  # an API client (no text/html)
    assert serve(root, "/image/12", headers=[("Accept", "application/json")]) is None
    assert serve(root, "/image/12", method="POST", headers=HTML) is None
    assert serve(root, "/image/12", method="DELETE", headers=HTML) is None
    head = serve(root, "/image/12", method="HEAD", headers=HTML)
    assert head is not None and head.status == 200


def test_api_paths_are_never_the_apps(root: Path) -> None:
    # GET /login is no route, but /login is the API's path (POST): the API's 404 stays.
    assert serve(root, "/login", headers=HTML) is None
    assert serve(root, "/images/5", headers=HTML) is None
    assert serve(root, "/admin/stats", headers=HTML) is None


def test_no_web_root_serves_nothing(tmp_path: Path) -> None:
    assert static.serve("GET", "/", HTML, ROUTES, root=tmp_path / "absent") is None
