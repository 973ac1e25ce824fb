"""MSAL's auth-code flow and the per-admin token cache, encrypted in Postgres.

* :func:`begin_connect` runs ``initiate_auth_code_flow`` (MSAL makes the state,
  nonce and PKCE verifier) and keeps the flow, encrypted, under its state.
* :func:`complete_connect` consumes that row once and lets MSAL redeem the code
  (``acquire_token_by_auth_code_flow`` checks state and nonce and sends the verifier).
* :class:`TokenSource` hands out access tokens through ``acquire_token_silent``,
  so MSAL refreshes them when they expire, and writes the cache back when MSAL
  changed it. A refresh that cannot succeed becomes :class:`ReauthorizationRequired`.

Tokens never leave this module except as the ``Authorization`` header of a
Graph request, and are never logged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import msal
import requests

from imagerepo.db import unit_of_work
from imagerepo.errors import BadRequest, UpstreamError
from imagerepo.onedrive import crypto
from imagerepo.onedrive.config import OneDriveSettings, onedrive_settings
from imagerepo.onedrive.errors import NotConfigured, ReauthorizationRequired

FLOW_TTL = dt.timedelta(minutes=10)
MAX_OPEN_FLOWS = 10
IDENTITY_TIMEOUT = (5.0, 15.0)
_STATE = re.compile(r"^[A-Za-z0-9_\-]{8,128}$")
# Token-endpoint errors that only a new interactive sign-in can fix.
_REAUTH_ERRORS = frozenset({"invalid_grant", "interaction_required", "login_required",
                            "consent_required"})
_local = threading.local()

# The callback is a GET (the code arrives in the query string), as the API defines it;
# PKCE, a confidential client and single-use codes make the query safe to use, so
# MSAL's advice to prefer form_post is silenced once here rather than on every flow.
warnings.filterwarnings("ignore", message="response_mode='form_post' is recommended",
                        category=UserWarning)


class TimeoutSession(requests.Session):
    """A ``requests.Session`` with a default timeout (MSAL sets none) and an explicit ``verify``.

    ``verify`` is passed per request because requests lets ``REQUESTS_CA_BUNDLE``
    override a session's own ``verify``.
    """

    def __init__(self, timeout: tuple[float, float], verify: str | bool) -> None:
        super().__init__()
        self.default_timeout = timeout
        self.verify = verify

    def request(self, method: str | bytes, url: str | bytes, *args: Any,
                **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.default_timeout)
        kwargs.setdefault("verify", self.verify)
        return super().request(method, url, *args, **kwargs)


def _http_cache() -> dict[str, Any]:
    """MSAL's cache of discovery answers: one per thread, as MSAL locks per app instance."""
    cache: dict[str, Any] | None = getattr(_local, "http_cache", None)
    if cache is None:
        cache = _local.http_cache = {}
    return cache


def build_app(cfg: OneDriveSettings,
              cache: msal.SerializableTokenCache | None = None) -> msal.ConfidentialClientApplication:
    """A confidential client for the configured authority; discovery is cached per container.

    ``instance_discovery=False``: the authority comes from our own configuration,
    so there is nothing to validate against login.microsoftonline.com (and the
    local stand-in is not known there).
    """
    try:
        return msal.ConfidentialClientApplication(
            cfg.client_id, client_credential=cfg.client_secret, authority=cfg.authority_url,
            token_cache=cache, http_client=TimeoutSession(IDENTITY_TIMEOUT, cfg.verify),
            http_cache=_http_cache(), instance_discovery=False)
    except (requests.RequestException, ValueError) as exc:
        raise UpstreamError("the Microsoft identity platform could not be reached or rejected the"
                            " configured authority", code="onedrive_identity_unavailable") from exc


def _flow_aad(state: str) -> str:
    return f"flow:{state}"


def _cache_aad(admin_id: int) -> str:
    return f"cache:{admin_id}"


FLOW_COOKIE_PREFIX = "imagerepo_onedrive_flow_"


