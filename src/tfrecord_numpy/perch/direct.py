"""Reading A2O embeddings straight into an output array: no copy after the read.

The general reader reads each record into its buffer and the caller copies the
embedding out.  Here the few hundred bytes in front of the tensor are read
first; they say where the tensor's bytes are, and those are ``readinto`` the
output array itself.  Both CRCs are still checked (CRC32C continues over the
three pieces).  A record laid out any other way is read whole and decoded by
the general path, so the results are the same either way.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import numpy as np

from ..compression import ReadableStream
from ..errors import CorruptRecordError, Location, SchemaError, TFRecordError, TruncatedRecordError
from ..framing import (
    DEFAULT_MAX_RECORD_BYTES,
    FOOTER_BYTES,
    HEADER_BYTES,
    check_footer,
    check_header,
    crc32c,
    header_error,
    mask_crc,
)
from ..storage import readinto
from .fastpath import PREFIX_BYTES, LayoutMemo, OtherFeatures
from .records import A2ORecord, decode_a2o_record


class DoesNotFit(Exception):
    """A record's embedding does not fit the output array (the caller falls back)."""


def _decode(view: memoryview, where: Location) -> A2ORecord:
    try:
        return decode_a2o_record(view)
    except TFRecordError as exc:
        raise exc.located(**where) from None


def _read_exactly(stream: ReadableStream, view: memoryview) -> int:
    got = 0
    while got < len(view):
        n = readinto(stream, view[got:])
        if n == 0:
            break
        got += n
    return got


class _Ahead:
    """The stream with the next record's first bytes read ahead: a record costs two
    reads (its tensor bytes; then its tail with the next header and prefix)."""

    def __init__(self, stream: ReadableStream, size: int) -> None:
        self.stream = stream
        self.buf = bytearray(size)
        self.start = self.end = 0

    def fill(self, want: int) -> int:
        """Hold at least ``want`` bytes, fewer only at the end of the stream; returns how many."""
        held = self.end - self.start
        if held >= want:
            return held
        if want > len(self.buf):
            self.buf = bytearray(self.buf[self.start : self.end]) + bytearray(want - held)
        elif self.start:
            self.buf[:held] = self.buf[self.start : self.end]
        self.start, self.end = 0, held
        self.end += _read_exactly(self.stream, memoryview(self.buf)[held:want])
        return self.end - self.start

    def take(self, n: int) -> memoryview:
        """The next ``n`` held bytes (valid until the next :meth:`fill`)."""
        view = memoryview(self.buf)[self.start : self.start + n]
        self.start += len(view)
        return view

    def readinto(self, view: memoryview) -> int:
        """Fill ``view``: held bytes first, then straight from the stream."""
        n = min(len(view), self.end - self.start)
        view[:n] = memoryview(self.buf)[self.start : self.start + n]
        self.start += n
        return n + _read_exactly(self.stream, view[n:])


