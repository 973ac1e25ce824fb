"""GET /images/{id}/thumbnail?size=small|preview: the thumbnail, with the image's privacy rules."""

from __future__ import annotations

from typing import Any

from imagerepo import images, observability, thumbnails
from imagerepo.api import (
    access_key,
    binary_response,
    cache_control,
    caller,
    etag_matches,
    make_app,
    not_modified,
    path_id,
    query,
    source_ip,
)
from imagerepo.errors import BadRequest

app = make_app()


@app.get("/images/<id>/thumbnail")
def get_thumbnail(id: str) -> Any:
    image = images.get_visible(path_id(app), caller(app), access_key(app),
                                source=source_ip(app))
    size = query(app, "size") or "small"
    if size not in thumbnails.SIZES:
        raise BadRequest("size must be small or preview", code="invalid_size")
    etag = f'"{image.sha256}-{size}"'
    cache = cache_control(image.is_private, public_max_age=86400)
    if etag_matches(app, etag) and image.thumbnail_status == "ready":
        return not_modified(etag, cache)
    data = thumbnails.read(image.sha256, size, image.thumbnail_status)
    return binary_response(data, content_type=thumbnails.SIZES[size], etag=etag, cache_control=cache)


lambda_handler = observability.handler(app)
