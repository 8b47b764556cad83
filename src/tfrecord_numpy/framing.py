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
import numpy as np

from .errors import CorruptRecordError, Location, RecordTooLargeError, TFRecordError, TruncatedRecordError

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
    data_crc: int = _CRC.unpack_from(buf, start + length)[0]
    return masked_crc(buf[start : start + length]) == data_crc


_RESYNC_WINDOW = 1 << 20
_resync_tables: tuple[np.ndarray, np.ndarray, int] | None = None


def _crc_tables() -> tuple[np.ndarray, np.ndarray, int]:
    """CRC32C of an 8-byte length field whose top 4 bytes are zero, by linearity:
    ``crc(x) = lo[x & 0xFFFF] ^ hi[x >> 16] ^ crc(0)`` for the low 32 bits ``x``."""
    global _resync_tables
    if _resync_tables is None:
        zero = _crc(bytes(8))
        v = np.arange(1 << 16, dtype=np.uint32)
        lo = np.zeros(1 << 16, np.uint32)
        hi = np.zeros(1 << 16, np.uint32)
        for bit in range(16):
            on = ((v >> np.uint32(bit)) & np.uint32(1)).astype(bool)
            lo[on] ^= np.uint32(_crc((1 << bit).to_bytes(8, "little")) ^ zero)
            hi[on] ^= np.uint32(_crc((1 << (bit + 16)).to_bytes(8, "little")) ^ zero)
        _resync_tables = (lo, hi, zero)
    return _resync_tables


