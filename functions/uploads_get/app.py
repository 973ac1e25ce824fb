"""GET /uploads/{id}: the upload's status (pending, processing, ready with imageId, failed with error)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo import uploads
from imagerepo.api import logger, make_app, require_caller

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_app()


@app.get("/uploads/<id>")
def get_upload(id: str) -> Any:
    return uploads.status(id, require_caller(app))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
