"""Scheduled garbage collection (EventBridge): frees chunks unreferenced for the grace period."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imagerepo import gc, observability
from imagerepo.config import settings
from imagerepo.log import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@observability.handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Bounded orphan sweep: a few pages per prefix, resumed next run (POST /admin/gc sweeps all).
    result = gc.collect(settings().gc_grace_seconds, sweep_pages=gc.SCHEDULED_SWEEP_PAGES)
    logger.info("scheduled gc", extra=result.to_json())
    return result.to_json()
