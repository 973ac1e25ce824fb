"""POST /logout: end the caller's session (optional {refresh_token}) → 204."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from imagerepo import observability, users
from imagerepo.api import json_body, make_app, require_caller

app = make_app()


@app.post("/logout")
def logout() -> Any:
    who = require_caller(app)
    body = json_body(app) if app.current_event.body else {}
    users.logout(who, body.get("refresh_token"))
    return Response(status_code=204, body="")


lambda_handler = observability.handler(app)
