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
from collections.abc import Iterator

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
from .fastpath import PREFIX_BYTES, EmbeddingLayout, embedding_layout, packed_int64s, walk_entries
from .records import A2ORecord, decode_a2o_record

_OTHERS = {b"timestamp_s", b"filename", b"embedding_shape"}


class DoesNotFit(Exception):
    """A record's embedding does not fit the output array (the caller falls back)."""


def _decode(view: memoryview, where: Location) -> A2ORecord:
    try:
        return decode_a2o_record(view)
    except TFRecordError as exc:
        raise exc.located(**where) from None


def _other_features(head: memoryview, layout: EmbeddingLayout, tail: memoryview) -> A2ORecord | None:
    """filename / timestamp_s / embedding_shape from the entries around the
    embedding's; None when they are not plainly there (the caller falls back)."""
    found: dict[bytes, memoryview] = {}
    if not walk_entries(head, layout.body_start, layout.entry_start, found):
        return None
    if not walk_entries(tail, 0, len(tail), found) or set(found) != _OTHERS:
        return None
    ts, fn, shape = found[b"timestamp_s"], found[b"filename"], packed_int64s(found[b"embedding_shape"])
    if len(ts) != 4 or shape is None or tuple(shape) != layout.shape:
        return None
    try:
        filename = bytes(fn).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return A2ORecord(filename=filename, timestamp_s=np.frombuffer(ts, "<f4")[0], embedding=np.empty(0))


def _read_exactly(stream: ReadableStream, view: memoryview) -> int:
    got = 0
    while got < len(view):
        n = readinto(stream, view[got:])
        if n == 0:
            break
        got += n
    return got


def iter_a2o_into(
    stream: ReadableStream,
    out: np.ndarray,
    *,
    path: str | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[tuple[int, int, A2ORecord, int]]:
    """Yield ``(index, offset, record, first_row)`` for each record of ``stream``,
    its embedding rows already in ``out[first_row : first_row + T*C]``.

    ``out`` is ``[rows, D]`` with the shard's dtype; a record that does not fit
    in it (another dtype or width, or more rows than predicted) raises
    :class:`DoesNotFit` before anything of it is written.
    The yielded record's ``embedding`` is a view into ``out``.
    """
    flat = out.reshape(-1).view(np.uint8)
    row_bytes = out.shape[1] * out.dtype.itemsize
    header = memoryview(bytearray(HEADER_BYTES))
    prefix_buf = memoryview(bytearray(PREFIX_BYTES))
    scratch = bytearray(1 << 16)
    index = offset = row = 0
    while True:
        where: Location = {"path": path, "index": index, "offset": offset}
        got = _read_exactly(stream, header)
        if got == 0:
            return
        if got < HEADER_BYTES:
            raise TruncatedRecordError(
                f"truncated record: data ends inside the 12-byte header ({got} bytes present)", **where
            )
        length = check_header(header, max_record_bytes=max_record_bytes)
        if length < 0:
            raise header_error(length, header, max_record_bytes=max_record_bytes, **where)
        n1 = min(length, PREFIX_BYTES)
        prefix = prefix_buf[:n1]
        if _read_exactly(stream, prefix) < n1:
            raise TruncatedRecordError("truncated record: data ends inside the payload", **where)
        layout = embedding_layout(prefix, length)
        rows = layout.shape[0] * layout.shape[1] if layout else 0
        if layout is not None and (
            layout.dtype != out.dtype or layout.shape[2] != out.shape[1] or row + rows > out.shape[0]
        ):
            raise DoesNotFit(f"record {index} does not fit the output array")
        if layout is not None and layout.content_start + layout.content_len >= n1:
            dst = flat[row * row_bytes : row * row_bytes + layout.content_len]
            already = n1 - layout.content_start
            dst[:already] = np.frombuffer(prefix[layout.content_start : n1], np.uint8)
            if _read_exactly(stream, dst.data[already:]) < layout.content_len - already:
                raise TruncatedRecordError("truncated record: data ends inside the payload", **where)
            tail_len = length - (layout.content_start + layout.content_len)
            if len(scratch) < tail_len + FOOTER_BYTES:
                scratch = bytearray(tail_len + FOOTER_BYTES)
            tail = memoryview(scratch)[: tail_len + FOOTER_BYTES]
            if _read_exactly(stream, tail) < len(tail):
                raise TruncatedRecordError("truncated record: data ends inside the payload or footer", **where)
            crc = crc32c(prefix[: layout.content_start])
            crc = crc32c(dst.data, crc)
            crc = crc32c(tail[:tail_len], crc)
            (want,) = struct.unpack_from("<I", tail, tail_len)
            if mask_crc(crc) != want:
                raise CorruptRecordError("corrupted record: data CRC mismatch", which="data", **where)
            # the other features: the map entries before the embedding and after it
            head = prefix[: layout.content_start]
            rec = _other_features(head, layout, tail[:tail_len])
            if rec is None:  # unusual: reassemble the record for the general path
                whole = memoryview(bytes(head) + dst.tobytes() + bytes(tail[:tail_len]))
                rec = _decode(whole, where)
                if rec.embedding.shape != layout.shape:
                    raise SchemaError("embedding shape changed between reads", **where)
            rec.embedding = out[row : row + rows].reshape(layout.shape)
        else:
            # any other layout: the whole record through the general reader's decoder
            rest_len = length - n1 + FOOTER_BYTES
            if len(scratch) < length + FOOTER_BYTES:
                scratch = bytearray(length + FOOTER_BYTES)
            whole = memoryview(scratch)[: length + FOOTER_BYTES]
            whole[:n1] = prefix
            if _read_exactly(stream, whole[n1:]) < rest_len:
                raise TruncatedRecordError("truncated record: data ends inside the payload or footer", **where)
            if not check_footer(whole, 0, length):
                raise CorruptRecordError("corrupted record: data CRC mismatch", which="data", **where)
            rec = _decode(whole[:length], where)
            emb = rec.embedding
            rows = emb.shape[0] * emb.shape[1]
            if emb.dtype != out.dtype or emb.shape[2] != out.shape[1] or row + rows > out.shape[0]:
                raise DoesNotFit(f"record {index} does not fit the output array")
            out[row : row + rows] = emb.reshape(rows, emb.shape[2])
            rec.embedding = out[row : row + rows].reshape(emb.shape)
        yield index, offset, rec, row
        row += rows
        index += 1
        offset += HEADER_BYTES + length + FOOTER_BYTES
