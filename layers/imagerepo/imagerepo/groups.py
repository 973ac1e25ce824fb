"""Groups: admin-managed albums that images are filed into, browsed page by page.

A group exists for everyone; what it contains depends on who asks: its
``imageCount`` and ``cover`` (the newest image) are computed from the lists the
caller may see (see :mod:`imagerepo.listing`), so a private image never shows
up, not even as a count, for someone who cannot open it.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pg8000.exceptions

from imagerepo import listing
from imagerepo.db import UnitOfWork, unique_violation, unit_of_work
from imagerepo.errors import BadRequest, Conflict, NotFound, reject_unknown_fields
from imagerepo.images import parse_description
from imagerepo.security import Principal

MAX_NAME = 100


@dataclass(frozen=True)
class Group:
    id: int
    name: str
    description: str
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Group:
        return cls(id=row["id"], name=row["name"], description=row["description"],
                   created_at=row["created_at"])


_COLUMNS = "id, name, description, created_at"


# -- validation ----------------------------------------------------------------
def parse_name(value: Any) -> str:
    name = unicodedata.normalize("NFC", value).strip() if isinstance(value, str) else ""
    if not 1 <= len(name) <= MAX_NAME or any(unicodedata.category(ch)[0] == "C" for ch in name):
        raise BadRequest(f"name must be 1-{MAX_NAME} printable characters", code="invalid_field")
    return name


def _name_taken(exc: pg8000.exceptions.DatabaseError) -> bool:
    return unique_violation(exc) == "groups_name_key"


def _load(uow: UnitOfWork, group_id: int, *, for_update: bool = False) -> Group:
    lock = " FOR UPDATE" if for_update else ""
    row = uow.one(f"SELECT {_COLUMNS} FROM groups WHERE id = :id{lock}", id=group_id)
    if row is None:
        raise NotFound(f"group {group_id} not found", code="group_not_found")
    return Group.from_row(row)


# -- JSON with per-caller counts and covers ---------------------------------------
def _decorate(uow: UnitOfWork, who: Principal | None, groups: Sequence[Group]) -> list[dict[str, Any]]:
    """Group JSON: counts from the list counters, covers from the top of each visible list.

    A few indexed lookups per group, whatever the groups hold.
    """
    if not groups:
        return []
    refs = listing.visible_lists(who)
    params = {"gids": [g.id for g in groups], "kinds": [int(r.kind) for r in refs],
              "owners": [r.owner for r in refs]}
    visible = "unnest(CAST(:kinds AS smallint[]), CAST(:owners AS bigint[])) AS v (kind, owner)"
    counts = dict(uow.run(
        f"SELECT l.scope, sum(l.total) FROM listing_lists l JOIN {visible}"
        " ON l.kind = v.kind AND l.owner = v.owner"
        " WHERE l.scope = ANY(CAST(:gids AS bigint[])) GROUP BY l.scope", **params))
    newest: dict[int, listing.Key] = {}
    for gid, at, ident in uow.run(
            f"SELECT g.gid, s.key_at, s.key_id FROM unnest(CAST(:gids AS bigint[])) AS g (gid)"
            f" CROSS JOIN {visible}"
            " CROSS JOIN LATERAL listing_scan(v.kind, g.gid, v.owner, NULL, NULL, true, 1) s", **params):
        key = listing.Key(at, ident)
        if gid not in newest or key > newest[gid]:
            newest[gid] = key
    covers = {image.id: image for image in listing.load_images(uow, list(newest.values()))}
    out = []
    for g in groups:
        cover = covers.get(newest[g.id].id) if g.id in newest else None
        out.append({
            "id": g.id, "name": g.name, "description": g.description,
            "imageCount": int(counts.get(g.id) or 0),
            "cover": None if cover is None else {
                "imageId": cover.id, "small": cover.to_json(who)["thumbnails"]["small"]},
            "createdAt": g.created_at.isoformat(),
        })
    return out


# -- queries -------------------------------------------------------------------
def get(group_id: int, who: Principal | None) -> dict[str, Any]:
    with unit_of_work() as uow:
        listing.read_only(uow)
        return _decorate(uow, who, [_load(uow, group_id)])[0]


def list_page(who: Principal | None, page: int, page_size: int,
              cursor: str | None = None) -> dict[str, Any]:
    """GET /groups: newest group first."""
    with unit_of_work() as uow:
        listing.read_only(uow)
        win = listing.window(uow, [listing.GROUPS], page, page_size, cursor)
        rows = uow.rows(f"SELECT {_COLUMNS} FROM groups WHERE id = ANY(CAST(:ids AS bigint[]))",
                        ids=[k.id for k in win.keys]) if win.keys else []
        by_id = {row["id"]: Group.from_row(row) for row in rows}
        found = [by_id[k.id] for k in win.keys if k.id in by_id]
        return win.to_json(_decorate(uow, who, found))


def images_page(group_id: int, who: Principal | None, page: int, page_size: int,
                cursor: str | None = None) -> dict[str, Any]:
    """GET /groups/{id}/images: the images of the group the caller may see."""
    with unit_of_work() as uow:
        listing.read_only(uow)
        _load(uow, group_id)
        found, win = listing.images_window(uow, who, page, page_size, group_id=group_id, cursor=cursor)
    return win.to_json([image.to_json(who) for image in found])


# -- commands (admins; the functions check the role) ------------------------------
def create(who: Principal, body: dict[str, Any]) -> dict[str, Any]:
    reject_unknown_fields(body, {"name", "description"})
    name, description = parse_name(body.get("name")), parse_description(body.get("description"))
    try:
        with unit_of_work() as uow:
            row = uow.one(
                f"INSERT INTO groups (name, description, created_by) VALUES (:name, :descr, :by)"
                f" RETURNING {_COLUMNS}", name=name, descr=description, by=who.user_id)
            assert row is not None
            uow.commit()
    except pg8000.exceptions.DatabaseError as exc:
        if _name_taken(exc):
            raise Conflict(f"a group named {name!r} exists already", code="name_taken") from exc
        raise
    group = Group.from_row(row)
    return {"id": group.id, "name": group.name, "description": group.description, "imageCount": 0,
            "cover": None, "createdAt": group.created_at.isoformat()}


def update(group_id: int, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
    reject_unknown_fields(body, {"name", "description"})
    sets: dict[str, Any] = {}
    if "name" in body:
        sets["name"] = parse_name(body["name"])
    if "description" in body:
        sets["description"] = parse_description(body["description"])
    try:
        with unit_of_work() as uow:
            _load(uow, group_id, for_update=True)
            if sets:
                assignments = ", ".join(f"{column} = :{column}" for column in sets)
                uow.run(f"UPDATE groups SET {assignments}, updated_at = now() WHERE id = :id",
                        id=group_id, **sets)
            uow.commit()
    except pg8000.exceptions.DatabaseError as exc:
        if _name_taken(exc):
            raise Conflict(f"a group named {sets['name']!r} exists already", code="name_taken") from exc
        raise
    return get(group_id, who)


def delete(group_id: int, *, force: bool = False) -> int:
    """Delete a group; with images in it only when ``force``, which ungroups them. Returns that count.

    The group row is locked first: an upload or a move into the group (whose
    foreign-key check needs a share lock on it) waits, so none slips in between
    the check and the delete.
    """
    with unit_of_work() as uow:
        _load(uow, group_id, for_update=True)
        if uow.scalar("SELECT EXISTS (SELECT 1 FROM images WHERE group_id = :g)", g=group_id):
            if not force:
                held = int(uow.scalar("SELECT total FROM listing_lists WHERE kind = 2 AND scope = :g"
                                      " AND owner = 0", g=group_id) or 0)
                raise Conflict(f"group {group_id} holds {held} images: move them first, or delete"
                               " with ?force=true to ungroup them", code="group_not_empty")
            moved = int(uow.scalar(
                "WITH moved AS (UPDATE images SET group_id = NULL, updated_at = now()"
                " WHERE group_id = :g RETURNING 1) SELECT count(*) FROM moved", g=group_id))
        else:
            moved = 0
        uow.run("DELETE FROM groups WHERE id = :g", g=group_id)
        uow.commit()
    return moved
