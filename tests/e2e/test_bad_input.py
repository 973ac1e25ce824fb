"""Every bad input of issue 10 through the gateway: a 4xx JSON error, and nothing changed.

Each case is sent over HTTP; the answer must be a 4xx with ``{"error": {"code", "message"}}``
(400 unless said otherwise), and the database (row counts and newest ids and update
times of every table a request could write) and the bucket (every key outside
thumbnails/, which the asynchronous renderer may still be writing for earlier tests)
must be exactly as before the case.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Upload, make_jpeg
from tests.helpers import Api, register_and_login, unique

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

_TABLES = ("users", "images", "blobs", "chunks", "blob_chunks", "groups", "uploads",
           "onedrive_import_jobs", "onedrive_auth_flows")


def snapshot() -> dict[str, Any]:
    from imagerepo.chunkstore import default_store
    from imagerepo.db import unit_of_work

    with unit_of_work() as uow:
        state: dict[str, Any] = {t: uow.scalar(f"SELECT count(*) FROM {t}") for t in _TABLES}
        state["images.updated"] = uow.scalar("SELECT max(updated_at) FROM images")
        state["groups.max"] = uow.scalar("SELECT max(id) FROM groups")
        state["users.max"] = uow.scalar("SELECT max(id) FROM users")
        state["refcounts"] = uow.scalar("SELECT coalesce(sum(refcount), 0) FROM blobs")
    store = default_store()
    state["objects"] = sorted(o["Key"] for prefix in ("chunks/", "manifests/", "incoming/")
                              for page in store.list_objects(prefix) for o in page)
    return state


@pytest.fixture
def unchanged(stack: Any) -> Any:
    """Call it around a case: ``with unchanged(): ...`` asserts DB and bucket did not move."""
    from contextlib import contextmanager

    @contextmanager
    def guard() -> Any:
        before = snapshot()
        yield
        assert snapshot() == before, "a refused request changed the database or the bucket"

    return guard


def refused(r: Any, status: int = 400, code: str | None = None) -> dict[str, Any]:
    assert 400 <= r.status_code < 500 and r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()["error"]
    assert set(body) >= {"code", "message"} and body["message"], body
    if code is not None:
        assert body["code"] == code, body
    return dict(body)


@pytest.fixture(scope="module")
def world(base_url: str, admin: Api) -> dict[str, Any]:
    """An image and a group of the admin, to aim the per-id routes at."""
    r = admin.post("/images", files={"file": ("w.jpg", make_jpeg(seed=10_010), "image/jpeg")})
    assert r.status_code == 201, r.text
    g = admin.post("/groups", json={"name": unique("bad-input ")})
    assert g.status_code == 201, g.text
    _, someone = register_and_login(base_url)
    return {"image": r.json()["id"], "group": g.json()["id"], "user": someone["id"]}


# -- JSON bodies: every JSON route -------------------------------------------------------
JSON_ROUTES = [
    ("POST", "/register"), ("POST", "/login"), ("PUT", "/images/{image}"), ("POST", "/uploads"),
    ("POST", "/groups"), ("PUT", "/groups/{group}"), ("POST", "/admin/onedrive/folders"),
    ("PATCH", "/admin/onedrive/items/{item}"), ("POST", "/admin/onedrive/upload-sessions"),
    ("POST", "/admin/onedrive/import"), ("POST", "/token/refresh"), ("POST", "/logout"),
    ("PUT", "/me/password"), ("DELETE", "/me"), ("PATCH", "/admin/users/{user}"),
]


def test_every_json_route_of_the_spec_is_covered() -> None:
    spec = yaml.safe_load((ROOT / "shared" / "openapi.yaml").read_text())
    in_spec = {(m.upper(), p) for p, ops in spec["paths"].items() for m, op in ops.items()
               if isinstance(op, dict) and "application/json" in (op.get("requestBody") or {}).get(
                   "content", {})}
    covered = {(m, p.replace("{image}", "{id}").replace("{group}", "{id}").replace("{user}", "{id}")
                .replace("{item}", "{itemId}")) for m, p in JSON_ROUTES}
    assert in_spec <= covered, f"JSON routes without bad-input cases: {sorted(in_spec - covered)}"


BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("latin-1", '{"name": "caf\xe9"}'.encode("latin-1"), "invalid_encoding"),
    ("utf-16", '{"name": "x"}'.encode("utf-16"), "invalid_encoding"),
    ("nested 30000", b"[" * 30_000 + b"]" * 30_000, "invalid_json"),
    ("nested objects 33", b'{"a":' * 33 + b"1" + b"}" * 33, "invalid_json"),
    ("array", b"[1, 2]", "invalid_json"),
    ("not json", b"{name: x}", "invalid_json"),
    ("lone surrogate", b'{"name": "\\ud800", "description": "\\udfff"}', "invalid_text"),
    ("NUL", b'{"name": "a\\u0000b", "description": "x"}', "invalid_text"),
    ("control", b'{"name": "a\\u0007b"}', "invalid_text"),
    ("key with NUL", b'{"a\\u0000": 1}', "invalid_text"),
    ("too large", b'{"description": "' + b"x" * 70_000 + b'"}', "body_too_large"),
]


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES, ids=[f"{m} {p}" for m, p in JSON_ROUTES])
@pytest.mark.parametrize(("label", "body", "code"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_json_bodies(method: str, path: str, label: str, body: bytes, code: str, admin: Api,
                         world: dict[str, Any], unchanged: Any) -> None:
    url = path.format(image=world["image"], group=world["group"], user=world["user"], item="abc123")
    with unchanged():
        refused(admin.request(method, url, data=body, headers={"Content-Type": "application/json"}),
                400, code)


# -- the cases, one by one -------------------------------------------------------
def test_login_with_a_lone_surrogate_neither_fails_nor_poisons(base_url: str, unchanged: Any) -> None:
    anon = Api(base_url)
    email, password = f"{unique('sur')}@example.com", "surrogate passphrase 1"
    assert anon.post("/register", json={"name": unique("sur"), "email": email,
                                         "password": password}).status_code == 201
    with unchanged():
        for _ in range(5):  # enough to land on every warm worker's connection
            refused(anon.post("/login", data=b'{"username":"\\ud800","password":"x"}',
                              headers={"Content-Type": "application/json"}), 400, "invalid_text")
            refused(anon.post("/login", data=b'{"username":"x","password":"\\ud800"}',
                              headers={"Content-Type": "application/json"}), 400, "invalid_text")
    # No warm connection was poisoned: good logins work and listings answer.
    for _ in range(5):
        assert anon.post("/login", json={"username": email, "password": password}).status_code == 200
        assert anon.get("/images").status_code == 200


@pytest.mark.parametrize("field", ["name", "email", "password"])
def test_nul_in_registration(base_url: str, field: str, unchanged: Any) -> None:
    body = {"name": unique("nul"), "email": f"{unique('nul')}@example.com", "password": "nul passphrase 1"}
    body[field] = body[field][:3] + "\x00" + body[field][3:]
    with unchanged():
        refused(Api(base_url).post("/register", json=body), 400, "invalid_text")


def test_nul_in_upload_fields(admin: Api, unchanged: Any) -> None:
    cases = [{"description": "a\x00b"}, {"accessKey": "key\x00key1"}, {"groupId": "1\x00"},
             {"isPrivate": "1\x00"}, {"description": "\x1b[31m"}]
    with unchanged():
        for fields in cases:
            refused(admin.post("/images", files={"file": ("x.jpg", make_jpeg(seed=5), "image/jpeg")},
                               data=fields), 400, "invalid_text")
        form = (b"--b\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\n\xff\xfe\r\n"
                b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jpg\"\r\n\r\n"
                + make_jpeg(seed=6) + b"\r\n--b--\r\n")
        refused(admin.post("/images", data=form, headers={"Content-Type": "multipart/form-data; boundary=b"}),
                400, "invalid_encoding")


def test_description_keeps_tab_and_newline(admin: Api, upload: Upload) -> None:
    image = upload(admin, make_jpeg(), description="line one\n\tline two\r\n")
    assert image["description"] == "line one\n\tline two\r\n"


def test_nul_in_json_fields(admin: Api, world: dict[str, Any], unchanged: Any) -> None:
    with unchanged():
        refused(admin.put(f"/images/{world['image']}", json={"description": "a\x00"}), 400, "invalid_text")
        refused(admin.post("/groups", json={"name": "g\x00"}), 400, "invalid_text")
        refused(admin.put(f"/groups/{world['group']}", json={"description": "\x00"}), 400, "invalid_text")
        refused(admin.post("/uploads", json={"fileName": "a.jpg", "contentType": "image/jpeg\x00",
                                             "size": 10}), 400, "invalid_text")


@pytest.mark.parametrize(("path", "code"), [
    ("/images?page=\u00b2", "invalid_paging"), ("/images?pageSize=\u00b2", "invalid_paging"),
    ("/images?page=\u0661", "invalid_paging"), ("/images?groupId=\u00b2", "invalid_field"),
    ("/images?groupId=99999999999999999999", "invalid_field"), ("/images?groupId=0", "invalid_field"),
    ("/images?page=99999999999999999999999", "invalid_paging"),
    ("/groups?pageSize=\u00b2", "invalid_paging"), ("/images?cursor=%00", "invalid_text"),
    ("/images/1/info?accessKey=a%00b", "invalid_text"), ("/images?owner=%ED%A0%80", None),
    ("/images/%C2%B2/info", "invalid_id"), ("/images/0/info", "invalid_id"),
    ("/images/99999999999999999999/info", "invalid_id"), ("/images/9223372036854775808", "invalid_id"),
    ("/groups/-1", "invalid_id"), ("/groups/1%00", "invalid_text"), ("/groups/%ff", "invalid_encoding"),
    ("/images/1%0A/thumbnail", None),
    ("/images?" + "x" * 3000 + "=1", "too_long"),
])
def test_bad_query_and_path_parameters(admin: Api, path: str, code: str | None, unchanged: Any) -> None:
    with unchanged():
        refused(admin.get(path), 400, code)


def test_grace_seconds_must_be_ascii_digits(admin: Api, unchanged: Any) -> None:
    with unchanged():
        for value in ("\u00b2", "\u0661", "1e3", "-1", "99999999999"):
            refused(admin.post("/admin/gc", params={"graceSeconds": value}), 400, "invalid_grace")


@pytest.mark.parametrize("value", [99999999999999999999, 0, -1, "\u00b2", True, 1.5, "9223372036854775808"])
def test_group_id_out_of_range(admin: Api, world: dict[str, Any], value: Any, unchanged: Any) -> None:
    with unchanged():
        refused(admin.put(f"/images/{world['image']}", json={"groupId": value}), 400, "invalid_field")
        refused(admin.post("/images", files={"file": ("x.jpg", make_jpeg(seed=7), "image/jpeg")},
                           data={"groupId": str(value)}), 400, "invalid_field")


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/admin/onedrive/items?folderId=a%00b"), ("PATCH", "/admin/onedrive/items/%ED%A0%80"),
    ("PATCH", "/admin/onedrive/items/a%00b"), ("DELETE", "/admin/onedrive/items/a%01b"),
    ("GET", "/admin/onedrive/import/%00"), ("GET", "/admin/onedrive/callback?state=a%00b&code=x"),
])
def test_onedrive_parameters(admin: Api, method: str, path: str, unchanged: Any) -> None:
    with unchanged():
        refused(admin.request(method, path, json={"name": "x"}), 400)


def test_refusals_are_json_on_every_route_with_a_lone_surrogate_in_the_query(admin: Api) -> None:
    spec = yaml.safe_load((ROOT / "shared" / "openapi.yaml").read_text())
    for path, ops in spec["paths"].items():
        url = path.replace("{id}", "1").replace("{itemId}", "abc").replace("{jobId}", "x")
        for method in ops:
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            body = refused(admin.request(method.upper(), url + "?probe=%ED%A0%80%00"), 400)
            assert body["code"] == "invalid_text", (method, path, body)


def test_json_error_body_shape(base_url: str) -> None:
    r = Api(base_url).post("/login", data=json.dumps([1]).encode(),
                           headers={"Content-Type": "application/json"})
    assert refused(r, 400, "invalid_json")["message"] == "body must be a JSON object"
