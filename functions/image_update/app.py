"""PUT /images/{id}: owner or admin changes description, isPrivate, accessKey, groupId."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo import images
from imagerepo.api import json_body, logger, make_app, path_id, require_caller

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_app()


@app.put("/images/<id>")
def update_image(id: str) -> Any:
    who = require_caller(app)
    image, access_key = images.update(path_id(app), who, json_body(app))
    return image.to_json(who, access_key=access_key)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
