"""OneDrive administration and import, end to end: the gateway, the functions, real MSAL,
and the HTTPS stand-in for the identity platform and Graph (devstack/onedrive_standin.py).

The import worker runs as its own function, invoked asynchronously through the local
Lambda Invoke API (devstack/lambda_api.py); tests poll the job, they never sleep on it.
"""

from __future__ import annotations

import io
import random
import secrets
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from PIL import Image

from devstack.onedrive_standin import StandIn
from tests.helpers import Api, register_and_login, unique, wait_for

pytestmark = pytest.mark.e2e

PAGE_SIZE = 7


# -- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def standin(stack: Any, base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    """The stand-in, and the functions' environment pointed at it (like `sam local --env-vars`)."""
    from devstack.lambda_api import start_lambda_api

    s = StandIn(cert_dir=tmp_path_factory.mktemp("onedrive-standin"), page_size=PAGE_SIZE).start()
    env = stack.runtime.env_overrides
    saved = dict(env)
    lambda_api = None
    if "AWS_ENDPOINT_URL_LAMBDA" not in env:  # until devstack/stack.py starts it itself
        lambda_api = start_lambda_api(stack.runtime)
    env.update(s.stack_env(f"{base_url}/admin/onedrive/callback"))
    env["ONEDRIVE_CACHE_KEY"] = secrets.token_urlsafe(32)
    env["ONEDRIVE_ROOT_FOLDER_ID"] = "root"
    try:
        yield s
    finally:
        env.clear()
        env.update(saved)
        if lambda_api is not None:
            lambda_api.stop()
        s.stop()


def new_admin(base_url: str) -> Api:
    from imagerepo.users import ensure_admin

    name = unique("odadmin")
    ensure_admin(f"{name}@example.com", "admin passphrase 1", name=name)
    api = Api(base_url)
    r = api.post("/login", json={"username": name, "password": "admin passphrase 1"})
    assert r.status_code == 200, r.text
    api.token = r.json()["access_token"]
    return api


def follow_authorization(standin: StandIn, authorization_url: str,
                         browser: requests.Session) -> requests.Response:
    """What the admin's browser does: the identity platform approves and redirects to our callback.

    ``browser`` is the session that received /connect's answer (its flow cookie)."""
    assert authorization_url.startswith(standin.url + "/")
    r = requests.get(authorization_url, verify=str(standin.ca_path), allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    # The callback is reached without any bearer token, as from a browser, with its cookies.
    return browser.get(r.headers["Location"], allow_redirects=False, timeout=60)


def connect(api: Api, standin: StandIn) -> dict[str, Any]:
    r = api.get("/admin/onedrive/connect")
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"authorizationUrl", "state", "expiresAt"} <= set(body)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(body["authorizationUrl"]).query))
    assert q["code_challenge_method"] == "S256" and q["state"] == body["state"] and q["nonce"]
    done = follow_authorization(standin, body["authorizationUrl"], api.session)
    assert done.status_code == 200, done.text
    return dict(done.json())


@pytest.fixture(scope="module")
def admin_od(standin: StandIn, base_url: str) -> Api:
    api = new_admin(base_url)
    assert connect(api, standin)["connected"] is True
    return api


@pytest.fixture
def od(admin_od: Api, standin: StandIn) -> Iterator[Api]:
    """The connected admin; reconnected if a test revoked the tokens, faults cleared after."""
    if admin_od.get("/admin/onedrive/status").status_code == 409:
        connect(admin_od, standin)
    yield admin_od
    standin.clear_faults()
    standin.access_token_lifetime = 3600


