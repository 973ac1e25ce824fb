"""The OneDrive import worker: invoked asynchronously with {"jobId": ...}; no HTTP event.

Runs the job until it is done or its time is nearly up, then re-invokes itself
to carry on (the job's rows say where). Safe to run twice for one job.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from imagerepo import observability
from imagerepo.log import logger
from imagerepo.onedrive import importer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@observability.handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    job_id = str((event or {}).get("jobId") or "")
    outcome = importer.run(job_id, context.get_remaining_time_in_millis,
                           continue_with=os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or None)
    logger.info("onedrive import worker", extra={"job_id": job_id, "outcome": outcome})
    return {"jobId": job_id, "outcome": outcome}
