"""What the admin API does on the connected drive: status, list, create, rename, delete, upload.

Answers are our own JSON shapes (camelCase like the rest of the API), never
Graph's bodies passed through.
"""

from __future__ import annotations

import os
import posixpath
import urllib.parse
from typing import Any

from imagerepo.errors import BadRequest, UpstreamError, reject_unknown_fields
from imagerepo.onedrive.config import OneDriveSettings, onedrive_settings
from imagerepo.onedrive.graph import GraphClient, item_path, validate_item_id, validate_name
from imagerepo.onedrive.msal_auth import TimeoutSession, TokenSource, connection

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".tif", ".tiff",
                              ".bmp", ".heic", ".heif", ".avif", ".mpo"})
MAX_LISTED = 5000
PAGE_SIZE = 200
CONFLICT_BEHAVIOURS = ("rename", "fail", "replace")


def client_for(admin_id: int, *, worker: bool = False,
               cfg: OneDriveSettings | None = None) -> GraphClient:
    """A Graph client acting for this admin. The worker may wait longer on throttling."""
    cfg = cfg or onedrive_settings()
    session = TimeoutSession((5.0, 60.0 if worker else 15.0), cfg.verify)
    # A Retry-After beyond max_wait is not slept in the request: the API answers 503 with
    # Retry-After, the worker records it on the job and carries on later (importer.run).
    worker_wait = float(os.environ.get("GRAPH_WORKER_MAX_WAIT") or 120)
    return GraphClient(cfg.graph_base_url, TokenSource(admin_id, cfg), session,
                       max_retries=5 if worker else 3, max_wait=worker_wait if worker else 8.0,
                       admin_id=admin_id)


def is_image(item: dict[str, Any]) -> bool:
    """Graph's image facet, an image/* type, or an image extension (the import decodes to be sure)."""
    if "image" in item:
        return True
    mime = str((item.get("file") or {}).get("mimeType") or "").lower()
    if mime.startswith("image/"):
        return True
    return posixpath.splitext(str(item.get("name") or "").lower())[1] in IMAGE_EXTENSIONS


def item_json(item: dict[str, Any]) -> dict[str, Any]:
    parent = item.get("parentReference") or {}
    body: dict[str, Any] = {
        "id": item.get("id"), "name": item.get("name"),
        "type": "folder" if "folder" in item else "file",
        "size": item.get("size"), "parentId": parent.get("id"),
        "path": parent.get("path"), "webUrl": item.get("webUrl"),
        "createdAt": item.get("createdDateTime"), "modifiedAt": item.get("lastModifiedDateTime"),
        "eTag": item.get("eTag"), "cTag": item.get("cTag"),
    }
    if "folder" in item:
        body["childCount"] = (item.get("folder") or {}).get("childCount")
    else:
        body["mimeType"] = (item.get("file") or {}).get("mimeType")
        body["isImage"] = is_image(item)
        image = item.get("image") or {}
        if image:
            body["width"], body["height"] = image.get("width"), image.get("height")
    return body


def status(admin_id: int) -> dict[str, Any]:
    cfg = onedrive_settings()  # an unconfigured deployment says so (503) before anything else
    conn = connection(admin_id)
    if conn is None:
        return {"connected": False}
    drive = client_for(admin_id, cfg=cfg).get_json("/me/drive")
    quota = drive.get("quota") or {}
    owner = ((drive.get("owner") or {}).get("user") or {})
    return {
        "connected": True,
        "account": conn.account_json(),
        "drive": {"id": drive.get("id"), "driveType": drive.get("driveType"),
                  "owner": owner.get("displayName"), "webUrl": drive.get("webUrl")},
        "quota": {k: quota.get(k) for k in ("total", "used", "remaining", "deleted", "state")},
        "rootFolderId": cfg.root_folder_id,
    }


