"""GET /admin/users: a page of accounts {id, name, email, role, disabled, createdAt, imageCount}."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo import users
from imagerepo.api import logger, make_app, page_json, paging, require_admin

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_app()


@app.get("/admin/users")
def list_users() -> Any:
    require_admin(app)
    page, size = paging(app, default_size=20)
    items, total = users.admin_page(page, size)
    return page_json(items, page, size, total)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
