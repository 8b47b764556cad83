"""``tf.train.SequenceExample`` to numpy, without TensorFlow.

``parse_sequence_example(data, context_features, sequence_features)``
reproduces ``tf.io.parse_single_sequence_example`` of TensorFlow 2.21.  That
is *not* the single-Example parser ``parse_example`` models but
``FastParseSequenceExample`` (``example_proto_fast_parsing.cc``, run by the
``ParseSequenceExampleV2`` kernel), which has rules and messages of its own:

* a map entry must be exactly a key then a value; anything else inside the
  ``context`` or ``feature_lists`` map makes the whole record unparseable
  ("Invalid protocol message input");
* a value is checked against the spec's dtype by the tag of its first list
  only, and for a context ``FixedLenFeature`` the number of values is
  compared with the shape *before* any default is looked at: a missing
  required feature reports "Inconsistent max number of elements ... found
  0", and a present Feature with no kind set does not fall back to the
  default ("Unexpected number of elements");
* every ``Feature`` of a ``FeatureList`` is one step.  An empty Feature is a
  step without values.  The reader never skips to the end of a step, so
  bytes left behind after the first list of a step are read as more steps;
* errors come in TensorFlow's order: framing; value types and counts of the
  context, then of the feature lists; then context dense, context sparse,
  sequence dense and sequence sparse features, each in name order.
  (TensorFlow walks the first two stages in hash-map order; here they go in
  name order, which only matters when two features are broken at once.)

Where TensorFlow 2.21 kills the process, this raises instead: a
``FixedLenSequenceFeature`` whose shape holds no value (TF divides by it:
SIGFPE) is refused when built, and a bytes value that runs past its list
under a ``VarLenFeature`` (TF writes past a buffer: SIGSEGV) is a
``DecodeError``.

Without any spec, ``parse_sequence_example(data)`` gives protobuf's view
(upb's rules, as ``parse_example(data)``): ``(context, feature_lists)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ._wire import WireError, read_varint
from .errors import DecodeError, SchemaError, TFRecordError
from .example import (
    _FLOAT,
    _INT64,
    _NP_DTYPE,
    _STRING,
    _TF_NAME,
    BytesLike,
    FixedLenFeature,
    SparseValue,
    VarLenFeature,
    _as_buffer,
    _Chunk,
    _decode_varints,
    _norm_default,
    _norm_dtype,
    _norm_shape,
    _object_array,
    _pb_feature,
    _pb_features,
    _pb_map_entry,
    _pb_message,
    _pb_repeated,
    _pb_value,
    _tf_push,
    _tf_skip,
    _tf_string,
    _tf_v32,
)
from .reader import iter_records

if TYPE_CHECKING:
    from .storage import Sources

__all__ = [
    "FixedLenSequenceFeature",
    "parse_sequence_example",
    "read_sequence_examples",
]

_UNKNOWN = "<unknown>"  # TF's example name when the caller gives none
_KIND_TAG = {_STRING: 0x0A, _FLOAT: 0x12, _INT64: 0x1A}  # a Feature's oneof tags
_TAG_KIND = {tag: kind for kind, tag in _KIND_TAG.items()}
_CRASH = "TensorFlow 2.21 crashes on this record"

#: what a context FixedLenFeature/VarLenFeature or a feature list parses to
Value = np.ndarray | SparseValue
ContextSpec = Mapping[str, FixedLenFeature | VarLenFeature]


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True, eq=False)
class FixedLenSequenceFeature:
    """A feature list of a fixed ``shape`` per step, like ``tf.io.FixedLenSequenceFeature``.

    Parses to an array ``[steps, *shape]``.  Every step must hold exactly
    ``prod(shape)`` values.  A missing feature list is an error unless
    ``allow_missing``, which gives ``[0, *shape]``.  ``default_value`` (a
    scalar padding value) is accepted for TensorFlow parity, but TensorFlow's
    single-SequenceExample parser refuses it, and so does
    :func:`parse_sequence_example`.  A shape holding no value is refused
    here, because TensorFlow divides by it and dies.
    """

    shape: Sequence[int]
    dtype: Any
    allow_missing: bool = False
    default_value: Any = None

    def __post_init__(self) -> None:
        try:
            shape = _norm_shape(self.shape)
        except ValueError:
            raise ValueError(
                f"FixedLenSequenceFeature needs a fully defined shape of non-negative ints, got {self.shape!r}"
            ) from None
        if math.prod(shape) == 0:
            raise ValueError(
                f"FixedLenSequenceFeature shape {list(shape)} holds no value per step "
                "(TensorFlow 2.21 divides by that number and crashes)"
            )
        dtype = _norm_dtype(self.dtype)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "allow_missing", bool(self.allow_missing))
        if self.default_value is not None:
            object.__setattr__(self, "default_value", _norm_default(self.default_value, (), dtype))

    def _key(self) -> tuple[object, ...]:
        d = self.default_value
        dk: Any = None if d is None else (d.item() if self.dtype == _STRING else d.tobytes())
        return (self.shape, self.dtype, self.allow_missing, dk)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FixedLenSequenceFeature):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


SequenceSpec = Mapping[str, FixedLenSequenceFeature | VarLenFeature]


# --------------------------------------------------------------------------- TF's list readers


class _Bad(Exception):
    """TF's Parse*Feature returned -1: a wrong kind or a malformed list (TF does not say which)."""


