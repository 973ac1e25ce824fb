from __future__ import annotations

import random
import threading

import pytest

from imagerepo import lru
from imagerepo.lru import ChunkCache


def test_get_put_and_stats() -> None:
    cache = ChunkCache(1000)
    assert cache.get("a") is None
    cache.put("a", b"x" * 100)
    assert cache.get("a") == b"x" * 100
    assert cache.stats() == {"hits": 1, "misses": 1, "bytes": 100, "items": 1, "evictions": 0,
                             "maxBytes": 1000}


def test_bounded_in_bytes_not_items() -> None:
    cache = ChunkCache(1000)
    for i in range(20):
        cache.put(f"k{i}", bytes(200))
        assert cache.stats()["bytes"] <= 1000
    assert len(cache) == 5
    assert cache.stats()["evictions"] == 15
    # Many small items fit where few big ones did.
    for i in range(50):
        cache.put(f"s{i}", bytes(10))
    assert cache.stats()["bytes"] <= 1000
    assert len(cache) > 5


def test_evicts_least_recently_used() -> None:
    cache = ChunkCache(1000)
    for key in "abcd":
        cache.put(key, bytes(250))
    assert cache.get("a") is not None  # a becomes the most recent; b is now the oldest
    cache.put("e", bytes(250))
    assert "b" not in cache
    assert all(k in cache for k in "acde")
    cache.put("f", bytes(250))
    assert "c" not in cache
    assert all(k in cache for k in "adef")


def test_replacing_a_key_keeps_the_byte_count_right() -> None:
    cache = ChunkCache(1000)
    cache.put("a", bytes(200))
    cache.put("a", bytes(100))
    assert cache.stats()["bytes"] == 100
    assert len(cache) == 1


def test_items_over_a_quarter_are_not_cached() -> None:
    cache = ChunkCache(1000)
    cache.put("small", bytes(250))
    cache.put("big", bytes(251))
    assert "big" not in cache
    assert "small" in cache
    assert cache.stats()["bytes"] == 250
    assert cache.get("big") is None


def test_zero_size_cache_caches_nothing() -> None:
    cache = ChunkCache(0)
    cache.put("a", b"x")
    assert cache.get("a") is None
    with pytest.raises(ValueError):
        ChunkCache(-1)


def test_clear_resets_everything() -> None:
    cache = ChunkCache(1000)
    cache.put("a", bytes(10))
    cache.get("a")
    cache.get("b")
    cache.clear()
    assert cache.stats() == {"hits": 0, "misses": 0, "bytes": 0, "items": 0, "evictions": 0,
                             "maxBytes": 1000}


def test_thread_safety_smoke() -> None:
    cache = ChunkCache(64 * 1024)
    errors: list[BaseException] = []
    values = {f"k{i}": bytes([i % 256]) * random.Random(i).randint(1, 4096) for i in range(200)}

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(5000):
                key = f"k{rng.randrange(200)}"
                if rng.random() < 0.5:
                    cache.put(key, values[key])
                else:
                    got = cache.get(key)
                    assert got is None or got == values[key]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = cache.stats()
    assert stats["bytes"] <= 64 * 1024
    assert stats["bytes"] == sum(len(values[k]) for k in values if k in cache)
    assert stats["hits"] + stats["misses"] > 0


def test_shared_cache_is_one_instance_sized_by_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from imagerepo.config import settings

    monkeypatch.setattr(lru, "_shared", None)
    monkeypatch.setenv("CHUNK_CACHE_BYTES", "12345")
    settings.cache_clear()
    try:
        first = lru.shared_cache()
        assert first is lru.shared_cache()
        assert first.max_bytes == 12345
    finally:
        settings.cache_clear()
