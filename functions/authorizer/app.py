"""Lambda authorizer (HTTP API, payload 2.0, simple responses): verifies the bearer JWT.

Role checks are left to the functions: API Gateway caches this answer per
Authorization header and reuses it on every route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imagerepo import (
    hs256,  # noqa: F401 - first: PyJWT without cryptography (cold start)
    observability,
)
from imagerepo.errors import Unauthorized
from imagerepo.log import logger
from imagerepo.security import decode_token, parse_bearer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@observability.handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    headers = event.get("headers") or {}
    try:
        principal = decode_token(parse_bearer(headers.get("authorization")))
    except Unauthorized as exc:
        logger.info("token refused", extra={"reason": str(exc.__cause__ or exc)})
        return {"isAuthorized": False}
    return {"isAuthorized": True, "context": principal.context()}
