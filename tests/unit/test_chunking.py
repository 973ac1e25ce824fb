from __future__ import annotations

import io
import random
from functools import cache
from typing import TYPE_CHECKING

import pytest

from imagerepo.chunking import (
    DEFAULT_CHUNKER_SPEC,
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    FastCDCChunker,
    FixedSizeChunker,
    KiB,
    MiB,
    chunker_from_config,
    parse_size,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from imagerepo.chunking import Chunker

# Smallest legal sizes, so a few hundred KiB already give dozens of chunks.
SMALL_CDC = FastCDCChunker(4 * KiB, 16 * KiB, 64 * KiB)
BENCH_CDC = FastCDCChunker(16 * KiB, 64 * KiB, 256 * KiB)
FIXED = FixedSizeChunker(16 * KiB)
# BENCH_CDC's chunk sizes on random.Random(20240611).randbytes(1 MiB), with pyfastcdc 0.3.1.
PINNED = [
    68851, 54494, 55855, 56611, 90779, 41843, 117016, 75592, 26267, 84553, 71213, 130235,
    121005, 50287, 3975,
]  # fmt: skip


@cache
def rand_bytes(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


class ShortReads(io.RawIOBase):
    """Raw stream that returns at most ``limit`` bytes per read, like a slow socket."""

    def __init__(self, data: bytes, limit: int = 1000) -> None:
        self._data = data
        self._pos = 0
        self._limit = limit
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self._limit, len(self._data) - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        self.bytes_read += n
        return n


def reference_fastcdc(data: bytes, lo: int, avg: int, hi: int) -> list[bytes]:
    """pyfastcdc's own pure-Python chunker: the same algorithm, interpreted."""
    from pyfastcdc.py import FastCDC

    return [bytes(c.data) for c in FastCDC(avg, min_size=lo, max_size=hi).cut_buf(data)]


def sizes_for(chunker: Chunker) -> list[int]:
    """0, 1, one full chunk, exactly max, many chunks, and a size that is not a multiple."""
    m = chunker.max_size
    return [0, 1, 4095, m, m + 1, 5 * m, 7 * m + 12345]


CHUNKERS = [FIXED, SMALL_CDC]


@pytest.mark.parametrize("chunker", CHUNKERS, ids=lambda c: c.describe())
def test_chunks_concatenate_to_input(chunker: Chunker) -> None:
    for size in sizes_for(chunker):
        data = rand_bytes(size)
        chunks = list(chunker.split_bytes(data))
        assert b"".join(chunks) == data, size
        assert all(chunks), "no empty chunks"
        if size == 0:
            assert chunks == []


@pytest.mark.parametrize("chunker", CHUNKERS, ids=lambda c: c.describe())
def test_small_inputs_are_one_chunk(chunker: Chunker) -> None:
    for size in (1, 4095, MIN_CHUNK_SIZE):
        assert list(chunker.split_bytes(rand_bytes(size))) == [rand_bytes(size)]


def test_fixed_chunk_sizes() -> None:
    data = rand_bytes(5 * 16 * KiB + 100)
    assert [len(c) for c in FIXED.split_bytes(data)] == [16 * KiB] * 5 + [100]
    assert [len(c) for c in FIXED.split_bytes(data[: 3 * 16 * KiB])] == [16 * KiB] * 3


@pytest.mark.parametrize("chunker", [SMALL_CDC, BENCH_CDC], ids=lambda c: c.describe())
def test_fastcdc_chunk_sizes_within_bounds(chunker: FastCDCChunker) -> None:
    data = rand_bytes(1 * MiB + 777)
    sizes = [len(c) for c in chunker.split_bytes(data)]
    assert all(chunker.min_size < s <= chunker.max_size for s in sizes[:-1])
    assert 0 < sizes[-1] <= chunker.max_size
    # Normalized chunking keeps the mean near the target on random data.
    mean = sum(sizes[:-1]) / len(sizes[:-1])
    assert 0.8 * chunker.avg_size < mean < 1.6 * chunker.avg_size


def test_fastcdc_forces_a_cut_at_max_size_on_uniform_data() -> None:
    data = b"\0" * (300 * KiB)
    sizes = [len(c) for c in SMALL_CDC.split_bytes(data)]
    assert b"".join(SMALL_CDC.split_bytes(data)) == data
    assert all(SMALL_CDC.min_size < s <= SMALL_CDC.max_size for s in sizes[:-1])


def test_fastcdc_is_deterministic() -> None:
    data = rand_bytes(512 * KiB, seed=2)
    first = list(SMALL_CDC.split_bytes(data))
    assert list(SMALL_CDC.split_bytes(data)) == first
    assert list(FastCDCChunker(4 * KiB, 16 * KiB, 64 * KiB).split_bytes(data)) == first


def test_fastcdc_is_the_compiled_chunker() -> None:
    """The pure-Python fallback of the package is orders of magnitude slower: never used."""
    import pyfastcdc.cy.fastcdc

    from imagerepo.chunking import _compiled_fastcdc

    assert pyfastcdc.cy.fastcdc.__file__.endswith((".so", ".pyd"))
    assert _compiled_fastcdc() is pyfastcdc.cy.fastcdc.FastCDC


def test_fastcdc_matches_the_pure_python_reference() -> None:
    """Our driver (windows of max_size, streams) cuts exactly where the package's reference does."""
    data = rand_bytes(400 * KiB, seed=3) + b"\0" * (70 * KiB) + rand_bytes(50 * KiB, seed=4)
    expected = reference_fastcdc(data, 4 * KiB, 16 * KiB, 64 * KiB)
    assert list(SMALL_CDC.split_bytes(data)) == expected
    assert list(SMALL_CDC.split(ShortReads(data, limit=5000))) == expected


def test_fastcdc_boundaries_are_pinned() -> None:
    """Boundaries are a storage format: new uploads must keep deduplicating against old chunks."""
    data = random.Random(20240611).randbytes(1 * MiB)
    assert [len(c) for c in BENCH_CDC.split_bytes(data)] == PINNED


def shared_fraction(original: list[bytes], modified: list[bytes], from_offset: int = 0) -> float:
    """Fraction of the bytes of ``modified`` (from ``from_offset`` on) in chunks also in ``original``."""
    known = set(original)
    total = shared = 0
    offset = 0
    for chunk in modified:
        if offset >= from_offset:
            total += len(chunk)
            if chunk in known:
                shared += len(chunk)
        offset += len(chunk)
    return shared / total


def test_insertion_only_disturbs_nearby_chunks_with_fastcdc() -> None:
    original = rand_bytes(4 * MiB, seed=5)
    middle = len(original) // 2
    modified = original[:middle] + rand_bytes(20011, seed=6) + original[middle:]

    cdc_before = list(BENCH_CDC.split_bytes(original))
    cdc_after = list(BENCH_CDC.split_bytes(modified))
    assert shared_fraction(cdc_before, cdc_after) > 0.9
    assert shared_fraction(cdc_before, cdc_after, from_offset=middle + 20011 + BENCH_CDC.max_size) == 1.0

    fixed = FixedSizeChunker(64 * KiB)
    fixed_before = list(fixed.split_bytes(original))
    fixed_after = list(fixed.split_bytes(modified))
    assert shared_fraction(fixed_before, fixed_after, from_offset=middle) < 0.01
    assert shared_fraction(fixed_before, fixed_after) < 0.55


@pytest.mark.parametrize("chunker", CHUNKERS, ids=lambda c: c.describe())
def test_split_with_short_reads_matches_split_bytes(chunker: Chunker) -> None:
    for size in (0, 1, chunker.max_size, 300 * KiB + 17):
        data = rand_bytes(size, seed=7)
        assert list(chunker.split(ShortReads(data))) == list(chunker.split_bytes(data)), size
        assert list(chunker.split(io.BytesIO(data))) == list(chunker.split_bytes(data)), size


@pytest.mark.parametrize("chunker", CHUNKERS, ids=lambda c: c.describe())
def test_split_reads_incrementally(chunker: Chunker) -> None:
    """The ingest of a 100 MB upload must not pull the whole stream into memory."""
    data = rand_bytes(1 * MiB, seed=8)
    stream = ShortReads(data, limit=64 * KiB)
    yielded = 0
    for chunk in chunker.split(stream):
        yielded += len(chunk)
        assert stream.bytes_read - yielded <= 2 * chunker.max_size
    assert yielded == len(data)


def test_split_accepts_memoryview_and_bytearray() -> None:
    data = rand_bytes(200 * KiB, seed=9)
    expected = list(SMALL_CDC.split_bytes(data))
    assert list(SMALL_CDC.split_bytes(bytearray(data))) == expected
    assert list(SMALL_CDC.split_bytes(memoryview(data))) == expected


def test_split_rejects_non_blocking_stream_without_data() -> None:
    class NotReady(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray | memoryview) -> None:  # type: ignore[override]
            return None

    with pytest.raises(BlockingIOError):
        list(FIXED.split(NotReady()))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("fixed:1048576", FixedSizeChunker(1 * MiB)),
        ("fixed:1MiB", FixedSizeChunker(1 * MiB)),
        ("fixed:256KiB", FixedSizeChunker(256 * KiB)),
        (" FIXED:256 kib ", FixedSizeChunker(256 * KiB)),
        ("fixed:4096", FixedSizeChunker(MIN_CHUNK_SIZE)),
        ("fixed:16MiB", FixedSizeChunker(MAX_CHUNK_SIZE)),
        ("fastcdc:65536:262144:1048576", FastCDCChunker(64 * KiB, 256 * KiB, 1 * MiB)),
        ("fastcdc:64KiB:256KiB:1MiB", FastCDCChunker(64 * KiB, 256 * KiB, 1 * MiB)),
        ("fastcdc:16KiB:65536:256KiB", FastCDCChunker(16 * KiB, 64 * KiB, 256 * KiB)),
        ("fastcdc:5000:12000:100000", FastCDCChunker(5000, 12000, 100000)),
    ],
)
def test_chunker_from_config(spec: str, expected: Chunker) -> None:
    chunker = chunker_from_config(spec)
    assert chunker == expected
    assert chunker_from_config(chunker.describe()) == chunker


