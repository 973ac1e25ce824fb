"""The paged-list engine behind GET /images, GET /groups/{id}/images and GET /groups.

Pages are public API (``page``, ``pageSize``, ``total``, ``totalPages``), but no
request counts rows or skips rows with OFFSET: page 5000 costs what page 1 costs.

Lists
    Every listing is one *list*, or the merge of two disjoint lists, of keys
    ``(created_at, id)`` ordered newest first (``id`` breaks ties, so the order is
    total and stable)::

        kind 1 PUBLIC   public images            scope = 0 (all) or a group id
        kind 2 ALL      all images (admins)      scope
        kind 3 OWNED    one owner's images       scope, owner   (owner=me)
        kind 4 PRIVATE  one owner's private ones scope, owner
        kind 5 GROUPS   all groups

    Anonymous callers read PUBLIC, admins ALL, ``owner=me`` OWNED; a signed-in
    user reads PUBLIC merged with their own PRIVATE list. A private image can only
    ever come out of its owner's PRIVATE list or an admin's ALL list, so counts,
    covers and pages cannot leak it.

Counters and rank blocks (tables ``listing_lists``, ``listing_blocks``, migration 003)
    ``listing_lists.total`` is each list's size, so ``total`` is one or two primary
    key lookups. ``listing_blocks`` cuts each list, from its oldest key up, into
    blocks of 64..512 keys (256 when built in bulk); a block knows its first key
    ``lo``, its size ``n`` and ``older``, the number of keys below it. The key at position ``p`` from the top
    has rank ``r = total - 1 - p`` from the bottom: one index lookup finds the
    block with the greatest ``older <= r``, and an index scan of at most half a
    block (from its lower edge or from the next block's, whichever is nearer)
    reaches the key. From there the page is a keyset scan
    (``(created_at, id) <= key ORDER BY ... DESC LIMIT size``) on the list's own
    index. Cost: O(log blocks + block size + page size), whatever the page number.
    Pages within the first 256 rows use a short OFFSET instead (cheaper than a seek).

    Ranks count from the *oldest* key because new images are always the newest:
    an upload changes only the top block (``n + 1``), never the ``older`` of the
    blocks below. A delete, a privacy change or a move between groups in the
    middle of a list adds or removes one key there and shifts ``older`` of the
    blocks above it: one UPDATE of at most total/128 small rows, the price paid by
    the rare operation instead of by every read. Blocks over 512 keys are split
    (an index scan of half the block), blocks under 64 merged into a neighbour.

Maintenance (triggers, all in SQL so no writer can forget it)
    Statement triggers on ``images`` and ``groups`` record which keys entered or
    left which lists in ``listing_pending``; a deferred constraint trigger applies
    them at COMMIT, locking the affected list rows in one global order. Counter
    locks are therefore held only while committing (uploads do not serialise on
    the global lists for the length of their transactions, and cannot deadlock
    against chunk or blob locks). A statement that changes a large part of a list
    (a bulk import, ungrouping a whole group) rebuilds that list from its index
    in one pass instead; ``listing_check()`` verifies a list against its rows.

Merging PUBLIC with a user's PRIVATE list
    The first ``o`` rows of the merge take ``j`` rows from PRIVATE and ``o - j``
    from PUBLIC. ``j`` is found by binary search with two seeks per step
    (O(log min(o, private count)) steps, usually zero or a few: a user's private
    images are few), then both lists are scanned from their positions and merged;
    all in one SQL round trip (``listing_merged_split``). Exact, and a user with
    no private images in the scope costs a single list.

Reads run in one REPEATABLE READ READ ONLY transaction, so total, blocks and rows
agree with each other. ``nextCursor`` is an opaque keyset token (page number and
last key): following it gives the next page even while images are added or
removed, where page numbers may shift by the number of changes. When a request
carries ``cursor``, it wins over ``page``; the response reports the cursor's page.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from imagerepo.db import UnitOfWork, unit_of_work
from imagerepo.errors import BadRequest
from imagerepo.images import _COLUMNS, _FROM, Image
from imagerepo.security import Principal


class Kind(IntEnum):
    PUBLIC = 1
    ALL = 2
    OWNED = 3
    PRIVATE = 4
    GROUPS = 5


@dataclass(frozen=True, order=True)
class Key:
    """A position in a list: newest first means larger keys first."""

    at: dt.datetime
    id: int


@dataclass(frozen=True)
class ListRef:
    kind: Kind
    scope: int = 0
    owner: int = 0

    def params(self) -> dict[str, int]:
        return {"kind": int(self.kind), "scope": self.scope, "owner": self.owner}


GROUPS = ListRef(Kind.GROUPS)

_REF = "CAST(:kind AS smallint), CAST(:scope AS bigint), CAST(:owner AS bigint)"


def visible_lists(who: Principal | None, scope: int = 0, *, only_mine: bool = False) -> tuple[ListRef, ...]:
    """The disjoint lists whose union is what ``who`` may see in ``scope`` (0 = every group)."""
    if only_mine:
        if who is None:
            raise ValueError("only_mine needs a caller")
        return (ListRef(Kind.OWNED, scope, who.user_id),)
    if who is None:
        return (ListRef(Kind.PUBLIC, scope),)
    if who.is_admin:
        return (ListRef(Kind.ALL, scope),)
    return (ListRef(Kind.PUBLIC, scope), ListRef(Kind.PRIVATE, scope, who.user_id))


def read_only(uow: UnitOfWork) -> None:
    """One snapshot for the whole read: must be the transaction's first statement."""
    uow.run("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


# -- cursors -------------------------------------------------------------------
def encode_cursor(page: int, key: Key) -> str:
    raw = json.dumps({"p": page, "t": key.at.isoformat(), "i": key.id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[int, Key]:
    """(page number, last key of the previous page); a malformed token is a 400."""
    try:
        if len(token) > 200:
            raise ValueError("too long")
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        page, at, ident = data["p"], dt.datetime.fromisoformat(data["t"]), data["i"]
        if not (isinstance(page, int) and isinstance(ident, int) and 1 <= page <= 10**9
                and 0 < ident < 2**63 and at.tzinfo is not None):
            raise ValueError("out of range")
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequest("cursor is not a token returned as nextCursor", code="invalid_cursor") from exc
    return page, Key(at, ident)


# -- list primitives -----------------------------------------------------------
def totals(uow: UnitOfWork, lists: Sequence[ListRef]) -> list[int]:
    out = []
    for ref in lists:
        value = uow.scalar(
            "SELECT total FROM listing_lists WHERE kind = CAST(:kind AS smallint)"
            " AND scope = CAST(:scope AS bigint) AND owner = CAST(:owner AS bigint)", **ref.params())
        out.append(int(value or 0))
    return out


def _keys(rows: list[list[Any]]) -> list[Key]:
    return [Key(at, ident) for at, ident in rows]


def seek(uow: UnitOfWork, ref: ListRef, pos: int) -> Key | None:
    """The key at position ``pos`` (0 = newest), if there is one."""
    rows = uow.run(f"SELECT key_at, key_id FROM listing_seek({_REF}, CAST(:pos AS bigint))",
                   pos=pos, **ref.params())
    return _keys(rows)[0] if rows else None


def page_at(uow: UnitOfWork, ref: ListRef, pos: int, limit: int) -> list[Key]:
    """Up to ``limit`` keys from position ``pos`` down."""
    return _keys(uow.run(
        f"SELECT key_at, key_id FROM listing_page({_REF}, CAST(:pos AS bigint), CAST(:lim AS integer))",
        pos=pos, lim=limit, **ref.params()))


def after(uow: UnitOfWork, ref: ListRef, key: Key | None, limit: int) -> list[Key]:
    """Up to ``limit`` keys strictly older than ``key`` (None: from the newest)."""
    return _keys(uow.run(
        f"SELECT key_at, key_id FROM listing_scan({_REF}, CAST(:at AS timestamptz),"
        " CAST(:id AS bigint), false, CAST(:lim AS integer))",
        at=key.at if key else None, id=key.id if key else None, lim=limit, **ref.params()))


def _merge(parts: Sequence[list[Key]], limit: int) -> list[Key]:
    return sorted((k for part in parts for k in part), reverse=True)[:limit]


_BIG = "CAST(:bk AS smallint), CAST(:bs AS bigint), CAST(:bo AS bigint)"
_SMALL = "CAST(:sk AS smallint), CAST(:ss AS bigint), CAST(:so AS bigint)"


def merged_page_at(uow: UnitOfWork, big: ListRef, small: ListRef, offset: int, limit: int) -> list[Key]:
    """``limit`` keys of the merge of two disjoint lists from position ``offset``, in one round trip.

    ``listing_merged_split`` finds how many of the first ``offset`` keys come from
    ``small`` (a binary search with seeks, in SQL); both lists are read from there.
    """
    return _keys(uow.run(
        f"WITH s AS (SELECT listing_merged_split({_BIG}, {_SMALL}, CAST(:off AS bigint)) AS j)"
        f" SELECT k.key_at, k.key_id FROM ("
        f"   SELECT p.key_at, p.key_id FROM s, LATERAL listing_page({_BIG}, CAST(:off AS bigint) - s.j,"
        f"          CAST(:lim AS integer)) p"
        f"   UNION ALL"
        f"   SELECT q.key_at, q.key_id FROM s, LATERAL listing_page({_SMALL}, s.j, CAST(:lim AS integer)) q"
        f" ) k ORDER BY k.key_at DESC, k.key_id DESC LIMIT CAST(:lim AS integer)",
        bk=int(big.kind), bs=big.scope, bo=big.owner, sk=int(small.kind), ss=small.scope,
        so=small.owner, off=offset, lim=limit))


def keys_at(uow: UnitOfWork, lists: Sequence[ListRef], counts: Sequence[int], offset: int,
            limit: int) -> list[Key]:
    """``limit`` keys of the merged lists from position ``offset``."""
    live = [(ref, n) for ref, n in zip(lists, counts, strict=True) if n > 0]
    if not live or offset >= sum(n for _, n in live):
        return []
    if len(live) == 1:
        return page_at(uow, live[0][0], offset, limit)
    if len(live) != 2:
        raise ValueError("merging more than two lists is not supported")
    (big, _), (small, _) = sorted(live, key=lambda item: -item[1])
    return merged_page_at(uow, big, small, offset, limit)


@dataclass(frozen=True)
class Window:
    """One page of keys with what the response needs besides the items."""

    keys: list[Key]
    page: int
    page_size: int
    total: int
    next_cursor: str | None

    def to_json(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"items": items, "page": self.page, "pageSize": self.page_size, "total": self.total,
                "totalPages": (self.total + self.page_size - 1) // self.page_size,
                "nextCursor": self.next_cursor}


def window(uow: UnitOfWork, lists: Sequence[ListRef], page: int, page_size: int,
           cursor: str | None = None) -> Window:
    """The page (or the page after ``cursor``) of the merge of ``lists``."""
    counts = totals(uow, lists)
    if cursor:
        page, last = decode_cursor(cursor)
        keys = _merge([after(uow, ref, last, page_size + 1) for ref, n in zip(lists, counts, strict=True)
                       if n > 0], page_size + 1)
    else:
        keys = keys_at(uow, lists, counts, (page - 1) * page_size, page_size + 1)
    more = len(keys) > page_size
    keys = keys[:page_size]
    next_cursor = encode_cursor(page + 1, keys[-1]) if more else None
    return Window(keys, page, page_size, sum(counts), next_cursor)


# -- images --------------------------------------------------------------------
def load_images(uow: UnitOfWork, keys: Sequence[Key]) -> list[Image]:
    """The images of ``keys``, in that order (rows gone meanwhile are left out)."""
    if not keys:
        return []
    rows = uow.rows(f"SELECT {_COLUMNS} FROM {_FROM} WHERE i.id = ANY(CAST(:ids AS bigint[]))",
                    ids=[k.id for k in keys])
    by_id = {row["id"]: Image.from_row(row) for row in rows}
    return [by_id[k.id] for k in keys if k.id in by_id]


def images_window(uow: UnitOfWork, who: Principal | None, page: int, page_size: int, *,
                  group_id: int | None = None, only_mine: bool = False,
                  cursor: str | None = None) -> tuple[list[Image], Window]:
    lists = visible_lists(who, group_id or 0, only_mine=only_mine)
    win = window(uow, lists, page, page_size, cursor)
    return load_images(uow, win.keys), win


def list_images(who: Principal | None, page: int, page_size: int, *, group_id: int | None = None,
                only_mine: bool = False, cursor: str | None = None) -> tuple[list[Image], Window]:
    """A page of visible images and its Window (totals, nextCursor), in a read-only transaction."""
    with unit_of_work() as uow:
        read_only(uow)
        return images_window(uow, who, page, page_size, group_id=group_id, only_mine=only_mine,
                             cursor=cursor)
