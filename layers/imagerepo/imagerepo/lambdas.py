"""Asynchronous invocation of the stack's own functions (workers, re-drives).

Locally ``AWS_ENDPOINT_URL_LAMBDA`` points boto3 at the devstack's Invoke API
(devstack/lambda_api.py), which queues the event like Lambda does.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from imagerepo.config import settings
from imagerepo.errors import UpstreamError
from imagerepo.observability import logger


@functools.lru_cache(maxsize=4)
def _lambda_client(endpoint: str | None, region: str) -> Any:
    config = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"})
    return boto3.session.Session().client("lambda", endpoint_url=endpoint, region_name=region, config=config)


def invoke_async(function_name: str, payload: dict[str, Any]) -> None:
    """Lambda ``Invoke`` with ``InvocationType=Event`` (202: queued, retried by Lambda)."""
    client = _lambda_client(os.environ.get("AWS_ENDPOINT_URL_LAMBDA") or None, settings().aws_region)
    try:
        answer = client.invoke(FunctionName=function_name, InvocationType="Event",
                               Payload=json.dumps(payload).encode())
    except (BotoCoreError, ClientError) as exc:
        logger.exception("async invoke failed", extra={"function": function_name})
        raise UpstreamError("could not invoke the worker", code="invoke_failed") from exc
    if int(answer.get("StatusCode", 0)) != 202:
        raise UpstreamError("the worker invocation was not accepted", code="invoke_failed")
