"""GET /admin/onedrive/items?folderId=: a folder's subfolders and image files (admin)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo.api import logger, query, require_admin
from imagerepo.onedrive import drive
from imagerepo.onedrive.web import make_onedrive_app

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_onedrive_app()


@app.get("/admin/onedrive/items")
def list_items() -> Any:
    return drive.list_folder(require_admin(app).user_id, query(app, "folderId"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