def flow_cookie_name(state: str) -> str:
    """One cookie per flow (two tabs may connect at once), named after the state's digest."""
    return FLOW_COOKIE_PREFIX + hashlib.sha256(state.encode()).hexdigest()[:16]


def _digest(binder: str) -> str:
    return hashlib.sha256(binder.encode()).hexdigest()


@dataclass(frozen=True)
class Started:
    """A new flow: ``body`` for the client; ``binder`` goes into a cookie for the admin's browser."""

    body: dict[str, Any]
    binder: str
    secure: bool  # the callback is https: the cookie may be Secure

    @property
    def cookie_name(self) -> str:
        return flow_cookie_name(str(self.body["state"]))


def begin_connect(admin_id: int) -> Started:
    """Start an auth-code flow for this admin; returns the URL to send the browser to.

    The state is bound to the browser that will complete it: a random binder whose
    SHA-256 is stored with the flow travels as an HttpOnly cookie scoped to the
    callback, and the callback refuses the state without it. A flow started by
    one admin therefore cannot be completed in someone else's browser (which
    would connect that person's OneDrive to the first admin's account).
    The redirect URI comes only from configuration (never from request headers).
    """
    cfg = onedrive_settings()
    redirect_uri = cfg.redirect_uri
    if not redirect_uri:
        raise NotConfigured("OneDrive is not configured: OneDriveRedirectUri (ONEDRIVE_REDIRECT_URI)"
                            " is not set")
    app = build_app(cfg)
    try:
        flow = app.initiate_auth_code_flow(list(cfg.scopes), redirect_uri=redirect_uri,
                                           prompt="select_account", response_mode="query")
    except ValueError as exc:
        raise NotConfigured(f"OneDrive is misconfigured: {exc}", code="onedrive_misconfigured") from exc
    state = str(flow["state"])
    binder = secrets.token_urlsafe(32)
    sealed = crypto.seal(cfg.cache_key, "flow", json.dumps(flow).encode(), _flow_aad(state))
    expires_at = dt.datetime.now(dt.UTC) + FLOW_TTL
    with unit_of_work() as uow:
        uow.run("DELETE FROM onedrive_auth_flows WHERE expires_at < now()")
        # At most MAX_OPEN_FLOWS pending flows per admin (every 409 answer starts one).
        uow.run("DELETE FROM onedrive_auth_flows WHERE admin_id = :a AND state NOT IN (SELECT state"
                " FROM onedrive_auth_flows WHERE admin_id = :a ORDER BY created_at DESC LIMIT :keep)",
                a=admin_id, keep=MAX_OPEN_FLOWS - 1)
        uow.run("INSERT INTO onedrive_auth_flows (state, admin_id, flow, expires_at, binder_sha256)"
                " VALUES (:state, :admin, :flow, :exp, :binder)",
                state=state, admin=admin_id, flow=sealed, exp=expires_at, binder=_digest(binder))
        uow.commit()
    return Started({"authorizationUrl": flow["auth_uri"], "state": state,
                    "expiresAt": expires_at.isoformat(), "redirectUri": redirect_uri},
                   binder, redirect_uri.startswith("https://"))


@dataclass(frozen=True)
class Connection:
    admin_id: int
    home_account_id: str
    username: str
    display_name: str
    connected_at: dt.datetime
    updated_at: dt.datetime

    def account_json(self) -> dict[str, Any]:
        return {"username": self.username, "name": self.display_name,
                "homeAccountId": self.home_account_id, "connectedAt": self.connected_at.isoformat()}


