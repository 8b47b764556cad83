"""TFRecord framing, sans-I/O: bytes in, record spans out.

A TFRecord file is a sequence of::

    uint64 length            (little-endian)
    uint32 masked_crc32c(length bytes)
    byte   data[length]
    uint32 masked_crc32c(data)

Nothing here touches a file: :class:`RecordScanner` finds complete records in a
buffer the caller owns and remembers where it is in the stream (record index,
byte offset), so that every error can say exactly where the damage is.
:func:`iter_record_views` in ``reader.py`` is the thin I/O driver around it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator

import crc32c as _crc32c

from .errors import CorruptRecordError, RecordTooLargeError, TFRecordError, TruncatedRecordError

HEADER_BYTES = 12
FOOTER_BYTES = 4
OVERHEAD_BYTES = HEADER_BYTES + FOOTER_BYTES
DEFAULT_MAX_RECORD_BYTES = 1 << 30
_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_crc = _crc32c.crc32c

#: a record found in a buffer: (payload start, payload length, record index, stream offset)
Span = tuple[int, int, int, int]


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """Plain CRC32C, continued from ``crc`` (to checksum a record read in pieces)."""
    return _crc(data, crc)


def mask_crc(crc: int) -> int:
    """TFRecord's masking of a CRC32C."""
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def masked_crc(data: bytes | bytearray | memoryview) -> int:
    """TFRecord's masked CRC32C (Castagnoli) of ``data``."""
    return mask_crc(_crc(data))


def encode_record(payload: bytes | bytearray | memoryview) -> bytes:
    """One framed record: header, payload, footer."""
    length = _LENGTH.pack(len(payload))
    return b"".join((length, _CRC.pack(masked_crc(length)), payload, _CRC.pack(masked_crc(payload))))


def encode_records(payloads: Iterable[bytes]) -> bytes:
    """Several framed records, concatenated."""
    return b"".join(encode_record(p) for p in payloads)


#: :func:`check_header` results that are not a length
BAD_LENGTH_CRC = -1
TOO_LARGE = -2


