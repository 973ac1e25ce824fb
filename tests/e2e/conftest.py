"""End-to-end fixtures: accounts and images over HTTP through the local gateway."""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from tests.helpers import Api, register_and_login, unique


def make_jpeg(width: int = 64, height: int = 48, seed: int | None = None) -> bytes:
    """A small JPEG with random pixels: each call gives different bytes unless seeded."""
    rng = random.Random(seed)
    img = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def make_png(width: int = 32, height: int = 32, seed: int | None = None) -> bytes:
    rng = random.Random(seed)
    img = Image.frombytes("RGBA", (width, height), rng.randbytes(width * height * 4))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="session")
def admin(stack: Any, base_url: str) -> Api:
    from imagerepo.users import ensure_admin

    email = f"{unique('admin')}@example.com"
    ensure_admin(email, "admin passphrase 1", name=unique("admin"))
    api = Api(base_url)
    r = api.post("/login", json={"username": email, "password": "admin passphrase 1"})
    assert r.status_code == 200, r.text
    api.token = r.json()["access_token"]
    return api


@pytest.fixture
def user(base_url: str) -> tuple[Api, dict[str, Any]]:
    return register_and_login(base_url)


@pytest.fixture
def other(base_url: str) -> tuple[Api, dict[str, Any]]:
    return register_and_login(base_url)


Upload = Callable[..., dict[str, Any]]


@pytest.fixture
def upload() -> Upload:
    def _upload(api: Api, data: bytes | None = None, *, name: str = "photo.jpg",
                status: int = 201, **fields: Any) -> dict[str, Any]:
        body = data if data is not None else make_jpeg()
        form = {k: str(v) for k, v in fields.items()}
        r = api.post("/images", files={"file": (name, body, "application/octet-stream")}, data=form)
        assert r.status_code == status, r.text
        return dict(r.json())
    return _upload
