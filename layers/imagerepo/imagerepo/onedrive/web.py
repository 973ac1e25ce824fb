"""What the OneDrive HTTP functions share: the resolver with the re-authorization answer.

When no usable token exists for the admin, every route answers 409
``onedrive_reauthorization_required`` (or ``onedrive_not_connected``) with a
fresh ``authorizationUrl``, so a client can send the admin straight to sign-in.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from imagerepo.api import error_response, logger, make_app
from imagerepo.errors import AppError
from imagerepo.onedrive import msal_auth
from imagerepo.onedrive.errors import ReauthorizationRequired


def callback_url(app: APIGatewayHttpResolver) -> str:
    """This API's callback URL as the caller reached it: used only when OneDriveRedirectUri is empty."""
    headers = app.current_event.headers
    host = headers.get("host") or app.current_event.request_context.domain_name
    if not host:
        return ""
    local = host.split(":")[0] in ("127.0.0.1", "localhost")
    proto = headers.get("x-forwarded-proto") or ("http" if local else "https")
    return f"{proto}://{host}/admin/onedrive/callback"


def make_onedrive_app() -> APIGatewayHttpResolver:
    app = make_app()

    @app.exception_handler(ReauthorizationRequired)
    def _reauthorize(exc: ReauthorizationRequired) -> Response:
        extra = {}
        try:
            extra["authorizationUrl"] = msal_auth.begin_connect(exc.admin_id, callback_url(app))[
                "authorizationUrl"]
        except AppError as err:  # say what we can: the reason, without a URL
            logger.warning("no new authorization URL", extra={"code": err.code})
        return error_response(exc.status, exc.code, exc.message, **extra)

    return app
