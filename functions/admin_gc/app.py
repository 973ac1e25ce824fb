"""POST /admin/gc: run the garbage collector now (optionally ?graceSeconds=N)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo import gc
from imagerepo.api import logger, make_app, query, require_admin
from imagerepo.config import settings
from imagerepo.inputs import parse_int

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_app()


@app.post("/admin/gc")
def run_gc() -> Any:
    require_admin(app)
    grace = parse_int(query(app, "graceSeconds"), "graceSeconds", low=0, high=30 * 86400,
                      code="invalid_grace")
    result = gc.collect(settings().gc_grace_seconds if grace is None else grace)
    logger.info("gc run", extra=result.to_json())
    return result.to_json()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
