"""POST /register: create an account ({name, email, password}) → 201 {id, name, email, role}."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo import users
from imagerepo.api import json_body, logger, make_app

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_app()


@app.post("/register")
def register() -> Any:
    body = json_body(app)
    user = users.register(body.get("name"), body.get("email"), body.get("password"))
    logger.info("user registered", extra={"user_id": user.id})
    return user.to_json(), 201


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
