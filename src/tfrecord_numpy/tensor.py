"""TensorProto <-> numpy, by TensorFlow's rules (``tf.io.parse_tensor`` /
``tf.io.serialize_tensor``).

The common case -- dtype, shape and ``tensor_content`` -- is walked by hand so
the array is a zero-copy ``np.frombuffer`` view of the caller's bytes.  Anything
else (the typed ``*_val`` fields, strings, unusual encodings) goes through
our generated protobuf classes and TensorFlow's fill rules.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

from . import _wire
from .errors import DecodeError, SchemaError

# DataType enum numbers (tensorflow/core/framework/types.proto)
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_STRING = 1, 2, 3, 4, 5, 6, 7
DT_COMPLEX64, DT_INT64, DT_BOOL = 8, 9, 10
DT_BFLOAT16, DT_UINT16, DT_COMPLEX128, DT_HALF = 14, 17, 18, 19
DT_RESOURCE, DT_VARIANT, DT_UINT32, DT_UINT64 = 20, 21, 22, 23

#: TensorFlow's names, as its error messages spell them
DT_NAMES = {
    0: "invalid",
    1: "float",
    2: "double",
    3: "int32",
    4: "uint8",
    5: "int16",
    6: "int8",
    7: "string",
    8: "complex64",
    9: "int64",
    10: "bool",
    11: "qint8",
    12: "quint8",
    13: "qint32",
    14: "bfloat16",
    15: "qint16",
    16: "quint16",
    17: "uint16",
    18: "complex128",
    19: "half",
    20: "resource",
    21: "variant",
    22: "uint32",
    23: "uint64",
    24: "float8_e5m2",
    25: "float8_e4m3fn",
    26: "float8_e4m3fnuz",
    27: "float8_e4m3b11fnuz",
    28: "float8_e5m2fnuz",
    29: "int4",
    30: "uint4",
    31: "int2",
    32: "uint2",
}

_NUMPY_DTYPES: dict[int, str] = {
    DT_FLOAT: "<f4",
    DT_DOUBLE: "<f8",
    DT_INT32: "<i4",
    DT_UINT8: "u1",
    DT_INT16: "<i2",
    DT_INT8: "i1",
    DT_COMPLEX64: "<c8",
    DT_INT64: "<i8",
    DT_BOOL: "?",
    DT_UINT16: "<u2",
    DT_COMPLEX128: "<c16",
    DT_HALF: "<f2",
    DT_UINT32: "<u4",
    DT_UINT64: "<u8",
}
#: dtypes numpy holds only through ml_dtypes (the ``bfloat16`` extra)
_ML_DTYPES = {
    DT_BFLOAT16: "bfloat16",
    24: "float8_e5m2",
    25: "float8_e4m3fn",
    26: "float8_e4m3fnuz",
    27: "float8_e4m3b11fnuz",
    28: "float8_e5m2fnuz",
    29: "int4",
    30: "uint4",
}
_LITTLE = sys.byteorder == "little"
#: typed ``*_val`` fields are broadcast to the shape; cap what a few bytes can
#: make us allocate (a tensor_content tensor is bounded by its own bytes)
MAX_FILL_BYTES = 1 << 30


def _ml_dtype(dt: int) -> np.dtype:
    try:
        import ml_dtypes
    except ImportError:
        raise SchemaError(
            f"DT_{DT_NAMES[dt].upper()} tensors need ml_dtypes: pip install 'tfrecord-numpy[bfloat16]'"
        ) from None
    dtype: np.dtype = np.dtype(getattr(ml_dtypes, _ML_DTYPES[dt]))
    return dtype


def numpy_dtype(dt: int) -> np.dtype:
    """The numpy dtype of a DataType enum value (little-endian where it matters)."""
    if dt in _NUMPY_DTYPES:
        return np.dtype(_NUMPY_DTYPES[dt])
    if dt == DT_STRING:
        return np.dtype(object)
    if dt in _ML_DTYPES:
        return _ml_dtype(dt)
    if dt in (DT_RESOURCE, DT_VARIANT):
        raise SchemaError(f"DT_{DT_NAMES[dt].upper()} tensors cannot be decoded outside TensorFlow")
    if dt >= 100 and dt - 100 in DT_NAMES:
        raise SchemaError(f"reference dtype {DT_NAMES[dt - 100]}_ref is not a tensor dtype")
    name = DT_NAMES.get(dt)
    raise SchemaError(f"unsupported tensor dtype {name or dt}")


def datatype_of(dtype: Any) -> int:
    """The DataType enum value for a numpy dtype or dtype-like (``"float32"``, ``np.int64``,
    ``"string"``/``bytes``/``object``, ``"bfloat16"``, a TF DType with ``as_numpy_dtype``)."""
    if hasattr(dtype, "as_numpy_dtype"):  # a tf.DType, without importing TensorFlow
        dtype = dtype.as_numpy_dtype
    if isinstance(dtype, str):
        low = dtype.lower()
        if low in ("string", "str", "bytes", "object", "tf.string"):
            return DT_STRING
        low = low.removeprefix("tf.")
        for num, name in {**DT_NAMES, DT_HALF: "float16", DT_FLOAT: "float32", DT_DOUBLE: "float64"}.items():
            if name == low:
                return num
        if low in ("half", "float", "double"):
            return {"half": DT_HALF, "float": DT_FLOAT, "double": DT_DOUBLE}[low]
    if dtype in (bytes, str, object):
        return DT_STRING
    np_dtype = np.dtype(dtype)
    if np_dtype.kind in "OSU":
        return DT_STRING
    name = np_dtype.name
    for num, ml_name in _ML_DTYPES.items():
        if name == ml_name:
            return num
    for num, code in _NUMPY_DTYPES.items():
        if np.dtype(code).newbyteorder("=") == np_dtype.newbyteorder("="):
            return num
    raise SchemaError(f"numpy dtype {np_dtype} has no TensorFlow DataType")


def _check_out_type(dt: int, out_type: Any) -> None:
    if out_type is None:
        return
    want = datatype_of(out_type)
    if want != dt:
        raise SchemaError(
            f"Type mismatch between parsed tensor ({DT_NAMES.get(dt, dt)}) and dtype ({DT_NAMES.get(want, want)})"
        )


#: numpy's limits, tighter than TensorFlow's (254 dims): an array holds at most
#: 64 dims, and its non-zero dims times the itemsize (16 at most) must fit in
#: an int64 even when another dim is 0 -- else reshape raises numpy's ValueError
_MAX_DIMS = 64
_MAX_ELEMENTS = (1 << 63) // 16


def _element_count(shape: tuple[int, ...]) -> int:
    """Elements of ``shape``; SchemaError where numpy could not hold the shape at all."""
    if len(shape) > _MAX_DIMS:
        raise SchemaError(f"tensor has {len(shape)} dimensions; numpy arrays hold at most {_MAX_DIMS}")
    n = nonzero = 1
    for d in shape:
        n *= d
        nonzero *= d or 1
        if nonzero > _MAX_ELEMENTS:
            raise SchemaError(f"tensor shape {list(shape)} has too many elements")
    return n


class _Unusual(Exception):
    """Internal: an encoding the hand walk leaves to protobuf's parser."""


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """``_wire.iter_fields`` for the hand walk: one-byte tags and at most 5-byte
    lengths only.  Protobuf (upb here, C++ in TensorFlow) refuses longer tags and
    lengths that ``iter_fields`` would take, so those go to the general path."""
    pos = start
    for f in _wire.iter_fields(buf, start, end):
        if buf[pos] >= 0x80 or (f[1] == _wire.LEN and f[2] - pos > 6):
            raise _Unusual
        yield f
        pos = f[3]  # the next field starts where this one's value ends


