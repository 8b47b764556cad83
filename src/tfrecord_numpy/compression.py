"""Streaming gzip/zlib decompression with ``readinto``, in large chunks.

``gzip.GzipFile`` on Python 3.10/3.11 inflates 8 KiB at a time; here the
compressed stream is read in large blocks and inflated with bounded output
(``max_length``), so a decompression bomb never allocates more than one output
chunk at a time and the framing's ``max_record_bytes`` stops it.
"""

from __future__ import annotations

import io
import zlib
from typing import TYPE_CHECKING, Literal, Protocol

from .errors import CompressionError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

Compression = Literal["gzip", "zlib"]
GZIP_MAGIC = b"\x1f\x8b"
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "zlib": zlib.MAX_WBITS}
DEFAULT_INPUT_CHUNK = 1 << 20


class StreamTruncated(CompressionError):
    """The compressed stream ended before its end marker."""


class ReadableStream(Protocol):
    """A binary stream to read from: ``read(size)`` (empty or None at the end) and ``close()``."""

    def read(self, size: int = ..., /) -> bytes | None: ...

    def close(self) -> None: ...


class DecompressingReader(io.RawIOBase):
    """A read-only binary stream of the decompressed bytes of ``raw``.

    Concatenated gzip members are read as one stream, as gzip(1) does.
    """

    def __init__(
        self,
        raw: ReadableStream,
        compression: Compression,
        *,
        input_chunk: int = DEFAULT_INPUT_CHUNK,
        name: str | None = None,
        close_raw: bool = True,
    ) -> None:
        super().__init__()
        self._close_raw = close_raw
        if compression not in _WBITS:
            raise ValueError(f"unknown compression {compression!r}")
        self._raw = raw
        self._compression = compression
        self._wbits = _WBITS[compression]
        self._input_chunk = input_chunk
        self._d = zlib.decompressobj(self._wbits)
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
            except zlib.error as exc:
                raise CompressionError(f"not a valid {self._compression} stream: {exc}", path=self.name) from None
            self._started = True
            if self._d.eof:
                rest = self._d.unused_data
                self._d = zlib.decompressobj(self._wbits)
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
