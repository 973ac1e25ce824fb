"""The one structured logger of the layer (Powertools Logger, JSON lines with the request id).

Its own module so that the authorizer and the domain modules can log without importing
the HTTP resolver of :mod:`imagerepo.api` (which re-exports it for the HTTP functions).
"""

from __future__ import annotations

from aws_lambda_powertools.logging import Logger

logger = Logger(service="imagerepo")
