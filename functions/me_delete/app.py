"""DELETE /me: {password} → 204; the account, its images (references released) and its
sessions are deleted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths

from imagerepo import users
from imagerepo.api import json_body, logger, make_app, require_caller

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_app()


@app.delete("/me")
def delete_account() -> Any:
    who = require_caller(app)
    removed = users.delete_account(who, json_body(app).get("password"))
    logger.info("account deleted", extra={"user_id": who.user_id, "images": removed})
    return Response(status_code=204, body="")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
