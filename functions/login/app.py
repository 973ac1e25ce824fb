"""POST /login: {username (email or name), password} → {access_token, token_type, expires_in,
refresh_token, refresh_expires_in}; failures throttled per account and source address."""

from __future__ import annotations

from typing import Any

from imagerepo import observability, users
from imagerepo.api import json_body, make_app, source_ip

app = make_app()


@app.post("/login")
def login() -> Any:
    body = json_body(app)
    return users.login(body.get("username"), body.get("password"), source_ip(app))


lambda_handler = observability.handler(app)