def _parse_shape(buf: memoryview, start: int, end: int, dims: list[int], unknown_rank: bool) -> bool:
    """Merge one TensorShapeProto into ``dims``, as protobuf merges a repeated
    message field (dims append, the last ``unknown_rank`` wins); returns it."""
    for field, wt, a, b in _fields(buf, start, end):
        if field == 2 and wt == _wire.LEN:
            size = 0
            for f2, wt2, v, _ in _fields(buf, a, b):
                if f2 == 1 and wt2 == _wire.VARINT:
                    size = _wire.to_int64(v)
                elif f2 == 2:
                    raise _Unusual  # a dim name: protobuf checks it is UTF-8
            if size < 0:
                raise SchemaError(f"tensor shape has an unknown dimension ({size})")
            dims.append(size)
            if len(dims) > _MAX_DIMS:  # say so now, not after walking a megabyte of dims
                raise SchemaError(f"tensor has over {_MAX_DIMS} dimensions; numpy arrays hold at most {_MAX_DIMS}")
        elif field == 3 and wt == _wire.VARINT:
            unknown_rank = bool(a)
    return unknown_rank


def _from_content(content: memoryview, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    n = _element_count(shape)
    if len(content) != n * dtype.itemsize:
        raise SchemaError(
            f"tensor_content holds {len(content)} bytes, but shape {list(shape)} of "
            f"{dtype.name} needs {n * dtype.itemsize}"
        )
    arr = np.frombuffer(content, dtype=dtype) if n else np.empty(0, dtype)
    if not _LITTLE and dtype.byteorder == "<":
        arr = arr.astype(dtype.newbyteorder("="))
    return arr.reshape(shape)


def parse_tensor(data: bytes | bytearray | memoryview, out_type: Any = None) -> np.ndarray:
    """Decode a serialized ``TensorProto`` (what ``tf.io.serialize_tensor`` writes).

    The dtype comes from the proto; ``out_type``, when given, must agree
    (as in TensorFlow).  A ``tensor_content`` tensor is a read-only view of
    ``data`` (no copy); strings come back as an object array of ``bytes``.
    """
    view = memoryview(data).cast("B") if not isinstance(data, memoryview) or data.format != "B" else data
    try:
        fast = _canonical_tensor(view) or _scan_tensor(view)
    except (_wire.WireError, _Unusual):
        fast = None  # malformed or non-canonical: protobuf's parser decides, as in TensorFlow
    if fast is not None:
        dt, shape, content = fast
        _check_out_type(dt, out_type)
        if dt == DT_STRING:
            return _strings_from_content(content, shape)
        return _from_content(content, numpy_dtype(dt), shape)
    return _parse_general(view, out_type)


def tensor_header(view: memoryview) -> tuple[int, tuple[int, ...], int, int] | None:
    """``(dtype, shape, content_start, content_len)`` of the layout
    ``tf.io.serialize_tensor`` writes for numbers, read in one straight pass:
    ``08 dtype 12 shape(12 dim(08 size))* 22 len content``.

    ``view`` may stop anywhere inside the content (the record fast path reads
    only a record's first bytes).  Anything else (or anything odd in it)
    returns None, for the general walk.
    """
    end = len(view)
    if end < 5 or view[0] != 0x08 or view[1] >= 0x80 or view[2] != 0x12 or view[3] >= 0x80:
        return None
    dt = view[1]
    shape_end = 4 + view[3]
    p = 4
    if shape_end >= end:
        return None
    dims = []
    while p < shape_end:
        if p + 2 > shape_end or view[p] != 0x12:
            return None
        dn = view[p + 1]
        p += 2
        if dn == 0:
            dims.append(0)
            continue
        if dn > 11 or p + dn > shape_end or view[p] != 0x08:
            return None
        size, q = _wire.read_varint(view, p + 1, p + dn)
        if q != p + dn or size >= 1 << 63:
            return None
        dims.append(size)
        p = q
    if p != shape_end or view[p] != 0x22:
        return None
    n, q = _wire.read_varint(view, p + 1, end)
    if q - p > 6 or n >= 1 << 31 or n == 0 or len(dims) > _MAX_DIMS:
        return None  # protobuf refuses lengths over 5 bytes or 2 GiB
    return dt, tuple(dims), q, n


def _canonical_tensor(view: memoryview) -> tuple[int, tuple[int, ...], memoryview] | None:
    """:func:`tensor_header` of a whole serialized tensor, with its content."""
    try:
        head = tensor_header(view)
    except _wire.WireError:
        return None
    if head is None or head[2] + head[3] != len(view):
        return None
    dt, shape, start, _ = head
    return dt, shape, view[start:]


def _scan_tensor(view: memoryview) -> tuple[int, tuple[int, ...], memoryview] | None:
    """(dtype, shape, tensor_content) when the proto holds nothing else; else None."""
    dt = 0
    dims: list[int] = []
    unknown_rank = False
    content: memoryview | None = None
    for field, wt, a, b in _fields(view, 0, len(view)):
        if field == 1 and wt == _wire.VARINT:
            dt = _wire.to_int32(a)
        elif field == 2 and wt == _wire.LEN:  # repeated: protobuf merges the shapes
            unknown_rank = _parse_shape(view, a, b, dims, unknown_rank)
        elif field == 3 and wt == _wire.VARINT:
            pass
        elif field == 4 and wt == _wire.LEN:
            # an empty tensor_content is no content (TensorFlow's FromProto tests
            # .empty()): the value fields, or zeros, fill the tensor
            content = view[a:b] if b > a else None
        else:
            return None  # typed values, repeated/odd encodings: the general path
    if unknown_rank:
        raise SchemaError("tensor shape has unknown rank")
    shape = tuple(dims)
    if content is None:
        content = view[0:0]
        if _element_count(shape) and dt != DT_STRING:
            return None  # zero-filled / val fields: the general path
        if dt == DT_STRING and _element_count(shape):
            return None
    return dt, shape, content


def _strings_from_content(content: memoryview, shape: tuple[int, ...]) -> np.ndarray:
    """TensorFlow's string encoding in tensor_content: n varint lengths, then the bytes."""
    n = _element_count(shape)
    pos, end = 0, len(content)
    if n > end:  # each string takes at least its length byte: refuse before allocating
        raise SchemaError(f"bad string tensor_content: {end} bytes cannot hold {n} strings")
    out = np.empty(n, dtype=object)
    try:
        lengths = []
        for _ in range(n):
            ln, pos = _wire.read_varint(content, pos, end)
            lengths.append(ln)
        for i, ln in enumerate(lengths):
            if ln > end - pos:
                raise _wire.WireError("string runs past the end")
            out[i] = bytes(content[pos : pos + ln])
            pos += ln
    except _wire.WireError as exc:
        raise SchemaError(f"bad string tensor_content: {exc}") from None
    if pos != end:
        raise SchemaError("bad string tensor_content: trailing bytes")
    return out.reshape(shape)


def _fill(values: np.ndarray, n: int, dtype: np.dtype, what: str) -> np.ndarray:
    """TensorFlow's rule for typed value lists: none -> zeros, short -> repeat the last."""
    k = len(values)
    if k > n:
        raise SchemaError(f"{what} holds {k} values for a tensor of {n} elements")
    if k == n:
        return values.astype(dtype, copy=False)
    # TensorFlow's default element: 0, or b"" for strings (np.zeros would give int 0)
    out = np.full(n, b"", dtype=object) if dtype.kind == "O" else np.zeros(n, dtype=dtype)
    if k:
        out[:k] = values
        out[k:] = values[-1]
    return out


def _parse_general(view: memoryview, out_type: Any) -> np.ndarray:
    from ._proto import tensor_pb2

    tp = tensor_pb2.TensorProto()
    try:
        tp.ParseFromString(bytes(view))
    except Exception as exc:  # protobuf's DecodeError differs across runtimes
        raise DecodeError(f"not a valid TensorProto: {exc}") from None
    return tensor_from_proto(tp, out_type)


def tensor_from_proto(tp: Any, out_type: Any = None) -> np.ndarray:
    """Decode a ``TensorProto`` message object (ours, or anything shaped like it)."""
    dt = int(tp.dtype)
    _check_out_type(dt, out_type)
    if tp.tensor_shape.unknown_rank:
        raise SchemaError("tensor shape has unknown rank")
    shape = tuple(int(d.size) for d in tp.tensor_shape.dim)
    if any(d < 0 for d in shape):
        raise SchemaError(f"tensor shape {list(shape)} has an unknown dimension")
    n = _element_count(shape)
    dtype = numpy_dtype(dt)
    if not tp.tensor_content and n * max(dtype.itemsize, 1) > MAX_FILL_BYTES:
        raise SchemaError(
            f"tensor of shape {list(shape)} would fill {n * dtype.itemsize} bytes from its value "
            f"fields, over the {MAX_FILL_BYTES}-byte limit (tensor.MAX_FILL_BYTES)"
        )
    if tp.tensor_content:
        content = memoryview(tp.tensor_content)
        if dt == DT_STRING:
            return _strings_from_content(content, shape)
        return _from_content(content, dtype, shape)
    if dt == DT_STRING:
        vals = np.empty(len(tp.string_val), dtype=object)
        vals[:] = list(tp.string_val)
        return _fill(vals, n, np.dtype(object), "string_val").reshape(shape)
    if dt == DT_FLOAT:
        vals = np.array(tp.float_val, dtype=np.float32)
        what = "float_val"
    elif dt == DT_DOUBLE:
        vals = np.array(tp.double_val, dtype=np.float64)
        what = "double_val"
    elif dt in (DT_INT32, DT_INT16, DT_INT8, DT_UINT8, DT_UINT16) or dt in (11, 12, 13, 15, 16):
        vals = np.array(tp.int_val, dtype=np.int64).astype(dtype)  # TF truncates like a C cast
        what = "int_val"
    elif dt == DT_INT64:
        vals = np.array(tp.int64_val, dtype=np.int64)
        what = "int64_val"
    elif dt == DT_UINT32:
        vals = np.array(tp.uint32_val, dtype=np.uint32)
        what = "uint32_val"
    elif dt == DT_UINT64:
        vals = np.array(tp.uint64_val, dtype=np.uint64)
        what = "uint64_val"
    elif dt == DT_BOOL:
        vals = np.array(tp.bool_val, dtype=bool)
        what = "bool_val"
    elif dt in (DT_HALF, DT_BFLOAT16):
        bits = np.array(tp.half_val, dtype=np.int64).astype(np.uint16)
        vals = bits.view(dtype)
        what = "half_val"
    elif dt == DT_COMPLEX64:
        pairs = np.array(tp.scomplex_val, dtype=np.float32)
        if len(pairs) % 2:
            raise SchemaError("scomplex_val holds an odd number of floats")
        vals = pairs.view(np.complex64)
        what = "scomplex_val"
    elif dt == DT_COMPLEX128:
        pairs = np.array(tp.dcomplex_val, dtype=np.float64)
        if len(pairs) % 2:
            raise SchemaError("dcomplex_val holds an odd number of doubles")
        vals = pairs.view(np.complex128)
        what = "dcomplex_val"
    elif dt in (24, 25, 26, 27, 28):
        vals = np.frombuffer(tp.float8_val, dtype=np.uint8).view(dtype)
        what = "float8_val"
    elif dt in (29, 30):
        vals = np.array(tp.int_val, dtype=np.int64).astype(np.int8 if dt == 29 else np.uint8).view(dtype)
        what = "int_val"
    else:  # pragma: no cover - numpy_dtype() refuses the rest
        raise SchemaError(f"unsupported tensor dtype {DT_NAMES.get(dt, dt)}")
    return _fill(vals, n, dtype, what).reshape(shape)


def _len_field(field: int, payload: bytes) -> bytes:
    return _wire.encode_varint(field << 3 | 2) + _wire.encode_varint(len(payload)) + payload


def serialize_shape(shape: tuple[int, ...]) -> bytes:
    """A TensorShapeProto's bytes, as TensorFlow writes them."""
    return b"".join(_len_field(2, (b"\x08" + _wire.encode_varint(d)) if d else b"") for d in shape)


def serialize_tensor(array: npt.ArrayLike) -> bytes:
    """Encode an array as TensorFlow's ``tf.io.serialize_tensor`` does, byte for byte.

    Numbers go to ``tensor_content`` (little-endian); strings (object arrays
    of bytes/str, or numpy ``S``/``U`` arrays) to ``string_val``.
    """
    arr = np.asarray(array)
    dt = datatype_of(arr.dtype)
    head = b"\x08" + _wire.encode_varint(dt) + _len_field(2, serialize_shape(arr.shape))
    if dt == DT_STRING:
        parts = [head]
        for item in arr.reshape(-1):
            if isinstance(item, str):
                item = item.encode("utf-8")
            elif isinstance(item, np.bytes_):
                item = bytes(item)
            if not isinstance(item, (bytes, bytearray)):
                raise SchemaError(f"string tensors hold bytes or str, not {type(item).__name__}")
            parts.append(_len_field(8, bytes(item)))
        return b"".join(parts)
    if arr.size == 0:
        return head
    le = arr.dtype.newbyteorder("<") if arr.dtype.byteorder not in ("|", "<") and arr.dtype.itemsize > 1 else arr.dtype
    content = np.ascontiguousarray(arr, dtype=le).tobytes()
    return head + _len_field(4, content)
