"""The thin I/O driver around :class:`~.framing.RecordScanner`.

Reads large blocks with ``readinto`` into one reused buffer, hands the
scanner a view of it, and yields views of the records it finds; the buffer
grows only as bytes actually arrive, so a hostile length field cannot make
it allocate more than about twice the data present.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .compression import ReadableStream, StreamTruncated
from .errors import TFRecordError
from .framing import DEFAULT_MAX_RECORD_BYTES, HEADER_BYTES, RecordScanner
from .storage import Sources, open_source, readinto, resolve_sources

DEFAULT_CHUNK_BYTES = 8 << 20
INITIAL_CHUNK_BYTES = 64 << 10


def iter_record_blocks(
    stream: ReadableStream,
    scanner: RecordScanner,
    *,
    chunk_bytes: int | None = None,
) -> Iterator[tuple[memoryview, np.ndarray, np.ndarray, np.ndarray, int]]:
    """Yield ``(block, heads, lengths, indices, offset)`` for each block read:
    the complete records in it (header positions in ``block``, payload
    lengths, record indices) and the stream offset of ``block[0]``.

    The block is valid only until the next one is requested.  The buffer
    starts small (a tiny file costs no 8 MiB allocation) and doubles while
    reads keep filling it, up to ``chunk_bytes``; beyond that it grows only
    to hold a record larger than itself, as that record's bytes arrive.
    """
    if chunk_bytes is None:
        chunk_bytes = DEFAULT_CHUNK_BYTES
    buf = bytearray(min(chunk_bytes, INITIAL_CHUNK_BYTES))
    view = memoryview(buf)
    filled = 0
    while True:
        free = len(buf) - filled
        try:
            n = readinto(stream, view[filled:])
        except StreamTruncated as exc:
            scanner.finish(filled, cause=f": {exc.reason}")
            raise exc.located(index=scanner.index, offset=scanner.offset) from None
        except TFRecordError as exc:
            raise exc.located(path=scanner.path, index=scanner.index, offset=scanner.offset) from None
        if n == 0:
            break
        filled += n
        offset = scanner.offset
        heads, lengths, indices, used, error = scanner.scan_block(view[:filled])
        if len(heads):
            yield view, heads, lengths, indices, offset
        if error is not None:
            del buf, view  # the traceback keeps this frame: do not let it pin the buffer
            try:
                raise error
            finally:
                del error  # no frame -> error -> traceback -> frame cycle
        if used:
            left = filled - used
            view[:left] = bytes(view[used:filled]) if left else b""
            filled = left
        if filled == len(buf):
            # the record at the front does not fit: grow by doubling, never
            # past what it needs, so memory tracks the bytes really present
            size = len(buf) * 2
            if scanner.needed:
                size = min(size, max(scanner.needed, len(buf) + 1))
        elif n == free and len(buf) < chunk_bytes:
            size = min(len(buf) * 2, chunk_bytes)  # the stream goes on: read bigger blocks
        else:
            continue
        new = bytearray(size)
        new[:filled] = view[:filled]
        buf = new
        view = memoryview(buf)
    scanner.finish(filled)


def iter_record_views(
    stream: ReadableStream,
    scanner: RecordScanner,
    *,
    chunk_bytes: int | None = None,
) -> Iterator[tuple[int, int, memoryview]]:
    """Yield ``(index, offset, view)`` for each record's payload in ``stream``.

    A view is valid only until the next one is requested: copy it
    (``bytes(view)``) to keep it.  Blocks are framed by
    :meth:`~tfrecord_numpy.framing.RecordScanner.scan_block`.
    """
    for block, heads, lengths, indices, offset in iter_record_blocks(stream, scanner, chunk_bytes=chunk_bytes):
        for head, length, index in zip(heads.tolist(), lengths.tolist(), indices.tolist()):
            start = head + HEADER_BYTES
            yield index, offset + head, block[start : start + length]


def iter_records(
    sources: Sources,
    *,
    compression: str | None = "auto",
    verify: bool = True,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    storage_options: dict[str, Any] | None = None,
) -> Iterator[tuple[str | None, int, int, memoryview]]:
    """Yield ``(path, index, offset, view)`` for every record of every source, in order.

    ``index`` and ``offset`` are the record's place in its own file; a view is
    valid only until the next one is requested.
    """
    for source in resolve_sources(sources, storage_options=storage_options):
        opened = open_source(source, compression=compression, storage_options=storage_options)
        scanner = RecordScanner(verify=verify, max_record_bytes=max_record_bytes, path=opened.name)
        try:
            for index, offset, view in iter_record_views(opened.stream, scanner):
                yield opened.name, index, offset, view
        finally:
            opened.close()


def read_records(
    source: Sources,
    *,
    compression: str | None = "auto",
    verify: bool = True,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    storage_options: dict[str, Any] | None = None,
) -> Iterator[bytes]:
    """Yield every record of one or more TFRecord files as ``bytes``.

    ``source`` is a path, an fsspec URL, an ``os.PathLike`` or a binary file
    object, or a list of them; paths may be directories or globs (expanded as
    the CLI does).  ``compression`` is ``None``, ``"gzip"``, ``"zlib"`` or
    ``"auto"`` (suffix ``.gz``/``.gzip`` or ``.zz``/``.zlib``, else a gzip
    header that is not a valid TFRecord header).  Both CRCs are checked unless
    ``verify=False``.  Errors are :class:`~tfrecord_numpy.errors.TFRecordError`
    subclasses carrying ``path``, ``index`` and ``offset``.
    """
    for _, _, _, view in iter_records(
        source,
        compression=compression,
        verify=verify,
        max_record_bytes=max_record_bytes,
        storage_options=storage_options,
    ):
        yield bytes(view)
