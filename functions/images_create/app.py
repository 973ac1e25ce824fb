"""POST /images: multipart upload (file, description, isPrivate, accessKey, groupId) → 201 image."""

from __future__ import annotations

from typing import Any

from imagerepo import images, multipart, observability
from imagerepo.api import logger, make_app, raw_body, require_caller
from imagerepo.errors import BadRequest

app = make_app()


@app.post("/images")
def create_image() -> Any:
    who = require_caller(app)
    form = multipart.parse(raw_body(app), app.current_event.headers.get("content-type", ""))
    upload = form.files.get("file")
    if upload is None:
        raise BadRequest("the multipart field 'file' is required", code="missing_file")
    image, access_key = images.create(who, images.NewImage(
        filename=upload.filename, data=upload.data, description=form.fields.get("description"),
        is_private=form.fields.get("isPrivate"), access_key=form.fields.get("accessKey"),
        group_id=form.fields.get("groupId")))
    logger.info("image created", extra={"image_id": image.id, "sha256": image.sha256,
                                        "bytes": image.size})
    return image.to_json(who, access_key=access_key), 201


lambda_handler = observability.handler(app)
