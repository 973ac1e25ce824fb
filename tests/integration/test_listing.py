"""The paged-list engine (imagerepo.listing, migration 003) against the real local Postgres.

Rows are written with plain SQL, as any writer would, and every page the engine
returns is compared with the naive answer (the whole visible list, ordered, then
sliced). Other tests share the database: each test makes its own users, blob and
groups, and checks the global lists only for consistency with their rows.
"""

from __future__ import annotations

import random
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pg8000.exceptions
import pytest

from imagerepo import listing
from imagerepo.db import discard_connection, unit_of_work
from imagerepo.listing import Kind, ListRef
from imagerepo.security import Principal

pytestmark = pytest.mark.integration


def run(sql: str, **params: Any) -> list[list[Any]]:
    with unit_of_work() as uow:
        rows = uow.run(sql, **params)
        uow.commit()
    return rows


@dataclass
class World:
    users: list[int]
    groups: list[int]
    sha: str


@pytest.fixture
def world(stack: Any) -> Iterator[World]:
    tag = secrets.token_hex(4)
    sha = secrets.token_hex(32)
    users = [run("INSERT INTO users (name, email, password_hash) VALUES (:n, :e, 'x') RETURNING id",
                 n=f"lst{tag}{i}", e=f"lst{tag}{i}@example.com")[0][0] for i in range(3)]
    run("INSERT INTO blobs (sha256, size, chunker, chunk_count, refcount) VALUES (:s, 1, 'fixed', 1, 1)",
        s=sha)
    groups = [run("INSERT INTO groups (name) VALUES (:n) RETURNING id", n=f"lst {tag} {i}")[0][0]
              for i in range(3)]
    yield World(users, groups, sha)
    run("DELETE FROM images WHERE owner_id = ANY(CAST(:u AS bigint[]))", u=users)
    run("DELETE FROM groups WHERE id = ANY(CAST(:g AS bigint[]))", g=groups)
    run("DELETE FROM blobs WHERE sha256 = :s", s=sha)
    run("DELETE FROM users WHERE id = ANY(CAST(:u AS bigint[]))", u=users)


def insert(w: World, n: int, *, owner: int, group: int | None, private: bool,
           backdated: bool = False) -> None:
    """n images in one statement; backdated ones land in the middle of the lists."""
    run("INSERT INTO images (owner_id, blob_sha256, name, content_type, width, height, size,"
        " group_id, is_private, created_at)"
        " SELECT :o, :sha, 'x.png', 'image/png', 1, 1, 1, :g, :p,"
        "        CASE WHEN :old THEN now() - random() * interval '30 days' ELSE clock_timestamp() END"
        " FROM generate_series(1, :n)", o=owner, sha=w.sha, g=group, p=private, n=n, old=backdated)


def ids_of(w: World) -> list[int]:
    return [r[0] for r in run("SELECT id FROM images WHERE owner_id = ANY(CAST(:u AS bigint[]))", u=w.users)]


def naive(who: Principal | None, group: int | None, only_mine: bool = False) -> list[int]:
    clauses = ["TRUE"]
    params: dict[str, Any] = {}
    if only_mine:
        assert who is not None
        clauses.append("owner_id = :me")
        params["me"] = who.user_id
    elif who is None:
        clauses.append("NOT is_private")
    elif not who.is_admin:
        clauses.append("(NOT is_private OR owner_id = :me)")
        params["me"] = who.user_id
    if group is not None:
        clauses.append("group_id = :g")
        params["g"] = group
    return [r[0] for r in run(f"SELECT id FROM images WHERE {' AND '.join(clauses)}"
                              " ORDER BY created_at DESC, id DESC", **params)]


def engine_page(who: Principal | None, group: int | None, page: int, size: int,
                only_mine: bool = False, cursor: str | None = None) -> listing.Window:
    with unit_of_work() as uow:
        listing.read_only(uow)
        return listing.window(uow, listing.visible_lists(who, group or 0, only_mine=only_mine),
                              page, size, cursor)


def check_list(ref: ListRef) -> None:
    problems = run("SELECT problem FROM listing_check(CAST(:kind AS smallint), CAST(:scope AS bigint),"
                   " CAST(:owner AS bigint))", **ref.params())
    assert not problems, (ref, problems[:5])


def callers(w: World) -> list[Principal | None]:
    return [None, Principal(w.users[0], "user", "a"), Principal(w.users[1], "user", "b"),
            Principal(w.users[2], "admin", "c")]


