"""GET /uploads/{id}: the upload's status (pending, processing, ready with imageId, failed with error)."""

from __future__ import annotations

from typing import Any

from imagerepo import observability, uploads
from imagerepo.api import make_app, require_caller

app = make_app()


@app.get("/uploads/<id>")
def get_upload(id: str) -> Any:
    return uploads.status(id, require_caller(app))


lambda_handler = observability.handler(app)
