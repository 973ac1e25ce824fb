"""GET /groups/{id}: one group, with the caller's imageCount and cover."""

from __future__ import annotations

from typing import Any

from imagerepo import groups, observability
from imagerepo.api import caller, make_app, path_id

app = make_app()


@app.get("/groups/<id>")
def get_group(id: str) -> Any:
    return groups.get(path_id(app), caller(app))


lambda_handler = observability.handler(app)
