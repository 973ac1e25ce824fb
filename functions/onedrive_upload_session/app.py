"""POST /admin/onedrive/upload-sessions: {fileName, folderId?, conflictBehavior?} → 201 {uploadUrl, ...}."""

from __future__ import annotations

from typing import Any

from imagerepo import observability
from imagerepo.api import json_body, require_admin
from imagerepo.onedrive import drive
from imagerepo.onedrive.web import make_onedrive_app

app = make_onedrive_app()


@app.post("/admin/onedrive/upload-sessions")
def create_upload_session() -> Any:
    who = require_admin(app)
    return drive.create_upload_session(who.user_id, json_body(app)), 201


lambda_handler = observability.handler(app)
