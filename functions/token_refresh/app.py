"""POST /token/refresh: {refresh_token} → a new token pair; the presented refresh token dies,
and presenting it again ends the whole session."""

from __future__ import annotations

from typing import Any

from imagerepo import observability, users
from imagerepo.api import json_body, make_app

app = make_app()


@app.post("/token/refresh")
def refresh() -> Any:
    return users.refresh(json_body(app).get("refresh_token"))


lambda_handler = observability.handler(app)
