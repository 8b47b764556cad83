"""One TFRecord file read as byte-range splits, without index files.

A TFRecord file has no index, so a reader that starts at byte ``X`` of it
does not know where the next record begins.  A *split* ``[start, end)`` owns
every record whose first byte (its 12-byte header) lies in that range.  It
finds its first record by scanning forward from ``start`` for a header whose
length CRC **and** payload CRC both check out (:func:`find_record_start`,
sans-I/O), then follows the chain of lengths from there, reading past ``end``
to finish its last record (:func:`iter_split_records`).

Scanning can be fooled: a payload may itself contain a complete framed
record (a TFRecord file stored in a TFRecord, or a hostile writer), and a
scan that starts inside such a payload syncs on that *fake* header.  So the
scan result is never trusted alone.  Each split reports

* ``sync``: where it started (found by scanning, or given as known), and
* ``end_boundary``: where its chain of records crossed ``end`` -- the start
  of the first record at or after ``end`` (or the file size).

Split 0 starts at byte 0, a known boundary, so its chain is the true chain
and its ``end_boundary`` is a true record start.  By induction, split ``i``
is correct exactly when ``sync == end_boundary`` of the verified split
``i - 1``; when not, the coordinator (:func:`reconcile_splits`) re-runs split
``i`` from that known boundary -- and a run from a known boundary does not
scan at all, it parses the chain from there.  Every record of the file is then
delivered exactly once, in order, whatever the payloads contain.  In the
common case (no fakes) nothing is re-run, and the only serial work is the
comparison of a few integers.

Compressed files (gzip/zlib) cannot be entered in the middle:
:func:`plan_splits` gives them a single split.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from fsspec.core import url_to_fs

from .errors import TFRecordError
from .framing import (
    DEFAULT_MAX_RECORD_BYTES,
    FOOTER_BYTES,
    HEADER_BYTES,
    RecordScanner,
    check_footer,
    check_header,
    find_header,
)
from .storage import compression_from_name, normalize_compression, sniff_compression

__all__ = [
    "NeedMore",
    "SplitReport",
    "SplitRecords",
    "find_record_start",
    "iter_split_records",
    "plan_splits",
    "reconcile_splits",
    "is_compressed",
    "shift_error",
]

DEFAULT_SPLIT_CHUNK_BYTES = 4 << 20
_SYNC_CHUNK_BYTES = 1 << 20
_MIN_READ = 64 << 10


# --------------------------------------------------------------------------- sans-I/O


@dataclass(frozen=True)
class NeedMore:
    """:func:`find_record_start` cannot decide yet.

    Drop the buffer's bytes before absolute offset ``keep`` (no record starts
    there), then call again with at least ``want`` bytes from ``keep`` on (or
    with ``at_eof=True`` if the file ends first).
    """

    keep: int
    want: int


def find_record_start(
    buf: bytes | bytearray | memoryview,
    base: int,
    *,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    at_eof: bool = False,
) -> int | NeedMore | None:
    """The first offset in ``buf`` where a whole, CRC-valid record starts.

    ``buf`` holds the stream's bytes from absolute offset ``base``.  Returns
    the absolute offset of the first position whose 12-byte header has a
    matching length CRC, a length ``<= max_record_bytes`` and a payload whose
    CRC matches too; :class:`NeedMore` when that needs bytes not yet in
    ``buf``; ``None`` when ``at_eof`` and no record starts in ``buf``.
    A candidate header can ask for at most ``max_record_bytes + 16`` bytes,
    which bounds the caller's buffer.
    """
    view = memoryview(buf).cast("B") if not isinstance(buf, memoryview) else buf.cast("B")
    n = len(view)
    positions = n - HEADER_BYTES + 1
    p = 0
    while p < positions:
        # the framing's vectorised header search, then the payload CRC decides
        p = find_header(view, p, positions, max_record_bytes=max_record_bytes)
        if p >= positions:
            break
        length = check_header(view, p, max_record_bytes=max_record_bytes)
        total = HEADER_BYTES + length + FOOTER_BYTES
        if p + total > n:
            if not at_eof:
                return NeedMore(keep=base + p, want=total)
        elif check_footer(view, p + HEADER_BYTES, length):
            return base + p
        p += 1  # cannot be a whole record (the file ends first) or its payload CRC fails
    if at_eof:
        return None
    keep = max(0, positions)
    return NeedMore(keep=base + keep, want=HEADER_BYTES)


# --------------------------------------------------------------------------- planning


def is_compressed(
    source: str | os.PathLike[str],
    *,
    compression: str | None = "auto",
    storage_options: dict[str, Any] | None = None,
) -> bool:
    """Whether ``source`` is gzip/zlib, decided as :func:`.storage.open_source` does
    (explicit argument, then suffix, then the gzip magic bytes)."""
    compression = normalize_compression(compression)
    if compression != "auto":
        return compression is not None
    name = os.fspath(source)
    if compression_from_name(name) is not None:
        return True
    fs, path = url_to_fs(name, **(storage_options or {}))
    with fs.open(path, "rb") as f:
        return sniff_compression(f.read(HEADER_BYTES)) is not None


def plan_splits(
    source: str | os.PathLike[str],
    *,
    split_bytes: int,
    storage_options: dict[str, Any] | None = None,
    compression: str | None = "auto",
    size: int | None = None,
) -> list[tuple[int, int]]:
    """Byte ranges ``[(start, end), ...]`` covering ``[0, size)`` of ``source``.

    Uncompressed files get ranges of about ``split_bytes`` (the last one may
    be shorter); compressed ones, and files of at most ``split_bytes``, get
    one range for the whole file.  An empty file gets ``[(0, 0)]``.
    """
    if split_bytes is None or int(split_bytes) <= 0:
        raise ValueError(f"split_bytes must be a positive integer, not {split_bytes!r}")
    split_bytes = int(split_bytes)
    if size is None:
        fs, path = url_to_fs(os.fspath(source), **(storage_options or {}))
        size = int(fs.size(path))
    if size <= split_bytes or is_compressed(source, compression=compression, storage_options=storage_options):
        return [(0, size)]
    n = -(-size // split_bytes)
    bounds = [size * i // n for i in range(n + 1)]  # even sizes, none tiny
    return [(bounds[i], bounds[i + 1]) for i in range(n)]


# --------------------------------------------------------------------------- reading a split


@dataclass
class SplitReport:
    """What one split saw; the coordinator checks ``sync`` against the
    previous split's ``end_boundary`` (see the module docstring).

    ``records`` counts the records delivered (their starts in ``[start, end)``);
    ``error`` is the :class:`TFRecordError` that stopped the split, if any
    (meaningful only once the split is verified: a split that synced on a
    fake header often ends in an error that the true chain does not have).
    """

    start: int
    end: int
    sync: int
    end_boundary: int | None
    records: int = 0
    known_start: bool = False
    error: TFRecordError | None = None
    #: index of this split's first record in the whole file; set by reconcile_splits
    index_base: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class SplitRecords:
    """Iterate ``(index_in_split, offset, view)`` over the records of one split.

    Made by :func:`iter_split_records`.  After (or during) iteration,
    :attr:`sync` and :attr:`end_boundary` say where the split started and
    where its chain crossed ``end``; :meth:`report` packs them up.  Views are
    valid only until the next record is requested.
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        start: int,
        end: int,
        *,
        known_start: bool = False,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        storage_options: dict[str, Any] | None = None,
        chunk_bytes: int = DEFAULT_SPLIT_CHUNK_BYTES,
        size: int | None = None,
    ) -> None:
        if start < 0 or end < 0:
            raise ValueError(f"bad split [{start}, {end})")
        # a re-run may start at a known boundary past ``end``: then it is empty
        self.source = os.fspath(source)
        self.start = int(start)
        self.end = int(end)
        self.known_start = bool(known_start) or self.start == 0
        self.max_record_bytes = int(max_record_bytes)
        self.storage_options = dict(storage_options or {})
        self.chunk_bytes = max(int(chunk_bytes), HEADER_BYTES)
        self.size = size
        self.sync: int | None = None
        self.end_boundary: int | None = None
        self.records = 0
        self._used = False

    def report(self, error: TFRecordError | None = None) -> SplitReport:
        return SplitReport(
            start=self.start,
            end=self.end,
            sync=self.sync if self.sync is not None else -1,
            end_boundary=self.end_boundary,
            records=self.records,
            known_start=self.known_start,
            error=error,
        )

    def __iter__(self) -> Iterator[tuple[int, int, memoryview]]:
        if self._used:
            raise RuntimeError("a SplitRecords can be iterated once")
        self._used = True
        fs, path = url_to_fs(self.source, **self.storage_options)
        if self.size is None:
            self.size = int(fs.size(path))
        with fs.open(path, "rb") as f:
            yield from self._iter(f)

    def _sync(self, f: Any) -> tuple[int | None, bytearray]:
        """Scan from ``start`` for the first verified record; returns it and the
        bytes already read from it on."""
        f.seek(self.start)
        base = self.start
        buf = bytearray()
        eof = False
        while True:
            found = find_record_start(buf, base, max_record_bytes=self.max_record_bytes, at_eof=eof)
            if found is None:
                return None, bytearray()
            if isinstance(found, int):
                return found, buf[found - base :]
            # new buffers, not in-place resizes: a view of the old one may still be
            # alive (numpy's scan) and a resize under an export raises BufferError
            buf = buf[found.keep - base :]
            base = found.keep
            need = max(found.want - len(buf), 1)
            data = f.read(max(need, _SYNC_CHUNK_BYTES))
            if not data:
                eof = True
            else:
                buf = buf + data

    def _iter(self, f: Any) -> Iterator[tuple[int, int, memoryview]]:
        size = self.size
        assert size is not None
        if self.known_start:
            self.sync = self.start
            f.seek(self.start)
            head = bytearray()
        else:
            sync, head = self._sync(f)
            self.sync = size if sync is None else sync
        if self.sync >= self.end:  # no record starts in this split
            self.end_boundary = self.sync
            return
        scanner = RecordScanner(max_record_bytes=self.max_record_bytes, path=self.source, index=0, offset=self.sync)
        buf = bytearray(max(self.chunk_bytes, len(head)))
        view = memoryview(buf)
        filled = len(head)
        view[:filled] = head
        file_pos = self.sync + filled  # absolute offset of the next byte to read
        end = self.end
        while True:
            if filled:
                spans, used, error = scanner.scan(view[:filled])
                for pstart, length, index, offset in spans:
                    if offset >= end:
                        self.end_boundary = offset
                        return
                    self.records += 1
                    yield index, offset, view[pstart : pstart + length]
                if error is not None:
                    if error.offset is not None and error.offset >= end:
                        # damage in the next split's first record: its business
                        self.end_boundary = error.offset
                        return
                    raise error
                if used:
                    left = filled - used
                    view[:left] = bytes(view[used:filled]) if left else b""
                    filled = left
                if scanner.offset >= end:
                    self.end_boundary = scanner.offset
                    return
            if filled == len(buf):
                # the record at the front does not fit: grow, never past its need
                size_new = len(buf) * 2
                if scanner.needed:
                    size_new = min(size_new, max(scanner.needed, len(buf) + 1))
                view.release()
                new = bytearray(size_new)
                new[:filled] = buf[:filled]
                buf = new
                view = memoryview(buf)
            # read up to ``end`` (and at least the rest of the record in hand)
            want = max(end - file_pos, (scanner.needed or HEADER_BYTES) - filled, _MIN_READ)
            want = min(want, len(buf) - filled)
            data = f.read(want)
            if not data:
                scanner.finish(filled)  # raises on a partial record
                self.end_boundary = scanner.offset
                return
            n = len(data)
            view[filled : filled + n] = data
            filled += n
            file_pos += n