def check_header(
    buf: bytes | bytearray | memoryview,
    pos: int = 0,
    *,
    verify: bool = True,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> int:
    """The payload length in the 12-byte header at ``buf[pos:]``, or
    :data:`BAD_LENGTH_CRC` / :data:`TOO_LARGE` (no exception: the resync loop
    tries many positions).  The one place a record header is read."""
    length, length_crc = _HEADER.unpack_from(buf, pos)
    if verify and masked_crc(buf[pos : pos + 8]) != length_crc:
        return BAD_LENGTH_CRC
    if length > max_record_bytes:
        return TOO_LARGE
    return int(length)


def header_error(
    code: int,
    buf: bytes | bytearray | memoryview,
    pos: int = 0,
    *,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    path: str | os.PathLike[str] | None = None,
    index: int | None = None,
    offset: int | None = None,
) -> TFRecordError:
    """The located error for a :func:`check_header` result that is not a length."""
    if code == TOO_LARGE:
        (length,) = _LENGTH.unpack_from(buf, pos)
        return RecordTooLargeError(
            f"record length {length} exceeds max_record_bytes={max_record_bytes}",
            path=path,
            index=index,
            offset=offset,
        )
    hint = " (is this a compressed file? try compression='gzip' or 'zlib')" if offset == 0 else ""
    return CorruptRecordError(
        "corrupted record: length CRC mismatch" + hint, which="length", path=path, index=index, offset=offset
    )


def check_footer(buf: bytes | bytearray | memoryview, start: int, length: int) -> bool:
    """Whether the payload ``buf[start:start+length]`` matches the masked CRC after it."""
    (data_crc,) = _CRC.unpack_from(buf, start + length)
    return masked_crc(buf[start : start + length]) == data_crc


class RecordScanner:
    """Stateful, I/O-free record finder.

    Call :meth:`scan` with a buffer that starts at the first byte not yet
    consumed; it returns the spans ``(start, length)`` of the complete records
    in it (positions relative to the buffer) and how many bytes they consumed.
    The caller drops the consumed bytes, appends more, and scans again; at the
    end of the stream it calls :meth:`finish` with the number of bytes left
    over, which raises if they are a partial record.

    With ``skip_corrupt=True`` a record whose data CRC fails is skipped, and
    after a bad length CRC the scanner resynchronises on the next offset where
    a header and its payload both check out; every skip is recorded in
    :attr:`skipped` and a partial tail sets :attr:`truncated_tail` instead of
    raising.

    ``index`` and ``offset`` always name the next record to be found.
    """

    __slots__ = (
        "verify",
        "max_record_bytes",
        "path",
        "index",
        "offset",
        "needed",
        "skip_corrupt",
        "skipped",
        "truncated_tail",
        "_resyncing",
        "_consumed",
    )

    def __init__(
        self,
        *,
        verify: bool = True,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        path: str | os.PathLike[str] | None = None,
        index: int = 0,
        offset: int = 0,
        skip_corrupt: bool = False,
    ) -> None:
        self.verify = verify
        self.max_record_bytes = max_record_bytes
        self.path = path
        self.index = index
        self.offset = offset
        #: total size of the record at the front of the unconsumed data, once
        #: its header is known (so a driver can grow its buffer); else 0
        self.needed = 0
        self.skip_corrupt = skip_corrupt
        self.skipped: list[TFRecordError] = []
        self.truncated_tail: TruncatedRecordError | None = None
        self._resyncing = False
        self._consumed = 0

    def _where(self) -> dict:
        return {"path": self.path, "index": self.index, "offset": self.offset}

    def scan(self, buf: bytes | bytearray | memoryview) -> tuple[list[Span], int, TFRecordError | None]:
        """Find the complete records at the front of ``buf``.

        Returns ``(spans, consumed, error)``: the good records before any
        damage as ``(start, length, index, offset)`` (``start`` relative to
        ``buf``; ``index``/``offset`` the record's place in the stream), the
        bytes they take, and the error that stopped the scan (to be raised
        after the good records are delivered), or ``None``.
        """
        spans: list[Span] = []
        try:
            pos = self._scan(buf, spans)
        except TFRecordError as exc:
            # drop the traceback: through _scan's frame it holds ``buf`` (the
            # caller's whole read buffer) in a cycle that outlives the error
            # until the cyclic GC happens to run
            return spans, self._consumed, exc.with_traceback(None)
        return spans, pos, None

    def _skip(self, error: TFRecordError) -> None:
        if not self._resyncing:
            self.skipped.append(error)

    def _scan(self, buf, spans: list[Span]) -> int:
        end = len(buf)
        pos = self._consumed = 0
        verify = self.verify
        self.needed = 0
        max_record_bytes = self.max_record_bytes
        while end - pos >= HEADER_BYTES:
            length = check_header(buf, pos, verify=verify, max_record_bytes=max_record_bytes)
            if length < 0:
                if self._resyncing:
                    pos = self._consumed = pos + 1
                    self.offset += 1
                    continue
                error = header_error(length, buf, pos, max_record_bytes=max_record_bytes, **self._where())
                if not self.skip_corrupt or length == TOO_LARGE:
                    raise error
                self._skip(error)
                self._resyncing = True
                pos = self._consumed = pos + 1
                self.offset += 1
                continue
            total = HEADER_BYTES + length + FOOTER_BYTES
            if end - pos < total:
                self.needed = total
                break
            start = pos + HEADER_BYTES
            if verify:
                if not check_footer(buf, start, length):
                    error = CorruptRecordError("corrupted record: data CRC mismatch", which="data", **self._where())
                    if not self.skip_corrupt:
                        raise error
                    # a valid length CRC (a 1 in 2**32 chance otherwise) marks a
                    # real record boundary, even while resynchronising
                    self._resyncing = False
                    self._skip(error)
                    pos = self._consumed = pos + total
                    self.index += 1
                    self.offset += total
                    continue
            self._resyncing = False
            spans.append((start, length, self.index, self.offset))
            pos = self._consumed = pos + total
            self.index += 1
            self.offset += total
        return pos

    def finish(self, leftover: int, *, cause: str = "") -> None:
        """End of stream with ``leftover`` unconsumed bytes: a partial record is an error."""
        if leftover <= 0:
            return
        if self._resyncing:
            where = f"in {leftover} bytes of damaged data after the last good record"
        elif leftover < HEADER_BYTES:
            where = f"inside the 12-byte header ({leftover} bytes present)"
        elif self.needed and leftover < self.needed - FOOTER_BYTES:
            present = leftover - HEADER_BYTES
            where = f"inside the payload ({present} of {self.needed - OVERHEAD_BYTES} bytes present)"
        else:
            where = "inside the 4-byte footer"
        error = TruncatedRecordError(f"truncated record: data ends {where}{cause}", **self._where())
        if self.skip_corrupt:
            self.truncated_tail = error
            return
        try:
            raise error
        finally:
            del error  # no error -> traceback -> frame -> error cycle pinning the caller's buffer


def iter_spans(
    buf: bytes | bytearray | memoryview,
    *,
    verify: bool = True,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    path: str | None = None,
) -> Iterator[tuple[int, int]]:
    """All record spans of a whole in-memory TFRecord stream; raises on a partial tail."""
    scanner = RecordScanner(verify=verify, max_record_bytes=max_record_bytes, path=path)
    spans, used, error = scanner.scan(buf)
    for start, length, _, _ in spans:
        yield start, length
    if error is not None:
        try:
            raise error
        finally:
            del error  # this frame holds ``buf``: keep it out of a cycle with the error
    scanner.finish(len(buf) - used)


def decode_records(data: bytes | bytearray | memoryview, *, verify: bool = True) -> list[bytes]:
    """Every record of a whole in-memory (uncompressed) TFRecord stream."""
    view = memoryview(data)
    return [bytes(view[s : s + n]) for s, n in iter_spans(view, verify=verify)]
