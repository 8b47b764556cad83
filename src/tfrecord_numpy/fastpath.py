"""The fast path: find a feature's bytes inside an Example without protobuf.

An A2O record is an Example of four features; the embedding is a serialized
TensorProto inside a BytesList.  Walking the handful of tags by hand gives the
span of ``tensor_content`` inside the record buffer, so the embedding becomes
an ``np.frombuffer`` view with no copy at all.  Anything unusual -- a
duplicate key, an unknown field, unpacked lists, a Feature with two kinds --
returns ``None`` and the caller takes the general (TensorFlow-semantics) path.
"""

from __future__ import annotations

from . import _wire

BYTES_LIST, FLOAT_LIST, INT64_LIST = 1, 2, 3


def _fields(view: memoryview, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """``_wire.iter_fields`` limited to one-byte tags.

    TensorFlow's fast parser compares tags as single bytes (``0x0A``...), so a
    padded tag such as ``8A 00`` is a field it skips or rejects; decoding it
    here would give a value where the general path gives its answer.
    """
    out = []
    pos = start
    for f in _wire.iter_fields(view, start, end):
        if view[pos] >= 0x80:
            raise _wire.WireError("multi-byte tag")
        out.append(f)
        pos = f[3]  # the next field starts where this one's value ends
    return out


def feature_spans(view: memoryview) -> dict[str, tuple[int, int, int]] | None:
    """``{name: (kind, start, end)}`` of each feature's list message, or None if unusual."""
    out: dict[str, tuple[int, int, int]] = {}
    try:
        fields = _fields(view, 0, len(view))
        if len(fields) != 1 or fields[0][:2] != (1, _wire.LEN):
            return None if fields else out
        _, _, fstart, fend = fields[0]
        for field, wt, a, b in _fields(view, fstart, fend):
            if field != 1 or wt != _wire.LEN:
                return None
            entry = _fields(view, a, b)
            if len(entry) != 2 or entry[0][:2] != (1, _wire.LEN) or entry[1][:2] != (2, _wire.LEN):
                return None
            key = bytes(view[entry[0][2] : entry[0][3]]).decode("utf-8")
            if key in out:
                return None
            kinds = _fields(view, entry[1][2], entry[1][3])
            if len(kinds) != 1 or kinds[0][1] != _wire.LEN or kinds[0][0] not in (1, 2, 3):
                return None
            out[key] = (kinds[0][0], kinds[0][2], kinds[0][3])
    except (_wire.WireError, UnicodeDecodeError):
        return None
    return out


def single_bytes(view: memoryview, start: int, end: int) -> memoryview | None:
    """The one value of a BytesList, as a view; None unless exactly one packed value."""
    try:
        fields = _fields(view, start, end)
    except _wire.WireError:
        return None
    if len(fields) != 1 or fields[0][:2] != (1, _wire.LEN):
        return None
    return view[fields[0][2] : fields[0][3]]


def packed_payload(view: memoryview, start: int, end: int) -> memoryview | None:
    """The packed payload of a FloatList/Int64List (one LEN field 1), or None."""
    if start == end:
        return view[start:start]
    try:
        fields = _fields(view, start, end)
    except _wire.WireError:
        return None
    if len(fields) != 1 or fields[0][:2] != (1, _wire.LEN):
        return None
    return view[fields[0][2] : fields[0][3]]


def int64_values(view: memoryview, start: int, end: int) -> list[int] | None:
    payload = packed_payload(view, start, end)
    if payload is None:
        return None
    try:
        return [_wire.to_int64(v) for v in _wire.read_packed_varints(payload, 0, len(payload))]
    except _wire.WireError:
        return None