class _Read(NamedTuple):
    """One Parse*Feature call: where the stream stands after it, the values, and
    whether a bytes value ran past its list (TF's counting pass skips over that,
    its copying pass fails)."""

    pos: int
    values: np.ndarray | list[bytes]
    overrun: bool


def _read_feature(buf: Any, pos: int, lim: int, dtype: str) -> _Read:
    """Parse{Bytes,Float,Int64}Feature: the Feature's first list, if of ``dtype``.

    Only the list's own tag is checked; the stream is left where the list's
    values end (after its first packed chunk), not at the end of the Feature.
    """
    if pos >= lim or buf[pos] != _KIND_TAG[dtype]:
        raise _Bad
    try:
        length, pos = _tf_v32(buf, pos + 1, lim)
        if dtype == _STRING:
            return _read_bytes(buf, pos, _tf_push(pos, lim, length) if length else pos)
        if length == 0:
            return _Read(pos, _empty(dtype), False)
        sub = _tf_push(pos, lim, length)
        peek = buf[pos] if pos < sub else 0  # PeekTag gives 0 at the limit
        if dtype == _FLOAT:
            return _read_floats(buf, pos, sub, peek)
        return _read_int64s(buf, pos, sub, peek)
    except WireError:
        raise _Bad from None


def _empty(dtype: str) -> np.ndarray:
    return np.empty(0, dtype=_NP_DTYPE[dtype])


def _read_bytes(buf: Any, pos: int, sub: int) -> _Read:
    items: list[bytes] = []
    overrun = False
    while pos < sub:
        if buf[pos] != 0x0A:
            raise _Bad
        n, pos = _tf_v32(buf, pos + 1, sub)
        if n > sub - pos:
            # Skip() stops at the limit (or, for a length >= 2**31, does not
            # move at all) and its failure is ignored while counting
            overrun = True
            items.append(b"")
            if n < 0x80000000:
                pos = sub
            continue
        items.append(bytes(buf[pos : pos + n]))
        pos += n
    return _Read(pos, items, overrun)


