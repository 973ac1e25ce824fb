"""POST /uploads: a presigned S3 POST for a large file; the S3 event on incoming/ ingests it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo import uploads
from imagerepo.api import json_body, logger, make_app, require_caller

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_app()


@app.post("/uploads")
def create_upload() -> Any:
    ticket = uploads.create(require_caller(app), json_body(app))
    logger.info("upload ticket issued", extra={"upload_id": ticket.upload_id, "size": ticket.max_size})
    return ticket.to_json(), 201


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
