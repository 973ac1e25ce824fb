"""PUT /images/{id}: owner or admin changes description, isPrivate, accessKey, groupId."""

from __future__ import annotations

from typing import Any

from imagerepo import images, observability
from imagerepo.api import json_body, make_app, path_id, require_caller

app = make_app()


@app.put("/images/<id>")
def update_image(id: str) -> Any:
    who = require_caller(app)
    image, access_key = images.update(path_id(app), who, json_body(app))
    return image.to_json(who, access_key=access_key)


lambda_handler = observability.handler(app)
