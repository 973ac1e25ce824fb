"""GET /health: 200 once the database and the object store answer, 503 otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from imagerepo import db, s3
from imagerepo.api import error_response, logger, make_app

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = make_app()


@app.get("/health")
def health() -> Any:
    failed = []
    try:
        db.ping()
    except Exception:  # noqa: BLE001 - reported as a failed check, not a 500
        logger.exception("database check failed")
        failed.append("database")
    try:
        s3.client().head_bucket(Bucket=s3.bucket())
    except Exception:  # noqa: BLE001
        logger.exception("object store check failed")
        failed.append("objectStore")
    if failed:
        return error_response(503, "unavailable", "not ready: " + ", ".join(failed))
    return {"status": "ok"}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
