"""GET /admin/users: a page of accounts {id, name, email, role, disabled, createdAt, imageCount}."""

from __future__ import annotations

from typing import Any

from imagerepo import observability, users
from imagerepo.api import make_app, page_json, paging, require_admin

app = make_app()


@app.get("/admin/users")
def list_users() -> Any:
    require_admin(app)
    page, size = paging(app, default_size=20)
    items, total = users.admin_page(page, size)
    return page_json(items, page, size, total)


lambda_handler = observability.handler(app)
