"""DELETE /images/{id}: owner or admin; the blob loses one reference in the same transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths

from imagerepo import images
from imagerepo.api import logger, make_app, path_id, require_caller

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_app()


@app.delete("/images/<id>")
def delete_image(id: str) -> Any:
    images.delete(path_id(app), require_caller(app))
    return Response(status_code=204, body="")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
