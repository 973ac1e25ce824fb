"""PUT /groups/{id} (admin): JSON any of {name, description} → 200 group; 409 name_taken."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo import groups
from imagerepo.api import json_body, logger, make_app, path_id, require_admin

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_app()


@app.put("/groups/<id>")
def update_group(id: str) -> Any:
    who = require_admin(app)
    return groups.update(path_id(app), who, json_body(app))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