def list_folder(admin_id: int, folder_id: str | None) -> dict[str, Any]:
    """A folder with its subfolders and image files, every Graph page followed (bounded)."""
    cfg = onedrive_settings()
    folder_id = validate_item_id(folder_id, "folderId") if folder_id else cfg.root_folder_id
    graph = client_for(admin_id, cfg=cfg)
    folder = graph.get_json(item_path(folder_id))
    if "folder" not in folder:
        raise BadRequest("folderId names a file, not a folder", code="not_a_folder")
    folders: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    other = 0
    seen = 0
    for child in graph.paged(item_path(folder_id) + "/children", {"$top": PAGE_SIZE},
                             max_items=MAX_LISTED + 1):
        seen += 1
        if seen > MAX_LISTED:
            break
        if "folder" in child:
            folders.append(item_json(child))
        elif is_image(child):
            files.append(item_json(child))
        else:
            other += 1
    return {"folder": item_json(folder), "folders": folders, "files": files,
            "otherFiles": other, "truncated": seen > MAX_LISTED}


def _conflict_behaviour(raw: Any, default: str = "rename") -> str:
    if raw is None:
        return default
    if raw not in CONFLICT_BEHAVIOURS:
        raise BadRequest(f"conflictBehavior must be one of {', '.join(CONFLICT_BEHAVIOURS)}",
                         code="invalid_field")
    return str(raw)


def create_folder(admin_id: int, body: dict[str, Any]) -> dict[str, Any]:
    cfg = onedrive_settings()
    parent = validate_item_id(body["parentId"], "parentId") if body.get("parentId") else cfg.root_folder_id
    name = validate_name(body.get("name"))
    behaviour = _conflict_behaviour(body.get("conflictBehavior"))
    created = client_for(admin_id, cfg=cfg).send_json(
        "POST", item_path(parent) + "/children",
        {"name": name, "folder": {}, "@microsoft.graph.conflictBehavior": behaviour})
    return item_json(created)


def path_item_id(raw: str) -> str:
    """An id from the URL path: decoded once (ids never contain "%"), then validated."""
    return validate_item_id(urllib.parse.unquote(raw or ""))


def rename_item(admin_id: int, item_id: str, body: dict[str, Any]) -> dict[str, Any]:
    item_id = path_item_id(item_id)
    if item_id == "root":
        raise BadRequest("the drive's root cannot be renamed", code="invalid_item_id")
    reject_unknown_fields(body, {"name"})
    name = validate_name(body.get("name"))
    return item_json(client_for(admin_id).send_json("PATCH", item_path(item_id), {"name": name}))


def delete_item(admin_id: int, item_id: str) -> None:
    cfg = onedrive_settings()
    item_id = path_item_id(item_id)
    if item_id in ("root", cfg.root_folder_id):
        raise BadRequest("the drive's root and the configured root folder cannot be deleted",
                         code="invalid_item_id")
    client_for(admin_id, cfg=cfg).delete(item_path(item_id))


def create_upload_session(admin_id: int, body: dict[str, Any]) -> dict[str, Any]:
    """Graph's resumable upload session for ``fileName`` in ``folderId``; the client PUTs ranges."""
    cfg = onedrive_settings()
    folder = validate_item_id(body["folderId"], "folderId") if body.get("folderId") else cfg.root_folder_id
    name = validate_name(body.get("fileName"), "fileName")
    behaviour = _conflict_behaviour(body.get("conflictBehavior"))
    path = f"{item_path(folder)}:/{urllib.parse.quote(name, safe='')}:/createUploadSession"
    session = client_for(admin_id, cfg=cfg).send_json(
        "POST", path, {"item": {"@microsoft.graph.conflictBehavior": behaviour}})
    if not session.get("uploadUrl"):
        raise UpstreamError("OneDrive returned no upload URL", code="onedrive_error")
    return {"uploadUrl": session["uploadUrl"], "expiresAt": session.get("expirationDateTime"),
            "nextExpectedRanges": session.get("nextExpectedRanges") or ["0-"],
            "folderId": folder, "fileName": name}

