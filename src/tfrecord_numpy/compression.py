"""Streaming gzip/zlib decompression with ``readinto``, in large chunks.

``gzip.GzipFile`` on Python 3.10/3.11 inflates 8 KiB at a time; here the
compressed stream is read in large blocks and inflated with bounded output
(``max_length``), so a decompression bomb never allocates more than one output
chunk at a time and the framing's ``max_record_bytes`` stops it.

The inflate itself is zlib-ng's (the ``zlib-ng`` package, about 1.5x the
stdlib's speed) when it is installed, else the stdlib ``zlib``'s.  zlib-ng's
binding is CPython's own ``zlibmodule.c`` over zlib-ng, so ``max_length`` /
``unconsumed_tail`` / ``unused_data`` / ``eof`` and the error texts are the
stdlib's: the bomb limit, the truncation check and the error messages do not
depend on the backend.
``TFRECORD_NUMPY_INFLATE=zlib`` (or ``zlib-ng``) forces one.  The measurements,
and why not ISA-L: ``benchmarks/inflate.py``, ``benchmarks/results/inflate.md``.
"""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, cast

from .errors import CompressionError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

Compression = Literal["gzip", "zlib"]
GZIP_MAGIC = b"\x1f\x8b"
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "zlib": zlib.MAX_WBITS}
DEFAULT_INPUT_CHUNK = 1 << 20
#: the environment variable that forces an inflate backend ("zlib-ng" or "zlib"; unset or "auto": the fastest)
BACKEND_ENV = "TFRECORD_NUMPY_INFLATE"


class Inflater(Protocol):
    """What the reader uses of a ``decompressobj``: exactly the stdlib ``zlib`` semantics."""

    @property
    def unconsumed_tail(self) -> bytes: ...

    @property
    def unused_data(self) -> bytes: ...

    @property
    def eof(self) -> bool: ...

    def decompress(self, data: ReadableBuffer, max_length: int = ..., /) -> bytes: ...


@dataclass(frozen=True)
class InflateBackend:
    """A ``decompressobj(wbits)`` factory with stdlib semantics and the exception it raises."""

    name: str
    decompressobj: Callable[[int], Inflater]
    error: type[Exception]


STDLIB = InflateBackend("zlib", zlib.decompressobj, zlib.error)


def _zlib_ng() -> InflateBackend:
    from zlib_ng import zlib_ng  # the stub types ``error`` as an instance: it is the exception class

    return InflateBackend("zlib-ng", zlib_ng.decompressobj, cast("type[Exception]", zlib_ng.error))


#: the fast backends, fastest first; one added here must keep the stdlib's semantics exactly (tests/test_inflate.py)
_FAST: dict[str, Callable[[], InflateBackend]] = {"zlib-ng": _zlib_ng}


def load_backend(name: str) -> InflateBackend:
    """The backend called ``name`` ("zlib-ng" or "zlib"); ImportError when its package is not installed."""
    if name == STDLIB.name:
        return STDLIB
    if name not in _FAST:
        raise ValueError(f"unknown inflate backend {name!r}: expected 'auto' or one of {[*_FAST, STDLIB.name]}")
    return _FAST[name]()


def select_backend(preference: str | None = None) -> InflateBackend:
    """``preference`` (default: ``$TFRECORD_NUMPY_INFLATE``) if set, else the fastest one installed."""
    source = "preference"
    if preference is None:
        preference, source = os.environ.get(BACKEND_ENV, ""), BACKEND_ENV
    preference = preference.strip().lower()
    if preference not in ("", "auto"):
        try:
            return load_backend(preference)
        except ImportError as exc:
            raise ImportError(f"{source}={preference!r} but it is not installed: {exc}") from exc
    for loader in _FAST.values():
        try:
            return loader()
        except ImportError:
            continue
    return STDLIB


#: the backend every new :class:`DecompressingReader` uses unless given one
BACKEND: InflateBackend = select_backend()


