"""GET /admin/onedrive/connect: start MSAL's auth-code flow (admin) → {authorizationUrl, state, expiresAt}."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo.api import logger, require_admin
from imagerepo.onedrive import msal_auth
from imagerepo.onedrive.web import callback_url, make_onedrive_app

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_onedrive_app()


@app.get("/admin/onedrive/connect")
def connect() -> Any:
    who = require_admin(app)
    return msal_auth.begin_connect(who.user_id, callback_url(app))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
