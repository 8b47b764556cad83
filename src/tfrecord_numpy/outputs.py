"""Output files that appear whole or not at all.

Every output is written under a hidden temporary name beside its final name
and moved into place only by :meth:`AtomicFile.commit`; a crash, an error or
a ``kill -9`` leaves at most a ``.*.tmp-*`` file, which the next run removes.
The ``.npy`` writer streams rows and fixes the row count in the header at the
end (numpy pads the header so the count can grow in place).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from typing import Any

import numpy as np

TMP_MARK = ".tmp-"


def tmp_name(final: str) -> str:
    head, _, name = final.rpartition("/")
    return f"{head}/.{name}{TMP_MARK}{uuid.uuid4().hex[:12]}" if head else f".{name}{TMP_MARK}{uuid.uuid4().hex[:12]}"


def is_tmp_name(path: str) -> bool:
    name = path.rstrip("/").rpartition("/")[2]
    return name.startswith(".") and TMP_MARK in name


class AtomicFile:
    """A writable binary file on an fsspec filesystem, published by rename.

    If the filesystem's files cannot seek (object stores), writes go to a
    local spool file that is uploaded on commit, so seeking still works.
    """

    def __init__(self, fs: Any, final: str) -> None:
        self.fs = fs
        self.final = final
        self.tmp = tmp_name(final)
        self._remote = fs.open(self.tmp, "wb")
        if self._remote.seekable():
            self.f = self._remote
            self._spool = None
        else:
            self._spool = tempfile.TemporaryFile(prefix="tfrecord-numpy-")
            self.f = self._spool
        self.done = False
        self.spooled = self._spool is not None
        #: the published bytes' sha256 when known without reading them back
        self.sha256: str | None = None

    def commit(self) -> None:
        """Flush, close and move into place.

        A spooled file is hashed (:attr:`sha256`) on its way up, so the
        published object never has to be downloaded again to be hashed.
        """
        if self._spool is not None:
            self._spool.seek(0)
            h = hashlib.sha256()
            while chunk := self._spool.read(8 << 20):
                h.update(chunk)
                self._remote.write(chunk)
            self.sha256 = h.hexdigest()
            self._spool.close()
        self._remote.close()
        self.fs.mv(self.tmp, self.final)
        self.done = True

    def abort(self) -> None:
        """Drop the temporary file (best effort)."""
        if self.done:
            return
        self.done = True
        for f in (self._spool, self._remote):
            try:
                if f is not None:
                    f.close()
            except Exception:
                pass
        try:
            self.fs.rm(self.tmp)
        except Exception:
            pass


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

    def __init__(self, f: Any, rows_hint: int | None = None, hasher: StreamHasher | None = None) -> None:
        self.f = f
        self.hasher = hasher  # fed every byte written, when the header is final from the start
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
        data = memoryview(np.ascontiguousarray(block)).cast("B")
        self.f.write(data)
        self.bytes_written += len(data)
        if self.hasher is not None:
            self.hasher.feed(data)
        self.rows += int(block.shape[0])

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
    """sha256 of a byte stream, computed in a thread beside the writer.

    The writer hands over each piece it writes (:meth:`feed`, a copy: the
    caller's buffer is reused); ``hashlib`` releases the GIL, so hashing
    overlaps decoding instead of re-reading the whole file afterwards.  The
    queue is bounded, so a slow hasher holds back the writer rather than
    letting memory grow.
    """

    def __init__(self, max_pending: int = 16) -> None:
        import queue
        import threading

        self._hash = hashlib.sha256()
        self._queue: queue.Queue = queue.Queue(max_pending)
        self._thread = threading.Thread(target=self._run, name="tfrecord-numpy-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            self._hash.update(data)

    def feed(self, data: bytes | memoryview) -> None:
        self._queue.put(bytes(data))

    def result(self) -> str:
        """The hex digest of everything fed."""
        self._queue.put(None)
        self._thread.join()
        return self._hash.hexdigest()

    def cancel(self) -> None:
        self._queue.put(None)
        self._thread.join()


class JsonArrayWriter:
    """Write ``json.dumps(list_of_rows)`` incrementally, byte for byte."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.count = 0
        self._parts: list[str] = []
        self._pending = 0
        self._hash = hashlib.sha256()  # written strictly in order: hashed as it goes

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
    def sha256(self) -> str:
        return self._hash.hexdigest()


def sha256_of(fs: Any, path: str, block: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(fs: Any, final: str, obj: Any) -> None:
    out = AtomicFile(fs, final)
    try:
        out.f.write(json.dumps(obj, indent=1, sort_keys=False).encode("utf-8"))
        out.commit()
    except BaseException:
        out.abort()
        raise
