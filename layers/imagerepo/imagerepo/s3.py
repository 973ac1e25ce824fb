"""The S3 client: every call takes the configured endpoint, so AWS S3, MinIO and SeaweedFS work."""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config

from imagerepo.config import settings


@functools.lru_cache(maxsize=1)
def client() -> Any:
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


@functools.lru_cache(maxsize=1)
def presigning_client() -> Any:
    """Presigned URLs must name an endpoint the *client* reaches (S3_PUBLIC_ENDPOINT_URL if set)."""
    s = settings()
    if not s.s3_public_endpoint_url:
        return client()
    return boto3.client("s3", endpoint_url=s.s3_public_endpoint_url, region_name=s.aws_region,
                        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))
