"""OneDrive settings from the function's environment.

Read on every call (cheap) rather than cached, so a warm container follows
configuration changes and the local runtime can give each function its own
environment. Secrets come as plain variables locally (``ONEDRIVE_CLIENT_SECRET``,
``ONEDRIVE_CACHE_KEY``, like ``sam local --env-vars``) or as Secrets Manager ARNs
in AWS (``ONEDRIVE_CLIENT_SECRET_ARN``, ``ONEDRIVE_CACHE_KEY_ARN``), fetched through
the Powertools parameters cache.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass

from imagerepo.onedrive.errors import NotConfigured

DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
DEFAULT_GRAPH = "https://graph.microsoft.com/v1.0"
DEFAULT_SCOPES = ("Files.ReadWrite", "User.Read")


def _secret(plain_var: str, arn_var: str) -> str:
    value = os.environ.get(plain_var, "")
    if value:
        return value
    arn = os.environ.get(arn_var, "")
    if not arn.startswith("arn:"):
        return ""  # locally !Ref of the secret resource is its logical id: not an ARN
    from aws_lambda_powertools.utilities import parameters

    fetched = parameters.get_secret(arn, max_age=300)
    return fetched if isinstance(fetched, str) else fetched.decode()


def _https(name: str, url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise NotConfigured(f"{name} must be an https URL", code="onedrive_misconfigured")
    return url.rstrip("/")


@dataclass(frozen=True)
class OneDriveSettings:
    client_id: str
    client_secret: str
    tenant: str
    authority: str
    redirect_uri: str
    root_folder_id: str
    graph_base_url: str
    cache_key: str
    ca_bundle: str | None
    scopes: tuple[str, ...]
    worker_function: str

    @property
    def authority_url(self) -> str:
        return f"{self.authority}/{self.tenant}"

    @property
    def verify(self) -> str | bool:
        """``requests``' verify: the local stand-in's CA when configured, else the system store."""
        return self.ca_bundle or True


def cache_key() -> str:
    """Only the encryption key: enough to read job state without an app registration."""
    key = _secret("ONEDRIVE_CACHE_KEY", "ONEDRIVE_CACHE_KEY_ARN")
    if len(key) < 16:
        raise NotConfigured("OneDrive is not configured: the token-cache key is missing or too short")
    return key


def onedrive_settings() -> OneDriveSettings:
    client_id = os.environ.get("ONEDRIVE_CLIENT_ID", "").strip()
    if not client_id:
        raise NotConfigured("OneDrive is not configured: set the OneDriveClientId parameter")
    secret = _secret("ONEDRIVE_CLIENT_SECRET", "ONEDRIVE_CLIENT_SECRET_ARN")
    if not secret:
        raise NotConfigured("OneDrive is not configured: the client secret is missing")
    scopes = tuple(os.environ.get("ONEDRIVE_SCOPES", "").split()) or DEFAULT_SCOPES
    return OneDriveSettings(
        client_id=client_id,
        client_secret=secret,
        tenant=os.environ.get("ONEDRIVE_TENANT", "").strip() or "common",
        authority=_https("OneDriveAuthority", os.environ.get("ONEDRIVE_AUTHORITY") or DEFAULT_AUTHORITY),
        redirect_uri=os.environ.get("ONEDRIVE_REDIRECT_URI", "").strip(),
        root_folder_id=os.environ.get("ONEDRIVE_ROOT_FOLDER_ID", "").strip() or "root",
        graph_base_url=_https("GraphBaseUrl", os.environ.get("GRAPH_BASE_URL") or DEFAULT_GRAPH),
        cache_key=cache_key(),
        ca_bundle=os.environ.get("ONEDRIVE_CA_BUNDLE") or None,
        scopes=scopes,
        worker_function=os.environ.get("ONEDRIVE_WORKER_FUNCTION", ""),
    )
