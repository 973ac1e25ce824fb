"""GET /groups: a page of groups, newest first, each with the caller's imageCount and cover."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo import groups
from imagerepo.api import caller, logger, make_app, paging, query

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_app()


@app.get("/groups")
def list_groups() -> Any:
    page, size = paging(app, default_size=12)
    return groups.list_page(caller(app), page, size, cursor=query(app, "cursor"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
