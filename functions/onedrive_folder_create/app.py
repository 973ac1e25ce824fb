"""POST /admin/onedrive/folders: {name, parentId?, conflictBehavior?} → 201 folder (admin)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo.api import json_body, logger, require_admin
from imagerepo.onedrive import drive
from imagerepo.onedrive.web import make_onedrive_app

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_onedrive_app()


@app.post("/admin/onedrive/folders")
def create_folder() -> Any:
    who = require_admin(app)
    return drive.create_folder(who.user_id, json_body(app)), 201


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
