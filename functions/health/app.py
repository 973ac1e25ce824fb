"""GET /health: 200 once the database and the object store answer, 503 otherwise."""

from __future__ import annotations

from typing import Any

from imagerepo import db, observability, s3
from imagerepo.api import error_response, logger, make_app

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


lambda_handler = observability.handler(app)
