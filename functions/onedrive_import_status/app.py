"""GET /admin/onedrive/import/{jobId}: {status, total, done, skipped, failed, items with reasons} (admin)."""

from __future__ import annotations

from typing import Any

from imagerepo import observability
from imagerepo.api import require_admin
from imagerepo.onedrive import importer
from imagerepo.onedrive.web import make_onedrive_app

app = make_onedrive_app()


@app.get("/admin/onedrive/import/<jobId>")
def job_status(jobId: str) -> Any:
    return importer.status(jobId, require_admin(app))


lambda_handler = observability.handler(app)
