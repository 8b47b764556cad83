"""The fast path: find the A2O features' bytes inside an Example without protobuf.

An A2O record is an Example of four features; the embedding is a serialized
TensorProto inside a BytesList.  One pass over the handful of tags gives the
span of each feature's value inside the record buffer, so the embedding
becomes an ``np.frombuffer`` view with no copy at all.

Anything unusual -- a duplicate key, an unknown field, unpacked lists, a
Feature with two kinds, a padded (multi-byte) tag -- returns ``None`` and the
caller takes the general path, which follows TensorFlow's own parser; the
fuzzer holds the two paths to the same answers.  Tags are compared as single
bytes, as TensorFlow's fast parser does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._wire import WireError, read_len32, read_packed_varints, to_int64
from ..errors import SchemaError
from ..tensor import numpy_dtype, tensor_header

#: how much of a record's start is read to locate its embedding's bytes
PREFIX_BYTES = 256

#: the features the notebook reads, with the one-byte tag of the list kind each must hold
A2O_FEATURES = {b"timestamp_s": 0x12, b"filename": 0x0A, b"embedding": 0x0A, b"embedding_shape": 0x1A}


def walk_entries(
    view: memoryview, p: int, end: int, found: dict[bytes, memoryview], starts: dict[bytes, int] | None = None
) -> bool:
    """Collect the A2O features among the map entries in ``view[p:end]`` into
    ``found`` (key -> the list's packed value; its offset in ``view`` into
    ``starts`` when given); False when anything is unusual."""
    try:
        while p < end:
            if view[p] != 0x0A:  # Features.feature (a map entry)
                return False
            n, p = read_len32(view, p + 1, end)
            e_end = p + n
            if e_end > end or p >= e_end or view[p] != 0x0A:  # entry.key
                return False
            n, q = read_len32(view, p + 1, e_end)
            k_end = q + n
            if k_end >= e_end or view[k_end] != 0x12:  # entry.value, the last field
                return False
            key = bytes(view[q:k_end])
            n, q = read_len32(view, k_end + 1, e_end)
            if q + n != e_end or q >= e_end:
                return False
            kind = view[q]  # the Feature's one field: its list
            n, r = read_len32(view, q + 1, e_end)
            if r + n != e_end:
                return False
            p = e_end
            want = A2O_FEATURES.get(key)
            if want is None:
                continue
            if kind != want or key in found or r >= e_end or view[r] != 0x0A:
                return False
            n, t = read_len32(view, r + 1, e_end)  # the list's one (packed) value field
            if t + n != e_end:
                return False
            found[key] = view[t:e_end]
            if starts is not None:
                starts[key] = t
    except WireError:
        return False
    return True


def a2o_fields(view: memoryview) -> tuple[memoryview, memoryview, memoryview, memoryview] | None:
    """Views of (``timestamp_s`` packed floats, ``filename``, ``embedding`` TensorProto,
    ``embedding_shape`` packed varints), or None when the record is unusual.

    Other features (Perch logits heads such as ``nuisances``) are skipped
    after checking their entry's framing; feature order does not matter.
    """
    end = len(view)
    found: dict[bytes, memoryview] = {}
    try:
        if end < 2 or view[0] != 0x0A:
            return None
        n, p = read_len32(view, 1, end)
        if p + n != end:
            return None
    except WireError:
        return None
    if not walk_entries(view, p, end, found) or len(found) != 4:
        return None
    return found[b"timestamp_s"], found[b"filename"], found[b"embedding"], found[b"embedding_shape"]


def packed_int64s(payload: memoryview) -> list[int] | None:
    """The values of a packed int64 payload, or None if malformed."""
    try:
        return [to_int64(v) for v in read_packed_varints(payload, 0, len(payload))]
    except WireError:
        return None


@dataclass
class EmbeddingLayout:
    """Where the embedding's bytes sit in a record's payload."""

    body_start: int  # the first map entry
    entry_start: int  # the embedding's map entry
    content_start: int
    content_len: int
    dtype: np.dtype
    shape: tuple[int, ...]


def embedding_layout(prefix: memoryview, length: int) -> EmbeddingLayout | None:
    """Find the embedding TensorProto's ``tensor_content`` from the first bytes of
    a payload of ``length`` bytes; None unless laid out as ``serialize_tensor`` writes."""
    end = len(prefix)
    try:
        if end < 2 or prefix[0] != 0x0A:
            return None
        n, p = read_len32(prefix, 1, end)
        if p + n != length:
            return None
        body_start = p
        while p < end:
            entry_start = p
            if prefix[p] != 0x0A:
                return None
            n, p = read_len32(prefix, p + 1, end)
            entry_end = p + n
            if p >= end or prefix[p] != 0x0A:
                return None
            n, q = read_len32(prefix, p + 1, end)
            if prefix[q : q + n].tobytes() != b"embedding":
                p = entry_end  # an entry before the embedding (embedding_shape, ...)
                continue
            q += n
            ends = []
            for tag in (0x12, 0x0A, 0x0A):  # entry.value, Feature.bytes_list, BytesList.value
                if q >= end or prefix[q] != tag:
                    return None
                n, q = read_len32(prefix, q + 1, end)
                ends.append(q + n)
            head = tensor_header(prefix[q:end])
            if head is None:
                return None
            dt, shape, content_rel, n = head
            dims = list(shape)
            if len(dims) != 3:
                return None
            q += content_rel
            # the tensor bytes close the TensorProto, the BytesList, the Feature and the entry
            if any(e != q + n for e in ends) or entry_end != q + n or entry_end > length:
                return None
            dtype = numpy_dtype(dt)
            if dtype.kind not in "fiuc" or n != dims[0] * dims[1] * dims[2] * dtype.itemsize:
                return None
            return EmbeddingLayout(body_start, entry_start, q, n, dtype, tuple(dims))
    except (WireError, SchemaError, IndexError):
        return None
    return None


class LayoutMemo:
    """:func:`embedding_layout` for a run of records: ``(layout, the payload's bytes
    before the tensor)``, or None.

    A record of the previous one's length whose bytes in front of the tensor
    are the previous one's has its layout (the same object), so it is not
    parsed again; a record that does not parse leaves the memory as it was.
    """

    def __init__(self) -> None:
        self._last: tuple[int, bytes, EmbeddingLayout] | None = None  # (length, head, layout)

    def __call__(self, prefix: memoryview, length: int) -> tuple[EmbeddingLayout, bytes] | None:
        last = self._last
        if last is not None and last[0] == length and prefix[: len(last[1])] == last[1]:
            return last[2], last[1]
        layout = embedding_layout(prefix, length)
        if layout is None:
            return None
        head = bytes(prefix[: layout.content_start])
        self._last = (length, head, layout)
        return layout, head


_OTHERS = {b"timestamp_s", b"filename", b"embedding_shape"}


def other_a2o_features(
    head: memoryview, layout: EmbeddingLayout, tail: memoryview, tail_starts: dict[bytes, int] | None = None
) -> tuple[memoryview, memoryview] | None:
    """``(filename, timestamp_s packed float)`` from the map entries before the
    embedding's (``head``) and after it (``tail``), with ``embedding_shape``
    checked against the layout's; None when they are not plainly there.
    ``tail_starts`` receives where the features found in ``tail`` start."""
    found: dict[bytes, memoryview] = {}
    if not walk_entries(head, layout.body_start, layout.entry_start, found):
        return None
    if not walk_entries(tail, 0, len(tail), found, tail_starts) or found.keys() != _OTHERS:
        return None
    ts, shape = found[b"timestamp_s"], packed_int64s(found[b"embedding_shape"])
    if len(ts) != 4 or shape is None or tuple(shape) != layout.shape:
        return None
    return found[b"filename"], ts


class OtherFeatures:
    """:func:`other_a2o_features` for a run of records, with the filename decoded:
    ``(filename, timestamp_s packed float)`` or None.

    Consecutive records of one recording differ after the tensor only in the
    4 bytes of ``timestamp_s``: where the layout is the previous record's
    (the same object: the same bytes before the tensor) and the tail the
    previous tail but for those 4 bytes, the entries are not walked again.
    """

    def __init__(self) -> None:
        # (layout, tail bytes, where timestamp_s starts in the tail, filename)
        self._last: tuple[EmbeddingLayout, bytes, int, str] | None = None

    def __call__(self, head: memoryview, layout: EmbeddingLayout, tail: memoryview) -> tuple[str, memoryview] | None:
        last = self._last
        if last is not None and last[0] is layout and len(tail) == len(last[1]):
            a = last[2]
            if tail[:a] == last[1][:a] and tail[a + 4 :] == last[1][a + 4 :]:
                return last[3], tail[a : a + 4]
        starts: dict[bytes, int] = {}
        found = other_a2o_features(head, layout, tail, starts)
        if found is None:
            return None
        try:
            filename = bytes(found[0]).decode("utf-8")
        except UnicodeDecodeError:
            return None
        ts_at = starts.get(b"timestamp_s")
        self._last = None if ts_at is None else (layout, bytes(tail), ts_at, filename)
        return filename, found[1]