def complete_connect(params: dict[str, str], cookies: dict[str, str]) -> Connection:
    """Finish the flow named by ``state`` (single use) and store the admin's token cache.

    The callback is reached by a browser redirect, which carries no bearer token:
    the caller is identified by the unguessable, single-use, short-lived state
    that only the admin's own /connect call created (and PKCE binds the code to it),
    presented together with that call's binder cookie (see :func:`begin_connect`).
    """
    state = params.get("state") or ""
    if not _STATE.match(state):
        raise BadRequest("the callback needs the state issued by /admin/onedrive/connect",
                         code="onedrive_invalid_state")
    cfg = onedrive_settings()
    with unit_of_work() as uow:
        row = uow.one("DELETE FROM onedrive_auth_flows WHERE state = :s"
                      " RETURNING admin_id, flow, expires_at > now() AS live, binder_sha256", s=state)
        uow.commit()
    if row is None or not row["live"]:
        raise BadRequest("unknown, used or expired authorization state: start again with"
                         " GET /admin/onedrive/connect", code="onedrive_invalid_state")
    binder = cookies.get(flow_cookie_name(state), "")
    if not row["binder_sha256"] or not hmac.compare_digest(_digest(binder), row["binder_sha256"]):
        raise BadRequest("this authorization was started in another browser or session: start"
                         " again with GET /admin/onedrive/connect from the admin's own browser",
                         code="onedrive_state_not_bound")
    admin_id = int(row["admin_id"])
    if params.get("error"):
        detail = (params.get("error_description") or "")[:300]
        raise BadRequest(f"the authorization was not granted: {params['error'][:64]} {detail}".strip(),
                         code="onedrive_authorization_denied")
    try:
        flow = json.loads(crypto.open_sealed(cfg.cache_key, "flow", bytes(row["flow"]), _flow_aad(state)))
    except crypto.DecryptionError as exc:
        raise BadRequest("the authorization state cannot be read (the key changed?): start again",
                         code="onedrive_invalid_state") from exc
    cache = msal.SerializableTokenCache()
    app = build_app(cfg, cache)
    try:
        result = app.acquire_token_by_auth_code_flow(flow, dict(params))
    except ValueError as exc:  # state mismatch and other client-side checks
        raise BadRequest("the authorization response does not match its flow",
                         code="onedrive_invalid_state") from exc
    except requests.RequestException as exc:
        raise UpstreamError("the Microsoft identity platform could not be reached",
                            code="onedrive_identity_unavailable") from exc
    if "error" in result:
        raise BadRequest(f"the authorization code was refused: {result.get('error')}"
                         f" {str(result.get('error_description') or '')[:300]}".strip(),
                         code="onedrive_authorization_failed")
    accounts = app.get_accounts()
    if not accounts:
        raise UpstreamError("the identity platform returned no account", code="onedrive_identity_unavailable")
    account = accounts[0]
    claims = result.get("id_token_claims") or {}
    username = str(claims.get("preferred_username") or account.get("username") or "")[:254]
    name = str(claims.get("name") or "")[:254]
    sealed = crypto.seal(cfg.cache_key, "cache", cache.serialize().encode(), _cache_aad(admin_id))
    with unit_of_work() as uow:
        saved = uow.one(
            "INSERT INTO onedrive_connections (admin_id, home_account_id, username, display_name,"
            " token_cache) VALUES (:a, :h, :u, :n, :c)"
            " ON CONFLICT (admin_id) DO UPDATE SET home_account_id = EXCLUDED.home_account_id,"
            " username = EXCLUDED.username, display_name = EXCLUDED.display_name,"
            " token_cache = EXCLUDED.token_cache, created_at = now(), updated_at = now()"
            " RETURNING created_at, updated_at",
            a=admin_id, h=str(account["home_account_id"]), u=username, n=name, c=sealed)
        uow.commit()
    assert saved is not None
    return Connection(admin_id, str(account["home_account_id"]), username, name,
                      saved["created_at"], saved["updated_at"])


def connection(admin_id: int) -> Connection | None:
    with unit_of_work() as uow:
        row = uow.one("SELECT admin_id, home_account_id, username, display_name, created_at, updated_at"
                      " FROM onedrive_connections WHERE admin_id = :a", a=admin_id)
    if row is None:
        return None
    return Connection(int(row["admin_id"]), row["home_account_id"], row["username"],
                      row["display_name"], row["created_at"], row["updated_at"])


