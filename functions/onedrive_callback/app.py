"""GET /admin/onedrive/callback: MSAL redeems the code; the admin's token cache is stored encrypted.

Reached by the browser's redirect from the identity platform, so it carries no
bearer token (the route has no authorizer): the single-use state created by the
admin's own /connect call identifies the admin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo.api import logger
from imagerepo.onedrive import msal_auth
from imagerepo.onedrive.web import make_onedrive_app, request_cookies

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_onedrive_app()


@app.get("/admin/onedrive/callback")
def callback() -> Any:
    params = dict(app.current_event.query_string_parameters or {})
    conn = msal_auth.complete_connect(params, request_cookies(app))
    logger.info("onedrive connected", extra={"admin_id": conn.admin_id})
    return {"connected": True, "account": conn.account_json()}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
