"""The S3 client: every call takes the configured endpoint, so AWS S3, MinIO and SeaweedFS work.

boto3 is imported when the first client is built, not with this module, so functions
that never touch S3 do not pay for it at cold start.
"""

from __future__ import annotations

import functools
from typing import Any

from imagerepo.config import settings

MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchUpload"})


@functools.lru_cache(maxsize=1)
def client() -> Any:
    import boto3
    from botocore.config import Config

    s = settings()
    config = Config(
        max_pool_connections=64,
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=20,
        # S3-compatible servers want path-style addressing; AWS accepts both.
        s3={"addressing_style": "path" if s.s3_endpoint_url else "auto"},
        signature_version="s3v4",
    )
    return boto3.client("s3", endpoint_url=s.s3_endpoint_url, region_name=s.aws_region, config=config)


def bucket() -> str:
    return settings().bucket


def is_missing(exc: BaseException) -> bool:
    """Whether a botocore ``ClientError`` says the object (or upload) does not exist."""
    response = getattr(exc, "response", None)
    code = (response or {}).get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in MISSING_CODES


@functools.lru_cache(maxsize=1)
def presigning_client() -> Any:
    """Presigned URLs must name an endpoint the *client* reaches (S3_PUBLIC_ENDPOINT_URL if set)."""
    s = settings()
    if not s.s3_public_endpoint_url:
        return client()
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=s.s3_public_endpoint_url, region_name=s.aws_region,
                        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))
