"""Streaming writers of the job's outputs: ``.npy`` row blocks, JSON row arrays, hashes.

The ``.npy`` writer streams rows and fixes the row count in the header at the
end (numpy pads the header so the count can grow in place); the files go
through :class:`tfrecord_numpy.atomic.AtomicFile`, so they appear whole.
"""

from __future__ import annotations

import os
from typing import Any

import crc32c as _crc32c
import numpy as np

from ..checksum import DEFAULT_CHECKSUM, Digest, crc32c_combine, crc32c_spelling


class NpyStreamWriter:
    """Write a 2-D ``.npy`` of unknown row count, row block by row block.

    Bytes are identical to ``np.save`` of the whole array.  With no rows at
    all the file is ``np.save(path, [])`` (float64, shape ``(0,)``), which is
    what the notebook writes for an empty shard.

    ``rows_hint``, when given, goes into the header from the start; if the
    rows written match it, the header is final as soon as it is written (so
    the file can be hashed while it grows) and :attr:`header_rewritten`
    stays False.
    """

    def __init__(
        self, f: Any, rows_hint: int | None = None, hasher: StreamHasher | None = None, *, crc_body: bool = False
    ) -> None:
        self.f = f
        self.hasher = hasher  # fed every byte written, when the header is final from the start
        # CRC32C of the rows alone, as they are written; the file's is combined with the final header's
        self._body_crc: int | None = 0 if crc_body else None
        self._body_len = 0
        self.dtype: np.dtype | None = None
        self.dim: int | None = None
        self.rows = 0
        self.rows_hint = rows_hint
        self.bytes_written = 0
        self.header_rewritten = False
        self._header_len = 0

    def _header(self, rows: int) -> bytes:
        import io

        buf = io.BytesIO()
        assert self.dtype is not None
        np.lib.format.write_array_header_1_0(
            buf,
            {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (rows, self.dim)},
        )
        return buf.getvalue()

    def write(self, block: np.ndarray) -> None:
        """Append a ``[n, D]`` C-contiguous block (little-endian as stored)."""
        if self.dtype is None:
            self.dtype, self.dim = block.dtype, int(block.shape[1])
            header = self._header(self.rows_hint or 0)
            self._header_len = len(header)
            self.f.write(header)
            self.bytes_written += len(header)
            if self.hasher is not None:
                self.hasher.feed(header)
        data = np.ascontiguousarray(block).reshape(-1).view(np.uint8).data  # a memoryview, also for 0 rows
        self.f.write(data)
        self.bytes_written += len(data)
        if self.hasher is not None:
            self.hasher.feed(data)
        if self._body_crc is not None:
            self._body_crc = _crc32c.crc32c(data, self._body_crc)
            self._body_len += len(data)
        self.rows += int(block.shape[0])

    def file_crc32c(self) -> str | None:
        """After :meth:`close`: the whole file's CRC32C (manifest spelling), from the
        rows' CRC computed as they streamed out and the final header's; None when
        not kept (``crc_body=False``) or for the empty-array file."""
        if self._body_crc is None or self.dtype is None:
            return None
        head = _crc32c.crc32c(self._header(self.rows))
        return crc32c_spelling(crc32c_combine(head, self._body_crc, self._body_len))

    def close(self) -> None:
        """Fix the header's row count (or write the empty-array file)."""
        if self.dtype is None:
            self.header_rewritten = True
            np.save(self.f, np.array([]))
            return
        if self.rows == self.rows_hint:
            return  # the header written first is already right
        header = self._header(self.rows)
        if len(header) != self._header_len:  # pragma: no cover - numpy pads for growth
            raise RuntimeError("npy header length changed")
        self.header_rewritten = True
        self.f.seek(0)
        self.f.write(header)
        self.f.seek(0, os.SEEK_END)


class StreamHasher:
    """The sha256 of a byte stream, computed in a thread as the writer writes it.

    The writer hands over a copy of each piece (its buffer is reused) and
    ``hashlib`` releases the GIL, so hashing overlaps decoding; the queue is
    bounded, so a slow hasher holds back the writer rather than letting memory
    grow.  (CRC32C needs no thread: :class:`NpyStreamWriter` keeps it inline.)
    """

    def __init__(self, max_pending: int = 16) -> None:
        import queue
        import threading

        self._digest = Digest("sha256")
        self._queue: queue.Queue[bytes | None] | None = queue.Queue(max_pending)
        self._thread = threading.Thread(target=self._run, name="tfrecord-numpy-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._queue is not None
        while (data := self._queue.get()) is not None:
            self._digest.update(data)

    def feed(self, data: bytes | memoryview) -> None:
        assert self._queue is not None, "fed after result() or cancel()"
        self._queue.put(bytes(data))

    def _stop(self) -> None:
        if self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = None

    def result(self) -> str:
        """The checksum of everything fed (its manifest spelling)."""
        self._stop()
        return self._digest.value()

    def cancel(self) -> None:
        self._stop()


class JsonArrayWriter:
    """Write ``json.dumps(list_of_rows)`` incrementally, byte for byte."""

    def __init__(self, f: Any, checksum: str = DEFAULT_CHECKSUM) -> None:
        self.f = f
        self.count = 0
        self._parts: list[str] = []
        self._pending = 0
        self._hash = Digest(checksum)  # written strictly in order: hashed as it goes

    def write_encoded(self, encoded_rows: list[str]) -> None:
        """Append rows already encoded with ``json.dumps``."""
        if not encoded_rows:
            return
        text = ", ".join(encoded_rows)
        self._parts.append((", " if self.count else "[") + text)
        self.count += len(encoded_rows)
        self._pending += len(text)
        if self._pending > 1 << 20:
            self.flush()

    def _write(self, data: bytes) -> None:
        self._hash.update(data)
        self.f.write(data)

    def flush(self) -> None:
        if self._parts:
            self._write("".join(self._parts).encode("utf-8"))
            self._parts.clear()
            self._pending = 0

    def close(self) -> None:
        self.flush()
        self._write(b"]" if self.count else b"[]")

    @property
    def checksum(self) -> str:
        return self._hash.value()