class TokenSource:
    """Access tokens of one admin's OneDrive connection (callable: ``source(force_refresh)``).

    The cache is loaded once per instance; MSAL answers from it while the access
    token is fresh and redeems the refresh token otherwise. ``force_refresh`` is
    used after Graph rejected a token MSAL still considered valid.
    """

    def __init__(self, admin_id: int, cfg: OneDriveSettings | None = None) -> None:
        self.admin_id = admin_id
        self.cfg = cfg or onedrive_settings()
        self._lock = threading.Lock()
        self._cache: msal.SerializableTokenCache | None = None
        self._app: msal.ConfidentialClientApplication | None = None
        self._account: dict[str, Any] | None = None
        self._home_account_id = ""

    def _reauth(self, message: str,
                code: str = "onedrive_reauthorization_required") -> ReauthorizationRequired:
        return ReauthorizationRequired(message, admin_id=self.admin_id, code=code)

    def _load(self) -> None:
        with unit_of_work() as uow:
            row = uow.one("SELECT home_account_id, token_cache FROM onedrive_connections"
                          " WHERE admin_id = :a", a=self.admin_id)
        if row is None:
            raise self._reauth("OneDrive is not connected for this admin: open the authorizationUrl",
                               code="onedrive_not_connected")
        try:
            text = crypto.open_sealed(self.cfg.cache_key, "cache", bytes(row["token_cache"]),
                                      _cache_aad(self.admin_id)).decode()
        except crypto.DecryptionError as exc:
            raise self._reauth("the stored OneDrive authorization cannot be decrypted (was the key"
                               " rotated?): connect again") from exc
        cache = msal.SerializableTokenCache()
        cache.deserialize(text)
        app = build_app(self.cfg, cache)
        self._home_account_id = str(row["home_account_id"])
        accounts = [a for a in app.get_accounts() if a.get("home_account_id") == self._home_account_id]
        if not accounts:
            raise self._reauth("the stored OneDrive authorization holds no account: connect again")
        self._cache, self._app, self._account = cache, app, accounts[0]

    def _persist(self) -> None:
        """Write MSAL's cache back if it changed (a refresh rotates the refresh token)."""
        cache = self._cache
        if cache is None or not cache.has_state_changed:
            return
        sealed = crypto.seal(self.cfg.cache_key, "cache", cache.serialize().encode(),
                             _cache_aad(self.admin_id))
        with unit_of_work() as uow:
            # UPDATE, not upsert: a disconnect or reconnect meanwhile wins over this copy.
            uow.run("UPDATE onedrive_connections SET token_cache = :c, updated_at = now()"
                    " WHERE admin_id = :a AND home_account_id = :h",
                    c=sealed, a=self.admin_id, h=self._home_account_id)
            uow.commit()
        cache.has_state_changed = False

    def __call__(self, force_refresh: bool = False) -> str:
        with self._lock:
            if self._app is None:
                self._load()
            assert self._app is not None
            try:
                result = self._app.acquire_token_silent_with_error(
                    list(self.cfg.scopes), account=self._account, force_refresh=force_refresh)
            except requests.RequestException as exc:
                raise UpstreamError("the Microsoft identity platform could not be reached to refresh"
                                    " the OneDrive token", code="onedrive_identity_unavailable") from exc
            self._persist()
        if result and "access_token" in result:
            return str(result["access_token"])
        error = str((result or {}).get("error") or "no_refresh_token")
        if result is None or error in _REAUTH_ERRORS:
            raise self._reauth(f"the OneDrive authorization has expired or was revoked ({error}):"
                               " an admin must connect again")
        if error in ("invalid_client", "unauthorized_client"):
            raise UpstreamError("the identity platform rejected this deployment's OneDrive app"
                                f" credentials ({error})", code="onedrive_client_rejected")
        raise UpstreamError(f"the identity platform could not refresh the OneDrive token ({error})",
                            code="onedrive_identity_unavailable")
