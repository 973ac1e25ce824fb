"""GET /me: the caller's account."""

from __future__ import annotations

from typing import Any

from imagerepo import observability, users
from imagerepo.api import make_app, require_caller

app = make_app()


@app.get("/me")
def me() -> Any:
    return users.get(require_caller(app).user_id).to_json()


lambda_handler = observability.handler(app)
