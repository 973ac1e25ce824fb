"""GET /groups/{id}/images: a page of the group's images the caller may see (as GET /images)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo import groups
from imagerepo.api import caller, logger, make_app, paging, path_id, query

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_app()


@app.get("/groups/<id>/images")
def group_images(id: str) -> Any:
    group_id = path_id(app)
    page, size = paging(app, default_size=20)
    return groups.images_page(group_id, caller(app), page, size, cursor=query(app, "cursor"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
