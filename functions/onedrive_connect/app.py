"""GET /admin/onedrive/connect: start MSAL's auth-code flow (admin) → {authorizationUrl, state, expiresAt}."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.logging import correlation_paths

from imagerepo.api import logger, require_admin
from imagerepo.onedrive import msal_auth
from imagerepo.onedrive.web import flow_cookie, make_onedrive_app

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_onedrive_app()


@app.get("/admin/onedrive/connect")
def connect() -> Any:
    started = msal_auth.begin_connect(require_admin(app).user_id)
    return Response(200, content_types.APPLICATION_JSON, json.dumps(started.body),
                    cookies=[flow_cookie(started)], headers={"Cache-Control": "no-store"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
