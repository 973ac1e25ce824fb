"""A small Microsoft Graph client: timeouts, bounded retries, error mapping, paging.

* Every request has a (connect, read) timeout.
* 429, 503 and 509 (bandwidthLimitExceeded) are retried up to ``max_retries`` times,
  waiting what ``Retry-After`` says (seconds or an HTTP date) or an exponential backoff with jitter when it is
  absent; the total wait is bounded by ``max_wait`` so an API function stays well
  inside the 30 s integration timeout. Throttling beyond that is
  :class:`GraphThrottled` (503).
* A 401 is answered once by forcing MSAL to refresh and replaying the request.
* Connection failures and timeouts are retried for GETs only (not idempotent otherwise).
* Other errors become domain errors: 404 → NotFound, 409/412 → Conflict,
  400 → BadRequest, the rest → UpstreamError (502), with Graph's code and message.
* ``@odata.nextLink`` is followed only when it points under the configured base URL:
  the bearer token is never sent anywhere else.

Item ids and names are validated here and always URL-encoded into paths.
"""

from __future__ import annotations

import email.utils
import random
import re
import time
import unicodedata
import urllib.parse
from collections.abc import Callable, Iterator
from typing import IO, Any, Protocol

import requests

from imagerepo.errors import AppError, BadRequest, Conflict, NotFound, UpstreamError
from imagerepo.onedrive.errors import GraphThrottled, ReauthorizationRequired

RETRYABLE = frozenset({429, 503, 509})  # 509 bandwidthLimitExceeded is throttling too
_ITEM_ID = re.compile(r"^[A-Za-z0-9!._\-]{1,256}$")
_ILLEGAL_NAME_CHARS = frozenset('"*:<>?/\\|')
_RESERVED_NAMES = frozenset({".lock", "con", "prn", "aux", "nul", "desktop.ini"}
                            | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)})
MAX_NAME = 255


class TokenProvider(Protocol):
    def __call__(self, force_refresh: bool = False) -> str: ...


class HttpSession(Protocol):
    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response: ...


# -- validation -------------------------------------------------------------------
def validate_item_id(raw: Any, field: str = "itemId") -> str:
    """A drive item id ("root" or Graph's opaque ids, e.g. ``01BYE5RZ...`` or ``D4648F06C91D9D3D!54927``)."""
    if not isinstance(raw, str) or not _ITEM_ID.match(raw):
        raise BadRequest(f"{field} must be a OneDrive item id (letters, digits and !._-, at most 256)",
                         code="invalid_item_id")
    return raw


def validate_name(raw: Any, field: str = "name") -> str:
    """A file or folder name OneDrive accepts (its documented restrictions)."""
    if not isinstance(raw, str):
        raise BadRequest(f"{field} must be a string", code="invalid_name")
    name = unicodedata.normalize("NFC", raw)
    problem = None
    if not name or len(name) > MAX_NAME:
        problem = f"1 to {MAX_NAME} characters"
    elif name != name.strip():
        problem = "no leading or trailing spaces"
    elif name.endswith("."):
        problem = "must not end with a dot"
    elif any(ch in _ILLEGAL_NAME_CHARS or unicodedata.category(ch)[0] == "C" for ch in name):
        problem = 'none of " * : < > ? / \\ | or control characters'
    elif name.lower() in _RESERVED_NAMES or name.startswith("~$") or "_vti_" in name.lower():
        problem = "a name OneDrive reserves"
    if problem:
        raise BadRequest(f"{field} is not a valid OneDrive name: {problem}", code="invalid_name")
    return name


def item_path(item_id: str) -> str:
    """Graph path of an item of the signed-in user's drive (ids validated, then encoded)."""
    validate_item_id(item_id)
    if item_id == "root":
        return "/me/drive/root"
    return f"/me/drive/items/{urllib.parse.quote(item_id, safe='')}"


