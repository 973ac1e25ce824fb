"""HTTP access to an ImageRepo server: stored sessions, token refresh, errors with exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

DEFAULT_URL = "http://127.0.0.1:3000"
USER_AGENT = "imagerepo-cli/0.1"

# Exit codes a script can rely on (README "Command-line tool").
EXIT_OK = 0
EXIT_ERROR = 1  # the server refused the request, or some files failed
EXIT_USAGE = 2  # bad command line (argparse)
EXIT_AUTH = 3  # not logged in, session expired, wrong password
EXIT_NOT_FOUND = 4
EXIT_FORBIDDEN = 5
EXIT_UNREACHABLE = 6  # no answer from the server


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class ApiError(CliError):
    """An HTTP error answer, with the API's ``{"error": {"code", "message"}}`` when it has one."""

    def __init__(self, status: int, code: str, message: str, request_id: str = "",
                 retry_after: int | None = None) -> None:
        exit_code = {401: EXIT_AUTH, 403: EXIT_FORBIDDEN, 404: EXIT_NOT_FOUND}.get(status, EXIT_ERROR)
        wait = f"; try again in {retry_after} s" if retry_after else ""
        request = f", request {request_id}" if request_id else ""
        detail = f"{message}{wait} (HTTP {status}, {code}{request})"
        super().__init__(detail, exit_code)
        self.status, self.code, self.api_message, self.request_id = status, code, message, request_id
        self.retry_after = retry_after  # seconds, from a 429's Retry-After

    @classmethod
    def from_response(cls, r: requests.Response, what: str = "") -> ApiError:
        code, message, request_id = "http_error", r.reason or "error", ""
        try:
            body = r.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            code = str(body["error"].get("code") or code)
            message = str(body["error"].get("message") or message)
            request_id = str(body["error"].get("requestId") or "")
        elif isinstance(body, dict) and "message" in body:  # the gateway's own answers
            message = str(body["message"])
            code = {401: "unauthorized", 403: "forbidden", 404: "not_found"}.get(r.status_code, code)
        if r.status_code in (404, 405) and what and code in ("not_found", "http_error") and \
                message in ("Not Found", "Method Not Allowed"):
            message = f"this server does not offer {what}"
        retry = (r.headers.get("Retry-After") or "").strip()
        return cls(r.status_code, code, message, request_id or r.headers.get("apigw-requestid", ""),
                   int(retry) if r.status_code == 429 and retry.isdigit() else None)


def token_rejected(r: requests.Response) -> bool:
    """The access token itself was refused: a 401 other than a wrong password, or the
    authorizer's denial, which API Gateway answers 403 ``{"message":"Forbidden"}``."""
    if r.status_code not in (401, 403):
        return False
    try:
        body = r.json()
    except ValueError:
        body = None
    if r.status_code == 401:
        return not (isinstance(body, dict) and isinstance(body.get("error"), dict)
                    and body["error"].get("code") == "invalid_credentials")
    return isinstance(body, dict) and "error" not in body and body.get("message") == "Forbidden"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "imagerepo"


