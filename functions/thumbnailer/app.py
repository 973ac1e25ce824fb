"""Thumbnails: on each new blob manifest (S3 event), and a periodic sweep of anything left pending."""

from __future__ import annotations

import re
import urllib.parse
from typing import TYPE_CHECKING, Any

from imagerepo import observability, thumbnails

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

_MANIFEST = re.compile(r"^manifests/([0-9a-f]{64})\.json$")


@observability.handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "Records" not in event:  # the schedule
        return {"swept": [o.status for o in thumbnails.sweep()]}
    done = {}
    for record in event["Records"]:
        m = _MANIFEST.match(urllib.parse.unquote_plus(record["s3"]["object"]["key"]))
        if m is None or not record.get("eventName", "").startswith("ObjectCreated"):
            continue
        done[m.group(1)] = thumbnails.process(m.group(1)).status
    return {"thumbnails": done}
