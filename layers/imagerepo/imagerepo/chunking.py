"""Split file contents into chunks for the SHA-256-addressed chunk store.

Two strategies, chosen by a config string (see :func:`chunker_from_config`):

* ``fixed:<size>`` -- fixed-size chunks. Fast, but a byte inserted near the start of a
  file shifts every later chunk, so nothing after it deduplicates.
* ``fastcdc:<min>:<avg>:<max>`` -- content-defined chunking in the style of FastCDC
  (Xia et al., USENIX ATC 2016): a gear rolling hash picks cut points from the content
  itself, so an insertion only changes the chunks around it.

Chunk boundaries are part of the storage format: changing the gear table, the masks or
the cut rule changes which chunks new uploads produce (old data stays readable, it just
stops deduplicating against new data). ``test_chunking.py`` pins them.
"""

from __future__ import annotations

import hashlib
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from operator import length_hint
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator

KiB = 1024
MiB = 1024 * KiB

MIN_CHUNK_SIZE = 4 * KiB
MAX_CHUNK_SIZE = 16 * MiB
DEFAULT_CHUNKER_SPEC = "fixed:1MiB"

# The hash must stay below 2**30 so CPython keeps it in one machine digit: that is
# worth ~35 % of throughput over a 64-bit hash in the pure-Python loop. The table is
# still drawn from 64-bit SHA-256 values (their top GEAR_BITS bits).
GEAR_BITS = 29
_GEAR_SEED = b"imagerepo/fastcdc/gear/v1:"
GEAR: tuple[int, ...] = tuple(
    int.from_bytes(hashlib.sha256(_GEAR_SEED + bytes([i])).digest()[:8], "big") >> (64 - GEAR_BITS)
    for i in range(256)
)
# Normalized chunking level (the paper's NC-2): MaskS has 2 bits more than log2(avg),
# MaskL 2 bits fewer.
NORMALIZATION = 2

Buffer = bytes | bytearray | memoryview


class Readable(Protocol):
    """What :meth:`Chunker.split` needs: ``BinaryIO``, ``RawIOBase``, S3 bodies all fit."""

    def read(self, size: int = ..., /) -> bytes | None: ...


class Chunker(Protocol):
    @property
    def name(self) -> str:
        """Strategy name, the first field of the config string (``fixed``, ``fastcdc``)."""
        ...

    @property
    def max_size(self) -> int:
        """Upper bound of any chunk this chunker yields."""
        ...

    def describe(self) -> str:
        """Canonical config string; ``chunker_from_config(c.describe()) == c``."""
        ...

    def split(self, stream: Readable) -> Iterator[bytes]:
        """Yield consecutive chunks of ``stream``, holding at most ~2 max-size chunks."""
        ...

    def split_bytes(self, data: Buffer) -> Iterator[bytes]:
        """Yield consecutive chunks of an in-memory buffer."""
        ...


class _BufferedChunker(ABC):
    """Shared driver: the subclass only decides where the next cut is."""

    max_size: int

    @abstractmethod
    def _cut(self, buf: Buffer, start: int, end: int) -> int:
        """Length of the chunk starting at ``start``.

        ``buf[start:end]`` holds at least ``max_size`` bytes, or all that is left.
        """

    def split_bytes(self, data: Buffer) -> Iterator[bytes]:
        view = memoryview(data).cast("B")
        pos, end = 0, len(view)
        while pos < end:
            n = self._cut(view, pos, end)
            yield bytes(view[pos : pos + n])
            pos += n

    def split(self, stream: Readable) -> Iterator[bytes]:
        max_size = self.max_size
        buf = b""
        pos = 0
        eof = False
        while True:
            if not eof and len(buf) - pos < max_size:
                parts = [buf[pos:]]
                buf = b""  # drop the consumed chunk before reading the next one
                have = len(parts[0])
                while have < max_size:
                    data = stream.read(max_size - have)
                    if data is None:
                        raise BlockingIOError("non-blocking stream has no data ready")
                    if not data:
                        eof = True
                        break
                    parts.append(data)
                    have += len(data)
                buf = b"".join(parts)
                pos = 0
            end = len(buf)
            if pos >= end:
                return
            n = self._cut(buf, pos, end)
            yield buf[pos : pos + n]
            pos += n


def _format_size(n: int) -> str:
    for unit, factor in (("MiB", MiB), ("KiB", KiB)):
        if n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)


