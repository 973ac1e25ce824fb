"""The authorization matrix: every route of template.yaml, for anonymous / owner / other user /
admin, for public / private / right key / wrong key, through the local gateway over HTTP.

``EXPECTED`` is the whole contract in one table. A route about one image has four statuses
per caller, for that image being public, private (no key), private with the right
``accessKey`` and private with a wrong one; every other route has one status per caller
(the image column does not apply). "owner" is the user who owns the route's resource (the
image, the upload) and "other" a second plain user. 401 for the anonymous caller on a
protected route comes from the gateway, before any function runs.

Routes that end what they act on (logout, password change, account deletion, deletes) get
a fresh session, account or resource per cell, so cells never depend on each other.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devstack.template import Template
from tests.e2e.conftest import make_jpeg
from tests.helpers import Api, register_and_login, unique, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ANON, OWNER, OTHER, ADMIN = "anonymous", "owner", "other", "admin"
CALLERS = (ANON, OWNER, OTHER, ADMIN)
STATES = ("public", "private", "right key", "wrong key")
RIGHT_KEY, WRONG_KEY = "right-key-matrix-0001", "wrong-key-matrix-0001"

# -- the table -----------------------------------------------------------------------------
# image routes: (public, private, right key, wrong key) per caller; other routes: one status.
_ALL = (200, 200, 200, 200)
EXPECTED: dict[str, dict[str, Any]] = {
    # accounts and sessions
    "GET /health":                 {ANON: 200, OWNER: 200, OTHER: 200, ADMIN: 200},
    "POST /register":              {ANON: 201, OWNER: 201, OTHER: 201, ADMIN: 201},
    "POST /login":                 {ANON: 200, OWNER: 200, OTHER: 200, ADMIN: 200},
    "POST /token/refresh":         {ANON: 200, OWNER: 200, OTHER: 200, ADMIN: 200},
    "POST /logout":                {ANON: 401, OWNER: 204, OTHER: 204, ADMIN: 204},
    "GET /me":                     {ANON: 401, OWNER: 200, OTHER: 200, ADMIN: 200},
    "PUT /me/password":            {ANON: 401, OWNER: 204, OTHER: 204, ADMIN: 204},
    "DELETE /me":                  {ANON: 401, OWNER: 204, OTHER: 204, ADMIN: 204},
    "GET /admin/users":            {ANON: 401, OWNER: 403, OTHER: 403, ADMIN: 200},
    "PATCH /admin/users/{id}":     {ANON: 401, OWNER: 403, OTHER: 403, ADMIN: 200},
    # images
    "GET /images":                 {ANON: 200, OWNER: 200, OTHER: 200, ADMIN: 200},
    "POST /images":                {ANON: 401, OWNER: 201, OTHER: 201, ADMIN: 201},
    "GET /images/{id}":            {ANON: (200, 403, 200, 403), OWNER: _ALL,
                                    OTHER: (200, 403, 200, 403), ADMIN: _ALL},
    "GET /images/{id}/info":       {ANON: (200, 403, 200, 403), OWNER: _ALL,
                                    OTHER: (200, 403, 200, 403), ADMIN: _ALL},
    "GET /images/{id}/thumbnail":  {ANON: (200, 403, 200, 403), OWNER: _ALL,
                                    OTHER: (200, 403, 200, 403), ADMIN: _ALL},
    "PUT /images/{id}":            {ANON: (401,) * 4, OWNER: _ALL, OTHER: (403,) * 4, ADMIN: _ALL},
    "DELETE /images/{id}":         {ANON: (401,) * 4, OWNER: (204,) * 4, OTHER: (403,) * 4,
                                    ADMIN: (204,) * 4},
    "POST /images/{id}/access-key": {ANON: (401,) * 4, OWNER: _ALL, OTHER: (403,) * 4,
                                     ADMIN: _ALL},
    "POST /uploads":               {ANON: 401, OWNER: 201, OTHER: 201, ADMIN: 201},
    "GET /uploads/{id}":           {ANON: 401, OWNER: 200, OTHER: 404, ADMIN: 200},
    # groups
    "GET /groups":                 {ANON: 200, OWNER: 200, OTHER: 200, ADMIN: 200},
    "GET /groups/{id}":            {ANON: 200, OWNER: 200, OTHER: 200, ADMIN: 200},
    "GET /groups/{id}/images":     {ANON: 200, OWNER: 200, OTHER: 200, ADMIN: 200},
    "POST /groups":                {ANON: 401, OWNER: 403, OTHER: 403, ADMIN: 201},
    "PUT /groups/{id}":            {ANON: 401, OWNER: 403, OTHER: 403, ADMIN: 200},
    "DELETE /groups/{id}":         {ANON: 401, OWNER: 403, OTHER: 403, ADMIN: 204},
    # administration (OneDrive is not configured here: an admin gets 503, nobody else gets in;
    # the job asked for does not exist)
    "GET /admin/stats":            {ANON: 401, OWNER: 403, OTHER: 403, ADMIN: 200},
    "POST /admin/gc":              {ANON: 401, OWNER: 403, OTHER: 403, ADMIN: 200},
    "GET /admin/onedrive/connect": {ANON: 401, OWNER: 403, OTHER: 403, ADMIN: 503},
    "GET /admin/onedrive/callback": {ANON: 503, OWNER: 503, OTHER: 503, ADMIN: 503},
    "GET /admin/onedrive/status":  {ANON: 401, OWNER: 403, OTHER: 403, ADMIN: 503},
    "GET /admin/onedrive/items":   {ANON: 401, OWNER: 403, OTHER: 403, ADMIN: 503},
    "POST /admin/onedrive/folders": {ANON: 401, OWNER: 403, OTHER: 403, ADMIN: 503},
    "PATCH /admin/onedrive/items/{itemId}": {ANON: 401, OWNER: 403, OTHER: 403, ADMIN: 503},
    "DELETE /admin/onedrive/items/{itemId}": {ANON: 401, OWNER: 403, OTHER: 403, ADMIN: 503},
    "POST /admin/onedrive/upload-sessions": {ANON: 401, OWNER: 403, OTHER: 403, ADMIN: 503},
    "POST /admin/onedrive/import": {ANON: 401, OWNER: 403, OTHER: 403, ADMIN: 503},
    "GET /admin/onedrive/import/{jobId}": {ANON: 401, OWNER: 403, OTHER: 403, ADMIN: 404},
}

TEMPLATE_ROUTES = {f"{r.method} {r.path}" for r in Template(ROOT / "template.yaml").routes}
IMAGE_ROUTES = {route for route, row in EXPECTED.items() if isinstance(row[ANON], tuple)}


def test_the_table_covers_every_route_of_the_template() -> None:
    assert TEMPLATE_ROUTES - set(EXPECTED) == set()
    for row in EXPECTED.values():
        assert set(row) == set(CALLERS)
        assert all(isinstance(v, int) or len(v) == len(STATES) for v in row.values())


# -- the world the cells run in ------------------------------------------------------------
@dataclass
class World:
    base_url: str
    admin_api: Api
    owner: Api
    other: Api
    owner_user: dict[str, Any]
    public_id: int
    private_id: int
    group_id: int
    upload_id: str
    _names: Any = field(default_factory=lambda: itertools.count())

    def api(self, caller: str) -> Api:
        return {ANON: Api(self.base_url), OWNER: self.owner, OTHER: self.other,
                ADMIN: self.admin_api}[caller]

    def fresh_session(self, caller: str) -> Api:
        """Another session of the same account (for routes that end the session they use)."""
        if caller == ANON:
            return Api(self.base_url)
        me = self.api(caller).get("/me").json()
        password = "admin passphrase 1" if caller == ADMIN else "s3cret-passw0rd"
        return login(self.base_url, me["email"], password)

    def fresh_account(self, caller: str) -> Api:
        """A throw-away account of the caller's role (password changes, account deletion)."""
        if caller == ANON:
            return Api(self.base_url)
        if caller == ADMIN:
            from imagerepo.users import ensure_admin

            name = unique("mxadmin")
            ensure_admin(f"{name}@example.com", "s3cret-passw0rd", name=name)
            return login(self.base_url, name, "s3cret-passw0rd")
        return register_and_login(self.base_url)[0]

    def new_image(self, is_private: bool) -> int:
        fields = {"isPrivate": "1", "accessKey": RIGHT_KEY} if is_private else {"isPrivate": "0"}
        r = self.owner.post("/images", files={"file": ("m.jpg", make_jpeg(), "image/jpeg")},
                            data=fields)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def new_group(self) -> int:
        r = self.admin_api.post("/groups", json={"name": unique("mxgroup")})
        assert r.status_code == 201, r.text
        return int(r.json()["id"])


