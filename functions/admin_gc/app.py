"""POST /admin/gc: run the garbage collector now (optionally ?graceSeconds=N)."""

from __future__ import annotations

from typing import Any

from imagerepo import gc, observability
from imagerepo.api import logger, make_app, query, require_admin
from imagerepo.config import settings
from imagerepo.errors import BadRequest

app = make_app()


@app.post("/admin/gc")
def run_gc() -> Any:
    require_admin(app)
    raw = query(app, "graceSeconds")
    if raw is not None and (not raw.isdigit() or int(raw[:9]) > 30 * 86400):
        raise BadRequest("graceSeconds must be an integer from 0 to 2592000", code="invalid_grace")
    result = gc.collect(int(raw) if raw is not None else settings().gc_grace_seconds)
    logger.info("gc run", extra=result.to_json())
    return result.to_json()


lambda_handler = observability.handler(app)
