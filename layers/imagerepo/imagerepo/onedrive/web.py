"""What the OneDrive HTTP functions share: the resolver with the re-authorization answer.

When no usable token exists for the admin, every route answers 409
``onedrive_reauthorization_required`` (or ``onedrive_not_connected``) with a
fresh ``authorizationUrl``, so a client can send the admin straight to sign-in.
"""

from __future__ import annotations

import math

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.shared.cookies import Cookie, SameSite

from imagerepo.api import error_response, logger, make_app
from imagerepo.errors import AppError
from imagerepo.onedrive import msal_auth
from imagerepo.onedrive.errors import GraphThrottled, ReauthorizationRequired

DEFAULT_RETRY_AFTER = 30  # seconds, when Graph throttled without saying for how long


def flow_cookie(started: msal_auth.Started) -> Cookie:
    """The binder of a new auth-code flow, for the admin's browser only (see begin_connect)."""
    return Cookie(name=started.cookie_name, value=started.binder, path="/admin/onedrive/callback",
                  secure=started.secure, http_only=True, same_site=SameSite.LAX_MODE,
                  max_age=int(msal_auth.FLOW_TTL.total_seconds()))


def request_cookies(app: APIGatewayHttpResolver) -> dict[str, str]:
    jar: dict[str, str] = {}
    for raw in app.current_event.cookies or []:
        name, _, value = raw.partition("=")
        jar.setdefault(name.strip(), value.strip())
    return jar


def make_onedrive_app() -> APIGatewayHttpResolver:
    app = make_app()

    @app.exception_handler(ReauthorizationRequired)
    def _reauthorize(exc: ReauthorizationRequired) -> Response:
        try:
            started = msal_auth.begin_connect(exc.admin_id)
        except AppError as err:  # say what we can: the reason, without a URL
            logger.warning("no new authorization URL", extra={"code": err.code})
            return error_response(exc.status, exc.code, exc.message)
        response = error_response(exc.status, exc.code, exc.message,
                                  authorizationUrl=started.body["authorizationUrl"])
        response.cookies.append(flow_cookie(started))
        return response

    @app.exception_handler(GraphThrottled)
    def _throttled(exc: GraphThrottled) -> Response:
        """503 onedrive_throttled with the Retry-After Graph asked for (rounded up)."""
        response = error_response(exc.status, exc.code, exc.message)
        wait = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response

    return app
