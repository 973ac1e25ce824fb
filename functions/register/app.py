"""POST /register: create an account ({name, email, password}) → 201 {id, name, email, role}."""

from __future__ import annotations

from typing import Any

from imagerepo import observability, users
from imagerepo.api import json_body, logger, make_app

app = make_app()


@app.post("/register")
def register() -> Any:
    body = json_body(app)
    user = users.register(body.get("name"), body.get("email"), body.get("password"))
    logger.info("user registered", extra={"user_id": user.id})
    return user.to_json(), 201


lambda_handler = observability.handler(app)
