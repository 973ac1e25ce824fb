"""Logging, tracing and metrics, defined once for every function.

``handler`` applies Powertools' Logger (Lambda context and, for HTTP functions,
the request id as correlation id), Tracer (an X-Ray subsegment per handler,
cold start annotation; off outside Lambda) and Metrics (CloudWatch embedded
metric format, flushed when the handler returns). A function's handler is then
one line::

    lambda_handler = observability.handler(app)          # an HTTP resolver

    @observability.handler                              # any other event
    def lambda_handler(event, context): ...

Metrics are EMF lines on stdout: CloudWatch turns them into metrics in the
``ImageRepo`` namespace (dimension ``service``); locally they are in the log.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, overload

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import Metrics, MetricUnit
from aws_lambda_powertools.tracing import Tracer

from imagerepo.log import logger

if TYPE_CHECKING:
    # Only for types: the resolver module is the HTTP side, which the authorizer and
    # the event functions must not load (tests/unit/test_import_graph.py).
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
    from aws_lambda_powertools.utilities.typing import LambdaContext

__all__ = [
    "NAMESPACE",
    "SERVICE",
    "MetricUnit",
    "count",
    "handler",
    "logger",
    "metric",
    "metrics",
    "timed",
    "tracer",
]

SERVICE: Final = "imagerepo"
NAMESPACE: Final = "ImageRepo"

tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

# An invocation that recorded nothing (most reads) is normal, not worth a warning each time.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

Handler = Callable[[Any, "LambdaContext"], Any]


@overload
def handler(target: APIGatewayHttpResolver) -> Handler: ...
@overload
def handler(target: Handler) -> Handler: ...
def handler(target: APIGatewayHttpResolver | Handler) -> Handler:
    """The Lambda entry point for ``target``: a resolver (HTTP API) or a handler function."""
    if hasattr(target, "resolve"):  # an APIGatewayHttpResolver (not imported: see above)
        app = target

        def resolve(event: Any, context: LambdaContext) -> Any:
            return app.resolve(event, context)

        fn: Handler = resolve
        correlation: str | None = correlation_paths.API_GATEWAY_HTTP
    else:
        fn, correlation = target, None

    # Responses hold image bytes: never copy them into trace metadata.
    traced = tracer.capture_lambda_handler(fn, capture_response=False)
    measured = metrics.log_metrics(traced, capture_cold_start_metric=True)
    logged = logger.inject_lambda_context(measured, correlation_id_path=correlation)
    return functools.wraps(fn)(logged)


def metric(name: str, value: float, unit: MetricUnit = MetricUnit.Count) -> None:
    """Record one value of a metric; published with the invocation's other metrics."""
    metrics.add_metric(name=name, unit=unit, value=value)


def count(name: str, value: int = 1) -> None:
    metric(name, value, MetricUnit.Count)


@contextmanager
def timed(name: str) -> Iterator[None]:
    """Record the block's duration in milliseconds as ``name`` (only when it succeeds)."""
    start = time.perf_counter()
    yield
    metric(name, round((time.perf_counter() - start) * 1000, 1), MetricUnit.Milliseconds)


# Metric names, one place (the template's alarms and the README refer to them).
UPLOADS: Final = "Uploads"
LOGICAL_BYTES: Final = "LogicalBytes"
STORED_BYTES: Final = "StoredBytes"
CHUNK_CACHE_HITS: Final = "ChunkCacheHits"
CHUNK_CACHE_MISSES: Final = "ChunkCacheMisses"
CHUNK_CACHE_HIT_RATIO: Final = "ChunkCacheHitRatio"
THUMBNAIL_LATENCY: Final = "ThumbnailLatency"
INGEST_LATENCY: Final = "IngestLatency"
GC_FREED_BYTES: Final = "GcFreedBytes"
FAILED_LOGINS: Final = "FailedLogins"


def stored(logical: int, new: int) -> None:
    """One file stored: its size, and the bytes actually written as new chunks (dedup saves the rest)."""
    metric(LOGICAL_BYTES, logical, MetricUnit.Bytes)
    metric(STORED_BYTES, new, MetricUnit.Bytes)


def cache_lookups(hits: int, misses: int) -> None:
    """Chunk cache use of one read; the ratio's Average over reads is the hit ratio."""
    if hits + misses == 0:
        return
    count(CHUNK_CACHE_HITS, hits)
    count(CHUNK_CACHE_MISSES, misses)
    metric(CHUNK_CACHE_HIT_RATIO, round(100 * hits / (hits + misses), 2), MetricUnit.Percent)