# -- responses ------------------------------------------------------------------------
def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def graph_error(resp: requests.Response) -> tuple[str, str]:
    """(code, message) of a Graph error body, tolerating anything."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("code") or "unknown")[:80], str(err.get("message") or "")[:300]
    return "unknown", (resp.reason or "")[:300]


def map_error(resp: requests.Response) -> AppError:
    status = resp.status_code
    code, message = graph_error(resp)
    text = f"OneDrive answered {status} {code}" + (f": {message}" if message else "")
    if status == 404:
        return NotFound(f"OneDrive item not found ({code})", code="onedrive_item_not_found")
    if status in (409, 412):
        return Conflict(text, code="onedrive_name_conflict" if code == "nameAlreadyExists"
                        else "onedrive_conflict")
    if status == 400:
        return BadRequest(text, code="onedrive_bad_request")
    if status == 403:
        return UpstreamError(text, code="onedrive_access_denied")
    if status == 507:
        return UpstreamError(text, code="onedrive_insufficient_storage")
    return UpstreamError(text, code="onedrive_error")


# -- the client -----------------------------------------------------------------------
class GraphClient:
    def __init__(self, base_url: str, token: TokenProvider, session: HttpSession, *,
                 max_retries: int = 3, max_wait: float = 8.0, timeout: tuple[float, float] = (5.0, 15.0),
                 sleep: Callable[[float], None] = time.sleep, admin_id: int = 0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.session = session
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.timeout = timeout
        self.sleep = sleep
        self.admin_id = admin_id
        self.retries = 0  # observed by tests and logs: how many times a request was replayed

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith("https://"):
            if not path_or_url.startswith(self.base_url + "/"):
                raise UpstreamError("OneDrive returned a link outside the Graph endpoint",
                                    code="onedrive_error")
            return path_or_url
        return self.base_url + path_or_url

    def _backoff(self, attempt: int) -> float:
        return float(min(8.0, 0.5 * 2 ** attempt) * (0.5 + random.random() / 2))

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                json: Any = None, stream: bool = False,
                timeout: tuple[float, float] | None = None) -> requests.Response:
        url = self.url(path)
        attempt, waited, refreshed = 0, 0.0, False
        force = False
        while True:
            headers = {"Authorization": f"Bearer {self.token(force)}", "Accept": "application/json"}
            force = False
            try:
                resp = self.session.request(method, url, params=params, json=json, headers=headers,
                                            stream=stream, timeout=timeout or self.timeout,
                                            allow_redirects=True)
            except (requests.ConnectionError, requests.Timeout) as exc:
                delay = self._backoff(attempt)
                if method == "GET" and attempt < self.max_retries and waited + delay <= self.max_wait:
                    attempt, waited = attempt + 1, waited + delay
                    self.retries += 1
                    self.sleep(delay)
                    continue
                kind = ("did not answer in time" if isinstance(exc, requests.Timeout)
                        else "could not be reached")
                raise UpstreamError(f"Microsoft Graph {kind}", code="onedrive_unavailable") from exc
            if resp.status_code == 401 and not refreshed:
                resp.close()
                refreshed = force = True  # MSAL thought the token valid; Graph did not
                self.retries += 1
                continue
            if resp.status_code in RETRYABLE:
                hinted = parse_retry_after(resp.headers.get("Retry-After"))
                delay = hinted if hinted is not None else self._backoff(attempt)
                resp.close()
                if attempt < self.max_retries and waited + delay <= self.max_wait:
                    attempt, waited = attempt + 1, waited + delay
                    self.retries += 1
                    self.sleep(delay)
                    continue
                after = f"; retry after {hinted:.0f} s" if hinted is not None else ""
                raise GraphThrottled(f"OneDrive is throttling or unavailable ({resp.status_code}) after"
                                     f" {attempt} retries{after}", retry_after=hinted)
            if resp.status_code == 401:
                raise ReauthorizationRequired("OneDrive rejected a freshly refreshed token: connect again",
                                              admin_id=self.admin_id)
            if resp.status_code >= 400:
                raise map_error(resp)
            return resp

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return _json(self.request("GET", path, params=params))

    def send_json(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return _json(self.request(method, path, json=body))

    def delete(self, path: str) -> None:
        self.request("DELETE", path).close()

    def paged(self, path: str, params: dict[str, Any] | None = None, *,
              max_items: int = 5000) -> Iterator[dict[str, Any]]:
        """Every item of a collection, following ``@odata.nextLink`` (at most ``max_items``)."""
        count = 0
        page: dict[str, Any] = self.get_json(path, params)
        while True:
            for value in page.get("value") or []:
                if count >= max_items:
                    return
                count += 1
                yield value
            link = page.get("@odata.nextLink")
            if not link or count >= max_items:
                return
            page = self.get_json(str(link))  # the link carries its own query

    def download(self, path: str, sink: IO[bytes], *, max_bytes: int,
                 timeout: tuple[float, float] = (5.0, 60.0)) -> int:
        """Stream a file's content into ``sink``; refuses more than ``max_bytes``."""
        resp = self.request("GET", path, stream=True, timeout=timeout)
        try:
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FileTooLarge(int(declared), max_bytes)
            total = 0
            for piece in resp.iter_content(1024 * 1024):
                total += len(piece)
                if total > max_bytes:
                    raise FileTooLarge(total, max_bytes)
                sink.write(piece)
            return total
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise UpstreamError("the OneDrive download was interrupted", code="onedrive_unavailable") from exc
        finally:
            resp.close()


class FileTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} bytes is over the {limit}-byte import limit")
        self.size, self.limit = size, limit


def _json(resp: requests.Response) -> dict[str, Any]:
    try:
        body = resp.json() if resp.content else {}
    except ValueError as exc:
        raise UpstreamError("OneDrive returned a body that is not JSON", code="onedrive_error") from exc
    finally:
        resp.close()
    if not isinstance(body, dict):
        raise UpstreamError("OneDrive returned an unexpected body", code="onedrive_error")
    return body
