"""Writing TFRecord files: the framing of :mod:`.framing` plus a sink."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable
from typing import Any, BinaryIO

from fsspec.core import url_to_fs

from .atomic import AtomicFile
from .framing import encode_record
from .storage import normalize_compression

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "zlib": zlib.MAX_WBITS}


class _CompressingSink:
    """Compress everything written to it into ``raw``."""

    def __init__(self, raw: BinaryIO, compression: str, level: int) -> None:
        self._raw = raw
        self._c = zlib.compressobj(level, zlib.DEFLATED, _WBITS[compression])

    def write(self, data: bytes | bytearray | memoryview) -> int:
        out = self._c.compress(data)
        if out:
            self._raw.write(out)
        return len(data)

    def flush(self) -> None:
        self._raw.write(self._c.flush(zlib.Z_SYNC_FLUSH))
        self._raw.flush()

    def finish(self) -> None:
        self._raw.write(self._c.flush(zlib.Z_FINISH))


class RecordWriter:
    """Write records to a path, fsspec URL or binary file object.

    >>> with RecordWriter("out.tfrecord") as w:       # doctest: +SKIP
    ...     w.write(b"payload")
    """

    def __init__(
        self,
        dest: str | os.PathLike[str] | BinaryIO,
        *,
        compression: str | None = None,
        level: int = 6,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        compression = normalize_compression(compression)
        if compression == "auto":
            raise ValueError("compression='auto' is for reading; name 'gzip', 'zlib' or None")
        self._atomic: AtomicFile | None = None
        if isinstance(dest, (str, os.PathLike)):
            # whole files only: written under a temporary name, published by close()
            fs, path = url_to_fs(os.fspath(dest), **(storage_options or {}))
            self._atomic = AtomicFile(fs, path, spool=False)
            raw: Any = self._atomic.f
            self._owned = True
        else:
            raw = dest
            self._owned = False
        self._raw = raw
        self._sink: Any = _CompressingSink(raw, compression, level) if compression else raw
        self.records_written = 0
        self.bytes_written = 0  # uncompressed

    def write(self, payload: bytes | bytearray | memoryview) -> None:
        """Append one record."""
        framed = encode_record(payload)
        self._sink.write(framed)
        self.records_written += 1
        self.bytes_written += len(framed)

    def write_all(self, payloads: Iterable[bytes]) -> None:
        for p in payloads:
            self.write(p)

    def flush(self) -> None:
        self._sink.flush()

    def close(self) -> None:
        """Finish the stream; a file this writer opened appears under its name only now."""
        if self._sink is None:
            return
        sink, self._sink = self._sink, None
        try:
            if isinstance(sink, _CompressingSink):
                sink.finish()
            if self._atomic is not None:
                self._atomic.commit()
            else:
                self._raw.flush()
        except BaseException:
            if self._atomic is not None:
                self._atomic.abort()
            raise

    def abort(self) -> None:
        """Give up: a file this writer opened is removed, nothing appears under its name."""
        self._sink = None
        if self._atomic is not None:
            self._atomic.abort()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_records(
    dest: str | os.PathLike[str] | BinaryIO,
    records: Iterable[bytes],
    *,
    compression: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> int:
    """Write ``records`` to ``dest``; returns how many were written."""
    with RecordWriter(dest, compression=compression, storage_options=storage_options) as w:
        w.write_all(records)
    return w.records_written
