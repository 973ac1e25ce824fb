"""POST /login: {username (email or name), password} → {access_token, token_type, expires_in}."""

from __future__ import annotations

from typing import Any

from imagerepo import observability, security, users
from imagerepo.api import json_body, make_app

app = make_app()


@app.post("/login")
def login() -> Any:
    body = json_body(app)
    user = users.authenticate(body.get("username"), body.get("password"))
    token, ttl = security.issue_token(user.principal)
    return {"access_token": token, "token_type": "Bearer", "expires_in": ttl}


lambda_handler = observability.handler(app)