def _check_size(what: str, n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{what} must be an int, got {type(n).__name__}")
    if not MIN_CHUNK_SIZE <= n <= MAX_CHUNK_SIZE:
        raise ValueError(
            f"{what} must be between {_format_size(MIN_CHUNK_SIZE)} and "
            f"{_format_size(MAX_CHUNK_SIZE)}, got {n}"
        )


@dataclass(frozen=True)
class FixedSizeChunker(_BufferedChunker):
    """Chunks of exactly ``size`` bytes; the last one may be shorter."""

    name: ClassVar[str] = "fixed"
    size: int
    max_size: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_size("chunk size", self.size)
        object.__setattr__(self, "max_size", self.size)

    def describe(self) -> str:
        return f"fixed:{_format_size(self.size)}"

    def _cut(self, buf: Buffer, start: int, end: int) -> int:
        return min(self.size, end - start)


@dataclass(frozen=True)
class FastCDCChunker(_BufferedChunker):
    """Content-defined chunking, FastCDC 2016 style.

    From each chunk start: skip ``min_size`` bytes (no cut point there), then roll the
    gear hash ``h = (h >> 1) + GEAR[byte]`` from zero. Up to ``avg_size`` a cut needs the
    low ``log2(avg) + NORMALIZATION`` bits of ``h`` to be zero (MaskS, harder), after it
    only ``log2(avg) - NORMALIZATION`` bits (MaskL, easier); at ``max_size`` the cut is
    forced. The chunk ends after the byte whose hash matched. This "normalized chunking"
    keeps sizes close to ``avg_size``. The right-shifting gear with a <32-bit table is
    the variant of ronomon/deduplication and fastcdc-rs: the low bits of ``h`` mix the
    last ~``GEAR_BITS`` bytes, so boundaries depend only on nearby content.
    """

    name: ClassVar[str] = "fastcdc"
    min_size: int
    avg_size: int
    max_size: int
    mask_s: int = field(init=False, repr=False, compare=False)
    mask_l: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_size("min size", self.min_size)
        _check_size("avg size", self.avg_size)
        _check_size("max size", self.max_size)
        if not self.min_size < self.avg_size < self.max_size:
            raise ValueError(
                f"fastcdc needs min < avg < max, got {self.min_size}, {self.avg_size}, {self.max_size}"
            )
        # avg <= 16 MiB keeps bits + NORMALIZATION <= 26 < GEAR_BITS.
        bits = round(math.log2(self.avg_size))
        object.__setattr__(self, "mask_s", (1 << (bits + NORMALIZATION)) - 1)
        object.__setattr__(self, "mask_l", (1 << (bits - NORMALIZATION)) - 1)

    def describe(self) -> str:
        sizes = (self.min_size, self.avg_size, self.max_size)
        return "fastcdc:" + ":".join(_format_size(s) for s in sizes)

    def _cut(self, buf: Buffer, start: int, end: int) -> int:
        n = end - start
        min_size = self.min_size
        if n <= min_size:
            return n
        if n > self.max_size:
            n = self.max_size
        normal = self.avg_size if n > self.avg_size else n
        gear = GEAR
        h = 0
        # Iterating a bytes object yields ints in C; length_hint() on the iterator tells
        # where we stopped, so the hot loop needs no position counter.
        it = iter(bytes(buf[start + min_size : start + normal]))
        mask = self.mask_s
        for b in it:
            h = (h >> 1) + gear[b]
            if not h & mask:
                return normal - length_hint(it)
        it = iter(bytes(buf[start + normal : start + n]))
        mask = self.mask_l
        for b in it:
            h = (h >> 1) + gear[b]
            if not h & mask:
                return n - length_hint(it)
        return n


_SIZE_RE = re.compile(r"(\d+)\s*(kib|mib)?", re.IGNORECASE | re.ASCII)
_UNITS = {None: 1, "kib": KiB, "mib": MiB}
_GRAMMAR = "expected 'fixed:<size>' or 'fastcdc:<min>:<avg>:<max>', sizes in bytes or with a KiB/MiB suffix"


def parse_size(text: str) -> int:
    """``"1048576"``, ``"1024KiB"`` or ``"1MiB"`` -> bytes."""
    m = _SIZE_RE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"invalid size {text!r}: use bytes or a KiB/MiB suffix, e.g. 256KiB")
    unit = m.group(2)
    return int(m.group(1)) * _UNITS[unit.lower() if unit else None]


def chunker_from_config(spec: str) -> Chunker:
    """Build a chunker from ``fixed:1MiB`` or ``fastcdc:64KiB:256KiB:1MiB``-style specs."""
    kind, sep, rest = spec.strip().partition(":")
    args = rest.split(":") if sep else []
    try:
        if kind.lower() == "fixed" and len(args) == 1:
            return FixedSizeChunker(parse_size(args[0]))
        if kind.lower() == "fastcdc" and len(args) == 3:
            lo, avg, hi = (parse_size(a) for a in args)
            return FastCDCChunker(lo, avg, hi)
    except ValueError as exc:
        raise ValueError(f"invalid chunker spec {spec!r}: {exc}") from None
    raise ValueError(f"invalid chunker spec {spec!r}: {_GRAMMAR}")
