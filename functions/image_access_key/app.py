"""POST /images/{id}/access-key: the owner or an admin replaces the access key → 200 {accessKey}."""

from __future__ import annotations

from typing import Any

from imagerepo import images, observability
from imagerepo.api import make_app, path_id, require_caller

app = make_app()


@app.post("/images/<id>/access-key")
def new_access_key(id: str) -> Any:
    return {"accessKey": images.new_access_key(path_id(app), require_caller(app))}


lambda_handler = observability.handler(app)
