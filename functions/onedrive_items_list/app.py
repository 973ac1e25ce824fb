"""GET /admin/onedrive/items?folderId=: a folder's subfolders and image files (admin)."""

from __future__ import annotations

from typing import Any

from imagerepo import observability
from imagerepo.api import query, require_admin
from imagerepo.onedrive import drive
from imagerepo.onedrive.web import make_onedrive_app

app = make_onedrive_app()


@app.get("/admin/onedrive/items")
def list_items() -> Any:
    return drive.list_folder(require_admin(app).user_id, query(app, "folderId"))


lambda_handler = observability.handler(app)