def check_pages(w: World, rng: random.Random, samples: int = 6) -> None:
    """Random pages of every view of every own group (and the global one) against the naive answer."""
    for who in callers(w):
        for group in [*w.groups, None]:
            for only_mine in (False, True) if who is not None else (False,):
                want = naive(who, group, only_mine)
                size = rng.choice([1, 7, 40, 100])
                last = max(1, -(-len(want) // size))
                pages = {1, last, last + 1} | {rng.randint(1, last) for _ in range(samples)}
                for page in pages:
                    win = engine_page(who, group, page, size, only_mine)
                    assert win.total == len(want), (who, group, only_mine)
                    got = [k.id for k in win.keys]
                    assert got == want[(page - 1) * size: page * size], (who, group, only_mine, page, size)
    for ref in {ref for who in callers(w) for g in [*w.groups, 0] for ref in listing.visible_lists(who, g)}:
        if ref.scope != 0:
            check_list(ref)


# -- tests ---------------------------------------------------------------------------------------
def test_pages_match_naive_through_random_changes(world: World) -> None:
    w, rng = world, random.Random(5)
    a, b, _ = w.users
    g0, g1, g2 = w.groups
    insert(w, 900, owner=a, group=g0, private=False)        # a bulk statement: rebuilt in one pass
    insert(w, 120, owner=b, group=g0, private=True)
    insert(w, 300, owner=a, group=g1, private=False, backdated=True)
    for _ in range(600):                                    # one by one: the top blocks grow and split
        insert(w, 1, owner=rng.choice(w.users), group=rng.choice([g0, g0, g1, g2, None]),
               private=rng.random() < 0.25)
    check_pages(w, rng)
    for step in range(60):
        ids = ids_of(w)
        op = rng.choice(["delete", "privacy", "move", "backdate", "insert", "describe"])
        some = rng.sample(ids, min(len(ids), rng.choice([1, 1, 2, 5, 40])))
        if op == "delete":
            run("DELETE FROM images WHERE id = ANY(CAST(:x AS bigint[]))", x=some)
        elif op == "privacy":
            run("UPDATE images SET is_private = NOT is_private WHERE id = ANY(CAST(:x AS bigint[]))", x=some)
        elif op == "move":
            run("UPDATE images SET group_id = :g WHERE id = ANY(CAST(:x AS bigint[]))",
                g=rng.choice([*w.groups, None]), x=some)
        elif op == "backdate":
            run("UPDATE images SET created_at = now() - random() * interval '60 days'"
                " WHERE id = ANY(CAST(:x AS bigint[]))", x=some)
        elif op == "insert":
            insert(w, rng.choice([1, 3, 30]), owner=rng.choice(w.users), group=rng.choice(w.groups),
                   private=rng.random() < 0.3, backdated=rng.random() < 0.5)
        else:
            run("UPDATE images SET description = 'x' WHERE id = ANY(CAST(:x AS bigint[]))", x=some)
        if step % 15 == 14:
            check_pages(w, rng, samples=3)
    check_pages(w, rng)
    for ref in (ListRef(Kind.PUBLIC), ListRef(Kind.ALL), ListRef(Kind.GROUPS)):
        check_list(ref)
    assert run("SELECT count(*) FROM listing_pending")[0][0] == 0


def test_deep_merged_view_and_cursor_walk(world: World) -> None:
    """A user's private images interleaved deep inside 1500 public ones: every page exact."""
    w = world
    a, b, _ = w.users
    g = w.groups[0]
    for chunk in range(6):
        insert(w, 250, owner=b, group=g, private=False)
        insert(w, 7 + chunk, owner=a, group=g, private=True)
        insert(w, 5, owner=b, group=g, private=True)        # invisible to a
    me = Principal(a, "user", "a")
    want = naive(me, g)
    assert len(want) == 1500 + sum(7 + c for c in range(6))
    size = 37
    got: list[int] = []
    for page in range(1, -(-len(want) // size) + 2):
        win = engine_page(me, g, page, size)
        assert win.total == len(want)
        got.extend(k.id for k in win.keys)
    assert got == want
    walked: list[int] = []
    cursor: str | None = None
    page = 1
    while True:
        win = engine_page(me, g, page, size, cursor=cursor)
        assert win.page == page
        walked.extend(k.id for k in win.keys)
        if win.next_cursor is None:
            break
        cursor, page = win.next_cursor, page + 1
    assert walked == want


def test_cursor_survives_concurrent_inserts(world: World) -> None:
    """Page numbers shift when images arrive; the cursor does not repeat or skip."""
    w = world
    g = w.groups[1]
    insert(w, 50, owner=w.users[0], group=g, private=False)
    before = naive(None, g)
    first = engine_page(None, g, 1, 20)
    insert(w, 5, owner=w.users[0], group=g, private=False)  # newer than everything
    assert first.next_cursor is not None
    second = engine_page(None, g, 1, 20, cursor=first.next_cursor)
    assert [k.id for k in first.keys + second.keys] == before[:40]
    assert second.total == 55 and second.page == 2


def test_check_detects_and_rebuild_heals(world: World) -> None:
    w = world
    g = w.groups[2]
    insert(w, 700, owner=w.users[0], group=g, private=False)
    ref = ListRef(Kind.PUBLIC, g)
    check_list(ref)
    run("UPDATE listing_blocks SET n = n + 3 WHERE kind = 1 AND scope = :g"
        " AND (lo_at, lo_id) = (SELECT lo_at, lo_id FROM listing_blocks WHERE kind = 1 AND scope = :g"
        " ORDER BY lo_at LIMIT 1)", g=g)
    broken = run("SELECT count(*) FROM listing_check(1::smallint, CAST(:g AS bigint), 0::bigint)", g=g)
    assert broken[0][0] > 0
    run("SELECT listing_rebuild(1::smallint, CAST(:g AS bigint), 0::bigint)", g=g)
    check_list(ref)
    assert [k.id for k in engine_page(None, g, 9, 40).keys] == naive(None, g)[320:360]


def test_rolled_back_changes_leave_no_trace(world: World) -> None:
    w = world
    g = w.groups[0]
    insert(w, 3, owner=w.users[0], group=g, private=False)
    with unit_of_work() as uow:
        uow.run("INSERT INTO images (owner_id, blob_sha256, name, content_type, width, height, size,"
                " group_id) VALUES (:o, :s, 'x', 'image/png', 1, 1, 1, :g)", o=w.users[0], s=w.sha, g=g)
        uow.run("DELETE FROM images WHERE group_id = :g", g=g)
        # not committed
    assert engine_page(None, g, 1, 10).total == 3
    assert run("SELECT count(*) FROM listing_pending")[0][0] == 0
    with unit_of_work() as uow:  # several statements, one transaction: applied once, at commit
        for _ in range(3):
            uow.run("INSERT INTO images (owner_id, blob_sha256, name, content_type, width, height, size,"
                    " group_id, is_private) VALUES (:o, :s, 'x', 'image/png', 1, 1, 1, :g, true)",
                    o=w.users[1], s=w.sha, g=g)
        uow.run("UPDATE images SET is_private = false WHERE group_id = :g AND owner_id = :o",
                g=g, o=w.users[1])
        uow.commit()
    assert engine_page(None, g, 1, 10).total == 6
    check_list(ListRef(Kind.PRIVATE, g, w.users[1]))
    check_list(ListRef(Kind.PUBLIC, g))


def test_concurrent_writers_do_not_deadlock(world: World) -> None:
    """Uploads, deletes, privacy flips and moves from 6 threads on the same lists."""
    w = world
    insert(w, 400, owner=w.users[0], group=w.groups[0], private=False)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(40):
                op = rng.random()
                if op < 0.4:
                    insert(w, 1, owner=rng.choice(w.users), group=rng.choice(w.groups),
                           private=rng.random() < 0.3)
                    continue
                ids = ids_of(w)
                pick = rng.choice(ids)
                if op < 0.6:
                    run("DELETE FROM images WHERE id = :i", i=pick)
                elif op < 0.8:
                    run("UPDATE images SET is_private = NOT is_private WHERE id = :i", i=pick)
                else:
                    run("UPDATE images SET group_id = :g WHERE id = :i", i=pick, g=rng.choice(w.groups))
        except (pg8000.exceptions.DatabaseError, AssertionError) as exc:
            errors.append(exc)
        finally:
            discard_connection()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    check_pages(w, random.Random(1), samples=2)


def test_seek_matches_naive_positions(world: World) -> None:
    w = world
    g = w.groups[0]
    insert(w, 1200, owner=w.users[0], group=g, private=False)
    want = naive(None, g)
    ref = ListRef(Kind.PUBLIC, g)
    with unit_of_work() as uow:
        listing.read_only(uow)
        for pos in (0, 1, 127, 128, 255, 256, 511, 512, 700, 1023, 1199):
            key = listing.seek(uow, ref, pos)
            assert key is not None and key.id == want[pos], pos
        assert listing.seek(uow, ref, 1200) is None
        assert [k.id for k in listing.after(uow, ref, None, 3)] == want[:3]
