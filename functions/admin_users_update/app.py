"""PATCH /admin/users/{id}: {role?, disabled?} → 200 the account; effective on its next request."""

from __future__ import annotations

from typing import Any

from imagerepo import observability, users
from imagerepo.api import json_body, logger, make_app, path_id, require_admin

app = make_app()


@app.patch("/admin/users/<id>")
def update_user(id: str) -> Any:
    admin = require_admin(app)
    user = users.admin_update(admin, path_id(app), json_body(app))
    logger.info("account changed", extra={"user_id": user["id"], "by": admin.user_id})
    return user


lambda_handler = observability.handler(app)
