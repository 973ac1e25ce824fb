"""POST /admin/gc: run the garbage collector now (optionally ?graceSeconds=N)."""

from __future__ import annotations

from typing import Any

from imagerepo import gc, observability
from imagerepo.api import logger, make_app, query, require_admin
from imagerepo.config import settings
from imagerepo.inputs import parse_int

app = make_app()


@app.post("/admin/gc")
def run_gc() -> Any:
    require_admin(app)
    grace = parse_int(query(app, "graceSeconds"), "graceSeconds", low=0, high=30 * 86400,
                      code="invalid_grace")
    result = gc.collect(settings().gc_grace_seconds if grace is None else grace)
    logger.info("gc run", extra=result.to_json())
    return result.to_json()


lambda_handler = observability.handler(app)
