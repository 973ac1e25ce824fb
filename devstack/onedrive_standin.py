"""A local stand-in for the Microsoft identity platform and the Graph endpoints ImageRepo uses.

MSAL only talks to an https authority, so this is an HTTPS server on 127.0.0.1
with a certificate issued at start by a throw-away CA (``ca.pem``, which the
functions trust through ``ONEDRIVE_CA_BUNDLE``). The real MSAL code path runs
against it: OIDC discovery, the authorization endpoint (approves at once and
redirects to the redirect URI with code and state), the token endpoint
(authorization_code with PKCE, refresh_token with rotation), id_token with the
flow's nonce, client_info.

Graph: ``/v1.0/me``, ``/me/drive`` (quota), items by id or ``root``, ``children``
(paged with ``@odata.nextLink``, small page size on demand), ``content`` (a 302 to
a pre-authenticated download URL, like Graph), folder creation with
``@microsoft.graph.conflictBehavior``, rename (PATCH), DELETE, and
``createUploadSession`` with a working upload URL (PUT with Content-Range).

Fault injection, in-process (methods) or over HTTP (``POST /_control``): queue N
answers of 429 (with Retry-After), 503, 509 (bandwidthLimitExceeded), 500 or 401 for the next Graph (or token)
requests, expire every access token, revoke every refresh token, change the
access-token lifetime or the page size. ``GET /_control`` returns counters.

Try the flow locally: ``python -m devstack.onedrive_standin`` (prints the
``ONEDRIVE_*`` variables to export before ``make run``; Ctrl-C stops it).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import hashlib
import io
import ipaddress
import json
import logging
import os
import secrets
import signal
import ssl
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger("devstack.onedrive_standin")

DEFAULT_CLIENT_ID = "00000000-0000-4000-8000-1a6e5e90c11e"
DEFAULT_TENANT = "standin-tenant"
GiB = 1024 ** 3


# -- certificates ---------------------------------------------------------------------
def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost; returns (ca, chain, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ImageRepo OneDrive stand-in CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_path, chain_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(pem))
    chain_path.write_bytes(cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return ca_path, chain_path, key_path


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _mime(name: str) -> str:
    ext = name.lower().rsplit(".", 1)[-1] if "." in name else ""
    return {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif",
            "webp": "image/webp", "tif": "image/tiff", "tiff": "image/tiff", "txt": "text/plain",
            "pdf": "application/pdf", "heic": "image/heic"}.get(ext, "application/octet-stream")


# -- the drive --------------------------------------------------------------------------
@dataclass
class Item:
    id: str
    name: str
    parent_id: str | None
    is_folder: bool
    content: bytes = b""
    mime: str = ""
    created: str = field(default_factory=_now_iso)
    modified: str = field(default_factory=_now_iso)
    version: int = 1
    content_version: int = 1


class Drive:
    """An in-memory drive: items by id, names unique (case-insensitive) within a folder."""

    def __init__(self, drive_id: str = "standin0drive01") -> None:
        self.drive_id = drive_id
        self._prefix = secrets.token_hex(8).upper()
        self._next = 100
        self.items: dict[str, Item] = {}
        self.root_id = self._new_id()
        self.items[self.root_id] = Item(self.root_id, "root", None, True)
        self.lock = threading.RLock()
        self.quota_total = 5 * GiB

    def _new_id(self) -> str:
        self._next += 1
        return f"{self._prefix}!{self._next}"  # personal OneDrive style: the "!" must be URL-encoded

    def resolve(self, item_id: str | None) -> Item | None:
        return self.items.get(self.root_id if item_id in (None, "root") else str(item_id))

    def children(self, folder_id: str) -> list[Item]:
        kids = [i for i in self.items.values() if i.parent_id == folder_id]
        return sorted(kids, key=lambda i: (not i.is_folder, i.name.lower()))

    def child_named(self, folder_id: str, name: str) -> Item | None:
        return next((i for i in self.children(folder_id) if i.name.lower() == name.lower()), None)

    def free_name(self, folder_id: str, name: str) -> str:
        """OneDrive's rename-on-conflict: "name 1.ext", "name 2.ext", ..."""
        stem, dot, ext = name.rpartition(".") if "." in name.strip(".") else (name, "", "")
        n = 1
        candidate = name
        while self.child_named(folder_id, candidate):
            candidate = f"{stem} {n}{dot}{ext}"
            n += 1
        return candidate

    def add_folder(self, parent_id: str | None, name: str) -> str:
        with self.lock:
            parent = self.resolve(parent_id)
            assert parent is not None and parent.is_folder
            existing = self.child_named(parent.id, name)
            if existing is not None and existing.is_folder:
                return existing.id
            item = Item(self._new_id(), name, parent.id, True)
            self.items[item.id] = item
            return item.id

    def add_file(self, parent_id: str | None, name: str, data: bytes, mime: str | None = None) -> str:
        with self.lock:
            parent = self.resolve(parent_id)
            assert parent is not None and parent.is_folder
            item = Item(self._new_id(), name, parent.id, False, data, mime or _mime(name))
            self.items[item.id] = item
            return item.id

    def replace_content(self, item_id: str, data: bytes) -> None:
        with self.lock:
            item = self.items[item_id]
            item.content, item.modified = data, _now_iso()
            item.version += 1
            item.content_version += 1

    def delete(self, item_id: str) -> None:
        with self.lock:
            for child in self.children(item_id):
                self.delete(child.id)
            self.items.pop(item_id, None)

    def path(self, item: Item) -> str:
        parts = []
        current = self.items.get(item.parent_id or "")
        while current is not None and current.id != self.root_id:
            parts.append(current.name)
            current = self.items.get(current.parent_id or "")
        return "/drive/root:" + ("/" + "/".join(reversed(parts)) if parts else "")

    def used(self) -> int:
        return sum(len(i.content) for i in self.items.values())


