"""POST /uploads: a presigned S3 POST for a large file; the S3 event on incoming/ ingests it."""

from __future__ import annotations

from typing import Any

from imagerepo import observability, uploads
from imagerepo.api import json_body, logger, make_app, require_caller

app = make_app()


@app.post("/uploads")
def create_upload() -> Any:
    ticket = uploads.create(require_caller(app), json_body(app))
    logger.info("upload ticket issued", extra={"upload_id": ticket.upload_id, "size": ticket.max_size})
    return ticket.to_json(), 201


lambda_handler = observability.handler(app)
