"""DELETE /groups/{id} (admin): 204; 409 group_not_empty unless ?force=true, which ungroups the images."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from imagerepo import groups, observability
from imagerepo.api import logger, make_app, path_id, query, require_admin
from imagerepo.errors import BadRequest

app = make_app()


@app.delete("/groups/<id>")
def delete_group(id: str) -> Any:
    who = require_admin(app)
    force = (query(app, "force") or "false").lower()
    if force not in ("true", "false", "1", "0"):
        raise BadRequest("force must be true or false", code="invalid_force")
    group_id = path_id(app)
    moved = groups.delete(group_id, force=force in ("true", "1"))
    logger.info("group deleted", extra={"group_id": group_id, "admin_id": who.user_id,
                                        "ungrouped": moved})
    return Response(status_code=204, body="")


lambda_handler = observability.handler(app)
