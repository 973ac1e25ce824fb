"""GET /images: a page of the images the caller may see (public ones plus their own)."""

from __future__ import annotations

from typing import Any

from imagerepo import images, listing, observability
from imagerepo.api import caller, make_app, paging, query
from imagerepo.errors import BadRequest, Unauthorized

app = make_app()


@app.get("/images")
def list_images() -> Any:
    who = caller(app)
    page, size = paging(app, default_size=20)
    owner = query(app, "owner")
    if owner not in (None, "", "me"):
        raise BadRequest("owner accepts only 'me'", code="invalid_owner")
    if owner == "me" and who is None:
        raise Unauthorized("owner=me needs a bearer token", code="unauthorized")
    group_id = images.parse_group_id(query(app, "groupId"))
    found, window = listing.list_images(who, page, size, group_id=group_id, only_mine=owner == "me",
                                        cursor=query(app, "cursor"))
    return window.to_json([i.to_json(who) for i in found])


lambda_handler = observability.handler(app)
