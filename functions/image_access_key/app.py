"""POST /images/{id}/access-key: the owner or an admin replaces the access key → 200 {accessKey}."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo import images
from imagerepo.api import logger, make_app, path_id, require_caller

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_app()


@app.post("/images/<id>/access-key")
def new_access_key(id: str) -> Any:
    return {"accessKey": images.new_access_key(path_id(app), require_caller(app))}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
