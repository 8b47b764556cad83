"""parse_tensor / serialize_tensor against every tensor TensorFlow wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conftest import DATA
from tfrecord_numpy import DecodeError, SchemaError, read_records
from tfrecord_numpy._proto import example_pb2, tensor_pb2
from tfrecord_numpy.tensor import parse_tensor, serialize_tensor

GOLDEN = json.loads((DATA / "tensors" / "tensors.golden.json").read_text())
NPZ = np.load(DATA / "tensors" / "tensors.golden.npz")


def _records():
    out = []
    for rec in read_records(DATA / "tensors" / "tensors.tfrecord"):
        f = example_pb2.Example.FromString(rec).features.feature
        out.append((f["name"].bytes_list.value[0].decode(), f["tensor"].bytes_list.value[0]))
    return out


RECORDS = _records()


def test_all_107_present():
    assert len(RECORDS) == len(GOLDEN["records"]) == 107
    assert [n for n, _ in RECORDS] == [r["name"] for r in GOLDEN["records"]]


@pytest.mark.parametrize("i", range(107), ids=[r["name"] for r in GOLDEN["records"]])
def test_golden_tensor(i):
    name, data = RECORDS[i]
    meta = GOLDEN["records"][i]
    arr = parse_tensor(data)
    assert list(arr.shape) == meta["shape"]
    if meta["dtype"] == "string":
        assert arr.dtype == object
        assert [bytes.fromhex(h) for h in meta["values_hex"]] == list(arr.reshape(-1))
        assert all(type(x) is bytes for x in arr.reshape(-1))
    elif meta["dtype"] == "bfloat16":
        assert arr.dtype.name == "bfloat16"
        assert arr.view(np.uint16).tobytes() == NPZ[name + "__bits"].tobytes()
        assert arr.astype(np.float32).tobytes() == NPZ[name + "__f32"].tobytes()
    else:
        want = NPZ[name]
        assert arr.dtype == want.dtype
        assert arr.tobytes() == want.tobytes()  # bitwise: NaN payloads, -0.0, subnormals
    if meta["encoding"] == "serialize_tensor":
        assert serialize_tensor(arr) == data  # byte-identical to tf.io.serialize_tensor
    # the same value through the general (protobuf) path
    tp = tensor_pb2.TensorProto.FromString(data)
    from tfrecord_numpy.tensor import tensor_from_proto

    again = tensor_from_proto(tp)
    assert again.dtype == arr.dtype and again.shape == arr.shape
    if arr.dtype != object:
        assert again.tobytes() == arr.tobytes()
    else:
        assert list(again.reshape(-1)) == list(arr.reshape(-1))


def test_tensor_content_is_zero_copy():
    name, data = next((n, d) for n, d in RECORDS if n == "float32_12x5x1280")
    buf = bytearray(data)
    arr = parse_tensor(buf)
    assert np.shares_memory(arr, np.frombuffer(buf, np.uint8))


def test_out_type_mismatch_raises_like_tensorflow():
    _, data = next((n, d) for n, d in RECORDS if n == "float32_12x5x1280")
    assert parse_tensor(data, out_type=np.float32).dtype == np.float32
    assert parse_tensor(data, out_type="float32").shape == (12, 5, 1280)
    with pytest.raises(SchemaError, match=r"Type mismatch between parsed tensor \(float\) and dtype \(double\)"):
        parse_tensor(data, out_type=np.float64)


def _proto(dtype, shape, **fields) -> bytes:
    tp = tensor_pb2.TensorProto(dtype=dtype)
    tp.tensor_shape.SetInParent()
    for d in shape:
        tp.tensor_shape.dim.add(size=d)
    for k, v in fields.items():
        attr = getattr(tp, k)
        if isinstance(v, (bytes, bytearray)):
            setattr(tp, k, v)
        else:
            attr.extend(v)
    return tp.SerializeToString()


def test_content_size_mismatch_is_an_error():
    with pytest.raises(SchemaError, match="needs 12"):
        parse_tensor(_proto(1, [3], tensor_content=b"\x00" * 8))


def test_too_many_typed_values_is_an_error():
    with pytest.raises(SchemaError, match="3 values"):
        parse_tensor(_proto(1, [2], float_val=[1, 2, 3]))


@pytest.mark.parametrize("dt,word", [(20, "RESOURCE"), (21, "VARIANT"), (99, "unsupported"), (101, "ref")])
def test_unsupported_dtypes(dt, word):
    with pytest.raises(SchemaError, match=word):
        parse_tensor(_proto(dt, [1], tensor_content=b"\x00" * 4))


def test_garbage_is_decode_error():
    with pytest.raises(DecodeError):
        parse_tensor(b"\x0a\xff\xff\xff")


def test_bfloat16_without_ml_dtypes_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "ml_dtypes":
            raise ImportError("no ml_dtypes")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    _, data = next((n, d) for n, d in RECORDS if n == "bfloat16_vec7")
    with pytest.raises(SchemaError, match=r"tfrecord-numpy\[bfloat16\]"):
        parse_tensor(data)


NUMERIC = [
    np.float16,
    np.float32,
    np.float64,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.bool_,
    np.complex64,
    np.complex128,
]


@settings(max_examples=150, deadline=None)
@given(
    arr=st.sampled_from(NUMERIC).flatmap(
        lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
    )
)
def test_numeric_round_trip(arr):
    back = parse_tensor(serialize_tensor(arr))
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert back.tobytes() == arr.tobytes()
    # and the general path agrees
    from tfrecord_numpy.tensor import tensor_from_proto

    assert tensor_from_proto(tensor_pb2.TensorProto.FromString(serialize_tensor(arr))).tobytes() == arr.tobytes()


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.binary(max_size=40), max_size=8))
def test_string_round_trip(values):
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    back = parse_tensor(serialize_tensor(arr))
    assert list(back) == values


def test_big_endian_input_is_serialized_little_endian():
    a = np.arange(6, dtype=">i4").reshape(2, 3)
    assert parse_tensor(serialize_tensor(a)).tolist() == a.tolist()
    assert serialize_tensor(a) == serialize_tensor(a.astype("<i4"))


def test_shape_overflow_and_fill_limit_are_errors():
    with pytest.raises(SchemaError, match="too many elements"):
        parse_tensor(_proto(1, [1 << 40, 1 << 40], float_val=[1.0]))
    with pytest.raises(SchemaError, match="limit"):
        parse_tensor(_proto(1, [1 << 29, 4], float_val=[1.0]))  # 8 GiB from 4 bytes
    with pytest.raises(SchemaError, match="needs"):
        parse_tensor(_proto(1, [1 << 40], tensor_content=b"\x00" * 8))
    with pytest.raises(SchemaError, match="unknown"):
        parse_tensor(_proto(1, [-1], tensor_content=b""))
