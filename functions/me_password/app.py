"""PUT /me/password: {currentPassword, newPassword} → 204; every other session ends."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths

from imagerepo import users
from imagerepo.api import json_body, logger, make_app, require_caller

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_app()


@app.put("/me/password")
def change_password() -> Any:
    who = require_caller(app)
    body = json_body(app)
    users.change_password(who, body.get("currentPassword"), body.get("newPassword"))
    return Response(status_code=204, body="")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
