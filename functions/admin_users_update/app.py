"""PATCH /admin/users/{id}: {role?, disabled?} → 200 the account; effective on its next request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo import users
from imagerepo.api import json_body, logger, make_app, path_id, require_admin

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_app()


@app.patch("/admin/users/<id>")
def update_user(id: str) -> Any:
    admin = require_admin(app)
    user = users.admin_update(admin, path_id(app), json_body(app))
    logger.info("account changed", extra={"user_id": user["id"], "by": admin.user_id})
    return user


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
