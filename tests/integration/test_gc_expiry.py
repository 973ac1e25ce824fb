"""GC expires what the bucket's lifecycle rules would (incoming/, materialized/) on servers without them."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from imagerepo.chunkstore import default_store
from imagerepo.gc import expire_transient

pytestmark = pytest.mark.integration


def test_transient_objects_expire(stack: Any) -> None:
    store = default_store()
    keys = [f"incoming/{uuid.uuid4()}", f"materialized/{uuid.uuid4().hex}"]
    for key in keys:
        store.s3.put_object(Bucket=store.bucket, Key=key, Body=b"x")
    assert expire_transient(store) == 0, "fresh objects are kept"
    assert expire_transient(store, max_age=timedelta(0)) >= 2
    for key in keys:
        assert "Contents" not in store.s3.list_objects_v2(Bucket=store.bucket, Prefix=key)
