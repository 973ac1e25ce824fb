"""Scheduled sweep: re-drives uploads and OneDrive imports stuck after a lost event or a dead worker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imagerepo import observability, recovery

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@observability.handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return recovery.sweep().to_json()
