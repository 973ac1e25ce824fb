"""DELETE /me: {password} → 204; the account, its images (references released) and its
sessions are deleted."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from imagerepo import observability, users
from imagerepo.api import json_body, logger, make_app, require_caller

app = make_app()


@app.delete("/me")
def delete_account() -> Any:
    who = require_caller(app)
    removed = users.delete_account(who, json_body(app).get("password"))
    logger.info("account deleted", extra={"user_id": who.user_id, "images": removed})
    return Response(status_code=204, body="")


lambda_handler = observability.handler(app)
