"""PUT /groups/{id} (admin): JSON any of {name, description} → 200 group; 409 name_taken."""

from __future__ import annotations

from typing import Any

from imagerepo import groups, observability
from imagerepo.api import json_body, make_app, path_id, require_admin

app = make_app()


@app.put("/groups/<id>")
def update_group(id: str) -> Any:
    who = require_admin(app)
    return groups.update(path_id(app), who, json_body(app))


lambda_handler = observability.handler(app)
