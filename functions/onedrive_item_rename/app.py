"""PATCH /admin/onedrive/items/{itemId}: {name} → the renamed item (admin)."""

from __future__ import annotations

from typing import Any

from imagerepo import observability
from imagerepo.api import json_body, require_admin
from imagerepo.onedrive import drive
from imagerepo.onedrive.web import make_onedrive_app

app = make_onedrive_app()


@app.patch("/admin/onedrive/items/<itemId>")
def rename_item(itemId: str) -> Any:
    who = require_admin(app)
    return drive.rename_item(who.user_id, itemId, json_body(app))


lambda_handler = observability.handler(app)
