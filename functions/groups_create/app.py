"""POST /groups (admin): JSON {name, description?} → 201 group; 409 name_taken."""

from __future__ import annotations

from typing import Any

from imagerepo import groups, observability
from imagerepo.api import json_body, logger, make_app, require_admin

app = make_app()


@app.post("/groups")
def create_group() -> Any:
    who = require_admin(app)
    group = groups.create(who, json_body(app))
    logger.info("group created", extra={"group_id": group["id"], "admin_id": who.user_id})
    return group, 201


lambda_handler = observability.handler(app)
