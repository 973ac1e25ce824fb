"""DELETE /admin/onedrive/items/{itemId}: delete a file or folder → 204 (admin)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from imagerepo import observability
from imagerepo.api import require_admin
from imagerepo.onedrive import drive
from imagerepo.onedrive.web import make_onedrive_app

app = make_onedrive_app()


@app.delete("/admin/onedrive/items/<itemId>")
def delete_item(itemId: str) -> Any:
    drive.delete_item(require_admin(app).user_id, itemId)
    return Response(status_code=204, body="")


lambda_handler = observability.handler(app)
