"""GET /admin/onedrive/import/{jobId}: {status, total, done, skipped, failed, items with reasons} (admin)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo.api import logger, require_admin
from imagerepo.onedrive import importer
from imagerepo.onedrive.web import make_onedrive_app

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_onedrive_app()


@app.get("/admin/onedrive/import/<jobId>")
def job_status(jobId: str) -> Any:
    return importer.status(jobId, require_admin(app))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
