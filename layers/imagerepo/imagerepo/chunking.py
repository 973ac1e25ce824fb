"""Split file contents into chunks for the SHA-256-addressed chunk store.

Two strategies, chosen by a config string (see :func:`chunker_from_config`):

* ``fixed:<size>`` -- fixed-size chunks. Fast, but a byte inserted near the start of a
  file shifts every later chunk, so nothing after it deduplicates.
* ``fastcdc:<min>:<avg>:<max>`` -- content-defined chunking (FastCDC, Xia et al.,
  USENIX ATC 2016; FastCDC 2020) with ``pyfastcdc``'s compiled chunker: a gear rolling hash
  picks cut points from the content itself, so an insertion only changes the chunks
  around it.

Chunk boundaries decide what deduplicates, never what is readable: a blob is read back
from its own chunk list (``blob_chunks`` and its manifest, which also record the
chunker), so blobs stored by any earlier chunker, including the project's former
pure-Python FastCDC, stay readable; they just stop deduplicating against new uploads.
``test_chunking.py`` pins the boundaries of the current ones.
"""

from __future__ import annotations

import functools
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast

if TYPE_CHECKING:
    from collections.abc import Iterator

KiB = 1024
MiB = 1024 * KiB

MIN_CHUNK_SIZE = 4 * KiB
MAX_CHUNK_SIZE = 16 * MiB
# Chosen by bench/bench_dedup.py (README, "Choosing the chunker").
DEFAULT_CHUNKER_SPEC = "fastcdc:16KiB:64KiB:256KiB"

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


@functools.cache
def _compiled_fastcdc() -> type[Any]:
    """``pyfastcdc``'s Cython chunker class; an error if only its pure-Python one is there.

    pyfastcdc ships compiled manylinux wheels for CPython 3.13 on x86_64 and aarch64 (the
    ``fastcdc`` package has only an sdist for 3.13, whose Cython build cannot be
    cross-compiled for Lambda's arm64 layer). Its pure-Python fallback is refused rather
    than used silently.
    """
    try:
        from pyfastcdc.cy import FastCDC
    except ImportError as exc:  # pragma: no cover - depends on the installed wheel
        raise RuntimeError(
            "pyfastcdc's compiled chunker (pyfastcdc.cy) is not installed; install a pyfastcdc "
            "wheel for this platform"
        ) from exc
    return cast("type[Any]", FastCDC)


@dataclass(frozen=True)
class FastCDCChunker(_BufferedChunker):
    """Content-defined chunking: FastCDC (Xia et al., USENIX ATC 2016), compiled.

    Cut points come from ``pyfastcdc``'s Cython chunker (FastCDC 2020 with rolling
    two bytes per step, normalized chunking level 1 as in fastcdc-rs, the paper's gear
    table, a cut forced at ``max_size``). Its pure-Python twin ``pyfastcdc.py`` cuts at the
    same places and is the reference in the tests. As in the paper (cut-point skipping),
    the mean chunk is about ``min_size + avg_size``.
    This class only drives it over streams: each cut is searched in a window of at
    most ``max_size`` bytes, so a stream gives the same chunks as the whole buffer.
    """

    name: ClassVar[str] = "fastcdc"
    min_size: int
    avg_size: int
    max_size: int

    def __post_init__(self) -> None:
        _check_size("min size", self.min_size)
        _check_size("avg size", self.avg_size)
        _check_size("max size", self.max_size)
        if not self.min_size < self.avg_size < self.max_size:
            raise ValueError(
                f"fastcdc needs min < avg < max, got {self.min_size}, {self.avg_size}, {self.max_size}"
            )
        if self.min_size > MiB or self.avg_size > 4 * MiB:  # pyfastcdc's own bounds
            raise ValueError(
                f"fastcdc needs min <= 1MiB and avg <= 4MiB, got {_format_size(self.min_size)} "
                f"and {_format_size(self.avg_size)}"
            )

    def describe(self) -> str:
        sizes = (self.min_size, self.avg_size, self.max_size)
        return "fastcdc:" + ":".join(_format_size(s) for s in sizes)

    def _chunks(self, view: memoryview) -> Iterator[Any]:
        # A FastCDC object is not safe to share between threads; one costs ~1 µs to build.
        cdc = _compiled_fastcdc()(self.avg_size, min_size=self.min_size, max_size=self.max_size)
        return cast("Iterator[Any]", cdc.cut_buf(view))

    def _cut(self, buf: Buffer, start: int, end: int) -> int:
        window = memoryview(buf)[start : min(end, start + self.max_size)]
        return int(next(self._chunks(window)).length)

    def split_bytes(self, data: Buffer) -> Iterator[bytes]:
        view = memoryview(data).cast("B")
        if not len(view):
            return
        for chunk in self._chunks(view):
            yield bytes(view[chunk.offset : chunk.offset + chunk.length])


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
