"""POST /login: {username (email or name), password} → {access_token, token_type, expires_in,
refresh_token, refresh_expires_in}; failures throttled per account and source address."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo import users
from imagerepo.api import json_body, logger, make_app, source_ip

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_app()


@app.post("/login")
def login() -> Any:
    body = json_body(app)
    return users.login(body.get("username"), body.get("password"), source_ip(app))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
