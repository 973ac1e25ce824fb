"""GET /admin/onedrive/status: the connected account and the drive's quota (admin)."""

from __future__ import annotations

from typing import Any

from imagerepo import observability
from imagerepo.api import require_admin
from imagerepo.onedrive import drive
from imagerepo.onedrive.web import make_onedrive_app

app = make_onedrive_app()


@app.get("/admin/onedrive/status")
def status() -> Any:
    return drive.status(require_admin(app).user_id)


lambda_handler = observability.handler(app)