# -- faults -----------------------------------------------------------------------------
@dataclass
class Fault:
    status: int
    retry_after: int | None = None
    path: str | None = None  # only requests whose path contains this
    target: str = "graph"  # graph | token


def _image_size(data: bytes) -> tuple[int, int] | None:
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:  # noqa: BLE001 - not an image: no image facet
        return None


# -- the server -------------------------------------------------------------------------
class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], standin: StandIn, context: ssl.SSLContext) -> None:
        super().__init__(address, _Handler)
        self.standin = standin
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        """TLS handshake on the connection's own thread (a slow client blocks nobody else)."""
        request.settimeout(30)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            _Handler(tls, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                tls.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TLSServer

    def _serve(self) -> None:
        try:
            self.server.standin.dispatch(self)
        except (ConnectionError, TimeoutError, ssl.SSLError):
            self.close_connection = True

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

    def body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        if isinstance(body, bytes | bytearray):
            payload, ctype = bytes(body), "application/octet-stream"
        elif body is None:
            payload, ctype = b"", "application/json"
        else:
            payload, ctype = json.dumps(body).encode(), "application/json"
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if not any(k.lower() == "content-type" for k in (headers or {})):
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.command, self.path.split("?")[0])


def _graph_error(handler: _Handler, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
    handler.reply(status, {"error": {"code": code, "message": message,
                                     "innerError": {"request-id": str(uuid.uuid4()), "date": _now_iso()}}},
                  headers)


class StandIn:
    """The identity platform and Graph, for one fake user with one drive."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, cert_dir: Path | None = None,
                 tenant: str = DEFAULT_TENANT, client_id: str = DEFAULT_CLIENT_ID,
                 client_secret: str | None = None, page_size: int = 200,
                 access_token_lifetime: int = 3600) -> None:
        self.host, self.port = host, port
        self.cert_dir = cert_dir or Path(tempfile.mkdtemp(prefix="onedrive-standin-"))
        self.tenant = tenant
        self.tenant_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, tenant))
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.page_size = page_size
        self.access_token_lifetime = access_token_lifetime
        self.user = {"id": "5tand1n0-user-0000-0000-000000000001", "displayName": "Ada Admin",
                     "userPrincipalName": "ada@standin.example", "mail": "ada@standin.example"}
        self.drive = Drive()
        self.lock = threading.Lock()
        self.codes: dict[str, dict[str, Any]] = {}
        self.access_tokens: dict[str, float] = {}
        self.refresh_tokens: dict[str, dict[str, Any]] = {}
        self.upload_sessions: dict[str, dict[str, Any]] = {}
        self.download_tokens: dict[str, str] = {}
        self.faults: deque[Fault] = deque()
        self.deny_next_authorization = False
        self.stats: Counter[str] = Counter()
        # (monotonic time, status) of every download answered: shows when a client came back
        # after a throttling answer (did it wait out Retry-After?).
        self.download_log: list[tuple[float, int]] = []
        self.ca_path: Path | None = None
        self._server: _TLSServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def graph_base_url(self) -> str:
        return f"{self.url}/v1.0"

    def start(self) -> StandIn:
        ca, chain, key = self.cert_dir / "ca.pem", self.cert_dir / "server.pem", self.cert_dir / "server.key"
        if not (ca.exists() and chain.exists() and key.exists()) or \
                time.time() - chain.stat().st_mtime > 20 * 86400:
            ca, chain, key = make_certificates(self.cert_dir)
        self.ca_path = ca
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(chain, key)
        self._server = _TLSServer((self.host, self.port), self, context)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="onedrive-standin",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def stack_env(self, redirect_uri: str) -> dict[str, str]:
        """What the functions need to use this stand-in (besides ONEDRIVE_CACHE_KEY)."""
        assert self.ca_path is not None, "start() first"
        return {
            "ONEDRIVE_CLIENT_ID": self.client_id,
            "ONEDRIVE_CLIENT_SECRET": self.client_secret,
            "ONEDRIVE_TENANT": self.tenant,
            "ONEDRIVE_AUTHORITY": self.url,
            "GRAPH_BASE_URL": self.graph_base_url,
            "ONEDRIVE_REDIRECT_URI": redirect_uri,
            "ONEDRIVE_CA_BUNDLE": str(self.ca_path),
        }

    # -- fault injection ----------------------------------------------------------------
    def inject(self, status: int, count: int = 1, *, retry_after: int | None = None,
               path: str | None = None, target: str = "graph") -> None:
        with self.lock:
            self.faults.extend(Fault(status, retry_after, path, target) for _ in range(count))

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def expire_access_tokens(self) -> None:
        """Graph now rejects every access token issued so far (MSAL still thinks them valid)."""
        with self.lock:
            self.access_tokens.clear()

    def revoke_refresh_tokens(self) -> None:
        with self.lock:
            for record in self.refresh_tokens.values():
                record["revoked"] = True

    def _take_fault(self, target: str, path: str) -> Fault | None:
        with self.lock:
            for fault in list(self.faults):
                if fault.target == target and (fault.path is None or fault.path in path):
                    self.faults.remove(fault)
                    self.stats["faults_served"] += 1
                    return fault
        return None

    # -- dispatch -----------------------------------------------------------------------
    def dispatch(self, h: _Handler) -> None:
        parts = urllib.parse.urlsplit(h.path)
        path, query = parts.path, dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        tenant_prefixes = {f"/{t}" for t in (self.tenant, self.tenant_id, "common", "organizations",
                                             "consumers")}
        head, _, rest = path[1:].partition("/")
        if path == "/_control":
            self._control(h)
        elif f"/{head}" in tenant_prefixes and rest == "v2.0/.well-known/openid-configuration":
            self.stats["discovery"] += 1
            h.reply(200, self._openid_configuration(head))
        elif f"/{head}" in tenant_prefixes and rest == "oauth2/v2.0/authorize":
            self._authorize(h, query)
        elif f"/{head}" in tenant_prefixes and rest == "oauth2/v2.0/token" and h.command == "POST":
            self._token(h)
        elif path == "/common/discovery/instance":
            h.reply(200, {"tenant_discovery_endpoint":
                          f"{self.url}/{self.tenant}/v2.0/.well-known/openid-configuration",
                          "api-version": "1.1", "metadata": []})
        elif path.startswith("/v1.0/"):
            self._graph(h, path[len("/v1.0"):], query)
        elif path.startswith("/_download/"):
            self._download(h, path)
        elif path.startswith("/_upload/") and h.command == "PUT":
            self._upload(h, path)
        else:
            h.reply(404, {"error": "not_found"})

    def _control(self, h: _Handler) -> None:
        if h.command == "POST":
            try:
                body = json.loads(h.body() or b"{}")
            except ValueError:
                h.reply(400, {"error": "invalid JSON"})
                return
            for f in body.get("faults") or []:
                self.inject(int(f["status"]), int(f.get("count", 1)), retry_after=f.get("retryAfter"),
                            path=f.get("path"), target=f.get("target", "graph"))
            if body.get("clearFaults"):
                self.clear_faults()
            if body.get("expireAccessTokens"):
                self.expire_access_tokens()
            if body.get("revokeRefreshTokens"):
                self.revoke_refresh_tokens()
            if body.get("denyNextAuthorization"):
                self.deny_next_authorization = True
            if "accessTokenLifetime" in body:
                self.access_token_lifetime = int(body["accessTokenLifetime"])
            if "pageSize" in body:
                self.page_size = max(1, int(body["pageSize"]))
            if body.get("resetStats"):
                self.stats.clear()
        h.reply(200, {"stats": dict(self.stats), "queuedFaults": len(self.faults),
                      "pageSize": self.page_size, "accessTokenLifetime": self.access_token_lifetime})

    # -- identity -----------------------------------------------------------------------
    def _openid_configuration(self, tenant: str) -> dict[str, Any]:
        base = f"{self.url}/{tenant}"
        return {
            "issuer": f"{self.url}/{self.tenant_id}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
            "tenant_region_scope": "EU",
        }

    def _client_info(self) -> str:
        return _b64url(json.dumps({"uid": self.user["id"], "utid": self.tenant_id}).encode())

    def _authorize(self, h: _Handler, q: dict[str, str]) -> None:
        self.stats["authorize"] += 1
        redirect_uri = q.get("redirect_uri", "")
        if q.get("client_id") != self.client_id or not redirect_uri.startswith(("http://", "https://")):
            h.reply(400, {"error": "invalid_request", "error_description": "AADSTS700016: unknown client"
                          " or redirect_uri"})
            return
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256" \
                or not q.get("code_challenge"):
            h.reply(400, {"error": "invalid_request", "error_description": "code + PKCE S256 required"})
            return
        params: dict[str, str] = {"state": q.get("state", "")}
        if self.deny_next_authorization:
            self.deny_next_authorization = False
            params.update(error="access_denied", error_description="AADSTS65004: User declined to consent.")
        else:
            code = secrets.token_urlsafe(32)
            with self.lock:
                self.codes[code] = {"redirect_uri": redirect_uri, "challenge": q["code_challenge"],
                                    "nonce": q.get("nonce"), "scope": q.get("scope", ""),
                                    "expires": time.time() + 600}
            params.update(code=code, client_info=self._client_info(), session_state=str(uuid.uuid4()))
        sep = "&" if "?" in redirect_uri else "?"
        h.reply(302, None, {"Location": redirect_uri + sep + urllib.parse.urlencode(params)})

    def _token_error(self, h: _Handler, status: int, error: str, description: str) -> None:
        h.reply(status, {"error": error, "error_description": description, "error_codes": [70000],
                         "timestamp": _now_iso(), "trace_id": str(uuid.uuid4()),
                         "correlation_id": str(uuid.uuid4())})

    def _token(self, h: _Handler) -> None:
        form = dict(urllib.parse.parse_qsl(h.body().decode(), keep_blank_values=True))
        fault = self._take_fault("token", "/token")
        if fault is not None:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            h.reply(fault.status, {"error": "temporarily_unavailable",
                                   "error_description": "injected fault"}, headers)
            return
        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic = h.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        if client_id != self.client_id or secret != self.client_secret:
            self._token_error(h, 401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
            return
        grant = form.get("grant_type")
        self.stats[f"grant_{grant}"] += 1
        if grant == "authorization_code":
            with self.lock:
                record = self.codes.pop(form.get("code", ""), None)
            if record is None or record["expires"] < time.time():
                self._token_error(h, 400, "invalid_grant", "AADSTS54005: the code was already redeemed"
                                  " or has expired.")
                return
            challenge = _b64url(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
            if challenge != record["challenge"] or form.get("redirect_uri") != record["redirect_uri"]:
                self._token_error(h, 400, "invalid_grant", "AADSTS501481: PKCE verifier or redirect_uri"
                                  " mismatch.")
                return
            h.reply(200, self._issue(record["scope"] or form.get("scope", ""), record["nonce"]))
        elif grant == "refresh_token":
            with self.lock:
                rt = self.refresh_tokens.get(form.get("refresh_token", ""))
            if rt is None or rt["revoked"]:
                self._token_error(h, 400, "invalid_grant", "AADSTS70008: The provided refresh token has"
                                  " expired or was revoked. The user must sign in again.")
                return
            h.reply(200, self._issue(form.get("scope") or rt["scope"], None))
        else:
            self._token_error(h, 400, "unsupported_grant_type", f"AADSTS70003: {grant} is not supported")

    def _issue(self, scope: str, nonce: str | None) -> dict[str, Any]:
        now = int(time.time())
        access, refresh = "at-" + secrets.token_urlsafe(32), "rt-" + secrets.token_urlsafe(48)
        with self.lock:
            self.access_tokens[access] = now + self.access_token_lifetime
            self.refresh_tokens[refresh] = {"revoked": False, "scope": scope}
        claims = {"aud": self.client_id, "iss": f"{self.url}/{self.tenant_id}/v2.0", "iat": now,
                  "nbf": now, "exp": now + 3600, "name": self.user["displayName"],
                  "preferred_username": self.user["userPrincipalName"], "oid": self.user["id"],
                  "sub": _b64url(hashlib.sha256(self.user["id"].encode()).digest()[:16]),
                  "tid": self.tenant_id, "ver": "2.0"}
        if nonce:
            claims["nonce"] = nonce
        header = _b64url(json.dumps({"typ": "JWT", "alg": "RS256", "kid": "standin"}).encode())
        id_token = f"{header}.{_b64url(json.dumps(claims).encode())}.{_b64url(secrets.token_bytes(32))}"
        return {"token_type": "Bearer", "scope": scope, "expires_in": self.access_token_lifetime,
                "ext_expires_in": self.access_token_lifetime, "access_token": access,
                "refresh_token": refresh, "id_token": id_token, "client_info": self._client_info()}

    # -- Graph --------------------------------------------------------------------------
    def _authenticated(self, h: _Handler) -> bool:
        header = h.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        with self.lock:
            expires = self.access_tokens.get(token)
        if expires is None or expires < time.time():
            _graph_error(h, 401, "InvalidAuthenticationToken",
                         "Access token has expired or is not yet valid.",
                         {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'})
            return False
        return True

    def _fault_reply(self, h: _Handler, path: str) -> bool:
        fault = self._take_fault("graph", path)
        if fault is None:
            return False
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        code = {429: "activityLimitReached", 503: "serviceNotAvailable", 401: "InvalidAuthenticationToken",
                404: "itemNotFound", 509: "bandwidthLimitExceeded"}.get(fault.status, "generalException")
        _graph_error(h, fault.status, code, f"injected {fault.status}", headers)
        return True

    def _graph(self, h: _Handler, path: str, query: dict[str, str]) -> None:
        self.stats["graph"] += 1
        self.stats[f"graph {h.command} {self._route_name(path)}"] += 1
        if self._fault_reply(h, path) or not self._authenticated(h):
            return
        if path == "/me" and h.command == "GET":
            h.reply(200, {"@odata.context": f"{self.graph_base_url}/$metadata#users/$entity", **self.user})
            return
        if path == "/me/drive" and h.command == "GET":
            used = self.drive.used()
            h.reply(200, {"id": self.drive.drive_id, "driveType": "personal",
                          "owner": {"user": {"displayName": self.user["displayName"], "id": self.user["id"]}},
                          "quota": {"total": self.drive.quota_total, "used": used, "deleted": 0,
                                    "remaining": self.drive.quota_total - used, "state": "normal"},
                          "webUrl": "https://onedrive.standin.example/"})
            return
        target, name, action = self._parse_item_path(path)
        if target is None:
            _graph_error(h, 400, "invalidRequest", "Invalid request")
            return
        with self.drive.lock:
            item = self.drive.resolve(target)
            if item is None:
                _graph_error(h, 404, "itemNotFound", "The resource could not be found.")
                return
            if name is not None:
                if action == "/createUploadSession" and h.command == "POST":
                    self._create_upload_session(h, item, name)
                else:
                    _graph_error(h, 400, "invalidRequest", "Invalid request")
                return
            self._item_action(h, item, action, query)

    @staticmethod
    def _route_name(path: str) -> str:
        for suffix in ("/children", "/content", "/createUploadSession"):
            if path.endswith(suffix):
                return suffix[1:]
        return "item" if "/drive/" in path else path.strip("/")

    @staticmethod
    def _parse_item_path(path: str) -> tuple[str | None, str | None, str]:
        """("root"|id, name for "…:/name:/…" addressing or None, action suffix)."""
        if path.startswith("/me/drive/root"):
            target, rest = "root", path[len("/me/drive/root"):]
        elif path.startswith("/me/drive/items/"):
            rest = path[len("/me/drive/items/"):]
            raw, sep, tail = rest.partition("/")
            raw, colon, after = raw.partition(":")
            target = urllib.parse.unquote(raw)
            rest = (colon + after + sep + tail) if colon else (sep + tail)
        else:
            return None, None, ""
        name = None
        if rest.startswith(":/"):
            name_part, _, action = rest[2:].partition(":")
            name = urllib.parse.unquote(name_part)
            return target, name, action
        return target, None, rest

    def _item_json(self, item: Item) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": item.id, "name": item.name, "createdDateTime": item.created,
            "lastModifiedDateTime": item.modified, "eTag": f'"{{{item.id}}},{item.version}"',
            "cTag": f'"c:{{{item.id}}},{item.content_version}"',
            "webUrl": "https://onedrive.standin.example/" + urllib.parse.quote(item.name),
        }
        if item.id == self.drive.root_id:
            body["root"] = {}
            body["parentReference"] = {"driveId": self.drive.drive_id, "driveType": "personal"}
        else:
            body["parentReference"] = {"driveId": self.drive.drive_id, "driveType": "personal",
                                       "id": item.parent_id, "path": self.drive.path(item)}
        if item.is_folder:
            kids = self.drive.children(item.id)
            body["folder"] = {"childCount": len(kids)}
            body["size"] = sum(len(k.content) for k in kids)
        else:
            body["size"] = len(item.content)
            body["file"] = {"mimeType": item.mime,
                            "hashes": {"sha1Hash": hashlib.sha1(item.content).hexdigest().upper()}}  # noqa: S324
            dims = _image_size(item.content) if item.mime.startswith("image/") else None
            if dims:
                body["image"] = {"width": dims[0], "height": dims[1]}
            token = secrets.token_urlsafe(16)
            self.download_tokens[token] = item.id
            body["@microsoft.graph.downloadUrl"] = f"{self.url}/_download/{token}"
        return body

    def _item_action(self, h: _Handler, item: Item, action: str, query: dict[str, str]) -> None:
        method = h.command
        if action == "" and method == "GET":
            h.reply(200, self._item_json(item))
        elif action == "" and method == "PATCH":
            self._rename(h, item)
        elif action == "" and method == "DELETE":
            if item.id == self.drive.root_id:
                _graph_error(h, 403, "accessDenied", "The root cannot be deleted.")
                return
            self.drive.delete(item.id)
            h.reply(204)
        elif action == "/children" and method == "GET":
            self._children(h, item, query)
        elif action == "/children" and method == "POST":
            self._create_folder(h, item)
        elif action == "/content" and method == "GET":
            if item.is_folder:
                _graph_error(h, 400, "invalidRequest", "A folder has no content.")
                return
            token = secrets.token_urlsafe(16)
            self.download_tokens[token] = item.id
            h.reply(302, None, {"Location": f"{self.url}/_download/{token}"})
        else:
            _graph_error(h, 405, "invalidRequest", f"{method} {action or 'item'} is not supported")

    def _children(self, h: _Handler, item: Item, query: dict[str, str]) -> None:
        if not item.is_folder:
            h.reply(200, {"value": []})
            return
        top = min(self.page_size, max(1, int(query.get("$top") or self.page_size)))
        skip = int(query.get("$skiptoken") or 0)
        kids = self.drive.children(item.id)
        page = kids[skip:skip + top]
        body: dict[str, Any] = {"@odata.context": f"{self.graph_base_url}/$metadata#Collection(driveItem)",
                                "value": [self._item_json(k) for k in page]}
        if skip + top < len(kids):
            base = "/me/drive/root" if item.id == self.drive.root_id else \
                f"/me/drive/items/{urllib.parse.quote(item.id, safe='')}"
            body["@odata.nextLink"] = (f"{self.graph_base_url}{base}/children?"
                                       + urllib.parse.urlencode({"$top": top, "$skiptoken": skip + top}))
        h.reply(200, body)

    def _json_body(self, h: _Handler) -> dict[str, Any] | None:
        try:
            body = json.loads(h.body() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            _graph_error(h, 400, "invalidRequest", "Invalid JSON body")
            return None
        return body

    def _create_folder(self, h: _Handler, parent: Item) -> None:
        body = self._json_body(h)
        if body is None:
            return
        name = str(body.get("name") or "")
        if not name or "folder" not in body or not parent.is_folder:
            _graph_error(h, 400, "invalidRequest", "name and folder are required")
            return
        behaviour = body.get("@microsoft.graph.conflictBehavior", "fail")
        existing = self.drive.child_named(parent.id, name)
        if existing is not None:
            if behaviour == "rename":
                name = self.drive.free_name(parent.id, name)
            elif behaviour == "replace":
                self.drive.delete(existing.id)
            else:
                _graph_error(h, 409, "nameAlreadyExists", "An item with the same name already exists.")
                return
        new = self.drive.items[self.drive.add_folder(parent.id, name)]
        h.reply(201, self._item_json(new))

    def _rename(self, h: _Handler, item: Item) -> None:
        body = self._json_body(h)
        if body is None:
            return
        name = str(body.get("name") or "")
        if not name or item.parent_id is None:
            _graph_error(h, 400, "invalidRequest", "a name is required")
            return
        clash = self.drive.child_named(item.parent_id, name)
        if clash is not None and clash.id != item.id:
            _graph_error(h, 409, "nameAlreadyExists", "An item with the same name already exists.")
            return
        item.name, item.modified = name, _now_iso()
        item.version += 1
        h.reply(200, self._item_json(item))

    def _create_upload_session(self, h: _Handler, folder: Item, name: str) -> None:
        body = self._json_body(h)
        if body is None:
            return
        behaviour = (body.get("item") or {}).get("@microsoft.graph.conflictBehavior", "fail")
        if not folder.is_folder:
            _graph_error(h, 400, "invalidRequest", "the parent is not a folder")
            return
        if behaviour == "fail" and self.drive.child_named(folder.id, name):
            _graph_error(h, 409, "nameAlreadyExists", "An item with the same name already exists.")
            return
        session = secrets.token_urlsafe(24)
        expires = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self.lock:
            self.upload_sessions[session] = {"folder": folder.id, "name": name, "behaviour": behaviour,
                                             "data": bytearray(), "expires": expires}
        h.reply(200, {"@odata.context": f"{self.graph_base_url}/$metadata#microsoft.graph.uploadSession",
                      "uploadUrl": f"{self.url}/_upload/{session}", "expirationDateTime": expires,
                      "nextExpectedRanges": ["0-"]})

    # -- pre-authenticated URLs ---------------------------------------------------------
    def _download(self, h: _Handler, path: str) -> None:
        self.stats["download"] += 1
        if self._fault_reply(h, path):
            with self.lock:
                self.download_log.append((time.monotonic(), 429))
            return
        with self.lock:
            self.download_log.append((time.monotonic(), 200))
        item_id = self.download_tokens.get(path.rsplit("/", 1)[-1])
        item = self.drive.items.get(item_id or "")
        if item is None:
            _graph_error(h, 404, "itemNotFound", "The resource could not be found.")
            return
        h.reply(200, item.content, {"Content-Type": item.mime or "application/octet-stream"})

    def _upload(self, h: _Handler, path: str) -> None:
        session = self.upload_sessions.get(path.rsplit("/", 1)[-1])
        data = h.body()
        if session is None:
            _graph_error(h, 404, "itemNotFound", "The upload session does not exist or has expired.")
            return
        spec = h.headers.get("Content-Range", "")
        try:
            unit, _, rng = spec.partition(" ")
            span, _, total_raw = rng.partition("/")
            start_raw, _, end_raw = span.partition("-")
            start, end, total = int(start_raw), int(end_raw), int(total_raw)
            assert unit == "bytes" and end - start + 1 == len(data)
        except (ValueError, AssertionError):
            _graph_error(h, 400, "invalidRange", "Content-Range does not match the body")
            return
        if start != len(session["data"]):
            _graph_error(h, 416, "invalidRange", "unexpected range start")
            return
        session["data"].extend(data)
        if len(session["data"]) < total:
            h.reply(202, {"expirationDateTime": session["expires"],
                          "nextExpectedRanges": [f"{len(session['data'])}-"]})
            return
        with self.drive.lock:
            name = session["name"]
            existing = self.drive.child_named(session["folder"], name)
            if existing is not None and session["behaviour"] == "replace" and not existing.is_folder:
                self.drive.replace_content(existing.id, bytes(session["data"]))
                item = existing
                status = 200
            else:
                if existing is not None:
                    name = self.drive.free_name(session["folder"], name)
                item = self.drive.items[self.drive.add_file(session["folder"], name, bytes(session["data"]))]
                status = 201
            self.upload_sessions.pop(path.rsplit("/", 1)[-1], None)
            h.reply(status, self._item_json(item))


# -- a sample drive, for trying the flow by hand ------------------------------------------
def sample_image(seed: int, size: tuple[int, int] = (640, 480), fmt: str = "JPEG") -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, ((seed * 53) % 256, (seed * 97) % 256, (seed * 31) % 256))
    draw = ImageDraw.Draw(img)
    for i in range(12):
        x = (seed * 37 + i * 61) % size[0]
        y = (seed * 17 + i * 43) % size[1]
        draw.ellipse((x, y, x + 60 + i * 5, y + 40 + i * 3), fill=((i * 40) % 256, 255 - i * 20, seed % 256))
    out = io.BytesIO()
    img.save(out, fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return out.getvalue()


def seed_sample_drive(drive: Drive) -> None:
    pictures = drive.add_folder("root", "Pictures")
    holiday = drive.add_folder(pictures, "Holiday 2024")
    for n in range(8):
        drive.add_file(holiday, f"IMG_{1000 + n}.jpg", sample_image(n))
    drive.add_file(holiday, "IMG_1000 copy.jpg", sample_image(0))
    drive.add_file(holiday, "itinerary.txt", b"Day 1: beach\nDay 2: hills\n", "text/plain")
    drive.add_folder("root", "Documents")


def _persisted_config(directory: Path) -> dict[str, str]:
    path = directory / "standin.json"
    config: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for key in ("client_secret", "cache_key"):
        if key not in config:
            config[key] = secrets.token_urlsafe(32)
            changed = True
    if changed:
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config))
        path.chmod(0o600)
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.onedrive_standin",
                                     description="Local stand-in for the Microsoft identity platform"
                                     " and Graph (OneDrive).")
    parser.add_argument("--port", type=int, default=int(os.environ.get("ONEDRIVE_STANDIN_PORT", "8443")))
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("IMAGEREPO_DATA_DIR", ".data"))
                        / "onedrive-standin", help="certificates and the persisted client secret")
    parser.add_argument("--redirect-uri", default=f"http://127.0.0.1:{os.environ.get('PORT', '3000')}"
                        "/admin/onedrive/callback")
    parser.add_argument("--page-size", type=int, default=7)
    parser.add_argument("--token-lifetime", type=int, default=3600)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = _persisted_config(args.dir)
    standin = StandIn(port=args.port, cert_dir=args.dir, client_secret=config["client_secret"],
                      page_size=args.page_size, access_token_lifetime=args.token_lifetime)
    seed_sample_drive(standin.drive)
    standin.start()
    env = {**standin.stack_env(args.redirect_uri), "ONEDRIVE_CACHE_KEY": config["cache_key"]}
    for key, value in env.items():
        print(f"export {key}={value}")
    print(f"# control: curl --cacert {standin.ca_path} -X POST {standin.url}/_control"
          " -d '{\"faults\":[{\"status\":429,\"retryAfter\":2}]}'", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    standin.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
