"""S3 ObjectCreated on incoming/: stream the large upload through the chunk store into an image."""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.data_classes import S3Event, event_source

from imagerepo import observability, uploads

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@observability.handler
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    outcomes = {}
    for record in event.records:
        key = urllib.parse.unquote_plus(record.s3.get_object.key)
        upload_id = key.removeprefix(uploads.INCOMING)
        outcomes[upload_id] = uploads.ingest(upload_id)
    return {"outcomes": outcomes}
