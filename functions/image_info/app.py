"""GET /images/{id}/info: the image's JSON, with the same privacy rules as its bytes."""

from __future__ import annotations

from typing import Any

from imagerepo import images, observability
from imagerepo.api import access_key, caller, make_app, path_id, source_ip

app = make_app()


@app.get("/images/<id>/info")
def image_info(id: str) -> Any:
    who = caller(app)
    image = images.get_visible(path_id(app), who, access_key(app),
                                source=source_ip(app))
    return image.to_json(who)


lambda_handler = observability.handler(app)