def login(base_url: str, username: str, password: str) -> Api:
    api = Api(base_url)
    r = api.post("/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    api.token, api.refresh_token = r.json()["access_token"], r.json()["refresh_token"]
    return api


@pytest.fixture(scope="module")
def world(base_url: str, admin: Api) -> World:
    owner, owner_user = register_and_login(base_url)
    other, _ = register_and_login(base_url)
    w = World(base_url=base_url, admin_api=admin, owner=owner, other=other, owner_user=owner_user,
              public_id=0, private_id=0, group_id=0, upload_id="")
    w.public_id, w.private_id = w.new_image(False), w.new_image(True)
    w.group_id = w.new_group()
    r = owner.post("/uploads", json={"fileName": "big.jpg", "contentType": "image/jpeg", "size": 10})
    assert r.status_code == 201, r.text
    w.upload_id = r.json()["uploadId"]
    for image_id in (w.public_id, w.private_id):  # the thumbnail routes need them made
        wait_for(lambda i=image_id: owner.get(f"/images/{i}/info").json()["thumbnails"]["status"]
                 == "ready", timeout=60)
    return w


# -- how each route is called --------------------------------------------------------------
Call = tuple[Api, str, str, dict[str, Any]]  # client, method, path, requests kwargs


def _image_call(w: World, route: str, caller: str, state: str) -> Call:
    method, template = route.split(" ", 1)
    is_private = state != "public"
    if method in ("DELETE", "POST", "PUT"):
        image_id = w.new_image(is_private)  # a fresh image per cell: cells stay independent
    else:
        image_id = w.private_id if is_private else w.public_id
    params = {"right key": {"accessKey": RIGHT_KEY}, "wrong key": {"accessKey": WRONG_KEY}}.get(state, {})
    kwargs: dict[str, Any] = {"params": params}
    if method == "PUT":
        kwargs["json"] = {"description": f"set by {caller}"}
    return w.api(caller), method, template.replace("{id}", str(image_id)), kwargs


def _call(w: World, route: str, caller: str) -> Call:
    method, path = route.split(" ", 1)
    api = w.api(caller)
    kwargs: dict[str, Any] = {}
    n = next(w._names)
    if route == "POST /register":
        name = unique("mxreg")
        kwargs["json"] = {"name": name, "email": f"{name}@example.com", "password": "s3cret-passw0rd"}
    elif route == "POST /login":
        kwargs["json"] = {"username": w.owner_user["name"], "password": "s3cret-passw0rd"}
    elif route == "POST /token/refresh":
        kwargs["json"] = {"refresh_token": login(w.base_url, w.owner_user["name"],
                                                 "s3cret-passw0rd").refresh_token}
    elif route == "POST /logout":
        api = w.fresh_session(caller)
    elif route == "PUT /me/password":
        api = w.fresh_account(caller)
        kwargs["json"] = {"currentPassword": "s3cret-passw0rd", "newPassword": "another passphrase 2"}
    elif route == "DELETE /me":
        api = w.fresh_account(caller)
        kwargs["json"] = {"password": "s3cret-passw0rd"}
    elif route == "PATCH /admin/users/{id}":
        target = register_and_login(w.base_url)[1]
        path = path.replace("{id}", str(target["id"]))
        kwargs["json"] = {"disabled": False}
    elif route == "POST /images":
        kwargs["files"] = {"file": ("n.jpg", make_jpeg(), "image/jpeg")}
    elif route == "POST /uploads":
        kwargs["json"] = {"fileName": "big.jpg", "contentType": "image/jpeg", "size": 10}
    elif route == "GET /uploads/{id}":
        path = path.replace("{id}", w.upload_id)
    elif route in ("GET /groups/{id}", "GET /groups/{id}/images"):
        path = path.replace("{id}", str(w.group_id))
    elif route == "POST /groups":
        kwargs["json"] = {"name": unique("mxnew")}
    elif route == "PUT /groups/{id}":
        path = path.replace("{id}", str(w.group_id))
        kwargs["json"] = {"description": f"edit {n}"}
    elif route == "DELETE /groups/{id}":
        path = path.replace("{id}", str(w.new_group()))
    elif route == "POST /admin/gc":
        kwargs["params"] = {"graceSeconds": "3600"}
    elif route.startswith(("PATCH /admin/onedrive", "DELETE /admin/onedrive")):
        path = path.replace("{itemId}", "ITEM123")
        kwargs["json"] = {"name": "renamed.jpg"} if method == "PATCH" else None
    elif route == "GET /admin/onedrive/import/{jobId}":
        path = path.replace("{jobId}", "00000000-0000-4000-8000-000000000000")
    elif route == "POST /admin/onedrive/folders":
        kwargs["json"] = {"parentId": "root", "name": "new folder"}
    elif route == "POST /admin/onedrive/upload-sessions":
        kwargs["json"] = {"parentId": "root", "fileName": "a.jpg", "size": 100}
    elif route == "POST /admin/onedrive/import":
        kwargs["json"] = {"fileIds": ["ITEM123"]}
    elif route == "GET /admin/onedrive/callback":
        kwargs["params"] = {"state": "s" * 16, "code": "c" * 16}
    return api, method, path, kwargs


def _status(call: Call) -> int:
    api, method, path, kwargs = call
    return api.request(method, path, **{k: v for k, v in kwargs.items() if v is not None}).status_code


@pytest.mark.parametrize("route", sorted(EXPECTED))
def test_authorization_matrix(world: World, route: str) -> None:
    assert route in TEMPLATE_ROUTES, f"{route} is in the matrix but not in template.yaml"
    expected = EXPECTED[route]
    actual: dict[str, Any] = {}
    for caller in CALLERS:
        if route in IMAGE_ROUTES:
            actual[caller] = tuple(_status(_image_call(world, route, caller, state)) for state in STATES)
        else:
            actual[caller] = _status(_call(world, route, caller))
    assert actual == expected, _diff(route, expected, actual)


def _diff(route: str, expected: dict[str, Any], actual: dict[str, Any]) -> str:
    lines = [route]
    for caller in CALLERS:
        if expected[caller] != actual[caller]:
            lines.append(f"  {caller}: expected {expected[caller]}, got {actual[caller]}")
    return "\n".join(lines)


