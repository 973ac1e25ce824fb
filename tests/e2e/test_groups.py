"""Groups and gallery browsing over HTTP: admin commands, per-caller counts and covers, paging.

Other tests share the database: every test works in groups and accounts of its
own and only asserts on those (GET /groups is walked whole, then filtered).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.e2e.conftest import Upload, make_jpeg
from tests.helpers import Api, register_and_login, unique, wait_for
from tests.helpers import assert_error as _error
from tests.helpers import db as _db

pytestmark = pytest.mark.e2e

GROUP_KEYS = {"id", "name", "description", "imageCount", "cover", "createdAt"}
PAGE_KEYS = {"items", "page", "pageSize", "total", "totalPages", "nextCursor"}




def _new_group(admin: Api, name: str | None = None, description: str = "") -> dict[str, Any]:
    r = admin.post("/groups", json={"name": name or unique("group "), "description": description})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _order_key(image: dict[str, Any]) -> tuple[dt.datetime, int]:
    return dt.datetime.fromisoformat(image["createdAt"]), image["id"]


def _newest_first(images: list[dict[str, Any]]) -> list[int]:
    return [i["id"] for i in sorted(images, key=_order_key, reverse=True)]


def _walk(api: Api, path: str, size: int) -> tuple[list[dict[str, Any]], int]:
    """Every item of every page, by page number; checks the paging fields on the way."""
    items: list[dict[str, Any]] = []
    page, total = 1, None
    while True:
        r = api.get(f"{path}{'&' if '?' in path else '?'}page={page}&pageSize={size}")
        assert r.status_code == 200, r.text
        body = r.json()
        # GET /images (another function) has no cursor
        assert "nextCursor" in body or path.startswith("/images")
        assert set(body) | {"nextCursor"} == PAGE_KEYS and body["page"] == page
        assert body["pageSize"] == size
        total = body["total"] if total is None else total
        assert body["total"] == total and body["totalPages"] == -(-total // size)
        if not body["items"]:
            assert page == body["totalPages"] + 1 or total == 0
            return items, total
        assert len(body["items"]) == min(size, total - (page - 1) * size)
        if "nextCursor" in body:
            assert (body["nextCursor"] is None) == (page == body["totalPages"])
        items.extend(body["items"])
        page += 1


def _walk_cursor(api: Api, path: str, size: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    r = api.get(f"{path}?pageSize={size}")
    page = 1
    while True:
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["page"] == page
        items.extend(body["items"])
        if body["nextCursor"] is None:
            return items
        page += 1
        r = api.get(f"{path}?pageSize={size}&cursor={body['nextCursor']}")


def _all_groups(api: Api, size: int = 12) -> dict[int, dict[str, Any]]:
    items, total = _walk(api, "/groups", size)
    ids = [g["id"] for g in items]
    assert len(ids) == len(set(ids)) == total
    return {g["id"]: g for g in items}


def _thumb_ready(image_id: int) -> bool:
    rows = _db("SELECT b.thumb_status FROM images i JOIN blobs b ON b.sha256 = i.blob_sha256"
               " WHERE i.id = :i", i=image_id)
    return bool(rows) and rows[0][0] == "ready"


def _check_cover(cover: Any, image_id: int | None, ready_before: set[int]) -> None:
    """The cover is the expected image; its small thumbnail URL once the thumbnail is ready."""
    if image_id is None:
        assert cover is None
        return
    url = f"/images/{image_id}/thumbnail?size=small"
    assert cover["imageId"] == image_id, (cover, image_id)
    if image_id in ready_before:
        assert cover == {"imageId": image_id, "small": url}
    else:  # the pipeline may finish at any moment
        assert cover["small"] in (None, url)


# -- admin commands ----------------------------------------------------------------------------
def test_create_get_update_validation(admin: Api) -> None:
    name = unique("Holiday ")
    group = _new_group(admin, name, "Summer 2024")
    assert set(group) == GROUP_KEYS
    assert {k: group[k] for k in ("name", "description", "imageCount", "cover")} == {
        "name": name, "description": "Summer 2024", "imageCount": 0, "cover": None}
    dt.datetime.fromisoformat(group["createdAt"])
    anon = admin.anonymous()
    assert anon.get(f"/groups/{group['id']}").json() == group

    _error(admin.post("/groups", json={"name": name.upper()}), 409, "name_taken")
    _error(admin.post("/groups", json={"name": f"  {name.lower()} "}), 409, "name_taken")
    for bad in ({"name": ""}, {"name": "   "}, {"name": "x" * 101}, {"name": 5}, {},
                {"name": "ok", "description": "d" * 2001}, {"name": "ok", "description": 3},
                {"name": "tab\tname"}):
        _error(admin.post("/groups", json=bad), 400, "invalid_field")
    _error(admin.post("/groups", json={"name": unique("g"), "colour": "red"}), 400, "unknown_fields")
    _error(admin.post("/groups", data="not json", headers={"Content-Type": "application/json"}),
           400, "invalid_json")
    longest = _new_group(admin, unique("n") + "x" * 91, "d" * 2000)
    assert len(longest["name"]) == 100 and len(longest["description"]) == 2000

    renamed = unique("Renamed ")
    r = admin.put(f"/groups/{group['id']}", json={"name": renamed})
    assert r.status_code == 200, r.text
    assert r.json() == {**group, "name": renamed}
    r = admin.put(f"/groups/{group['id']}", json={"description": ""})
    assert r.json() == {**group, "name": renamed, "description": ""}
    assert admin.put(f"/groups/{group['id']}", json={}).json()["name"] == renamed
    assert admin.put(f"/groups/{group['id']}", json={"name": renamed.upper()}).status_code == 200
    _error(admin.put(f"/groups/{group['id']}", json={"name": longest["name"].lower()}), 409, "name_taken")
    _error(admin.put(f"/groups/{group['id']}", json={"name": ""}), 400, "invalid_field")
    _error(admin.put(f"/groups/{group['id']}", json={"id": 3}), 400, "unknown_fields")
    assert anon.get(f"/groups/{group['id']}").json()["name"] == renamed.upper()

    for method, path in (("GET", "/groups/987654321"), ("PUT", "/groups/987654321"),
                         ("DELETE", "/groups/987654321"), ("GET", "/groups/987654321/images")):
        _error(admin.request(method, path, json={"name": unique("g")}), 404, "group_not_found")
    for path in ("/groups/abc", "/groups/0x1", "/groups/abc/images"):
        _error(anon.get(path), 400, "invalid_id")


def test_commands_are_for_admins(admin: Api, user: tuple[Api, dict[str, Any]]) -> None:
    api, _ = user
    group = _new_group(admin)
    path = f"/groups/{group['id']}"
    _error(api.post("/groups", json={"name": unique("g")}), 403, "admin_only")
    _error(api.put(path, json={"name": unique("g")}), 403, "admin_only")
    _error(api.delete(path), 403, "admin_only")
    anon = api.anonymous()  # refused by the authorizer, as API Gateway does ({"message": ...})
    assert anon.post("/groups", json={"name": unique("g")}).status_code == 401
    assert anon.put(path, json={"name": unique("g")}).status_code == 401
    assert anon.delete(path).status_code == 401
    assert anon.get(path).json()["name"] == group["name"]


def test_delete_refuses_non_empty_unless_forced(admin: Api, user: tuple[Api, dict[str, Any]],
                                                upload: Upload) -> None:
    api, _ = user
    empty = _new_group(admin)
    r = admin.delete(f"/groups/{empty['id']}")
    assert r.status_code == 204 and r.content == b""
    _error(admin.get(f"/groups/{empty['id']}"), 404, "group_not_found")
    _error(admin.delete(f"/groups/{empty['id']}"), 404, "group_not_found")

    group = _new_group(admin)
    gid = group["id"]
    public = upload(api, groupId=gid)["id"]
    private = upload(api, isPrivate=1, groupId=gid)["id"]
    _error(admin.delete(f"/groups/{gid}"), 409, "group_not_empty")
    _error(admin.delete(f"/groups/{gid}?force=false"), 409, "group_not_empty")
    _error(admin.delete(f"/groups/{gid}?force=maybe"), 400, "invalid_force")
    assert admin.get(f"/groups/{gid}").json()["imageCount"] == 2
    assert admin.delete(f"/groups/{gid}?force=true").status_code == 204
    _error(admin.get(f"/groups/{gid}"), 404, "group_not_found")
    _error(api.anonymous().get(f"/groups/{gid}/images"), 404, "group_not_found")
    for iid in (public, private):
        info = api.get(f"/images/{iid}/info").json()
        assert info["groupId"] is None
    assert gid not in _all_groups(admin)
    assert not _db("SELECT 1 FROM listing_lists WHERE scope = :g", g=gid)
    # the name is free again
    assert _new_group(admin, group["name"])["id"] != gid


def test_owners_file_their_images_admins_move_any(admin: Api, user: tuple[Api, dict[str, Any]],
                                                  other: tuple[Api, dict[str, Any]],
                                                  upload: Upload) -> None:
    owner, _ = user
    stranger, _ = other
    g1, g2 = _new_group(admin)["id"], _new_group(admin)["id"]
    image = upload(owner, groupId=g1)
    assert image["groupId"] == g1
    upload(owner, groupId=987654321, status=400)
    r = owner.put(f"/images/{image['id']}", json={"groupId": g2})
    assert r.status_code == 200 and r.json()["groupId"] == g2
    _error(stranger.put(f"/images/{image['id']}", json={"groupId": g1}), 403, "not_owner")
    _error(owner.put(f"/images/{image['id']}", json={"groupId": 987654321}), 400, "unknown_group")
    r = admin.put(f"/images/{image['id']}", json={"groupId": g1})
    assert r.status_code == 200 and r.json()["groupId"] == g1
    assert [i["id"] for i in admin.get(f"/groups/{g1}/images").json()["items"]] == [image["id"]]
    assert admin.get(f"/groups/{g2}/images").json()["items"] == []
    r = admin.put(f"/images/{image['id']}", json={"groupId": None})
    assert r.json()["groupId"] is None
    assert admin.get(f"/groups/{g1}").json()["imageCount"] == 0


# -- acceptance: three groups, two owners, four kinds of caller -------------------------------------
def test_acceptance_counts_covers_and_pages_per_caller(base_url: str, admin: Api, upload: Upload) -> None:
    alice, alice_user = register_and_login(base_url)
    bob, bob_user = register_and_login(base_url)
    anon = Api(base_url)
    groups = [_new_group(admin, description=f"group {n}")["id"] for n in range(3)]
    # (uploader, group index, private): newest last; group 2 has only private images.
    plan = [(alice, 0, False), (bob, 0, True), (alice, 0, True), (bob, 0, False), (alice, 0, True),
            (bob, 1, False), (alice, 1, False), (bob, 1, True),
            (alice, 2, True), (bob, 2, True)]
    uploaded: list[tuple[dict[str, Any], int]] = []
    for who, g, private in plan:
        image = upload(who, make_jpeg(40, 30), isPrivate=int(private), groupId=groups[g])
        uploaded.append((image, g))
    # Thumbnails are made asynchronously (another pipeline): wait for one cover's, accept either.
    wait_for(lambda: _thumb_ready(uploaded[6][0]["id"]), timeout=180, interval=0.5)
    ready = {image["id"] for image, _ in uploaded if _thumb_ready(image["id"])}

    def expected(viewer: dict[str, Any] | None) -> dict[int, list[int]]:
        seen: dict[int, list[dict[str, Any]]] = {gid: [] for gid in groups}
        for image, g in uploaded:
            if (viewer is None or viewer.get("role") != "admin") and image["isPrivate"] \
                    and (viewer is None or image["creator"] != viewer["id"]):
                continue
            seen[groups[g]].append(image)
        return {gid: _newest_first(images) for gid, images in seen.items()}

    callers = [(anon, None), (alice, alice_user), (bob, bob_user), (admin, {"role": "admin", "id": 0})]
    for api, viewer in callers:
        want = expected(viewer)
        listed = _all_groups(api)
        for gid in groups:
            ids = want[gid]
            assert listed[gid]["imageCount"] == len(ids), (viewer, gid)
            _check_cover(listed[gid]["cover"], ids[0] if ids else None, ready)
            assert api.get(f"/groups/{gid}").json() == listed[gid]
            for size in (1, 2, 3, 100):
                items, total = _walk(api, f"/groups/{gid}/images", size)
                assert [i["id"] for i in items] == ids and total == len(ids), (viewer, gid, size)
            assert [i["id"] for i in _walk_cursor(api, f"/groups/{gid}/images", 2)] == ids
            items, _ = _walk(api, f"/images?groupId={gid}", 2)
            assert [i["id"] for i in items] == ids

    # Spot checks of the rule itself.
    anon_view = _all_groups(anon)
    assert anon_view[groups[2]]["imageCount"] == 0 and anon_view[groups[2]]["cover"] is None
    assert anon_view[groups[0]]["imageCount"] == 2 and anon_view[groups[1]]["imageCount"] == 2
    assert _all_groups(alice)[groups[0]]["imageCount"] == 4
    assert _all_groups(bob)[groups[0]]["imageCount"] == 3
    assert _all_groups(admin)[groups[0]]["imageCount"] == 5
    assert _all_groups(alice)[groups[2]]["cover"]["imageId"] == uploaded[8][0]["id"]
    assert _all_groups(bob)[groups[2]]["cover"]["imageId"] == uploaded[9][0]["id"]
    # Bob's newest image in group 1 is private: others get the next newest as cover.
    assert _all_groups(anon)[groups[1]]["cover"] == {
        "imageId": uploaded[6][0]["id"], "small": f"/images/{uploaded[6][0]['id']}/thumbnail?size=small"}
    assert _all_groups(bob)[groups[1]]["cover"]["imageId"] == uploaded[7][0]["id"]
    # Item shape is GET /images's; the owner sees nothing more than there (no accessKey in lists).
    item = alice.get(f"/groups/{groups[0]}/images?pageSize=1").json()["items"][0]
    assert item == alice.get(f"/images?groupId={groups[0]}&pageSize=1").json()["items"][0]
    assert item["id"] == uploaded[4][0]["id"] and item["isPrivate"] is True


def test_counts_and_covers_follow_changes(admin: Api, user: tuple[Api, dict[str, Any]],
                                          upload: Upload) -> None:
    api, _ = user
    anon = api.anonymous()
    gid = _new_group(admin)["id"]
    older = upload(api, groupId=gid)["id"]
    newer = upload(api, groupId=gid)["id"]

    def view(who: Api) -> tuple[int, int | None]:
        g = who.get(f"/groups/{gid}").json()
        return g["imageCount"], g["cover"] and g["cover"]["imageId"]

    assert view(anon) == (2, newer)
    # No thumbnail yet: the cover names the image, its small URL is null (as in the image JSON).
    sha = api.get(f"/images/{newer}/info").json()["sha256"]
    # Let the upload's own thumbnailing settle first, or it may overwrite the status set below.
    status = wait_for(lambda: next((r[0] for r in _db("SELECT thumb_status FROM blobs WHERE sha256 = :s",
                                                      s=sha) if r[0] in ("ready", "failed")), None))
    _db("UPDATE blobs SET thumb_status = 'processing' WHERE sha256 = :s", s=sha)
    try:
        assert anon.get(f"/groups/{gid}").json()["cover"] == {"imageId": newer, "small": None}
    finally:
        _db("UPDATE blobs SET thumb_status = :t WHERE sha256 = :s AND thumb_status = 'processing'",
            s=sha, t=status)
    assert api.put(f"/images/{newer}", json={"isPrivate": 1}).status_code == 200
    assert view(anon) == (1, older) and view(api) == (2, newer) and view(admin) == (2, newer)
    assert api.put(f"/images/{older}", json={"groupId": None}).status_code == 200
    assert view(anon) == (0, None) and view(api) == (1, newer)
    assert api.put(f"/images/{newer}", json={"isPrivate": 0}).status_code == 200
    assert view(anon) == (1, newer)
    assert api.delete(f"/images/{newer}").status_code == 204
    assert view(anon) == (0, None) and view(admin) == (0, None)
    body = anon.get(f"/groups/{gid}/images").json()
    assert body["items"] == [] and body["total"] == 0 and body["totalPages"] == 0


# -- paging ----------------------------------------------------------------------------------
def test_walk_every_page_exactly_once(base_url: str, admin: Api, upload: Upload) -> None:
    owner, owner_user = register_and_login(base_url)
    other, _ = register_and_login(base_url)
    gid = _new_group(admin)["id"]
    images = [upload(owner if n % 3 else other, make_jpeg(16, 16), groupId=gid,
                     isPrivate=int(n % 4 == 1)) for n in range(23)]
    visible_to_owner = [i for i in images if not i["isPrivate"] or i["creator"] == owner_user["id"]]
    public = [i for i in images if not i["isPrivate"]]
    for api, want in ((owner, visible_to_owner), (owner.anonymous(), public), (admin, images)):
        ids = _newest_first(want)
        for size in (1, 4, 5, 7, 22, 23, 24, 100):
            items, total = _walk(api, f"/groups/{gid}/images", size)
            assert [i["id"] for i in items] == ids and total == len(ids)
        assert [i["id"] for i in _walk_cursor(api, f"/groups/{gid}/images", 4)] == ids
        body = api.get(f"/groups/{gid}/images?page=99&pageSize=5").json()
        assert body["items"] == [] and body["total"] == len(ids) and body["page"] == 99
        assert body["totalPages"] == -(-len(ids) // 5) and body["nextCursor"] is None
    mine = _walk(owner, "/images?owner=me", 3)[0]
    assert [i["id"] for i in mine] == _newest_first([i for i in images if i["creator"] == owner_user["id"]])


def test_default_page_sizes(base_url: str, admin: Api, user: tuple[Api, dict[str, Any]],
                            upload: Upload) -> None:
    for _ in range(13):
        _new_group(admin)
    body = Api(base_url).get("/groups").json()
    assert body["pageSize"] == 12 and len(body["items"]) == 12 and body["page"] == 1
    gid = body["items"][0]["id"]
    api, _ = user
    for _ in range(21):
        upload(api, make_jpeg(8, 8), groupId=gid)
    body = Api(base_url).get(f"/groups/{gid}/images").json()
    assert body["pageSize"] == 20 and len(body["items"]) == 20 and body["total"] == 21


def test_groups_list_newest_first_each_once(admin: Api) -> None:
    mine = [_new_group(admin)["id"] for _ in range(5)]
    for size in (1, 2, 12, 100):
        items, total = _walk(Api(admin.base), "/groups", size)
        keys = [(dt.datetime.fromisoformat(g["createdAt"]), g["id"]) for g in items]
        assert keys == sorted(keys, reverse=True) and len(set(keys)) == total == len(items)
        assert [g for g in (x["id"] for x in items) if g in mine] == mine[::-1]
    cursor_ids = [g["id"] for g in _walk_cursor(Api(admin.base), "/groups", 3)]
    assert cursor_ids == [g["id"] for g in _walk(Api(admin.base), "/groups", 3)[0]]


@pytest.mark.parametrize("query", ["page=0", "page=-1", "page=x", "pageSize=0", "pageSize=101",
                                   "pageSize=abc", "page=1.5", "pageSize=-5", "page="])
def test_paging_errors(base_url: str, admin: Api, query: str) -> None:
    gid = _new_group(admin)["id"]
    for path in ("/groups", f"/groups/{gid}/images"):
        r = Api(base_url).get(f"{path}?{query}")
        if query == "page=":  # empty means the default
            assert r.status_code == 200, r.text
        else:
            _error(r, 400, "invalid_paging")


@pytest.mark.parametrize("cursor", ["x", "eyJwIjoxfQ", "!!!", "a" * 300, "eyJwIjowLCJ0IjoiMjAyNCIsImkiOjF9"])
def test_bad_cursor(base_url: str, admin: Api, cursor: str) -> None:
    gid = _new_group(admin)["id"]
    for path in ("/groups", f"/groups/{gid}/images"):
        _error(Api(base_url).get(f"{path}?cursor={cursor}"), 400, "invalid_cursor")
