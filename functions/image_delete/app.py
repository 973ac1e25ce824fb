"""DELETE /images/{id}: owner or admin; the blob loses one reference in the same transaction."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from imagerepo import images, observability
from imagerepo.api import make_app, path_id, require_caller

app = make_app()


@app.delete("/images/<id>")
def delete_image(id: str) -> Any:
    images.delete(path_id(app), require_caller(app))
    return Response(status_code=204, body="")


lambda_handler = observability.handler(app)