class CredentialStore:
    """Sessions per server URL in ``$XDG_CONFIG_HOME/imagerepo/credentials.json`` (mode 0600)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_dir() / "credentials.json"
        self._lock = threading.Lock()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, url: str) -> dict[str, Any] | None:
        entry = self._read().get("servers", {}).get(url)
        return entry if isinstance(entry, dict) else None

    def put(self, url: str, session: dict[str, Any] | None) -> None:
        with self._lock:
            data = self._read()
            servers = data.setdefault("servers", {})
            if session is None:
                servers.pop(url, None)
            else:
                servers[url] = session
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)


def session_from_login(body: dict[str, Any], username: str) -> dict[str, Any]:
    now = time.time()
    session: dict[str, Any] = {
        "username": username,
        "access_token": body["access_token"],
        "expires_at": now + int(body.get("expires_in") or 3600),
    }
    if body.get("refresh_token"):
        session["refresh_token"] = body["refresh_token"]
        if body.get("refresh_expires_in"):
            session["refresh_expires_at"] = now + int(body["refresh_expires_in"])
    return session


class Client:
    """One server. Thread-safe: each thread has its own HTTP session; refreshes are serialised."""

    def __init__(self, url: str, store: CredentialStore | None = None, timeout: float = 120) -> None:
        self.url = url.rstrip("/")
        self.store = store or CredentialStore()
        self.timeout = timeout
        self._local = threading.local()
        self._refresh_lock = threading.Lock()
        self.session_data = self.store.get(self.url)

    # -- plumbing ---------------------------------------------------------------
    @property
    def http(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
            s.headers["User-Agent"] = USER_AGENT
        return s

    def send(self, method: str, url: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        try:
            return self.http.request(method, url, **kw)
        except requests.ConnectionError as e:
            raise CliError(f"cannot reach {url.split('?')[0]}: {e.__class__.__name__}",
                           EXIT_UNREACHABLE) from e
        except requests.Timeout as e:
            raise CliError(f"no answer from {url.split('?')[0]} in {self.timeout:.0f}s",
                           EXIT_UNREACHABLE) from e

    def require_session(self) -> dict[str, Any]:
        if not self.session_data:
            raise CliError(f"not logged in to {self.url}: run 'imagerepo login'", EXIT_AUTH)
        return self.session_data

    def access_token(self) -> str:
        session = self.require_session()
        if time.time() > float(session.get("expires_at", 0)) - 30:
            self.refresh(stale=session["access_token"])
            session = self.require_session()
        return str(session["access_token"])

    def refresh(self, stale: str) -> None:
        """Trade the refresh token for a new pair (once, however many threads noticed)."""
        with self._refresh_lock:
            session = self.require_session()
            if session.get("access_token") != stale:
                return  # another thread refreshed already
            token = session.get("refresh_token")
            if not token:
                self.forget()
                raise CliError("session expired: run 'imagerepo login'", EXIT_AUTH)
            r = self.send("POST", self.url + "/token/refresh", json={"refresh_token": token})
            if r.status_code != 200:
                self.forget()
                raise CliError(f"session expired ({ApiError.from_response(r, 'token refresh').message}):"
                               " run 'imagerepo login'", EXIT_AUTH)
            self.session_data = {**session_from_login(r.json(), session.get("username", "")),
                                 **({} if r.json().get("refresh_token") else {"refresh_token": token})}
            self.store.put(self.url, self.session_data)

    def forget(self) -> None:
        self.session_data = None
        self.store.put(self.url, None)

    def request(self, method: str, path: str, *, auth: bool | None = True,
                body: Callable[[], Any] | None = None, **kw: Any) -> requests.Response:
        """``auth``: True needs a session, None sends one when there is one, False never.
        ``body`` builds the request body (called again when a 401 makes us refresh and retry)."""
        url = path if path.startswith(("http://", "https://")) else self.url + path
        for attempt in (1, 2):
            headers = dict(kw.pop("headers", None) or {})
            token = None
            if auth or (auth is None and self.session_data):
                token = self.access_token()
                headers["Authorization"] = f"Bearer {token}"
            if body is not None:
                kw["data"] = body()
            r = self.send(method, url, headers=headers, **kw)
            kw["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
            if token and attempt == 1 and token_rejected(r) and self.session_data \
                    and self.session_data.get("refresh_token"):
                self.refresh(stale=token)
                continue
            if token and token_rejected(r):
                self.forget()
                raise CliError("the server refused the session (expired or ended): run 'imagerepo login'",
                               EXIT_AUTH)
            return r
        return r

    def call(self, method: str, path: str, *, what: str = "", ok: tuple[int, ...] = (200, 201, 204),
             **kw: Any) -> Any:
        """A JSON call: the decoded body, or ApiError."""
        r = self.request(method, path, **kw)
        if r.status_code not in ok:
            raise ApiError.from_response(r, what)
        if r.status_code == 204 or not r.content:
            return None
        return r.json()

    # -- paging -----------------------------------------------------------------
    def pages(self, path: str, params: dict[str, Any], auth: bool | None = None) -> Any:
        """Every item of a paged listing, following ``nextCursor`` (or page numbers)."""
        params = {**params, "page": 1}
        while True:
            page = self.call("GET", path, params=params, auth=auth)
            items = page.get("items", [])
            yield from items
            if not items:
                return
            if page.get("nextCursor"):
                params = {k: v for k, v in params.items() if k != "page"} | {"cursor": page["nextCursor"]}
            elif "cursor" not in params and page.get("page", 1) < page.get("totalPages", 0):
                params["page"] = page["page"] + 1
            else:
                return

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.http.close()
