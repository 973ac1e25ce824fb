"""GET /admin/stats: users, images, blobs, chunks, logical and stored bytes, dedup ratio."""

from __future__ import annotations

from typing import Any

from imagerepo import images, observability
from imagerepo.api import make_app, require_admin

app = make_app()


@app.get("/admin/stats")
def stats() -> Any:
    require_admin(app)
    return images.stats()


lambda_handler = observability.handler(app)
