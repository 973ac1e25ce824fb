"""GET /admin/onedrive/callback: MSAL redeems the code; the admin's token cache is stored encrypted.

Reached by the browser's redirect from the identity platform, so it carries no
bearer token (the route has no authorizer): the single-use state created by the
admin's own /connect call identifies the admin.
"""

from __future__ import annotations

from typing import Any

from imagerepo import observability
from imagerepo.api import logger
from imagerepo.onedrive import msal_auth
from imagerepo.onedrive.web import make_onedrive_app, request_cookies

app = make_onedrive_app()


@app.get("/admin/onedrive/callback")
def callback() -> Any:
    params = dict(app.current_event.query_string_parameters or {})
    conn = msal_auth.complete_connect(params, request_cookies(app))
    logger.info("onedrive connected", extra={"admin_id": conn.admin_id})
    return {"connected": True, "account": conn.account_json()}


lambda_handler = observability.handler(app)
