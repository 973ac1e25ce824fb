"""GET /images/{id}/info: the image's JSON, with the same privacy rules as its bytes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo import images
from imagerepo.api import access_key, caller, logger, make_app, path_id, source_ip

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_app()


@app.get("/images/<id>/info")
def image_info(id: str) -> Any:
    who = caller(app)
    image = images.get_visible(path_id(app), who, access_key(app),
                                source=source_ip(app))
    return image.to_json(who)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