def test_default_spec() -> None:
    chunker = chunker_from_config(DEFAULT_CHUNKER_SPEC)
    assert chunker == FastCDCChunker(16 * KiB, 64 * KiB, 256 * KiB)
    assert chunker.name == "fastcdc"
    assert chunker.describe() == "fastcdc:16KiB:64KiB:256KiB"
    assert chunker_from_config("fixed:1MiB").describe() == "fixed:1MiB"
    cdc = chunker_from_config("fastcdc:65536:262144:1048576")
    assert cdc.name == "fastcdc"
    assert cdc.describe() == "fastcdc:64KiB:256KiB:1MiB"
    assert FixedSizeChunker(5000).describe() == "fixed:5000"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "expected 'fixed:<size>'"),
        ("fixed", "expected 'fixed:<size>'"),
        ("fixed:", "invalid size"),
        ("fixed:1MiB:2MiB", "expected 'fixed:<size>'"),
        ("rabin:1MiB", "expected 'fixed:<size>'"),
        ("fixed:1MB", "invalid size"),
        ("fixed:-4096", "invalid size"),
        ("fixed:1.5MiB", "invalid size"),
        ("fixed:abc", "invalid size"),
        ("fixed:4095", "between 4KiB and 16MiB"),
        ("fixed:0", "between 4KiB and 16MiB"),
        ("fixed:17MiB", "between 4KiB and 16MiB"),
        ("fastcdc:64KiB:256KiB", "expected 'fixed:<size>'"),
        ("fastcdc:64KiB:256KiB:1MiB:2MiB", "expected 'fixed:<size>'"),
        ("fastcdc:256KiB:64KiB:1MiB", "min < avg < max"),
        ("fastcdc:64KiB:64KiB:1MiB", "min < avg < max"),
        ("fastcdc:64KiB:1MiB:1MiB", "min < avg < max"),
        ("fastcdc:2KiB:8KiB:32KiB", "between 4KiB and 16MiB"),
        ("fastcdc:1MiB:4MiB:32MiB", "between 4KiB and 16MiB"),
    ],
)
def test_chunker_from_config_rejects_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match="invalid chunker spec") as info:
        chunker_from_config(spec)
    assert message in str(info.value)


def test_constructors_validate() -> None:
    with pytest.raises(ValueError, match="between"):
        FixedSizeChunker(100)
    with pytest.raises(ValueError, match="min < avg < max"):
        FastCDCChunker(64 * KiB, 32 * KiB, 1 * MiB)
    with pytest.raises(TypeError):
        FixedSizeChunker(4096.0)  # type: ignore[arg-type]


def test_parse_size() -> None:
    assert parse_size("4096") == 4096
    assert parse_size("4KiB") == 4096
    assert parse_size("2mib") == 2 * MiB


def _chunkers_satisfy_protocol() -> Iterator[Chunker]:
    """Static check only: mypy verifies both classes implement the Chunker protocol."""
    yield FIXED
    yield SMALL_CDC
