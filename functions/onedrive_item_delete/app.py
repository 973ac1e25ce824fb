"""DELETE /admin/onedrive/items/{itemId}: delete a file or folder → 204 (admin)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths

from imagerepo.api import logger, require_admin
from imagerepo.onedrive import drive
from imagerepo.onedrive.web import make_onedrive_app

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_onedrive_app()


@app.delete("/admin/onedrive/items/<itemId>")
def delete_item(itemId: str) -> Any:
    drive.delete_item(require_admin(app).user_id, itemId)
    return Response(status_code=204, body="")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
