"""PATCH /admin/onedrive/items/{itemId}: {name} → the renamed item (admin)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo.api import json_body, logger, require_admin
from imagerepo.onedrive import drive
from imagerepo.onedrive.web import make_onedrive_app

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_onedrive_app()


@app.patch("/admin/onedrive/items/<itemId>")
def rename_item(itemId: str) -> Any:
    who = require_admin(app)
    return drive.rename_item(who.user_id, itemId, json_body(app))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
