"""GET /admin/onedrive/connect: start MSAL's auth-code flow (admin) → {authorizationUrl, state, expiresAt}."""

from __future__ import annotations

from typing import Any

from imagerepo import observability
from imagerepo.api import require_admin
from imagerepo.onedrive import msal_auth
from imagerepo.onedrive.web import callback_url, make_onedrive_app

app = make_onedrive_app()


@app.get("/admin/onedrive/connect")
def connect() -> Any:
    who = require_admin(app)
    return msal_auth.begin_connect(who.user_id, callback_url(app))


lambda_handler = observability.handler(app)
