"""The Graph client against a scripted fake session: retries, Retry-After, 401 refresh, errors, paging."""

from __future__ import annotations

import email.utils
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from imagerepo.errors import BadRequest, Conflict, NotFound, UpstreamError
from imagerepo.onedrive.errors import GraphThrottled, ReauthorizationRequired
from imagerepo.onedrive.graph import FileTooLarge, GraphClient, parse_retry_after

BASE = "https://graph.example/v1.0"


def response(status: int, body: Any = None, headers: dict[str, str] | None = None,
             raw: bytes | None = None) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r.headers = CaseInsensitiveDict(headers or {})
    if raw is not None:
        r.raw = io.BytesIO(raw)
        r.headers.setdefault("Content-Length", str(len(raw)))
    else:
        r._content = json.dumps(body).encode() if body is not None else b""
        r.raw = io.BytesIO(b"")
    return r


class FakeSession:
    def __init__(self, answers: list[requests.Response | Exception]) -> None:
        self.answers: Iterator[requests.Response | Exception] = iter(answers)
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def request(self, method: str, url: str, **kw: Any) -> requests.Response:
        self.calls.append((method, url, kw))
        answer = next(self.answers)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Tokens:
    def __init__(self) -> None:
        self.calls: list[bool] = []

    def __call__(self, force_refresh: bool = False) -> str:
        self.calls.append(force_refresh)
        return f"token-{len(self.calls)}"


def client(answers: list[requests.Response | Exception], **kw: Any) -> tuple[GraphClient, FakeSession,
                                                                              Tokens, list[float]]:
    session, tokens, slept = FakeSession(answers), Tokens(), []
    graph = GraphClient(BASE, tokens, session, sleep=slept.append, **kw)
    return graph, session, tokens, slept


def test_429_and_503_are_retried_honouring_retry_after() -> None:
    graph, session, _, slept = client([
        response(429, {"error": {"code": "activityLimitReached"}}, {"Retry-After": "2"}),
        response(503, {}, {"Retry-After": "1"}),
        response(200, {"id": "x"}),
    ])
    assert graph.get_json("/me/drive") == {"id": "x"}
    assert slept == [2.0, 1.0]
    assert len(session.calls) == 3 and graph.retries == 2
    assert all(kw["timeout"] == (5.0, 15.0) for _, _, kw in session.calls)  # every call has a timeout


def test_retries_are_bounded() -> None:
    graph, session, _, slept = client([response(429, {}, {"Retry-After": "0"})] * 10, max_retries=3)
    with pytest.raises(GraphThrottled) as err:
        graph.get_json("/me")
    assert len(session.calls) == 4 and slept == [0.0, 0.0, 0.0]
    assert err.value.status == 503 and err.value.code == "onedrive_throttled"


def test_a_retry_after_beyond_the_budget_is_not_slept() -> None:
    graph, session, _, slept = client([response(429, {}, {"Retry-After": "120"})], max_wait=8)
    with pytest.raises(GraphThrottled) as err:
        graph.get_json("/me")
    assert slept == [] and len(session.calls) == 1
    assert err.value.retry_after == 120 and "retry after 120" in err.value.message


def test_backoff_without_retry_after() -> None:
    graph, _, _, slept = client([response(503, {}), response(200, {})])
    graph.get_json("/me")
    assert len(slept) == 1 and 0 < slept[0] <= 8


def test_401_forces_one_refresh_then_succeeds() -> None:
    graph, session, tokens, _ = client([response(401, {"error": {"code": "InvalidAuthenticationToken"}}),
                                        response(200, {"ok": True})])
    assert graph.get_json("/me") == {"ok": True}
    assert tokens.calls == [False, True]
    assert session.calls[1][2]["headers"]["Authorization"] == "Bearer token-2"


def test_401_after_refresh_asks_for_reauthorization() -> None:
    graph, _, _, _ = client([response(401, {}), response(401, {})], admin_id=7)
    with pytest.raises(ReauthorizationRequired) as err:
        graph.get_json("/me")
    assert err.value.admin_id == 7 and err.value.status == 409


@pytest.mark.parametrize(("status", "code", "exc", "our_code"), [
    (404, "itemNotFound", NotFound, "onedrive_item_not_found"),
    (409, "nameAlreadyExists", Conflict, "onedrive_name_conflict"),
    (412, "resourceModified", Conflict, "onedrive_conflict"),
    (400, "invalidRequest", BadRequest, "onedrive_bad_request"),
    (403, "accessDenied", UpstreamError, "onedrive_access_denied"),
    (500, "generalException", UpstreamError, "onedrive_error"),
    (507, "quotaLimitReached", UpstreamError, "onedrive_insufficient_storage"),
])
def test_errors_are_mapped(status: int, code: str, exc: type[Exception], our_code: str) -> None:
    graph, session, _, _ = client([response(status, {"error": {"code": code, "message": "why"}})])
    with pytest.raises(exc) as err:
        graph.get_json("/me/drive/items/x")
    assert err.value.code == our_code  # type: ignore[attr-defined]
    assert len(session.calls) == 1


def test_connection_errors_retry_gets_only() -> None:
    graph, session, _, _ = client([requests.ConnectionError("reset"), response(200, {"a": 1})])
    assert graph.get_json("/me") == {"a": 1}
    graph, session, _, _ = client([requests.Timeout("slow"), response(201, {})])
    with pytest.raises(UpstreamError) as err:
        graph.send_json("POST", "/me/drive/root/children", {"name": "x", "folder": {}})
    assert len(session.calls) == 1 and "in time" in err.value.message


def test_paging_follows_next_link_within_the_base_url_only() -> None:
    graph, session, _, _ = client([
        response(200, {"value": [{"id": 1}, {"id": 2}], "@odata.nextLink": f"{BASE}/me/x?$skiptoken=2"}),
        response(200, {"value": [{"id": 3}], "@odata.nextLink": f"{BASE}/me/x?$skiptoken=3"}),
        response(200, {"value": [{"id": 4}]}),
    ])
    assert [v["id"] for v in graph.paged("/me/x", {"$top": 2})] == [1, 2, 3, 4]
    assert session.calls[1][1] == f"{BASE}/me/x?$skiptoken=2"
    graph, session, _, _ = client([
        response(200, {"value": [{"id": 1}], "@odata.nextLink": "https://evil.example/steal"}),
    ])
    with pytest.raises(UpstreamError):
        list(graph.paged("/me/x"))
    assert len(session.calls) == 1  # the token never went to the foreign host


def test_paging_is_bounded() -> None:
    pages = [response(200, {"value": [{"id": i}], "@odata.nextLink": f"{BASE}/p{i}"}) for i in range(10)]
    graph, session, _, _ = client(pages)
    assert len(list(graph.paged("/p", max_items=3))) == 3
    assert len(session.calls) == 3


def test_download_is_streamed_and_bounded() -> None:
    graph, _, _, _ = client([response(200, raw=b"x" * 1000)])
    sink = io.BytesIO()
    assert graph.download("/me/drive/items/a/content", sink, max_bytes=1000) == 1000
    assert sink.getvalue() == b"x" * 1000
    graph, _, _, _ = client([response(200, raw=b"x" * 1001)])
    with pytest.raises(FileTooLarge):
        graph.download("/me/drive/items/a/content", io.BytesIO(), max_bytes=1000)


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = time.time()
    when = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= (parse_retry_after(when, now=now) or 0) <= 31
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