def _read_floats(buf: Any, pos: int, sub: int, peek: int) -> _Read:
    if peek == 0x0A:  # packed: the first chunk only
        plen, pos = _tf_v32(buf, pos + 1, sub)
        end = _tf_push(pos, sub, plen)
        if (end - pos) & 3:
            raise _Bad
        vals = np.frombuffer(buf, dtype="<f4", count=(end - pos) // 4, offset=pos).astype(np.float32)
        return _Read(end, vals, False)
    if peek != 0x0D:
        raise _Bad
    size = sub - pos
    if size % 5:
        raise _Bad
    raw = np.frombuffer(buf, dtype=np.uint8, count=size, offset=pos).reshape(size // 5, 5)
    if (raw[:, 0] != 0x0D).any():
        raise _Bad
    vals = np.ascontiguousarray(raw[:, 1:]).view("<f4").reshape(size // 5).astype(np.float32)
    return _Read(sub, vals, False)


def _read_int64s(buf: Any, pos: int, sub: int, peek: int) -> _Read:
    if peek == 0x0A:  # packed: the first chunk only
        plen, pos = _tf_v32(buf, pos + 1, sub)
        end = _tf_push(pos, sub, plen)
        return _Read(end, _decode_varints(buf, pos, end), False)
    if peek != 0x08:
        raise _Bad
    vals = []
    while pos < sub:
        if buf[pos] != 0x08:
            raise _Bad
        v, pos = read_varint(buf, pos + 1, sub)
        vals.append(v)
    return _Read(pos, np.array(vals, dtype=np.uint64).view(np.int64), False)


def _kind_error(buf: Any, pos: int, lim: int, dtype: str, message: str) -> TFRecordError:
    """TF has one message for "wrong kind" and "broken list": a SchemaError when
    the Feature really holds another kind, else a DecodeError."""
    tag = buf[pos] if pos < lim else None
    other = tag in _TAG_KIND and tag != _KIND_TAG[dtype]
    return (SchemaError if other else DecodeError)(message)


# --------------------------------------------------------------------------- TF's record walk


def _extract(
    buf: Any, want_ctx: Mapping[bytes, str], want_seq: Mapping[bytes, str]
) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
    """ExtractFeaturesFromSequenceExamples: (start, end) of each requested value; the last duplicate wins."""
    ctx: dict[str, tuple[int, int]] = {}
    seq: dict[str, tuple[int, int]] = {}
    n = len(buf)
    pos = 0
    try:
        while pos < n:
            if buf[pos] == 0x0A:
                found, want = ctx, want_ctx
            elif buf[pos] == 0x12:
                found, want = seq, want_seq
            else:
                pos = _tf_skip(buf, pos, n)
                continue
            length, pos = _tf_v32(buf, pos + 1, n)
            sub = _tf_push(pos, n, length)
            while pos < sub:
                if buf[pos] != 0x0A:
                    raise WireError("map holds a field other than its entries")
                length, pos = _tf_v32(buf, pos + 1, sub)
                esub = _tf_push(pos, sub, length)
                if pos >= esub or buf[pos] != 0x0A:
                    raise WireError("map entry does not start with its key")
                ks, ke = _tf_string(buf, pos + 1, esub)
                if ke >= esub or buf[ke] != 0x12:
                    raise WireError("map entry key is not followed by its value")
                vs, pos = _tf_string(buf, ke + 1, esub)
                if pos != esub:
                    raise WireError("map entry holds more than a key and a value")
                name = want.get(bytes(buf[ks:ke]))
                if name is not None:
                    found[name] = (vs, pos)
    except WireError:
        raise DecodeError(f"Invalid protocol message input, example id: {_UNKNOWN}") from None
    return ctx, seq


class _Steps(NamedTuple):
    """A feature list as TF's counting pass sees it."""

    sizes: list[int]  # each step's Feature length (0, 2 and more are treated apart)
    counts: list[int]  # values per step
    values: list[np.ndarray | list[bytes]]
    overrun: int  # first step with a bytes value past its list, or -1


def _read_steps(buf: Any, name: str, dtype: str, pos: int, lim: int) -> _Steps:
    """GetSequenceFeatureLengths for one FeatureList."""
    generic = f"Error in sequence feature {name} in example {_UNKNOWN}"
    steps = _Steps([], [], [], -1)
    tag = _KIND_TAG[dtype]
    while pos < lim:
        if buf[pos] != 0x0A:
            raise DecodeError(f"{generic} (a FeatureList field other than a Feature)")
        try:
            size, pos = _tf_v32(buf, pos + 1, lim)
        except WireError:
            raise DecodeError(f"{generic} (a broken Feature length)") from None
        row = len(steps.sizes)
        mismatch = (
            f"Name: {_UNKNOWN}, Feature list: {name}, Index: {row}.  "
            f"Data types don't match. Expected type: {_TF_NAME[dtype]}"
        )
        if size > 2:
            start = pos
            sub = _tf_push(pos, lim, size)
            try:
                read = _read_feature(buf, pos, sub, dtype)
            except _Bad:
                raise _kind_error(buf, start, sub, dtype, mismatch) from None
            pos = read.pos  # PopLimit: TF goes on from here, not from the Feature's end
            steps.values.append(read.values)
            steps.counts.append(len(read.values))
            if read.overrun and steps.overrun < 0:
                steps = steps._replace(overrun=row)
        elif size == 2:
            # SkipEmptyFeature: the kind's tag and a zero length, read in the list
            start = pos
            if pos >= lim or buf[pos] != tag:
                raise _kind_error(buf, start, lim, dtype, mismatch)
            try:
                empty_len, pos = _tf_v32(buf, pos + 1, lim)
            except WireError:
                raise DecodeError(mismatch) from None
            if empty_len:
                raise DecodeError(mismatch)
            steps.counts.append(0)
        elif size == 0:
            steps.counts.append(0)
        else:
            raise DecodeError(f"{generic} (a Feature of 1 byte)")
        steps.sizes.append(size)
    return steps


def _debug_shape(shape: Sequence[int | str]) -> str:
    """TensorShape::DebugString: ``[2,3]``, ``[]``."""
    return "[" + ",".join(str(d) for d in shape) + "]"


def _join(dtype: str, parts: list[np.ndarray | list[bytes]]) -> np.ndarray:
    if dtype == _STRING:
        return _object_array([b for p in parts for b in p])
    arrays = [p for p in parts if isinstance(p, np.ndarray) and len(p)]
    if not arrays:
        return _empty(dtype)
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)  # fresh arrays already


def _as_values(values: np.ndarray | list[bytes]) -> np.ndarray:
    return _object_array(values) if isinstance(values, list) else values


def _context_dense(name: str, feat: FixedLenFeature, found: bool, read: _Read | None) -> np.ndarray:
    """ParseContextDenseFeatures for one feature."""
    dtype = feat.dtype
    shape = tuple(feat.shape)
    want = math.prod(shape)
    default = feat.default_value
    default_n = 0 if default is None else int(default.size)
    count = 0 if read is None else len(read.values)
    longest = max(default_n, count)
    if longest != want:
        raise SchemaError(
            f"Inconsistent max number of elements for feature {name}: expected {want}, but found {longest}"
        )
    if not found:
        if default_n == 0:
            raise SchemaError(f"Feature: {name} (data type: {_TF_NAME[dtype]}) is required but could not be found.")
        return np.array(default, copy=True)
    where = f"Unexpected number of elements in example {_UNKNOWN} (context feature {name!r}: "
    if read is not None and read.overrun:  # TF's copying pass fails where its counting pass did not
        raise DecodeError(f"{where}a bytes value runs past the end of its list)")
    if count != longest:
        raise SchemaError(f"{where}shape {list(shape)} holds {want} value(s), the feature has {count})")
    values = _empty(dtype) if read is None else _as_values(read.values)
    return values.reshape(shape)


def _context_sparse(name: str, feat: VarLenFeature, read: _Read | None) -> SparseValue:
    """ParseContextSparseFeatures for one feature: indices ``[n, 1]``, dense_shape ``[n]``."""
    if read is None:
        values = _empty(feat.dtype)
    elif read.overrun:
        raise DecodeError(
            f"Error in context feature {name} in example {_UNKNOWN} "
            f"(a bytes value runs past the end of its list; {_CRASH})"
        )
    else:
        values = _as_values(read.values)
    n = len(values)
    return SparseValue(np.arange(n, dtype=np.int64).reshape(n, 1), values, np.array([n], dtype=np.int64))


def _sequence_dense(name: str, feat: FixedLenSequenceFeature, found: bool, steps: _Steps | None) -> np.ndarray:
    """ParseSequenceDenseFeatures for one feature list: ``[steps, *shape]``."""
    shape = tuple(feat.shape)
    per_step = math.prod(shape)
    total = 0 if steps is None else sum(steps.counts)
    if total % per_step:
        raise SchemaError(
            f"Feature list '{name}' has an unexpected number of values.  Total values size: {total} "
            f"is not consistent with output shape: {_debug_shape(['?', *shape])}"
        )
    if not found and not feat.allow_missing:
        raise SchemaError(
            f"Name: {_UNKNOWN}, Feature list '{name}' is required but could not be found.  "
            "Did you mean to include it in feature_list_dense_missing_assumed_empty or feature_list_dense_defaults?"
        )
    if steps is None:
        return _empty(feat.dtype).reshape((0, *shape))
    for row, (size, count) in enumerate(zip(steps.sizes, steps.counts)):
        if size > 2 and row == steps.overrun:
            raise DecodeError(
                f"Error in sequence feature {name} in example {_UNKNOWN} "
                f"(step {row}: a bytes value runs past the end of its list)"
            )
        added = count if size > 2 else 0  # a Feature of <= 2 bytes is not read here
        if added != per_step:
            raise SchemaError(
                f"Name: {_UNKNOWN}, Key: {name}, Index: {row}.  Number of values != expected.  "
                f"values size: {added} but output shape: {_debug_shape(shape)}"
            )
    return _join(feat.dtype, steps.values).reshape((len(steps.counts), *shape))


def _sequence_sparse(name: str, feat: VarLenFeature, steps: _Steps | None) -> SparseValue:
    """ParseSequenceSparseFeatures for one feature list: indices ``[nnz, 2]`` = (step, position)."""
    if steps is None:
        return SparseValue(np.empty((0, 2), dtype=np.int64), _empty(feat.dtype), np.zeros(2, dtype=np.int64))
    if steps.overrun >= 0:
        raise DecodeError(
            f"Error in sequence feature {name} in example {_UNKNOWN} "
            f"(step {steps.overrun}: a bytes value runs past the end of its list; {_CRASH})"
        )
    counts = np.array(steps.counts, dtype=np.int64)
    nnz = int(counts.sum())
    rows = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    cols = np.arange(nnz, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    indices = np.stack([rows, cols], axis=1) if nnz else np.empty((0, 2), dtype=np.int64)
    widest = int(counts.max()) if len(counts) else 0
    return SparseValue(indices, _join(feat.dtype, steps.values), np.array([len(counts), widest], dtype=np.int64))


def _check_specs(context: ContextSpec, sequence: SequenceSpec) -> tuple[dict[bytes, str], dict[bytes, str]]:
    """The parts of TF's Python-side checks that concern a single SequenceExample."""
    want_ctx: dict[bytes, str] = {}
    want_seq: dict[bytes, str] = {}
    for spec, allowed, want in (
        (context, (FixedLenFeature, VarLenFeature), want_ctx),
        (sequence, (FixedLenSequenceFeature, VarLenFeature), want_seq),
    ):
        for name in spec:
            if not isinstance(name, str):
                raise TypeError(f"feature names must be str, not {type(name).__name__}")
        for name in sorted(spec):  # TF checks keys in name order
            feat = spec[name]
            if not isinstance(feat, (FixedLenFeature, VarLenFeature, FixedLenSequenceFeature)):
                raise TypeError(f"spec for {name!r} must be a feature spec, not {type(feat).__name__}")
            if not isinstance(feat, allowed):
                raise ValueError(f"Unsupported {type(feat).__name__} {feat} for key '{name}'")
            want[name.encode("utf-8")] = name
    for name in sorted(sequence):
        feat = sequence[name]
        if isinstance(feat, FixedLenSequenceFeature) and feat.default_value is not None:
            raise ValueError(f"Value feature_list.dense_defaults[{name}] must be None")
    return want_ctx, want_seq


def _parse_with_spec(
    buf: Any, context: ContextSpec, sequence: SequenceSpec
) -> tuple[dict[str, Value], dict[str, Value]]:
    want_ctx, want_seq = _check_specs(context, sequence)
    ctx_at, seq_at = _extract(buf, want_ctx, want_seq)

    # counting pass: every present context value, then every feature list
    ctx_read: dict[str, _Read] = {}
    for name in sorted(ctx_at):
        vs, ve = ctx_at[name]
        if vs == ve:
            continue  # a Feature with no kind: nothing to count
        dtype = context[name].dtype
        try:
            ctx_read[name] = _read_feature(buf, vs, ve, dtype)
        except _Bad:
            raise _kind_error(
                buf,
                vs,
                ve,
                dtype,
                f"Name: {_UNKNOWN}, Context feature: {name}.  Data types don't match. Expected type: {_TF_NAME[dtype]}",
            ) from None
    seq_steps: dict[str, _Steps] = {}
    for name in sorted(seq_at):
        vs, ve = seq_at[name]
        if vs != ve:
            seq_steps[name] = _read_steps(buf, name, sequence[name].dtype, vs, ve)

    # filling pass, in TF's order
    ctx_out: dict[str, Value] = {}
    seq_out: dict[str, Value] = {}
    for name in sorted(context):
        feat = context[name]
        if isinstance(feat, FixedLenFeature):
            ctx_out[name] = _context_dense(name, feat, name in ctx_at, ctx_read.get(name))
    for name in sorted(context):
        feat = context[name]
        if isinstance(feat, VarLenFeature):
            ctx_out[name] = _context_sparse(name, feat, ctx_read.get(name))
    for name in sorted(sequence):
        sfeat = sequence[name]
        if isinstance(sfeat, FixedLenSequenceFeature):
            seq_out[name] = _sequence_dense(name, sfeat, name in seq_at, seq_steps.get(name))
    for name in sorted(sequence):
        sfeat = sequence[name]
        if isinstance(sfeat, VarLenFeature):
            seq_out[name] = _sequence_sparse(name, sfeat, seq_steps.get(name))
    return {n: ctx_out[n] for n in context}, {n: seq_out[n] for n in sequence}


# --------------------------------------------------------------------------- protobuf's view


def _pb_feature_lists(buf: Any, pos: int, end: int, out: dict[str, list[tuple[int, list[_Chunk]]]], depth: int) -> None:
    """``FeatureLists.feature_list``: a map of name -> steps; as in ``parse_example``,
    upb drops an entry carrying an unknown field, and a repeated value's steps append."""

    def entry(s: int, e: int, d: int) -> None:
        steps: list[tuple[int, list[_Chunk]]] = []
        key = _pb_map_entry(buf, s, e, d, lambda vs, ve, vd: _pb_feature_list(buf, vs, ve, steps, vd))
        if key is not None:
            out[key] = steps

    _pb_repeated(buf, pos, end, depth, entry)


def _pb_feature_list(buf: Any, pos: int, end: int, steps: list[tuple[int, list[_Chunk]]], depth: int) -> None:
    """``FeatureList.feature``: each step's Feature."""
    _pb_repeated(buf, pos, end, depth, lambda s, e, d: steps.append(_pb_feature(buf, s, e, 0, [], d)))


def _parse_protobuf_view(buf: Any) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    ctx: dict[str, tuple[int, list[_Chunk]]] = {}
    lists: dict[str, list[tuple[int, list[_Chunk]]]] = {}
    _pb_message(
        buf,
        "SequenceExample",
        {
            1: lambda s, e, d: _pb_features(buf, s, e, ctx, d),
            2: lambda s, e, d: _pb_feature_lists(buf, s, e, lists, d),
        },
    )
    context = {key: _pb_value(buf, kind, chunks) for key, (kind, chunks) in ctx.items()}
    steps = {key: [_pb_value(buf, kind, chunks) for kind, chunks in lst] for key, lst in lists.items()}
    return context, steps


# --------------------------------------------------------------------------- API


def parse_sequence_example(
    data: BytesLike,
    context_features: ContextSpec | None = None,
    sequence_features: SequenceSpec | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parse one serialized ``tf.train.SequenceExample`` into ``(context, sequences)``.

    With specs, exactly what ``tf.io.parse_single_sequence_example`` returns:
    a context ``FixedLenFeature`` as an array of its shape, a
    ``VarLenFeature`` as a :class:`~tfrecord_numpy.example.SparseValue`
    (indices ``[n, 1]``); a :class:`FixedLenSequenceFeature` as an array
    ``[steps, *shape]``, a sequence ``VarLenFeature`` as a ``SparseValue``
    with indices ``[nnz, 2]`` (step, position) and dense_shape
    ``[steps, longest step]``.  Strings are object arrays of bytes.  Where
    TensorFlow fails: :class:`~tfrecord_numpy.errors.SchemaError` (wrong
    kind, wrong number of values, missing required feature or feature
    list) or :class:`~tfrecord_numpy.errors.DecodeError` (unparseable
    bytes), with TensorFlow's message.  Results follow the specs' order.

    With neither spec: protobuf's view, ``({name: value}, {name: [value per
    step]})``, values as :func:`~tfrecord_numpy.example.parse_example`
    gives them without a spec.
    """
    buf = _as_buffer(data)
    if context_features is None and sequence_features is None:
        return _parse_protobuf_view(buf)
    if not context_features and not sequence_features:
        raise ValueError("Both context_features and sequence_features are None, but at least one should have values.")
    return _parse_with_spec(buf, context_features or {}, sequence_features or {})


def read_sequence_examples(
    sources: Sources,
    context_features: ContextSpec | None = None,
    sequence_features: SequenceSpec | None = None,
    **kwargs: Any,
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Yield :func:`parse_sequence_example` of every record of one or more TFRecord files.

    ``sources`` and ``kwargs`` as :func:`~tfrecord_numpy.reader.iter_records`
    takes them.  A parse error is re-raised with the file, the record's index
    and its byte offset.
    """
    for path, index, offset, view in iter_records(sources, **kwargs):
        try:
            parsed = parse_sequence_example(bytes(view), context_features, sequence_features)
        except TFRecordError as exc:
            raise exc.located(path=path, index=index, offset=offset) from None
        yield parsed
