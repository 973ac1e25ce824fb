"""GET /groups: a page of groups, newest first, each with the caller's imageCount and cover."""

from __future__ import annotations

from typing import Any

from imagerepo import groups, observability
from imagerepo.api import caller, make_app, paging, query

app = make_app()


@app.get("/groups")
def list_groups() -> Any:
    page, size = paging(app, default_size=12)
    return groups.list_page(caller(app), page, size, cursor=query(app, "cursor"))


lambda_handler = observability.handler(app)
