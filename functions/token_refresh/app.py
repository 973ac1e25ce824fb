"""POST /token/refresh: {refresh_token} → a new token pair; the presented refresh token dies,
and presenting it again ends the whole session."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo import users
from imagerepo.api import json_body, logger, make_app

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_app()


@app.post("/token/refresh")
def refresh() -> Any:
    return users.refresh(json_body(app).get("refresh_token"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
