"""``tf.train.Example`` to numpy and back, without TensorFlow.

There are two readers on purpose, because protobuf and TensorFlow do not
agree on odd input and callers need to be able to pick the one they mean:

* ``parse_example(data)`` (no spec) gives **protobuf's** view of the record:
  every feature, by upb's rules (the runtime behind protobuf 4.25 to 7.x):
  repeated ``features`` fields merge, the last map entry for a key wins, a map
  entry carrying an unknown field is dropped, the last oneof member set wins,
  split packed chunks concatenate, keys must be valid UTF-8.
* ``parse_example(data, spec)`` reproduces ``tf.io.parse_single_example``,
  i.e. TensorFlow's fast parser (``FastParseSingleExample`` in
  ``tensorflow/core/util/example_proto_fast_parsing.cc``): only the first
  packed chunk of a list is read, the first oneof member wins, a map entry
  must hold exactly a key and a value, unknown fields are an error inside
  ``Features`` but ignored inside a ``Feature``, entries are visited last to
  first (so the last duplicate wins and decides which error is reported), and
  the error messages follow TensorFlow's.

Both walk the wire format by hand (``_wire``): protobuf's own parser would
copy every bytes value twice and turn float32 into Python floats (losing
signalling-NaN payloads).  Here a bytes value costs one copy and floats are
decoded with ``np.frombuffer('<f4')``, bit for bit.

``encode_example`` writes what protobuf's deterministic serializer (upb) writes
for the same Example, map order included, so re-encoding a parsed record of
the A2O corpus gives back its exact bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np

from ._wire import EGROUP, I32, I64, LEN, SGROUP, VARINT, WireError, encode_varint, read_varint
from .errors import DecodeError, SchemaError, TFRecordError
from .reader import iter_records

if TYPE_CHECKING:
    from .storage import Sources

__all__ = [
    "FixedLenFeature",
    "SparseValue",
    "VarLenFeature",
    "encode_example",
    "parse_example",
    "read_examples",
]

_FLOAT, _INT64, _STRING = "float32", "int64", "string"
# DataTypeString() spellings, used verbatim in TensorFlow's messages
_TF_NAME = {_FLOAT: "float", _INT64: "int64", _STRING: "string"}
_NP_DTYPE: dict[str, np.dtype] = {_FLOAT: np.dtype(np.float32), _INT64: np.dtype(np.int64), _STRING: np.dtype(object)}
_LIST_NAME = {_FLOAT: "float_list", _INT64: "int64_list", _STRING: "bytes_list"}
# Feature's oneof: field number -> kind, and TF's one-byte tag -> kind
_BYTES_F, _FLOAT_F, _INT64_F = 1, 2, 3
_TF_KIND = {0x0A: _STRING, 0x12: _FLOAT, 0x1A: _INT64}
_KIND_FIELD = {_STRING: _BYTES_F, _FLOAT: _FLOAT_F, _INT64: _INT64_F}
_DTYPE_NAMES = {
    "float32": _FLOAT,
    "float": _FLOAT,
    "int64": _INT64,
    "string": _STRING,
    "bytes": _STRING,
    "str": _STRING,
    "object": _STRING,
}

_EMPTY_F32 = np.empty(0, np.float32)
_EMPTY_I64 = np.empty(0, np.int64)
_MAX_DEPTH = 100  # upb's default recursion limit (python runtime passes 0 = default)
_SMALL_VARINTS = 48  # below this many bytes a Python loop beats numpy set-up

BytesLike = bytes | bytearray | memoryview
#: one piece of a Feature's values as the protobuf walk gathers them: a bytes
#: value, the (start, end) span of packed floats, an int64 or an array of them
_Chunk = bytes | tuple[int, int] | int | np.ndarray


# --------------------------------------------------------------------------- specs


def _norm_dtype(dtype: Any) -> str:
    """One spelling per kind, so specs compare equal however they were written."""
    if isinstance(dtype, str):
        try:
            return _DTYPE_NAMES[dtype.lower()]
        except KeyError:
            raise ValueError(f"unsupported feature dtype {dtype!r}; use 'float32', 'int64' or 'string'") from None
    name = getattr(dtype, "name", None)  # a tf.DType-like object
    if not isinstance(dtype, (np.dtype, type)) and isinstance(name, str) and name in _DTYPE_NAMES:
        return _DTYPE_NAMES[name]
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"unsupported feature dtype {dtype!r}; use 'float32', 'int64' or 'string'") from None
    if dt == np.float32:
        return _FLOAT
    if dt == np.int64:
        return _INT64
    if dt.kind in "SUO":
        return _STRING
    raise ValueError(f"unsupported feature dtype {dtype!r}: tf.Example holds only float32, int64 and bytes")


def _norm_shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be a sequence of ints, not {shape!r}") from None
    out = []
    for d in dims:
        if d is None or isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
            raise ValueError(f"FixedLenFeature needs a fully defined shape of non-negative ints, got {shape!r}")
        out.append(int(d))
    return tuple(out)


def _to_bytes(x: Any) -> bytes:
    if isinstance(x, bytes):
        return bytes(x)  # np.bytes_ -> plain bytes
    if isinstance(x, str):
        return x.encode("utf-8")
    if isinstance(x, (bytearray, memoryview)):
        return bytes(x)
    raise TypeError(f"a string feature value must be bytes or str, not {type(x).__name__}")


def _object_array(items: list[bytes]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _norm_default(value: Any, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    size = math.prod(shape)
    if dtype == _STRING:
        flat = _object_array([_to_bytes(x) for x in np.array(value, dtype=object).ravel().tolist()])
        arr = flat
    else:
        arr = np.asarray(value, dtype=_NP_DTYPE[dtype])
    if arr.size != size:
        raise ValueError(f"default_value has {arr.size} values but shape {list(shape)} holds {size}")
    arr = arr.reshape(shape)
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class FixedLenFeature:
    """A dense feature of a fixed ``shape``, like ``tf.io.FixedLenFeature``.

    ``dtype`` is ``"float32"``, ``"int64"`` or ``"string"`` (numpy dtypes and
    ``bytes``/``str``/``object`` are accepted and normalized).  Without a
    ``default_value`` the feature is required.  ``default_value`` is stored as
    a read-only array of the spec's shape, so a wrong size fails here, early.
    """

    shape: Sequence[int]
    dtype: Any
    default_value: Any = None

    def __post_init__(self) -> None:
        shape = _norm_shape(self.shape)
        dtype = _norm_dtype(self.dtype)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "dtype", dtype)
        if self.default_value is not None:
            object.__setattr__(self, "default_value", _norm_default(self.default_value, shape, dtype))

    def _key(self) -> tuple[object, ...]:
        d = self.default_value
        if d is None:
            dk: Any = None
        elif self.dtype == _STRING:
            dk = tuple(d.ravel().tolist())
        else:
            dk = d.tobytes()  # bitwise, so NaN defaults compare equal to themselves
        return (self.shape, self.dtype, dk)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FixedLenFeature):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True)
class VarLenFeature:
    """A feature of any length, returned as a :class:`SparseValue`."""

    dtype: Any

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", _norm_dtype(self.dtype))


class SparseValue(NamedTuple):
    """What ``tf.io.parse_single_example`` returns for a VarLenFeature (a SparseTensor).

    ``indices`` is int64 ``[n, 1]`` (0..n-1), ``values`` the n values (float32,
    int64 or an object array of bytes), ``dense_shape`` int64 ``[1]`` = ``[n]``.
    """

    indices: np.ndarray
    values: np.ndarray
    dense_shape: np.ndarray


Spec = Mapping[str, FixedLenFeature | VarLenFeature]


def _sparse(values: np.ndarray) -> SparseValue:
    n = len(values)
    return SparseValue(np.arange(n, dtype=np.int64).reshape(n, 1), values, np.array([n], dtype=np.int64))


# --------------------------------------------------------------------------- numbers


def _decode_varints(buf: Any, start: int, end: int) -> np.ndarray:
    """Packed varints in ``buf[start:end]`` as int64 (two's complement), exactly.

    Vectorized for long runs so a big int64 list costs no per-value Python;
    raises ``WireError`` on a truncated or over-long (>10 byte) varint, which
    is where both protobuf and TensorFlow give up.
    """
    n = end - start
    if n <= 0:
        empty: np.ndarray = _EMPTY_I64.copy()
        return empty
    if n < _SMALL_VARINTS:
        vals = []
        pos = start
        while pos < end:
            v, pos = read_varint(buf, pos, end)
            vals.append(v)
        return np.array(vals, dtype=np.uint64).view(np.int64)
    raw = np.frombuffer(buf, dtype=np.uint8, count=n, offset=start)
    last = raw < 0x80
    if not last[-1]:
        raise WireError("truncated varint")
    ends = np.flatnonzero(last)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    if int((ends - starts).max()) >= 10:
        raise WireError("varint too long")
    which: np.ndarray = np.cumsum(last) - last  # index of the varint each byte belongs to
    shift = (np.arange(n) - starts[which]).astype(np.uint64) * np.uint64(7)
    parts = (raw & 0x7F).astype(np.uint64) << shift  # disjoint bits: sum == or
    return np.add.reduceat(parts, starts).view(np.int64)


_POW7 = [np.uint64(1 << (7 * k)) for k in range(1, 10)]


def _encode_varints(values: np.ndarray) -> bytes:
    """int64 values as packed varints (negatives take 10 bytes, as protobuf writes them)."""
    u = np.ascontiguousarray(values, dtype=np.int64).view(np.uint64)
    if len(u) < _SMALL_VARINTS:
        return b"".join(encode_varint(int(v)) for v in u.tolist())
    nbytes = np.ones(len(u), dtype=np.int64)
    for p in _POW7:
        nbytes += u >= p
    out = np.empty(int(nbytes.sum()), dtype=np.uint8)
    offs = np.cumsum(nbytes) - nbytes
    for j in range(10):
        m = nbytes > j
        if not m.any():
            break
        byte = ((u[m] >> np.uint64(7 * j)) & np.uint64(0x7F)).astype(np.uint8)
        byte |= (nbytes[m] - 1 > j).astype(np.uint8) << np.uint8(7)
        out[offs[m] + j] = byte
    return out.tobytes()


def _floats(buf: Any, spans: list[tuple[int, int]]) -> np.ndarray:
    """Float32 values stored little-endian at ``spans``, bitwise, in a fresh array."""
    if not spans:
        empty: np.ndarray = _EMPTY_F32.copy()
        return empty
    views = [np.frombuffer(buf, dtype="<f4", count=(b - a) // 4, offset=a) for a, b in spans if b > a]
    if not views:
        no_values: np.ndarray = _EMPTY_F32.copy()
        return no_values
    if len(views) == 1:
        return views[0].astype(np.float32)  # astype copies: never alias the record
    return np.concatenate(views).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- protobuf's view


def _as_buffer(data: Any) -> bytes | memoryview:
    """Index-able bytes without copying (a ``bytes`` or a 1-D byte memoryview)."""
    if isinstance(data, bytes):
        return data
    try:
        mv = memoryview(data)
    except TypeError:
        raise TypeError(f"expected a serialized Example (bytes-like), got {type(data).__name__}") from None
    if mv.c_contiguous:
        return mv.cast("B") if (mv.format != "B" or mv.ndim != 1) else mv
    return mv.tobytes()


def _pb_raw_tag(buf: Any, pos: int, end: int) -> tuple[int, int]:
    """A tag as upb reads one: at most 5 bytes, fitting 32 bits; (tag, next position)."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    tag, p = read_varint(buf, pos, end)
    if p - pos > 5 or tag > 0xFFFFFFFF:
        raise WireError("malformed tag")
    return tag, p


def _pb_tag(buf: Any, pos: int, end: int) -> tuple[int, int, int]:
    """upb's tag rules: at most 5 bytes, fits 32 bits, no field 0, no stray end-group."""
    tag, pos = _pb_raw_tag(buf, pos, end)
    field, wt = tag >> 3, tag & 7
    if wt == EGROUP:
        raise WireError("end-group without a start-group")
    if field == 0:
        raise WireError("field number 0")
    return field, wt, pos


def _pb_len(buf: Any, pos: int, end: int) -> tuple[int, int]:
    """A length prefix (upb: at most 5 bytes, < 2**31-1, inside the message)."""
    n, p = read_varint(buf, pos, end)
    if p - pos > 5 or n >= 0x7FFFFFFF:
        raise WireError("malformed length")
    if n > end - p:
        raise WireError("length-delimited field runs past the end of its message")
    return p, p + n


def _pb_skip(buf: Any, pos: int, end: int, field: int, wt: int, depth: int) -> int:
    """Skip an unknown field's value (groups included, as upb does)."""
    if wt == VARINT:
        return read_varint(buf, pos, end)[1]
    if wt == LEN:
        return _pb_len(buf, pos, end)[1]
    if wt == I32 or wt == I64:
        size = 4 if wt == I32 else 8
        if end - pos < size:
            raise WireError("truncated fixed-width field")
        return pos + size
    if wt == SGROUP:
        depth -= 1
        if depth < 0:
            raise WireError("nesting too deep")
        while pos < end:
            tag, pos = _pb_raw_tag(buf, pos, end)
            f, w = tag >> 3, tag & 7
            if w == EGROUP:
                if f != field:
                    raise WireError("mismatched end-group")
                return pos
            # no "field number 0" check here: upb skips an unknown group's
            # contents without one (only the top-level tag reader refuses 0)
            pos = _pb_skip(buf, pos, end, f, w, depth)
        raise WireError("unterminated group")
    raise WireError(f"invalid wire type {wt}")


def _pb_list(buf: Any, pos: int, end: int, kind: int, chunks: list[_Chunk], depth: int) -> None:
    """One BytesList/FloatList/Int64List, appended to ``chunks`` (merge semantics)."""
    if depth < 0:
        raise WireError("nesting too deep")
    while pos < end:
        field, wt, pos = _pb_tag(buf, pos, end)
        if field == 1:
            if wt == LEN:
                s, pos = _pb_len(buf, pos, end)
                if kind == _BYTES_F:
                    # copied now: a (start, end) span costs ~60 bytes per value,
                    # while a 0- or 1-byte bytes object is a shared singleton
                    chunks.append(bytes(buf[s:pos]))
                elif kind == _FLOAT_F:
                    if (pos - s) & 3:
                        raise WireError("packed float list length is not a multiple of 4")
                    chunks.append((s, pos))
                elif pos - s < _SMALL_VARINTS:
                    # short chunks as plain ints: an array per 3-byte chunk would cost
                    # ~40 bytes of allocation per input byte
                    while s < pos:
                        v, s = read_varint(buf, s, pos)
                        chunks.append(v)
                else:
                    chunks.append(_decode_varints(buf, s, pos))
                continue
            if wt == I32 and kind == _FLOAT_F:
                if end - pos < 4:
                    raise WireError("truncated fixed32")
                chunks.append((pos, pos + 4))
                pos += 4
                continue
            if wt == VARINT and kind == _INT64_F:
                v, pos = read_varint(buf, pos, end)
                chunks.append(v)
                continue
        pos = _pb_skip(buf, pos, end, field, wt, depth)  # unknown, or known with a wrong wire type


def _pb_feature(buf: Any, pos: int, end: int, kind: int, chunks: list[_Chunk], depth: int) -> tuple[int, list[_Chunk]]:
    """A Feature merged into (kind, chunks): same oneof member merges, another replaces."""
    if depth < 0:
        raise WireError("nesting too deep")
    while pos < end:
        field, wt, pos = _pb_tag(buf, pos, end)
        if wt == LEN and 1 <= field <= 3:
            s, pos = _pb_len(buf, pos, end)
            if field != kind:
                kind, chunks = field, []
            _pb_list(buf, s, pos, field, chunks, depth - 1)
        else:
            pos = _pb_skip(buf, pos, end, field, wt, depth)
    return kind, chunks


def _pb_repeated(buf: Any, pos: int, end: int, depth: int, read: Callable[[int, int, int], None]) -> None:
    """Each ``field 1`` (LEN) of a message, as upb walks it: ``read(start, end, depth)``;
    other fields skipped (groups included)."""
    if depth < 0:
        raise WireError("nesting too deep")
    while pos < end:
        field, wt, pos = _pb_tag(buf, pos, end)
        if field == 1 and wt == LEN:
            s, pos = _pb_len(buf, pos, end)
            read(s, pos, depth - 1)
        else:
            pos = _pb_skip(buf, pos, end, field, wt, depth)


def _pb_map_entry(buf: Any, pos: int, end: int, depth: int, read_value: Callable[[int, int, int], None]) -> str | None:
    """A ``map<string, Message>`` entry: its key, with ``read_value(start, end, depth)``
    merging each value; None when the entry carries an unknown field (upb drops it)."""
    if depth < 0:
        raise WireError("nesting too deep")
    key = ""
    clean = True
    while pos < end:
        field, wt, pos = _pb_tag(buf, pos, end)
        if field == 1 and wt == LEN:
            s, pos = _pb_len(buf, pos, end)
            try:
                key = str(buf[s:pos], "utf-8")
            except UnicodeDecodeError:
                raise WireError("map key is not valid UTF-8") from None
        elif field == 2 and wt == LEN:
            s, pos = _pb_len(buf, pos, end)
            read_value(s, pos, depth - 1)
        else:
            clean = False
            pos = _pb_skip(buf, pos, end, field, wt, depth)
    return key if clean else None


def _pb_features(buf: Any, pos: int, end: int, out: dict[str, tuple[int, list[_Chunk]]], depth: int) -> None:
    """``Features.feature``: a map of name -> (kind, value chunks)."""
    _pb_repeated(buf, pos, end, depth, lambda s, e, d: _pb_entry(buf, s, e, out, d))


def _pb_entry(buf: Any, pos: int, end: int, out: dict[str, tuple[int, list[_Chunk]]], depth: int) -> None:
    """A ``Features`` map entry; a repeated value merges into the Feature read so far."""
    value: list[Any] = [0, []]  # kind, chunks

    def read(s: int, e: int, d: int) -> None:
        value[0], value[1] = _pb_feature(buf, s, e, value[0], value[1], d)

    key = _pb_map_entry(buf, pos, end, depth, read)
    if key is not None:
        out[key] = (value[0], value[1])


def _pb_value(buf: Any, kind: int, chunks: list[_Chunk]) -> np.ndarray | list[bytes]:
    if kind == _BYTES_F:
        return cast("list[bytes]", list(chunks))  # already bytes (see _pb_list)
    if kind == _FLOAT_F:
        return _floats(buf, cast("list[tuple[int, int]]", chunks))
    if kind == _INT64_F:
        if not chunks:
            empty: np.ndarray = _EMPTY_I64.copy()
            return empty
        if len(chunks) == 1 and isinstance(chunks[0], np.ndarray):
            return chunks[0]
        parts: list[np.ndarray] = []
        run: list[int] = []
        for c in chunks:
            if isinstance(c, int):
                run.append(c)
                continue
            if run:
                parts.append(np.array(run, dtype=np.uint64).view(np.int64))
                run = []
            parts.append(cast(np.ndarray, c))  # ints or arrays in an int64 list
        if run:
            parts.append(np.array(run, dtype=np.uint64).view(np.int64))
        return np.concatenate(parts)
    unset: np.ndarray = _EMPTY_F32.copy()  # no oneof member set: an empty float32 list
    return unset


def _pb_message(buf: Any, what: str, read: dict[int, Callable[[int, int, int], None]]) -> None:
    """A top-level message as upb walks it: ``read[field](start, end, depth)`` for its
    LEN fields of interest, the rest skipped; damage is protobuf's DecodeError."""
    n = len(buf)
    pos = 0
    try:
        while pos < n:
            field, wt, pos = _pb_tag(buf, pos, n)
            handler = read.get(field) if wt == LEN else None
            if handler is not None:
                s, pos = _pb_len(buf, pos, n)
                handler(s, pos, _MAX_DEPTH - 1)
            else:
                pos = _pb_skip(buf, pos, n, field, wt, _MAX_DEPTH)
    except WireError as exc:
        raise DecodeError(f"Error parsing message with type 'tensorflow.{what}': {exc}") from None


def _parse_protobuf_view(buf: Any) -> dict[str, np.ndarray | list[bytes]]:
    feats: dict[str, tuple[int, list[_Chunk]]] = {}
    _pb_message(buf, "Example", {1: lambda s, e, d: _pb_features(buf, s, e, feats, d)})
    return {key: _pb_value(buf, kind, chunks) for key, (kind, chunks) in feats.items()}


# --------------------------------------------------------------------------- TensorFlow's view
#
# A line-by-line model of example_proto_fast_parsing.cc on top of
# protobuf::io::CodedInputStream.  Positions are ints; ``limit`` is the
# stream's current limit.  Quirks kept on purpose:
#  * PushLimit never extends a limit: a length running past its parent is
#    silently clipped to the parent (lengths are then re-checked only where
#    TF reads raw bytes);
#  * ReadVarint32 accepts up to 10 bytes and keeps the low 32 bits;
#  * an unknown top-level length-delimited field is skipped with Skip(),
#    whose failure is ignored (the parse simply ends there).


class _TooMany(Exception):
    """More bytes values than a FixedLenFeature's shape holds (TF: construct_at_end fails)."""


def _tf_v32(buf: Any, pos: int, limit: int) -> tuple[int, int]:
    v, pos = read_varint(buf, pos, limit)
    return v & 0xFFFFFFFF, pos


def _tf_push(pos: int, limit: int, length: int) -> int:
    return pos + length if length < limit - pos else limit


def _tf_string(buf: Any, pos: int, limit: int) -> tuple[int, int]:
    n, pos = _tf_v32(buf, pos, limit)
    if n > limit - pos:
        raise WireError("string runs past its message")
    return pos, pos + n


def _tf_skip(buf: Any, pos: int, limit: int) -> int:
    """SkipExtraneousTag: groups are an error, a failed Skip() is not."""
    b = buf[pos]
    if b < 0x80:
        tag, pos = b, pos + 1
    else:
        tag, pos = _tf_v32(buf, pos, limit)
    wt = tag & 7
    if wt == VARINT:
        return _tf_v32(buf, pos, limit)[1]
    if wt == LEN:
        n, pos = _tf_v32(buf, pos, limit)
        return min(pos + n, limit) if n < 0x80000000 else pos
    if wt == I64 or wt == I32:
        size = 8 if wt == I64 else 4
        if limit - pos < size:
            raise WireError("truncated fixed-width field")
        return pos + size
    raise WireError("group or invalid wire type in Example")


def _tf_entries(buf: Any) -> list[tuple[int, int, int, int]]:
    """ParseExample: every map entry as (key_start, key_end, value_start, value_end)."""
    n = len(buf)
    entries = []
    pos = 0
    while pos < n:
        if buf[pos] != 0x0A:
            pos = _tf_skip(buf, pos, n)
            continue
        length, pos = _tf_v32(buf, pos + 1, n)
        sub = _tf_push(pos, n, length)
        while pos < sub:
            if buf[pos] != 0x0A:
                raise WireError("Features holds a field other than its map")
            length, pos = _tf_v32(buf, pos + 1, sub)
            esub = _tf_push(pos, sub, length)
            ks = ke = vs = ve = 0  # missing key: ""; missing value: an empty Feature
            for _ in range(2):  # exactly two fields, key and value in either order
                if pos >= esub:
                    raise WireError("map entry lacks its key or its value")
                b = buf[pos]
                if b < 0x80:
                    tag, pos = b, pos + 1
                else:
                    tag, pos = _tf_v32(buf, pos, esub)
                if tag == 0x0A:
                    ks, ke = _tf_string(buf, pos, esub)
                    pos = ke
                elif tag == 0x12:
                    vs, ve = _tf_string(buf, pos, esub)
                    pos = ve
                else:
                    raise WireError("map entry field other than key and value")
            if pos != esub:
                raise WireError("map entry has more than a key and a value")
            entries.append((ks, ke, vs, ve))
    return entries


def _tf_int64s(buf: Any, pos: int, end: int) -> np.ndarray:
    """ParseInt64List: one packed chunk, or only unpacked values."""
    length, pos = _tf_v32(buf, pos, end)
    lim = _tf_push(pos, end, length)
    if pos >= lim:
        empty: np.ndarray = _EMPTY_I64.copy()
        return empty
    peek = buf[pos]
    if peek == 0x0A:
        plen, pos = _tf_v32(buf, pos + 1, lim)
        return _decode_varints(buf, pos, _tf_push(pos, lim, plen))
    if peek != 0x08:
        raise WireError("int64_list holds neither packed nor unpacked values")
    vals = []
    while pos < lim:
        if buf[pos] != 0x08:
            raise WireError("unpacked int64_list interrupted by another field")
        v, pos = read_varint(buf, pos + 1, lim)
        vals.append(v)
    return np.array(vals, dtype=np.uint64).view(np.int64)


def _tf_floats(buf: Any, pos: int, end: int, cap: int | None) -> tuple[np.ndarray, int]:
    """ParseFloatList: (values read, the count TF believes it saw)."""
    length, pos = _tf_v32(buf, pos, end)
    lim = _tf_push(pos, end, length)
    if pos >= lim:
        return _EMPTY_F32.copy(), 0
    peek = buf[pos]
    if peek == 0x0A:
        plen, pos = _tf_v32(buf, pos + 1, lim)
        plim = _tf_push(pos, lim, plen)
        count = plen // 4
        take = count if cap is None else min(count, cap)
        if 4 * take > plim - pos:
            raise WireError("packed float_list runs past its message")
        return _floats(buf, [(pos, pos + 4 * take)]), count
    if peek != 0x0D:
        raise WireError("float_list holds neither packed nor unpacked values")
    size = lim - pos
    if size % 5:
        raise WireError("truncated unpacked float_list")
    count = size // 5
    raw = np.frombuffer(buf, dtype=np.uint8, count=size, offset=pos).reshape(count, 5)
    if (raw[:, 0] != 0x0D).any():
        raise WireError("unpacked float_list interrupted by another field")
    vals = np.ascontiguousarray(raw[:, 1:]).view("<f4").reshape(count)
    return vals.astype(np.float32, copy=False), count


def _tf_bytes(buf: Any, pos: int, end: int, cap: int | None) -> list[bytes]:
    """ParseBytesList; with ``cap`` (a fixed shape) one value too many is fatal."""
    length, pos = _tf_v32(buf, pos, end)
    lim = _tf_push(pos, end, length)
    spans: list[tuple[int, int]] = []
    while pos < lim:
        if buf[pos] != 0x0A:
            raise WireError("bytes_list interrupted by another field")
        n, pos = _tf_v32(buf, pos + 1, lim)
        if cap is not None and len(spans) >= cap:
            raise _TooMany()
        if n > lim - pos:
            raise WireError("bytes value runs past its list")
        spans.append((pos, pos + n))
        pos += n
    return [bytes(buf[a:b]) for a, b in spans]


def _preview(buf: Any, limit: int = 64) -> str:
    head = bytes(buf[:limit])
    text = repr(head)[2:-1]
    return text + (f"... ({len(buf)} bytes)" if len(buf) > limit else "")


def _parse_fixed(buf: Any, name: str, feat: FixedLenFeature, dtype: str, vs: int, ve: int) -> np.ndarray:
    if dtype != feat.dtype:
        raise SchemaError(
            f"Key: {name}.  Data types don't match. Data type: {_TF_NAME[dtype]} "
            f"but expected type: {_TF_NAME[feat.dtype]}"
        )
    cap = math.prod(feat.shape)
    lst = _LIST_NAME[dtype]
    try:
        if dtype == _FLOAT:
            values, count = _tf_floats(buf, vs + 1, ve, cap)
        elif dtype == _INT64:
            values = _tf_int64s(buf, vs + 1, ve)
            count = len(values)
        else:
            items = _tf_bytes(buf, vs + 1, ve, cap)
            count = len(items)
            values = _object_array(items)
    except _TooMany:
        raise SchemaError(
            f"Key: {name}.  Can't parse serialized Example: Parsing bytes_list failed. "
            f"(more than the {cap} value(s) shape {list(feat.shape)} holds)"
        ) from None
    except WireError as exc:
        raise DecodeError(f"Key: {name}.  Can't parse serialized Example: Parsing {lst} failed. ({exc})") from None
    if count != cap:
        raise SchemaError(
            f"Key: {name}.  Can't parse serialized Example: Some {lst} slice was not parsed. "
            f"(shape {list(feat.shape)} holds {cap} value(s), the feature has {count})"
        )
    return values.reshape(feat.shape)


def _parse_varlen(buf: Any, name: str, feat: VarLenFeature, dtype: str, vs: int, ve: int) -> SparseValue:
    if dtype != feat.dtype:
        raise SchemaError(
            f"Key: {name}.  Data types don't match. Expected type: {_TF_NAME[feat.dtype]}, "
            f"Actual type: {_TF_NAME[dtype]}"
        )
    try:
        if dtype == _FLOAT:
            values = _tf_floats(buf, vs + 1, ve, None)[0]
        elif dtype == _INT64:
            values = _tf_int64s(buf, vs + 1, ve)
        else:
            values = _object_array(_tf_bytes(buf, vs + 1, ve, None))
    except WireError as exc:
        what = (
            "Could not get num elements in bytes_list." if dtype == _STRING else f"Parsing {_LIST_NAME[dtype]} failed."
        )
        raise DecodeError(f"Key: {name}.  Can't parse serialized Example: {what} ({exc})") from None
    return _sparse(values)


def _tf_feature(
    buf: Any, name: str, feat: FixedLenFeature | VarLenFeature, vs: int, ve: int, found: dict[str, Any]
) -> None:
    """One map entry's Feature ``buf[vs:ve]`` into ``found[name]``, as TensorFlow takes it:
    the kind is checked first, then an earlier duplicate (already in ``found``) wins."""
    dtype = _TF_KIND.get(buf[vs])
    if dtype is None:
        raise DecodeError(f"Key: {name}.  Unsupported datatype. (Feature field tag 0x{buf[vs]:02x})")
    if name in found:
        return  # an earlier duplicate: TF logs "data loss" and skips it
    if isinstance(feat, FixedLenFeature):
        found[name] = _parse_fixed(buf, name, feat, dtype, vs, ve)
    else:
        found[name] = _parse_varlen(buf, name, feat, dtype, vs, ve)


def _parse_with_spec(buf: Any, spec: Spec) -> dict[str, np.ndarray | SparseValue]:
    wanted: dict[bytes, tuple[str, FixedLenFeature | VarLenFeature]] = {}
    for name, feat in spec.items():
        if not isinstance(name, str):
            raise TypeError(f"feature names must be str, not {type(name).__name__}")
        if not isinstance(feat, (FixedLenFeature, VarLenFeature)):
            raise TypeError(f"spec for {name!r} must be a FixedLenFeature or VarLenFeature, not {type(feat).__name__}")
        wanted[name.encode("utf-8")] = (name, feat)
    return _with_defaults(_found_features(buf, wanted), spec)


def _found_features(
    buf: Any, wanted: dict[bytes, tuple[str, FixedLenFeature | VarLenFeature]], *, batched: bool = False
) -> dict[str, np.ndarray | SparseValue]:
    """The wanted features a serialized Example holds, decoded by TensorFlow's rules.

    ``batched``: a kindless entry (no oneof member) of a VarLenFeature counts as
    an empty value and hides the earlier entries of its key, as TensorFlow's
    batched parser has it; ``parse_single_example`` treats it as absent.
    """
    try:
        entries = _tf_entries(buf)
    except WireError:
        raise DecodeError(f"Could not parse example input, value: '{_preview(buf)}'") from None
    found: dict[str, np.ndarray | SparseValue] = {}
    for ks, ke, vs, ve in reversed(entries):  # last entry first: the last duplicate wins
        hit = wanted.get(bytes(buf[ks:ke]))
        if hit is None:
            continue
        name, feat = hit
        if vs == ve:  # no oneof member (DT_INVALID)
            if batched and isinstance(feat, VarLenFeature) and name not in found:
                found[name] = _sparse(np.empty(0, dtype=_NP_DTYPE[feat.dtype]))
            continue
        _tf_feature(buf, name, feat, vs, ve, found)
    return found


def _with_defaults(found: dict[str, np.ndarray | SparseValue], spec: Spec) -> dict[str, np.ndarray | SparseValue]:
    """``found`` completed to ``spec``: defaults for absent dense features (a missing
    one without a default is an error, checked in name order as TensorFlow's
    Python layer orders dense keys), empty values for absent sparse ones."""
    for name in sorted(spec):
        feat = spec[name]
        if name in found or not isinstance(feat, FixedLenFeature):
            continue
        if feat.default_value is None or feat.default_value.size == 0:
            raise SchemaError(
                f"Feature: {name} (data type: {_TF_NAME[feat.dtype]}) is required but could not be found."
            )
    out: dict[str, np.ndarray | SparseValue] = {}
    for name, feat in spec.items():
        if name in found:
            out[name] = found[name]
        elif isinstance(feat, FixedLenFeature):
            out[name] = feat.default_value.copy()
        else:
            out[name] = _sparse(np.empty(0, dtype=_NP_DTYPE[feat.dtype]))
    return out


def parse_example(data: BytesLike, features: Spec | None = None) -> dict[str, Any]:
    """Parse one serialized ``tf.train.Example``.

    Without ``features``: protobuf's view, ``{name: float32 array | int64 array
    | list[bytes]}``.  A Feature with no kind set (protobuf's ``kind`` is
    None) comes back as an empty float32 array -- what TensorFlow itself makes
    of it for a float VarLenFeature -- so every value is array-like.
    Malformed protobuf raises :class:`~tfrecord_numpy.errors.DecodeError`.

    With ``features`` (``{name: FixedLenFeature | VarLenFeature}``): exactly
    what ``tf.io.parse_single_example`` returns -- FixedLen as an array of the
    spec's shape (0-d for ``[]``; strings as an object array of bytes),
    VarLen as a :class:`SparseValue` -- and where TensorFlow raises, a
    :class:`~tfrecord_numpy.errors.SchemaError` (type mismatch, wrong number of
    values, missing required feature) or ``DecodeError`` (unparseable input),
    with TensorFlow's message and key.
    """
    buf = _as_buffer(data)
    if features is None:
        return _parse_protobuf_view(buf)
    return _parse_with_spec(buf, features)


# --------------------------------------------------------------------------- encoding


def _classify(key: str, value: Any) -> tuple[str, Any]:
    """(kind, payload): payload is a list of bytes, a float32 array or an int64 array."""
    if isinstance(value, (bytes, str, bytearray, memoryview)):
        return _STRING, [_to_bytes(value)]
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return _INT64, _int64_array(key, np.asarray(value))
    if isinstance(value, (float, np.floating)):
        return _FLOAT, _float32_array(np.asarray(value))
    if isinstance(value, np.ndarray):
        return _classify_array(key, value)
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(
                f"feature {key!r}: cannot tell the kind of an empty list; "
                "pass an empty numpy array with a dtype (float32, int64 or bytes)"
            )
        if all(isinstance(v, (bytes, str, bytearray, memoryview)) for v in value):
            return _STRING, [_to_bytes(v) for v in value]
        if all(isinstance(v, (bool, np.bool_, int, np.integer)) for v in value):
            try:
                return _INT64, _int64_array(key, np.asarray(value))
            except OverflowError:
                raise ValueError(f"feature {key!r}: an integer does not fit in int64") from None
        if all(isinstance(v, (bool, np.bool_, int, float, np.integer, np.floating)) for v in value):
            return _FLOAT, _float32_array(np.asarray(value))  # all-float32 lists keep their bits
        if any(isinstance(v, (list, tuple, np.ndarray)) for v in value):
            return _classify_array(key, np.asarray(value))
    raise TypeError(f"feature {key!r}: cannot encode a value of type {type(value).__name__}")


def _float32_array(arr: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, as in TF
        return np.ascontiguousarray(arr, dtype="<f4").ravel()


def _int64_array(key: str, arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"feature {key!r}: an unsigned value does not fit in int64")
    if arr.dtype.kind == "O":
        raise ValueError(f"feature {key!r}: an integer does not fit in int64")
    return np.ascontiguousarray(arr, dtype=np.int64).ravel()


def _classify_array(key: str, arr: np.ndarray) -> tuple[str, Any]:
    k = arr.dtype.kind
    if k == "f":
        return _FLOAT, _float32_array(arr)
    if k in "iub":
        return _INT64, _int64_array(key, arr)
    if k == "S":  # numpy's fixed-width bytes drop trailing NULs
        return _STRING, [bytes(x) for x in arr.ravel().tolist()]
    if k == "U":
        return _STRING, [x.encode("utf-8") for x in arr.ravel().tolist()]
    if k == "O":
        flat = arr.ravel().tolist()
        if flat and all(isinstance(v, (bytes, str, bytearray, memoryview)) for v in flat):
            return _STRING, [_to_bytes(v) for v in flat]
        if flat:
            return _classify(key, flat)
        raise ValueError(f"feature {key!r}: cannot tell the kind of an empty object array")
    raise TypeError(f"feature {key!r}: cannot encode a {arr.dtype} array in a tf.Example")


def _list_message(kind: str, payload: Any) -> tuple[list[bytes | memoryview], int]:
    """The BytesList/FloatList/Int64List body as parts to join, and its size."""
    if kind == _STRING:
        parts: list[bytes | memoryview] = []
        size = 0
        for b in payload:
            head = b"\x0a" + encode_varint(len(b))
            parts.append(head)
            parts.append(b)
            size += len(head) + len(b)
        return parts, size
    if kind == _FLOAT:
        n = 4 * len(payload)
        body: Any = memoryview(payload).cast("B") if n else b""
    else:
        body = _encode_varints(payload)
        n = len(body)
    if not n:
        return [], 0  # proto3 writes nothing for an empty repeated field
    head = b"\x0a" + encode_varint(n)
    return [head, body], len(head) + n


def _map_order(key: bytes) -> tuple[int, ...]:
    """upb's deterministic map order: bytewise, but a key sorts *after* its extensions."""
    return (*key, 256)


def encode_example(features: Mapping[str, Any]) -> bytes:
    """Serialize ``{name: value}`` as a ``tf.train.Example``.

    Floats (any float dtype) go to ``float_list`` as float32, integers and
    bools to ``int64_list``, bytes and str (UTF-8) to ``bytes_list``; arrays are
    flattened in C order.  The bytes equal protobuf's
    ``SerializeToString(deterministic=True)`` under upb, map order included,
    whatever runtime is installed -- so A2O records re-encode to their exact
    original bytes.  Written by hand so a large bytes value is copied once.
    """
    entries = []
    for key, value in features.items():
        if not isinstance(key, str):
            raise TypeError(f"feature names must be str, not {type(key).__name__}")
        kind, payload = _classify(key, value)
        body, body_size = _list_message(kind, payload)
        feature_head = bytes((0x08 * _KIND_FIELD[kind] + 2,)) + encode_varint(body_size)
        feature_size = len(feature_head) + body_size
        kb = key.encode("utf-8")
        entry_head = b"\x0a" + encode_varint(len(kb)) + kb + b"\x12" + encode_varint(feature_size) + feature_head
        entry_size = len(entry_head) + body_size
        entries.append((kb, [b"\x0a" + encode_varint(entry_size), entry_head, *body], entry_size))
    entries.sort(key=lambda e: _map_order(e[0]))
    parts: list[bytes | memoryview] = []
    total = 0
    for _, entry_parts, entry_size in entries:
        total += len(entry_parts[0]) + entry_size
        parts.extend(entry_parts)
    return b"".join([b"\x0a", encode_varint(total), *parts])


# --------------------------------------------------------------------------- files


def read_examples(source: Sources, features: Spec | None = None, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Yield ``parse_example(record, features)`` for every record of one or more
    TFRecord files (sources as :func:`~tfrecord_numpy.reader.read_records` takes them).

    ``kwargs`` go to :func:`~tfrecord_numpy.reader.iter_records`.  A parse
    error is re-raised with the file, the record's index and its byte offset.
    """
    for path, index, offset, view in iter_records(source, **kwargs):
        try:
            parsed = parse_example(bytes(view), features)  # values may view their buffer
        except TFRecordError as exc:
            raise exc.located(path=path, index=index, offset=offset) from None
        yield parsed
