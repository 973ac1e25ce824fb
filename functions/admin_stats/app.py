"""GET /admin/stats: users, images, blobs, chunks, logical and stored bytes, dedup ratio."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo import images
from imagerepo.api import logger, make_app, require_admin

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_app()


@app.get("/admin/stats")
def stats() -> Any:
    require_admin(app)
    return images.stats()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
