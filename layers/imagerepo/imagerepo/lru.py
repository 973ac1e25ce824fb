"""An in-process LRU cache of chunk bytes, bounded in bytes.

Chunks are immutable (addressed by their SHA-256), so a cached entry can never be
stale; the only question is memory. A warm Lambda container keeps the process-wide
instance from :func:`shared_cache` between invocations.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from imagerepo.config import settings


class ChunkCache:
    """Thread-safe LRU keyed by chunk hash, holding at most ``max_bytes`` of values.

    Items larger than ``max_bytes / 4`` are not cached: one of them would evict a
    large part of the working set for a single use.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._lock = threading.Lock()

    @property
    def max_item_bytes(self) -> int:
        return self.max_bytes // 4

    def get(self, key: str) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is None:
                self._misses += 1
                return None
            self._items.move_to_end(key)
            self._hits += 1
            return data

    def put(self, key: str, data: bytes) -> None:
        size = len(data)
        if size > self.max_item_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._items[key] = data
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= len(evicted)
                self._evictions += 1

    def __contains__(self, key: object) -> bool:
        """Membership without touching recency or the hit/miss counters."""
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "hits": self._hits,
                "misses": self._misses,
                "bytes": self._bytes,
                "items": len(self._items),
                "evictions": self._evictions,
                "maxBytes": self.max_bytes,
            }

    def clear(self) -> None:
        """Drop every entry and reset the counters."""
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self._hits = self._misses = self._evictions = 0


_shared: ChunkCache | None = None
_shared_lock = threading.Lock()


def shared_cache() -> ChunkCache:
    """The process-wide cache, sized by ``settings().chunk_cache_bytes`` on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ChunkCache(settings().chunk_cache_bytes)
        return _shared