def iter_a2o_into(
    stream: ReadableStream,
    out: np.ndarray,
    *,
    path: str | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    before_write: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, int, A2ORecord, int]]:
    """Yield ``(index, offset, record, first_row)`` for each record of ``stream``,
    its embedding rows already in ``out[first_row : first_row + T*C]``.

    ``out`` is ``[rows, D]`` with the shard's dtype; a record that does not fit
    in it (another dtype or width, or more rows than predicted) raises
    :class:`DoesNotFit` before anything of it is written.
    The yielded record's ``embedding`` is a view into ``out``.
    ``before_write(end)`` is called before bytes up to ``end`` (from the
    start of ``out``) are written (see :class:`tfrecord_numpy.prefault.Prefaulter`).
    A record whose bytes in front of the tensor equal the previous record's
    (and of the same length) has its layout: it is not parsed again.
    """
    flat = out.reshape(-1).view(np.uint8)
    row_bytes = out.shape[1] * out.dtype.itemsize
    lead = HEADER_BYTES + PREFIX_BYTES
    ahead = _Ahead(stream, 1 << 16)
    index = offset = row = 0
    layouts = LayoutMemo()
    other_features = OtherFeatures()
    while True:
        where: Location = {"path": path, "index": index, "offset": offset}
        got = ahead.fill(lead)
        if got == 0:
            return
        if got < HEADER_BYTES:
            raise TruncatedRecordError(
                f"truncated record: data ends inside the 12-byte header ({got} bytes present)", **where
            )
        header = ahead.take(HEADER_BYTES)
        length = check_header(header, max_record_bytes=max_record_bytes)
        if length < 0:
            raise header_error(length, header, max_record_bytes=max_record_bytes, **where)
        n1 = min(length, PREFIX_BYTES)
        if got - HEADER_BYTES < n1:
            raise TruncatedRecordError("truncated record: data ends inside the payload", **where)
        prefix = ahead.take(n1)
        known = layouts(prefix, length)
        layout, head = known if known is not None else (None, b"")
        rows = layout.shape[0] * layout.shape[1] if layout else 0
        if layout is not None and (
            layout.dtype != out.dtype or layout.shape[2] != out.shape[1] or row + rows > out.shape[0]
        ):
            raise DoesNotFit(f"record {index} does not fit the output array")
        if layout is not None and layout.content_start + layout.content_len >= n1:
            # ``head``: the bytes before the tensor, a copy (prefix's view is reused below)
            dst = flat[row * row_bytes : row * row_bytes + layout.content_len]
            if before_write is not None:
                before_write(row * row_bytes + layout.content_len)
            already = n1 - layout.content_start
            dst[:already] = np.frombuffer(prefix[layout.content_start : n1], np.uint8)
            if ahead.readinto(dst.data[already:]) < layout.content_len - already:
                raise TruncatedRecordError("truncated record: data ends inside the payload", **where)
            tail_len = length - (layout.content_start + layout.content_len)
            if ahead.fill(tail_len + FOOTER_BYTES + lead) < tail_len + FOOTER_BYTES:
                raise TruncatedRecordError("truncated record: data ends inside the payload or footer", **where)
            tail = ahead.take(tail_len + FOOTER_BYTES)
            crc = crc32c(head)
            crc = crc32c(dst.data, crc)
            crc = crc32c(tail[:tail_len], crc)
            (want,) = struct.unpack_from("<I", tail, tail_len)
            if mask_crc(crc) != want:
                raise CorruptRecordError("corrupted record: data CRC mismatch", which="data", **where)
            # the other features: the map entries before the embedding and after it
            others = other_features(memoryview(head), layout, tail[:tail_len])
            rec = None
            if others is not None:
                rec = A2ORecord(filename=others[0], timestamp_s=np.frombuffer(others[1], "<f4")[0], embedding=out[:0])
            if rec is None:  # unusual: reassemble the record for the general path
                whole = memoryview(head + dst.tobytes() + bytes(tail[:tail_len]))
                rec = _decode(whole, where)
                if rec.embedding.shape != layout.shape:
                    raise SchemaError("embedding shape changed between reads", **where)
            rec.embedding = out[row : row + rows].reshape(layout.shape)
        else:
            # any other layout: the whole record through the general reader's decoder
            whole = memoryview(bytearray(length + FOOTER_BYTES))
            whole[:n1] = prefix
            if ahead.readinto(whole[n1:]) < length - n1 + FOOTER_BYTES:
                raise TruncatedRecordError("truncated record: data ends inside the payload or footer", **where)
            if not check_footer(whole, 0, length):
                raise CorruptRecordError("corrupted record: data CRC mismatch", which="data", **where)
            rec = _decode(whole[:length], where)
            emb = rec.embedding
            rows = emb.shape[0] * emb.shape[1]
            if emb.dtype != out.dtype or emb.shape[2] != out.shape[1] or row + rows > out.shape[0]:
                raise DoesNotFit(f"record {index} does not fit the output array")
            if before_write is not None:
                before_write((row + rows) * row_bytes)
            out[row : row + rows] = emb.reshape(rows, emb.shape[2])
            rec.embedding = out[row : row + rows].reshape(emb.shape)
        yield index, offset, rec, row
        row += rows
        index += 1
        offset += HEADER_BYTES + length + FOOTER_BYTES
