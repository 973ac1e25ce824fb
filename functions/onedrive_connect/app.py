"""GET /admin/onedrive/connect: start MSAL's auth-code flow (admin) → {authorizationUrl, state, expiresAt}."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types

from imagerepo import observability
from imagerepo.api import require_admin
from imagerepo.onedrive import msal_auth
from imagerepo.onedrive.web import flow_cookie, make_onedrive_app

app = make_onedrive_app()


@app.get("/admin/onedrive/connect")
def connect() -> Any:
    started = msal_auth.begin_connect(require_admin(app).user_id)
    return Response(200, content_types.APPLICATION_JSON, json.dumps(started.body),
                    cookies=[flow_cookie(started)], headers={"Cache-Control": "no-store"})


lambda_handler = observability.handler(app)