def error(r: requests.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    if code:
        assert body["code"] == code, body
    return dict(body)


def jpeg(seed: int, size: tuple[int, int] = (48, 32)) -> bytes:
    rng = random.Random(seed)
    img = Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def png(seed: int) -> bytes:
    rng = random.Random(seed)
    img = Image.frombytes("RGB", (24, 24), rng.randbytes(24 * 24 * 3))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def wait_job(api: Api, job_id: str, timeout: float = 120) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        r = api.get(f"/admin/onedrive/import/{job_id}")
        assert r.status_code == 200, r.text
        body = r.json()
        return body if body["status"] in ("finished", "failed") else None
    return dict(wait_for(finished, timeout=timeout, interval=0.25))


def start_import(api: Api, **body: Any) -> dict[str, Any]:
    r = api.post("/admin/onedrive/import", json=body)
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == job["statusUrl"] == f"/admin/onedrive/import/{job['jobId']}"
    return dict(job)


# -- access -------------------------------------------------------------------------------
ADMIN_ROUTES = [
    ("GET", "/admin/onedrive/connect"), ("GET", "/admin/onedrive/status"),
    ("GET", "/admin/onedrive/items"), ("POST", "/admin/onedrive/folders"),
    ("PATCH", "/admin/onedrive/items/ABC"), ("DELETE", "/admin/onedrive/items/ABC"),
    ("POST", "/admin/onedrive/upload-sessions"), ("POST", "/admin/onedrive/import"),
    ("GET", "/admin/onedrive/import/00000000-0000-4000-8000-000000000000"),
]


def test_only_admins_reach_onedrive_routes(standin: StandIn, base_url: str) -> None:
    user, _ = register_and_login(base_url)
    for method, path in ADMIN_ROUTES:
        error(user.request(method, path, json={}), 403, "admin_only")
        assert user.anonymous().request(method, path, json={}).status_code == 401


def test_not_connected_answers_with_an_authorization_url(standin: StandIn, base_url: str) -> None:
    api = new_admin(base_url)
    r = api.get("/admin/onedrive/status")
    assert (r.status_code, r.json()) == (200, {"connected": False})
    body = error(api.get("/admin/onedrive/items"), 409, "onedrive_not_connected")
    assert body["authorizationUrl"].startswith(f"{standin.url}/{standin.tenant}/oauth2/v2.0/authorize?")
    # That URL is a complete flow: following it connects this admin.
    done = follow_authorization(standin, body["authorizationUrl"], api.session)
    assert done.status_code == 200 and done.json()["connected"] is True
    assert api.get("/admin/onedrive/items").status_code == 200


# -- connection ---------------------------------------------------------------------------
def test_connect_and_status(od: Api, standin: StandIn) -> None:
    r = od.get("/admin/onedrive/status")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["connected"] is True
    assert body["account"]["username"] == standin.user["userPrincipalName"]
    assert body["account"]["name"] == standin.user["displayName"]
    quota = body["quota"]
    assert quota["total"] == standin.drive.quota_total and quota["state"] == "normal"
    assert quota["used"] + quota["remaining"] == quota["total"]
    assert body["drive"]["driveType"] == "personal" and body["rootFolderId"] == "root"


def test_token_cache_is_stored_encrypted(od: Api) -> None:
    from imagerepo.db import unit_of_work

    with unit_of_work() as uow:
        rows = uow.rows("SELECT token_cache FROM onedrive_connections")
        flows = uow.rows("SELECT flow FROM onedrive_auth_flows")
    assert rows
    for row in rows:
        blob = bytes(row["token_cache"])
        assert blob[0] == 1 and b"rt-" not in blob and b"RefreshToken" not in blob and b"secret" not in blob
    for row in flows:
        assert b"code_verifier" not in bytes(row["flow"])


def test_callback_state_is_single_use(od: Api, standin: StandIn) -> None:
    start = od.get("/admin/onedrive/connect").json()
    r = requests.get(start["authorizationUrl"], verify=str(standin.ca_path), allow_redirects=False,
                     timeout=10)
    callback = r.headers["Location"]
    assert od.session.get(callback, timeout=60).status_code == 200
    replay = od.session.get(callback, timeout=60)
    error(replay, 400, "onedrive_invalid_state")
    error(requests.get(f"{od.base}/admin/onedrive/callback?code=x&state=forged-state-123", timeout=60),
          400, "onedrive_invalid_state")
    error(requests.get(f"{od.base}/admin/onedrive/callback", timeout=60), 400, "onedrive_invalid_state")


def test_state_is_bound_to_the_browser_of_the_admin_who_started(od: Api, standin: StandIn,
                                                                 base_url: str) -> None:
    """A flow started by one admin cannot be completed in another browser (a victim sent the
    authorization URL would connect their OneDrive to the attacker's account)."""
    start = od.get("/admin/onedrive/connect")
    cookie = start.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Path=/admin/onedrive/callback" in cookie and "SameSite=Lax" in cookie
    victim = requests.Session()
    body = error(follow_authorization(standin, start.json()["authorizationUrl"], victim), 400,
                 "onedrive_state_not_bound")
    assert "another browser" in body["message"]
    other = new_admin(base_url)  # another admin's browser, with its own flow cookie, fails too
    assert other.get("/admin/onedrive/connect").status_code == 200
    again = od.get("/admin/onedrive/connect").json()
    error(follow_authorization(standin, again["authorizationUrl"], other.session), 400,
          "onedrive_state_not_bound")
    assert other.get("/admin/onedrive/status").json() == {"connected": False}


def test_import_job_is_readable_by_its_creator_only(od: Api, standin: StandIn, base_url: str) -> None:
    from imagerepo.db import unit_of_work

    folder = standin.drive.add_folder("root", unique("Mine "))
    standin.drive.add_file(folder, "m.jpg", jpeg(random.randrange(10**9)))
    job = start_import(od, folderIds=[folder], isPrivate=True)
    done = wait_job(od, job["jobId"])
    assert done["done"] == 1
    error(new_admin(base_url).get(f"/admin/onedrive/import/{job['jobId']}"), 404, "job_not_found")
    # A private import gets a key: stored hashed, obtainable by its owner.
    image_id = done["items"][0]["imageId"]
    with unit_of_work() as uow:
        assert uow.scalar("SELECT access_key_hash IS NOT NULL FROM images WHERE id = :i", i=image_id)
    key = od.post(f"/images/{image_id}/access-key").json()["accessKey"]
    anon = od.anonymous()
    assert anon.get(f"/images/{image_id}/info").status_code == 403
    assert anon.get(f"/images/{image_id}/info", params={"accessKey": key}).status_code == 200


def test_declined_consent_is_reported(od: Api, standin: StandIn) -> None:
    start = od.get("/admin/onedrive/connect").json()
    standin.deny_next_authorization = True
    body = error(follow_authorization(standin, start["authorizationUrl"], od.session), 400,
                 "onedrive_authorization_denied")
    assert "access_denied" in body["message"]
    assert od.get("/admin/onedrive/status").status_code == 200  # the existing connection is kept


# -- folders and files ----------------------------------------------------------------------
def test_list_follows_graph_paging(od: Api, standin: StandIn) -> None:
    folder = standin.drive.add_folder("root", unique("Paged "))
    for n in range(12):
        standin.drive.add_file(folder, f"img{n:02}.jpg", jpeg(1000 + n))
    for n in range(3):
        standin.drive.add_folder(folder, f"sub{n}")
    standin.drive.add_file(folder, "readme.txt", b"hello", "text/plain")
    before = standin.stats["graph GET children"]
    r = od.get("/admin/onedrive/items", params={"folderId": folder})
    assert r.status_code == 200, r.text
    body = r.json()
    assert standin.stats["graph GET children"] - before == 3  # 16 children, pages of 7
    assert body["folder"]["id"] == folder and body["folder"]["type"] == "folder"
    assert [f["name"] for f in body["folders"]] == ["sub0", "sub1", "sub2"]
    assert sorted(f["name"] for f in body["files"]) == [f"img{n:02}.jpg" for n in range(12)]
    assert body["otherFiles"] == 1 and body["truncated"] is False
    first = body["files"][0]
    assert first["isImage"] and first["mimeType"] == "image/jpeg" and first["width"] == 48
    root = od.get("/admin/onedrive/items").json()  # the configured root by default
    assert root["folder"]["name"] == "root" and any(f["id"] == folder for f in root["folders"])


def test_list_errors(od: Api, standin: StandIn) -> None:
    error(od.get("/admin/onedrive/items", params={"folderId": "../../me"}), 400, "invalid_item_id")
    error(od.get("/admin/onedrive/items", params={"folderId": "NOPE!404"}), 404, "onedrive_item_not_found")
    file_id = standin.drive.add_file("root", unique("f") + ".jpg", jpeg(5))
    error(od.get("/admin/onedrive/items", params={"folderId": file_id}), 400, "not_a_folder")


def test_create_rename_delete(od: Api, standin: StandIn) -> None:
    parent = standin.drive.add_folder("root", unique("Manage "))
    r = od.post("/admin/onedrive/folders", json={"parentId": parent, "name": "Albums"})
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["name"] == "Albums" and first["type"] == "folder" and first["parentId"] == parent
    second = od.post("/admin/onedrive/folders", json={"parentId": parent, "name": "albums"}).json()
    assert second["name"] == "albums 1"  # conflict → renamed by OneDrive
    error(od.post("/admin/onedrive/folders", json={"parentId": parent, "name": "Albums",
                                                   "conflictBehavior": "fail"}),
          409, "onedrive_name_conflict")
    for bad in ["", "a/b", "CON", "trailing.", "x" * 300]:
        error(od.post("/admin/onedrive/folders", json={"parentId": parent, "name": bad}), 400, "invalid_name")
    error(od.post("/admin/onedrive/folders", json={"parentId": "a/b", "name": "x"}), 400, "invalid_item_id")

    r = od.request("PATCH", f"/admin/onedrive/items/{urllib.parse.quote(second['id'], safe='')}",
                   json={"name": "Best of 2024"})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Best of 2024" and r.json()["id"] == second["id"]
    error(od.request("PATCH", f"/admin/onedrive/items/{urllib.parse.quote(second['id'], safe='')}",
                     json={"name": "Albums"}), 409, "onedrive_name_conflict")
    error(od.request("PATCH", "/admin/onedrive/items/NOPE!1", json={"name": "x"}), 404,
          "onedrive_item_not_found")
    error(od.request("PATCH", f"/admin/onedrive/items/{urllib.parse.quote(first['id'], safe='')}",
                     json={"name": "x", "parentId": "y"}), 400, "unknown_fields")

    r = od.delete(f"/admin/onedrive/items/{urllib.parse.quote(first['id'], safe='')}")
    assert r.status_code == 204, r.text
    listing = od.get("/admin/onedrive/items", params={"folderId": parent}).json()
    assert [f["name"] for f in listing["folders"]] == ["Best of 2024"]
    error(od.delete(f"/admin/onedrive/items/{urllib.parse.quote(first['id'], safe='')}"), 404,
          "onedrive_item_not_found")
    error(od.delete("/admin/onedrive/items/root"), 400, "invalid_item_id")


def test_upload_session(od: Api, standin: StandIn) -> None:
    folder = standin.drive.add_folder("root", unique("Uploads "))
    r = od.post("/admin/onedrive/upload-sessions", json={"folderId": folder, "fileName": "new photo.jpg"})
    assert r.status_code == 201, r.text
    session = r.json()
    assert session["uploadUrl"].startswith(standin.url) and session["nextExpectedRanges"] == ["0-"]
    data = jpeg(77, (64, 64))
    half = len(data) // 2
    verify = str(standin.ca_path)
    r = requests.put(session["uploadUrl"], data=data[:half], verify=verify, timeout=10,
                     headers={"Content-Range": f"bytes 0-{half - 1}/{len(data)}"})
    assert r.status_code == 202 and r.json()["nextExpectedRanges"] == [f"{half}-"]
    r = requests.put(session["uploadUrl"], data=data[half:], verify=verify, timeout=10,
                     headers={"Content-Range": f"bytes {half}-{len(data) - 1}/{len(data)}"})
    assert r.status_code == 201, r.text
    files = od.get("/admin/onedrive/items", params={"folderId": folder}).json()["files"]
    assert [(f["name"], f["size"]) for f in files] == [("new photo.jpg", len(data))]
    error(od.post("/admin/onedrive/upload-sessions", json={"folderId": folder, "fileName": "a:b.jpg"}),
          400, "invalid_name")
    error(od.post("/admin/onedrive/upload-sessions", json={"folderId": folder, "fileName": "new photo.jpg",
                                                          "conflictBehavior": "fail"}),
          409, "onedrive_name_conflict")


# -- tokens and throttling ----------------------------------------------------------------
def test_expired_access_token_is_refreshed_silently(od: Api, standin: StandIn) -> None:
    grants = standin.stats["grant_refresh_token"]
    standin.expire_access_tokens()  # Graph now says 401 to the token MSAL still holds
    r = od.get("/admin/onedrive/status")
    assert r.status_code == 200, r.text
    assert standin.stats["grant_refresh_token"] == grants + 1
    # Short-lived tokens: MSAL itself sees them as expired and refreshes before calling Graph.
    standin.access_token_lifetime = 60
    standin.expire_access_tokens()
    assert od.get("/admin/onedrive/status").status_code == 200
    unauthorized = standin.stats["graph"]
    assert od.get("/admin/onedrive/items").status_code == 200
    assert standin.stats["grant_refresh_token"] >= grants + 3
    assert standin.stats["graph"] - unauthorized == 2  # item + children: no 401 round trip


def test_revoked_refresh_token_asks_for_a_new_authorization(od: Api, standin: StandIn) -> None:
    standin.revoke_refresh_tokens()
    standin.expire_access_tokens()
    body = error(od.get("/admin/onedrive/items"), 409, "onedrive_reauthorization_required")
    assert "invalid_grant" in body["message"] and "connect again" in body["message"]
    assert body["authorizationUrl"].startswith(standin.url)
    error(od.get("/admin/onedrive/status"), 409, "onedrive_reauthorization_required")
    assert follow_authorization(standin, body["authorizationUrl"], od.session).status_code == 200
    assert od.get("/admin/onedrive/items").status_code == 200


def test_throttling_is_retried_honouring_retry_after(od: Api, standin: StandIn) -> None:
    standin.inject(429, 2, retry_after=1, path="/children")
    served = standin.stats["faults_served"]
    started = time.monotonic()
    r = od.get("/admin/onedrive/items")
    assert r.status_code == 200, r.text
    assert time.monotonic() - started >= 2.0
    assert standin.stats["faults_served"] == served + 2
    standin.inject(503, 1)  # no Retry-After: exponential backoff
    assert od.get("/admin/onedrive/status").status_code == 200
    standin.inject(429, 10, retry_after=0)
    body = error(od.get("/admin/onedrive/status"), 503, "onedrive_throttled")
    assert "after 3 retries" in body["message"]
    standin.clear_faults()
    standin.inject(500, 1)
    error(od.get("/admin/onedrive/status"), 502, "onedrive_error")


# -- import -------------------------------------------------------------------------------
def _blob_refcount(sha: str) -> tuple[int, int]:
    from imagerepo.db import unit_of_work

    with unit_of_work() as uow:
        row = uow.one("SELECT refcount, (SELECT count(*) FROM blobs WHERE sha256 = :s) AS n FROM blobs"
                      " WHERE sha256 = :s", s=sha)
    assert row is not None
    return int(row["refcount"]), int(row["n"])


def test_import_a_folder_into_a_new_group_idempotently(od: Api, standin: StandIn, base_url: str) -> None:
    name = unique("Holiday ")
    folder = standin.drive.add_folder("root", name)
    seed = random.randrange(10**9)
    for n in range(19):
        data = jpeg(seed + n) if n % 3 else png(seed + n)
        standin.drive.add_file(folder, f"photo{n:02}.{'jpg' if n % 3 else 'png'}", data)
    standin.drive.add_file(folder, "photo00 copy.png", png(seed))  # byte-identical to photo00.png
    standin.drive.add_file(folder, "notes.txt", b"not an image", "text/plain")
    standin.drive.add_folder(folder, "ignored subfolder")
    downloads = standin.stats["download"]

    job = start_import(od, folderIds=[folder])
    assert job["status"] == "queued"
    assert [g["name"] for g in job["groups"]] == [name]  # a new group named after the folder
    group_id = job["groups"][0]["id"]
    done = wait_job(od, job["jobId"])
    assert done["status"] == "finished", done
    counts = (done["total"], done["done"], done["skipped"], done["failed"], done["pending"])
    assert counts == (21, 20, 1, 0, 0)
    skipped = [i for i in done["items"] if i["status"] == "skipped"]
    assert [(i["name"], i["reason"]) for i in skipped] == [("notes.txt", "not an image (text/plain)")]
    assert standin.stats["download"] - downloads == 20  # the non-image was never downloaded
    assert all(i["imageId"] and i["groupId"] == group_id for i in done["items"] if i["status"] == "done")

    r = Api(base_url).get("/images", params={"groupId": group_id, "pageSize": 100})
    assert r.status_code == 200 and r.json()["total"] == 20
    imgs = {i["name"]: i for i in r.json()["items"]}
    assert set(imgs) == {f"photo{n:02}.{'jpg' if n % 3 else 'png'}" for n in range(19)} | {"photo00 copy.png"}
    assert imgs["photo00.png"]["sha256"] == imgs["photo00 copy.png"]["sha256"]
    assert imgs["photo00.png"]["id"] != imgs["photo00 copy.png"]["id"]
    assert _blob_refcount(imgs["photo00.png"]["sha256"]) == (2, 1)  # stored once, referenced twice
    assert len({i["sha256"] for i in imgs.values()}) == 19
    assert all(i["creator"] == done["createdBy"] and not i["isPrivate"] for i in imgs.values())
    original = Api(base_url).get(f"/images/{imgs['photo05.jpg']['id']}")
    assert original.status_code == 200 and original.content == standin.drive.items[
        next(i["driveItemId"] for i in done["items"] if i["name"] == "photo05.jpg")].content

    # Thumbnails follow through the S3-event pipeline, as for any upload.
    def thumbnailed() -> bool:
        info = Api(base_url).get(f"/images/{imgs['photo01.jpg']['id']}/info").json()
        return bool(info["thumbnails"]["status"] == "ready")
    wait_for(thumbnailed, timeout=60)

    # Importing the same folder again creates nothing.
    again = start_import(od, folderIds=[folder])
    assert again["groups"] == job["groups"]  # the group is reused, not duplicated
    done2 = wait_job(od, again["jobId"])
    assert (done2["status"], done2["total"], done2["done"], done2["skipped"]) == ("finished", 21, 0, 21)
    reasons = {i["reason"].split(" as image ")[0] for i in done2["items"]}
    assert reasons == {"unchanged since imported", "not an image (text/plain)"}
    assert Api(base_url).get("/images", params={"groupId": group_id}).json()["total"] == 20

    # A file whose content changed is a new version: imported again, once.
    changed = next(i["driveItemId"] for i in done["items"] if i["name"] == "photo01.jpg")
    standin.drive.replace_content(changed, jpeg(seed + 999))
    third = wait_job(od, start_import(od, folderIds=[folder])["jobId"])
    assert (third["done"], third["skipped"]) == (1, 20)
    assert [i["name"] for i in third["items"] if i["status"] == "done"] == ["photo01.jpg"]


def test_import_files_into_a_named_group_with_failures(od: Api, standin: StandIn, base_url: str) -> None:
    folder = standin.drive.add_folder("root", unique("Mixed "))
    good = standin.drive.add_file(folder, "good.jpg", jpeg(random.randrange(10**9)))
    fake = standin.drive.add_file(folder, "fake.jpg", b"\xff\xd8\xff this is not really a jpeg")
    gone = standin.drive.add_file(folder, "gone.jpg", jpeg(random.randrange(10**9)))
    group = unique("Named group ")
    # gone.jpg disappears between the request and the worker's download.
    standin.inject(404, 1, path=f"/{urllib.parse.quote(gone, safe='')}/content")
    job = start_import(od, fileIds=[good, fake, gone], groupName=group)
    assert [g["name"] for g in job["groups"]] == [group]
    done = wait_job(od, job["jobId"])
    by_name = {i["name"]: i for i in done["items"]}
    assert by_name["good.jpg"]["status"] == "done"
    assert by_name["fake.jpg"]["status"] == "skipped"
    assert by_name["fake.jpg"]["reason"].startswith("not an importable image")
    gone_item = by_name["gone.jpg"]
    assert (gone_item["status"], gone_item["reason"]) == ("failed", "no longer in OneDrive")
    assert (done["total"], done["done"], done["skipped"], done["failed"]) == (3, 1, 1, 1)
    same = start_import(od, fileIds=[good], groupName=group.upper())
    assert same["groups"] == job["groups"]  # names match case-insensitively
    assert wait_job(od, same["jobId"])["skipped"] == 1


def test_import_survives_throttling(od: Api, standin: StandIn) -> None:
    folder = standin.drive.add_folder("root", unique("Throttled "))
    for n in range(3):
        standin.drive.add_file(folder, f"t{n}.jpg", jpeg(random.randrange(10**9)))
    standin.inject(429, 2, retry_after=1, path="/_download/")  # the worker's downloads are throttled
    job = start_import(od, folderIds=[folder])
    done = wait_job(od, job["jobId"])
    assert (done["status"], done["done"]) == ("finished", 3)


def test_509_is_throttling_and_the_api_503_carries_retry_after(od: Api, standin: StandIn) -> None:
    served = standin.stats["faults_served"]
    standin.inject(509, 1, retry_after=1, path="/children")  # bandwidthLimitExceeded
    assert od.get("/admin/onedrive/items").status_code == 200
    assert standin.stats["faults_served"] == served + 1
    standin.inject(509, 10, retry_after=5)
    r = od.get("/admin/onedrive/status")
    error(r, 503, "onedrive_throttled")
    assert r.headers["Retry-After"] == "5"
    standin.clear_faults()
    served = standin.stats["faults_served"]
    standin.inject(429, 10, retry_after=30)  # longer than an API function may wait: not slept
    r = od.get("/admin/onedrive/status")
    error(r, 503, "onedrive_throttled")
    assert r.headers["Retry-After"] == "30" and standin.stats["faults_served"] == served + 1


@pytest.fixture
def short_worker_wait(stack: Any) -> Iterator[None]:
    """The worker sleeps at most 1 s inside one Graph request (120 s in production)."""
    env = stack.runtime.env_overrides
    env["GRAPH_WORKER_MAX_WAIT"] = "1"
    yield
    env.pop("GRAPH_WORKER_MAX_WAIT", None)


def _job_row(admin: Api, folder: str, name: str) -> str:
    import json
    import uuid

    from imagerepo.db import unit_of_work

    job_id = str(uuid.uuid4())
    with unit_of_work() as uow:  # a job as POST /admin/onedrive/import records it, minus the invoke
        uow.run("INSERT INTO onedrive_import_jobs (id, admin_id, request)"
                " VALUES (:id, :a, CAST(:r AS jsonb))",
                id=job_id, a=admin.get("/me").json()["id"],
                r=json.dumps({"roots": [{"id": folder, "name": name, "kind": "folder", "groupId": None}]}))
        uow.commit()
    return job_id


def test_retry_after_beyond_the_budget_is_waited_out_by_a_later_invocation(
        od: Api, standin: StandIn, stack: Any, short_worker_wait: None) -> None:
    folder = standin.drive.add_folder("root", unique("Patience "))
    standin.drive.add_file(folder, "p.jpg", jpeg(random.randrange(10**9)))
    job_id = _job_row(od, folder, "Patience")
    standin.download_log.clear()
    standin.inject(429, 1, retry_after=4, path="/_download/")
    # 62 s left: 2 s of budget past the 60 s safety margin, less than the 4 s asked for.
    result = stack.runtime.invoke("OneDriveImportWorkerFunction", {"jobId": job_id}, timeout=62)
    assert result == {"jobId": job_id, "outcome": "waiting"}
    status = od.get(f"/admin/onedrive/import/{job_id}").json()
    assert status["status"] == "running" and status["throttledUntil"] and status["failed"] == 0
    done = wait_job(od, job_id)
    assert (done["status"], done["done"], done["failed"]) == ("finished", 1, 0)
    (throttled_at, first), (retried_at, second) = standin.download_log[:2]
    assert (first, second) == (429, 200) and len(standin.download_log) == 2
    assert retried_at - throttled_at >= 4.0, "Retry-After was not waited out"


def test_listing_throttled_beyond_the_wait_does_not_fail_the_job(
        od: Api, standin: StandIn, short_worker_wait: None) -> None:
    folder = standin.drive.add_folder("root", unique("Listed "))
    for n in range(2):
        standin.drive.add_file(folder, f"l{n}.jpg", jpeg(random.randrange(10**9)))
    standin.inject(429, 1, retry_after=2, path="/children")
    job = start_import(od, folderIds=[folder])
    done = wait_job(od, job["jobId"])
    assert (done["status"], done["done"], done["failed"]) == ("finished", 2, 0), done


def test_import_with_revoked_authorization_fails_the_job(od: Api, standin: StandIn) -> None:
    folder = standin.drive.add_folder("root", unique("Revoked "))
    standin.drive.add_file(folder, "a.jpg", jpeg(random.randrange(10**9)))
    standin.access_token_lifetime = 60  # every token request refreshes from now on
    standin.expire_access_tokens()
    assert od.get("/admin/onedrive/status").status_code == 200
    # The worker's first listing is throttled for 1 s: by its retry, the grant is revoked.
    standin.inject(429, 1, retry_after=1, path="/children")
    job = start_import(od, folderIds=[folder])
    standin.revoke_refresh_tokens()
    done = wait_job(od, job["jobId"])
    assert done["status"] == "failed" and "authorization" in done["error"], done
    assert all(i["status"] == "failed" for i in done["items"])


def test_worker_hands_over_to_itself_near_its_deadline(od: Api, standin: StandIn, stack: Any) -> None:
    """With under a minute left the worker re-invokes itself (async) instead of starting a file."""
    import json
    import uuid

    from imagerepo.db import unit_of_work

    folder = standin.drive.add_folder("root", unique("Deadline "))
    for n in range(2):
        standin.drive.add_file(folder, f"d{n}.jpg", jpeg(random.randrange(10**9)))
    admin_id = od.get("/me").json()["id"]
    job_id = str(uuid.uuid4())
    with unit_of_work() as uow:  # a job as POST /admin/onedrive/import records it, minus the invoke
        uow.run("INSERT INTO onedrive_import_jobs (id, admin_id, request)"
                " VALUES (:id, :a, CAST(:r AS jsonb))",
                id=job_id, a=admin_id, r=json.dumps({"roots": [{"id": folder, "name": "Deadline",
                                                                "kind": "folder", "groupId": None}]}))
        uow.commit()
    # 30 s left (< the 60 s safety margin): it lists the folder, then hands over.
    result = stack.runtime.invoke("OneDriveImportWorkerFunction", {"jobId": job_id}, timeout=30)
    assert result == {"jobId": job_id, "outcome": "continued"}
    done = wait_job(od, job_id)
    assert (done["status"], done["total"], done["done"]) == ("finished", 2, 2)
    again = stack.runtime.invoke("OneDriveImportWorkerFunction", {"jobId": job_id})
    assert again["outcome"] == "nothing to do"  # a duplicate delivery is harmless


def test_import_validation(od: Api, standin: StandIn) -> None:
    folder = standin.drive.add_folder("root", unique("Valid "))
    file_id = standin.drive.add_file(folder, "x.jpg", jpeg(3))
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({}, 400, "nothing_to_import"),
        ({"folderIds": []}, 400, "nothing_to_import"),
        ({"folderIds": "abc"}, 400, "invalid_field"),
        ({"folderIds": ["../x"]}, 400, "invalid_item_id"),
        ({"folderIds": [file_id]}, 400, "not_a_folder"),
        ({"fileIds": [folder]}, 400, "not_a_file"),
        ({"fileIds": ["NOPE!1"]}, 404, "onedrive_item_not_found"),
        ({"folderIds": [folder], "groupId": 10**12}, 400, "unknown_group"),
        ({"folderIds": [folder], "groupId": 1, "groupName": "x"}, 400, "invalid_field"),
        ({"folderIds": [folder], "groupName": ""}, 400, "invalid_field"),
        ({"folderIds": [folder], "surprise": 1}, 400, "unknown_fields"),
        ({"fileIds": [f"ID{n}" for n in range(101)]}, 400, "too_many_items"),
    ]
    for body, status, code in cases:
        error(od.post("/admin/onedrive/import", json=body), status, code)
    error(od.get("/admin/onedrive/import/not-a-uuid"), 400, "invalid_id")
    error(od.get("/admin/onedrive/import/00000000-0000-4000-8000-000000000000"), 404, "job_not_found")
