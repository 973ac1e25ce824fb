"""GET /images/{id}: the original bytes (ETag = content SHA-256, privacy rules), or a 307 to a
presigned URL when they do not fit a Lambda response."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from imagerepo import downloads, images, observability
from imagerepo.api import (
    access_key,
    binary_response,
    cache_control,
    caller,
    etag_matches,
    make_app,
    not_modified,
    path_id,
    source_ip,
)
from imagerepo.config import settings

app = make_app()


@app.get("/images/<id>")
def get_image(id: str) -> Any:
    image = images.get_visible(path_id(app), caller(app), access_key(app),
                                source=source_ip(app))
    etag = f'"{image.sha256}"'
    cache = cache_control(image.is_private, public_max_age=3600)
    if etag_matches(app, etag):
        return not_modified(etag, cache)
    if image.size > settings().max_response_bytes:
        # Too big for a 6 MB Lambda response: redirect to a short-lived URL of a copy.
        url = downloads.presigned_url(image.sha256, image.content_type, image.name)
        return Response(status_code=307, body="", headers={
            "Location": url, "ETag": etag, "Cache-Control": "no-store"})
    return binary_response(images.read_bytes(image), content_type=image.content_type, etag=etag,
                           cache_control=cache, filename=image.name)


lambda_handler = observability.handler(app)