class StreamTruncated(CompressionError):
    """The compressed stream ended before its end marker."""


class ReadableStream(Protocol):
    """A binary stream to read from: ``read(size)`` (empty or None at the end) and ``close()``."""

    def read(self, size: int = ..., /) -> bytes | None: ...

    def close(self) -> None: ...


class DecompressingReader(io.RawIOBase):
    """A read-only binary stream of the decompressed bytes of ``raw``.

    Concatenated gzip members are read as one stream, as gzip(1) does.
    ``backend`` defaults to :data:`BACKEND` (zlib-ng when installed, else ``zlib``).
    """

    def __init__(
        self,
        raw: ReadableStream,
        compression: Compression,
        *,
        input_chunk: int = DEFAULT_INPUT_CHUNK,
        name: str | None = None,
        close_raw: bool = True,
        backend: InflateBackend | None = None,
    ) -> None:
        super().__init__()
        self._close_raw = close_raw
        if compression not in _WBITS:
            raise ValueError(f"unknown compression {compression!r}")
        self._raw = raw
        self._compression = compression
        self._wbits = _WBITS[compression]
        self._input_chunk = input_chunk
        self._backend = backend or BACKEND
        self._d = self._backend.decompressobj(self._wbits)
        self._pending = b""  # compressed input not yet given to the decompressor
        self._raw_eof = False
        self._done = False
        self._started = False  # some member has begun
        self._out_pos = 0  # decompressed bytes delivered so far
        self.name = name

    def readable(self) -> bool:
        return True

    def _inflate(self, size: int) -> bytes:
        """Up to ``size`` decompressed bytes; b"" only at the clean end."""
        while not self._done:
            if not self._pending and not self._d.unconsumed_tail and not self._raw_eof:
                chunk = self._raw.read(self._input_chunk)
                if not chunk:
                    self._raw_eof = True
                else:
                    self._pending = chunk
            data_in = self._d.unconsumed_tail or self._pending
            if data_in is self._pending:
                self._pending = b""
            if not data_in:
                if self._raw_eof:
                    if self._started and not self._d.eof:
                        raise StreamTruncated(
                            f"{self._compression} stream ends before its end marker "
                            f"(after {self._out_pos} decompressed bytes)",
                            path=self.name,
                        )
                    self._done = True
                    return b""
                continue
            try:
                out = self._d.decompress(data_in, size)
            except self._backend.error as exc:
                raise CompressionError(f"not a valid {self._compression} stream: {exc}", path=self.name) from None
            self._started = True
            if self._d.eof:
                rest = self._d.unused_data
                self._d = self._backend.decompressobj(self._wbits)
                self._started = False
                if rest:
                    if self._compression == "gzip" and rest.strip(b"\x00") == b"":
                        rest = b""  # zero padding after the last member, as gzip(1) allows
                    self._pending = rest + self._pending
                if not self._pending and not rest:
                    # another member may follow in the raw stream; peek once
                    if not self._raw_eof:
                        more = self._raw.read(self._input_chunk)
                        if more:
                            self._pending = more
                        else:
                            self._raw_eof = True
                    if self._raw_eof and not self._pending:
                        self._done = True
                if self._compression == "zlib" and self._pending:
                    raise CompressionError("trailing data after the zlib stream", path=self.name)
            if out:
                self._out_pos += len(out)
                return out
        return b""

    def readinto(self, b: WriteableBuffer) -> int:
        view = memoryview(b).cast("B")
        out = self._inflate(len(view))
        n = len(out)
        view[:n] = out
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            chunks = []
            while chunk := self._inflate(DEFAULT_INPUT_CHUNK * 4):
                chunks.append(chunk)
            return b"".join(chunks)
        return self._inflate(size)

    def close(self) -> None:
        try:
            if self._close_raw:
                self._raw.close()
        finally:
            super().close()