def iter_split_records(
    source: str | os.PathLike[str],
    start: int,
    end: int,
    *,
    known_start: bool = False,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    storage_options: dict[str, Any] | None = None,
    chunk_bytes: int = DEFAULT_SPLIT_CHUNK_BYTES,
    size: int | None = None,
) -> SplitRecords:
    """The records whose start offset lies in ``[start, end)`` of an uncompressed file.

    Unless ``start`` is 0 or ``known_start`` is true, the split first scans
    for a verified record start (:func:`find_record_start`); from a known
    start it parses directly and a bad header there is an error, never a
    reason to scan.  Iterate the result for ``(index_in_split, offset,
    view)``; then read ``.sync`` / ``.end_boundary`` (or ``.report()``) and
    let :func:`reconcile_splits` verify them.  Both CRCs of every record are
    checked; errors carry the split-relative record index (the coordinator
    shifts it by :attr:`SplitReport.index_base`).
    """
    return SplitRecords(
        source,
        start,
        end,
        known_start=known_start,
        max_record_bytes=max_record_bytes,
        storage_options=storage_options,
        chunk_bytes=chunk_bytes,
        size=size,
    )


# --------------------------------------------------------------------------- the coordinator


def reconcile_splits(
    reports: Sequence[SplitReport],
    rerun: Callable[[int, int], SplitReport],
) -> list[SplitReport]:
    """Verify a file's split reports in order; re-run those that synced wrongly.

    ``reports[i]`` is split ``i``'s report (splits in file order, the first
    starting at 0).  Split ``i`` is accepted when its ``sync`` equals the
    ``end_boundary`` of the accepted split ``i - 1`` (0 for the first);
    otherwise ``rerun(i, boundary)`` must read split ``i`` again from that
    known ``boundary`` (``known_start=True``: no scan) and return its report.
    Returns the accepted reports with :attr:`SplitReport.index_base` set; it
    stops after the first accepted report that carries an ``error`` (the
    chain is broken there: the caller raises that error, shifted by
    ``index_base``).
    """
    out: list[SplitReport] = []
    boundary = 0
    index = 0
    for i, report in enumerate(reports):
        if report.sync != boundary:
            report = rerun(i, boundary)
            if report.sync != boundary:  # pragma: no cover - a broken rerun callback
                raise RuntimeError(f"split {i} re-run from {boundary} reports sync {report.sync}")
        report.index_base = index
        out.append(report)
        if report.error is not None:
            return out
        if report.end_boundary is None:  # pragma: no cover - defensive
            raise RuntimeError(f"split {i} has no end boundary")
        boundary = report.end_boundary
        index += report.records
    return out


def shift_error(error: TFRecordError, index_base: int | None) -> TFRecordError:
    """A copy of a split-relative error, made file-relative (record index shifted).

    A copy, because one report (and its error) may be shared by several
    readers, as under dask's threaded scheduler.
    """
    shifted = copy.copy(error)  # TFRecordError.__reduce__ rebuilds it
    if shifted.index is not None and index_base:
        shifted.index += index_base
        shifted.args = (shifted._format(),)
    return shifted
