"""POST /groups (admin): JSON {name, description?} → 201 group; 409 name_taken."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo import groups
from imagerepo.api import json_body, logger, make_app, require_admin

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_app()


@app.post("/groups")
def create_group() -> Any:
    who = require_admin(app)
    group = groups.create(who, json_body(app))
    logger.info("group created", extra={"group_id": group["id"], "admin_id": who.user_id})
    return group, 201


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
