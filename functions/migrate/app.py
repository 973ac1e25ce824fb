"""CloudFormation custom resource DatabaseSchema: applies the project's migrations during the deploy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imagerepo import migrate, observability

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@observability.handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return migrate.custom_resource(event, context.log_stream_name)
