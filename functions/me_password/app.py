"""PUT /me/password: {currentPassword, newPassword} → 204; every other session ends."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from imagerepo import observability, users
from imagerepo.api import json_body, make_app, require_caller

app = make_app()


@app.put("/me/password")
def change_password() -> Any:
    who = require_caller(app)
    body = json_body(app)
    users.change_password(who, body.get("currentPassword"), body.get("newPassword"))
    return Response(status_code=204, body="")


lambda_handler = observability.handler(app)