def find_header(
    buf: bytes | bytearray | memoryview,
    start: int,
    stop: int,
    *,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> int:
    """The first position in ``[start, stop)`` where a header with a valid length
    CRC and a length ``<= max_record_bytes`` starts, or ``stop`` if none.

    Vectorised (numpy over aligned 32-bit views, four phases), so skipping
    damaged data costs a few nanoseconds a byte instead of a Python loop
    iteration.  ``buf`` must hold the 12 header bytes of every position tried.
    """
    stop = min(stop, len(buf) - HEADER_BYTES + 1)
    if start >= stop:
        return max(start, stop)
    if max_record_bytes >= 1 << 32:  # lengths above 4 GiB: the plain loop (never the default)
        for p in range(start, stop):
            if check_header(buf, p, max_record_bytes=max_record_bytes) >= 0:
                return p
        return stop
    lo, hi, zero = _crc_tables()
    limit = np.uint32(max_record_bytes)
    zero_masked = np.uint32(mask_crc(zero))
    for w_start in range(start, stop, _RESYNC_WINDOW):
        w_stop = min(stop, w_start + _RESYNC_WINDOW)
        best = w_stop
        for phase in range(4):
            base = w_start + phase
            n = (w_stop - base + 3) // 4  # positions base, base + 4, ... below w_stop
            if n <= 0:
                continue
            words = np.frombuffer(buf, dtype="<u4", count=n + 2, offset=base)
            length, stored = words[:n], words[2 : n + 2]
            plausible = (words[1 : n + 1] == 0) & (length <= limit)
            # zero lengths (zeroed regions) need no table: their CRC is a constant
            empty = plausible & (length == 0)
            hits = np.flatnonzero(empty & (stored == zero_masked))
            others = np.flatnonzero(plausible & ~empty)
            if others.size:
                x = length[others]
                crc = lo[(x & 0xFFFF).astype(np.intp)] ^ hi[(x >> 16).astype(np.intp)] ^ np.uint32(zero)
                masked = ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(_MASK_DELTA)
                good = others[masked == stored[others]]
                if good.size:
                    hits = good if not hits.size else np.minimum(hits[:1], good[:1])
            if hits.size:
                best = min(best, base + 4 * int(hits[0]))
        if best < w_stop:
            return best
    return stop


def _first_false(ok: np.ndarray) -> int:
    bad = np.flatnonzero(~ok)
    return int(bad[0]) if bad.size else len(ok)


def _u32_at(u8: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The little-endian uint32 at each of ``positions`` in ``u8`` (a 4-byte window gather)."""
    rows = max(len(u8) - 3, 0)
    windows: np.ndarray = np.ndarray((rows, 4), dtype=np.uint8, buffer=u8, offset=0, strides=(1, 1))
    out: np.ndarray = windows[positions].view("<u4").ravel()
    return out


def _masked(crc: np.ndarray) -> np.ndarray:
    out: np.ndarray = ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(_MASK_DELTA)
    return out


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

    def _where(self) -> Location:
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

    def scan_block(
        self, buf: bytes | bytearray | memoryview
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, TFRecordError | None]:
        """:meth:`scan` for a whole block at once: ``(heads, lengths, indices,
        consumed, error)`` as arrays (``heads`` the header positions in ``buf``).

        A tight loop follows the chain of lengths; the size limit and both
        CRCs are then checked for all records at once (the data CRCs one C
        call each, no Python per record).  From the first record that is not
        plainly good, or an incomplete one at the end, :meth:`scan` takes over,
        so errors, skips, ``needed`` and the position are exactly its own.
        """
        view = memoryview(buf).cast("B") if not isinstance(buf, memoryview) else buf
        end = len(view)
        unpack = _LENGTH.unpack_from
        pos = 0
        chain = [0]
        push = chain.append
        stop = end - HEADER_BYTES
        while pos <= stop:
            pos += unpack(view, pos)[0] + OVERHEAD_BYTES
            push(pos)
        count = len(chain) - 1
        if chain[-1] > end:
            count -= 1  # the last one is incomplete (or its length absurd)
        empty = np.zeros(0, dtype=np.int64)
        heads = lengths = empty
        if count > 0 and not self._resyncing:
            bounds = np.array(chain[: count + 1], dtype=np.int64)
            heads = bounds[:-1]
            lengths = np.diff(bounds) - OVERHEAD_BYTES
            good = lengths <= min(self.max_record_bytes, 0xFFFFFFFF)
            if self.verify:
                u8 = np.frombuffer(view, dtype=np.uint8)
                lo, hi, zero = _crc_tables()
                x = np.where(good, lengths, 0).astype(np.uint32)
                crc = lo[(x & 0xFFFF).astype(np.intp)] ^ hi[(x >> 16).astype(np.intp)] ^ np.uint32(zero)
                good &= _u32_at(u8, heads + 8) == _masked(crc)
                count = _first_false(good)
                heads, lengths = heads[:count], lengths[:count]
                data_at = heads + HEADER_BYTES
                data_crc = np.fromiter(
                    map(_crc, map(view.__getitem__, map(slice, data_at.tolist(), (data_at + lengths).tolist()))),
                    dtype=np.uint32,
                    count=count,
                )
                good = _u32_at(u8, data_at + lengths) == _masked(data_crc)
            count = _first_false(good)
            heads, lengths = heads[:count], lengths[:count]
        else:
            count = 0
        indices = np.arange(self.index, self.index + count, dtype=np.int64)
        used = int(heads[-1] + lengths[-1]) + OVERHEAD_BYTES if count else 0
        self.index += count
        self.offset += used
        spans, more, error = self.scan(view[used:])  # the rest: damage, or a record still arriving
        if spans:
            heads = np.concatenate([heads, np.array([used + s - HEADER_BYTES for s, _, _, _ in spans], dtype=np.int64)])
            lengths = np.concatenate([lengths, np.array([n for _, n, _, _ in spans], dtype=np.int64)])
            indices = np.concatenate([indices, np.array([i for _, _, i, _ in spans], dtype=np.int64)])
        return heads, lengths, indices, used + more, error

    def _skip(self, error: TFRecordError) -> None:
        if not self._resyncing:
            self.skipped.append(error)

    def _scan(self, buf: bytes | bytearray | memoryview, spans: list[Span]) -> int:
        end = len(buf)
        pos = self._consumed = 0
        verify = self.verify
        self.needed = 0
        max_record_bytes = self.max_record_bytes
        while end - pos >= HEADER_BYTES:
            length = check_header(buf, pos, verify=verify, max_record_bytes=max_record_bytes)
            if length < 0:
                if self._resyncing:  # skip to the next plausible header at once
                    nxt = find_header(buf, pos + 1, end - HEADER_BYTES + 1, max_record_bytes=max_record_bytes)
                    self.offset += nxt - pos
                    pos = self._consumed = nxt
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
