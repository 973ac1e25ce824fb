"""GET /groups/{id}/images: a page of the group's images the caller may see (as GET /images)."""

from __future__ import annotations

from typing import Any

from imagerepo import groups, observability
from imagerepo.api import caller, make_app, paging, path_id, query

app = make_app()


@app.get("/groups/<id>/images")
def group_images(id: str) -> Any:
    group_id = path_id(app)
    page, size = paging(app, default_size=20)
    return groups.images_page(group_id, caller(app), page, size, cursor=query(app, "cursor"))


lambda_handler = observability.handler(app)
