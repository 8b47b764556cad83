"""tf.Example parsing and encoding against TensorFlow's own goldens and protobuf.

* every record of ``data/examples`` is checked against what protobuf and
  ``tf.io.parse_single_example`` (TensorFlow 2.21) made of it, values bitwise;
* the protobuf view is checked differentially against the installed upb
  runtime on generated, deliberately odd wire data;
* ``encode_example`` must give back the A2O corpus byte for byte and
  round-trip through both parsers.
"""

from __future__ import annotations

import json
import math
import random
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfrecord_numpy._proto import example_pb2, feature_pb2
from tfrecord_numpy.errors import DecodeError, SchemaError, TFRecordError
from tfrecord_numpy.example import (
    FixedLenFeature,
    SparseValue,
    VarLenFeature,
    encode_example,
    parse_example,
    read_examples,
)
from tfrecord_numpy.reader import read_records

DATA = Path(__file__).parent / "data"
EXAMPLES = DATA / "examples" / "examples.tfrecord"
GOLDEN = json.loads((DATA / "examples" / "examples.golden.json").read_text())
RECORDS = GOLDEN["records"]
SPECS = GOLDEN["specs"]
A2O_SHARDS = sorted((DATA / "a2o").glob("embeddings-*"))

try:
    from google.protobuf.internal import api_implementation

    PB_RUNTIME = api_implementation.Type()
except Exception:  # pragma: no cover - very old runtimes
    PB_RUNTIME = "unknown"
needs_upb = pytest.mark.skipif(PB_RUNTIME != "upb", reason="the protobuf view follows upb's rules")

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- golden helpers


def make_spec(d: dict) -> FixedLenFeature | VarLenFeature:
    """A spec from the golden's description (string defaults are hex there)."""
    if d["type"] == "VarLenFeature":
        return VarLenFeature(d["dtype"])
    default = d["default_value"]
    if d["dtype"] == "string" and default is not None:
        default = bytes.fromhex(default) if isinstance(default, str) else [bytes.fromhex(x) for x in default]
    return FixedLenFeature(d["shape"], d["dtype"], default)


def hex_tree(value):
    """Nested hex strings -> nested bytes."""
    if isinstance(value, list):
        return [hex_tree(v) for v in value]
    return bytes.fromhex(value)


def assert_result(got, gold: dict, where: str) -> None:
    """One output against TF's golden: dtype, shape, sparse layout, values bitwise."""
    if gold["sparse"]:
        assert isinstance(got, SparseValue), where
        n = gold["dense_shape"][0]
        assert got.indices.dtype == np.int64 and got.indices.shape == (n, 1), where
        assert got.indices.ravel().tolist() == [i[0] for i in gold["indices"]], where
        assert got.dense_shape.dtype == np.int64 and got.dense_shape.tolist() == gold["dense_shape"], where
        values = got.values
        assert values.shape == (n,), where
        if gold["dtype"] == "float32":
            assert values.dtype == np.float32, where
            want = np.array(gold["values"], dtype=np.float64).astype(np.float32)  # exact: came from float32
            nan = np.isnan(want)
            assert np.array_equal(np.isnan(values), nan), where
            assert np.array_equal(values.view(np.uint32)[~nan], want.view(np.uint32)[~nan]), where
        elif gold["dtype"] == "int64":
            assert values.dtype == np.int64 and values.tolist() == gold["values"], where
        else:
            assert values.dtype == object and values.tolist() == hex_tree(gold["values"]), where
        return
    assert isinstance(got, np.ndarray), where
    assert list(got.shape) == gold["shape"], where
    if gold["dtype"] == "float32":
        assert got.dtype == np.float32, where
        assert got.view(np.uint32).tolist() == gold["float32_bits"], where
    elif gold["dtype"] == "int64":
        assert got.dtype == np.int64 and got.tolist() == gold["value"], where
    else:
        assert got.dtype == object and got.tolist() == hex_tree(gold["value"]), where


def expected_error_class(tf_message: str) -> type[TFRecordError]:
    if tf_message.startswith("Could not parse example input") or "Parsing" in tf_message:
        return DecodeError
    return SchemaError


def key_phrase(tf_message: str) -> str:
    """The part of TF's message ours must carry verbatim (TF appends the raw record to one)."""
    return tf_message.split(", value:")[0]


def check_call(data: bytes, spec: dict, gold: dict, where: str) -> None:
    if gold["ok"]:
        out = parse_example(data, spec)
        assert set(out) == set(gold["result"]), where
        for name, res in gold["result"].items():
            assert_result(out[name], res, f"{where}/{name}")
        return
    cls = expected_error_class(gold["message"])
    with pytest.raises(TFRecordError) as info:
        parse_example(data, spec)
    assert type(info.value) is cls, (where, info.value)
    assert key_phrase(gold["message"]) in str(info.value), (where, str(info.value), gold["message"])


@pytest.fixture(scope="module")
def golden_bytes() -> list[bytes]:
    return list(read_records(EXAMPLES))


def test_golden_file_holds_the_golden_records(golden_bytes):
    assert [r.hex() for r in golden_bytes] == [r["serialized_hex"] for r in RECORDS]
    assert len(RECORDS) == 22


# --------------------------------------------------------------------------- protobuf's view


@pytest.mark.parametrize("rec", RECORDS, ids=[r["name"] for r in RECORDS])
def test_protobuf_view_matches_golden(rec, golden_bytes):
    data = golden_bytes[rec["index"]]
    example = rec["example"]
    if "__decode_error__" in example:
        with pytest.raises(DecodeError):
            parse_example(data)
        return
    view = parse_example(data)
    assert set(view) == set(example)
    for name, want in example.items():
        got = view[name]
        kind = want["kind"]
        if kind == "bytes_list":
            assert got == hex_tree(want["value"]), name
        elif kind == "int64_list":
            assert isinstance(got, np.ndarray) and got.dtype == np.int64 and got.tolist() == want["value"], name
        elif kind == "float_list":
            assert isinstance(got, np.ndarray) and got.dtype == np.float32, name
            assert got.view(np.uint32).tolist() == want["float32_bits"], name
        else:  # no kind set: documented as an empty float32 array
            assert kind is None and isinstance(got, np.ndarray) and got.dtype == np.float32 and got.size == 0


# --------------------------------------------------------------------------- TensorFlow's view


@pytest.mark.parametrize("kind", ["fixed", "varlen"])
@pytest.mark.parametrize("rec", RECORDS, ids=[r["name"] for r in RECORDS])
def test_single_feature_specs_match_tensorflow(rec, kind, golden_bytes):
    data = golden_bytes[rec["index"]]
    assert set(rec[kind]) == set(SPECS[kind])
    for label, gold in rec[kind].items():
        d = SPECS[kind][label]
        check_call(data, {d["feature"]: make_spec(d)}, gold, f"{rec['name']}/{kind}/{label}")


@pytest.mark.parametrize("kind", ["fixed", "varlen"])
@pytest.mark.parametrize("rec", RECORDS, ids=[r["name"] for r in RECORDS])
def test_all_features_in_one_call_match_tensorflow(rec, kind, golden_bytes):
    """Which key TF reports when several features fail depends on entry order."""
    data = golden_bytes[rec["index"]]
    spec = {label: make_spec(d) for label, d in SPECS[kind].items() if label == d["feature"]}
    assert len(spec) == 12
    check_call(data, spec, rec[f"{kind}_all"], f"{rec['name']}/{kind}_all")


def test_golden_covers_the_quirks_we_claim():
    """Guard against a golden file that silently lost its interesting cases."""
    names = {r["name"] for r in RECORDS}
    for n in (
        "hand_packed_split_in_two_chunks",
        "hand_oneof_twice",
        "hand_duplicate_key",
        "hand_value_before_key",
        "hand_missing_map_key",
        "hand_missing_map_value",
        "hand_unknown_field_in_features",
        "hand_unknown_field_in_map_entry",
        "hand_truncated_protobuf",
    ):
        assert n in names


# --------------------------------------------------------------------------- TF quirks beyond the goldens
# Pinned from example_proto_fast_parsing.cc, where the goldens have no case.


def _ld(field: int, payload: bytes) -> bytes:
    return _tag(field, 2) + _varint(len(payload)) + payload


def _tag(field: int, wt: int) -> bytes:
    return _varint((field << 3) | wt)


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _example(*entries: tuple[bytes, bytes]) -> bytes:
    return _ld(1, b"".join(_ld(1, _ld(1, k) + _ld(2, f)) for k, f in entries))


def test_tf_reads_a_packed_float_chunk_of_odd_length_that_protobuf_rejects():
    data = _example((b"f", _ld(2, _ld(1, b"\x00\x00\x80\x3f\x01\x02"))))
    with pytest.raises(DecodeError):
        parse_example(data)
    got = parse_example(data, {"f": VarLenFeature("float32")})["f"]
    assert got.values.tolist() == [1.0] and got.dense_shape.tolist() == [1]
    assert parse_example(data, {"f": FixedLenFeature([], "float32")})["f"].tolist() == 1.0


def test_tf_fixed_bytes_with_too_many_values_fails_while_parsing():
    data = _example((b"b", _ld(1, _ld(1, b"x") + _ld(1, b"y"))))
    with pytest.raises(SchemaError, match="Key: b.  Can't parse serialized Example: Parsing bytes_list failed"):
        parse_example(data, {"b": FixedLenFeature([], "string")})
    got = parse_example(data, {"b": FixedLenFeature([2], bytes)})["b"]
    assert got.dtype == object and got.tolist() == [b"x", b"y"]


def test_float_bits_survive_every_path_exactly():
    bits = np.array(SPECIAL_BITS, dtype=np.uint32)
    data = encode_example({"f": bits.view(np.float32)})
    assert parse_example(data)["f"].view(np.uint32).tolist() == bits.tolist()
    for spec in (VarLenFeature("float32"), FixedLenFeature([3, 3], "float32")):
        got = parse_example(data, {"f": spec})["f"]
        arr = got.values if isinstance(got, SparseValue) else got
        assert arr.view(np.uint32).ravel().tolist() == bits.tolist()
    as_list = parse_example(encode_example({"f": list(bits.view(np.float32))}))["f"]
    assert as_list.view(np.uint32).tolist() == bits.tolist()
    unpacked = _example((b"f", _ld(2, b"".join(_tag(1, 5) + int(b).to_bytes(4, "little") for b in bits))))
    assert parse_example(unpacked)["f"].view(np.uint32).tolist() == bits.tolist()
    got = parse_example(unpacked, {"f": VarLenFeature("float32")})["f"].values
    assert got.view(np.uint32).tolist() == bits.tolist()


def test_tf_map_entry_must_end_after_its_key_and_value():
    """A third field, even a second key, makes TF reject the record; protobuf takes the last key."""
    entry = _ld(1, b"a") + _ld(2, _ld(3, _ld(1, b"\x01"))) + _ld(1, b"b")
    data = _ld(1, _ld(1, entry))
    assert list(parse_example(data)) == ["b"]
    with pytest.raises(DecodeError, match="Could not parse example input"):
        parse_example(data, {"a": VarLenFeature("int64")})
    swapped = _ld(1, _ld(1, _ld(2, _ld(3, _ld(1, b"\x01"))) + _ld(1, b"a")))  # value first is fine
    assert parse_example(swapped, {"a": VarLenFeature("int64")})["a"].values.tolist() == [1]


def test_tf_feature_starting_with_an_unknown_field_is_unsupported():
    data = _example((b"i", _tag(9, 0) + b"\x01" + _ld(3, _ld(1, b"\x05"))))
    assert parse_example(data)["i"].tolist() == [5]  # protobuf skips the unknown field
    with pytest.raises(DecodeError, match="Key: i.  Unsupported datatype"):
        parse_example(data, {"i": VarLenFeature("int64")})


def test_tf_skips_a_kindless_duplicate_and_uses_the_earlier_entry():
    data = _example((b"i", _ld(3, _ld(1, b"\x07"))), (b"i", b""))
    assert parse_example(data)["i"].size == 0  # protobuf: the last entry wins
    assert parse_example(data, {"i": FixedLenFeature([], np.int64)})["i"].tolist() == 7


def test_tf_reports_the_last_failing_entry_and_ignores_unrequested_ones():
    data = _example((b"a", _ld(3, _ld(1, b"\x01"))), (b"b", _ld(3, _ld(1, b"\x02"))), (b"zz", b"\xff"))
    spec = {"a": FixedLenFeature([], "float32"), "b": FixedLenFeature([], "float32")}
    with pytest.raises(SchemaError, match="Key: b.  Data types don't match"):
        parse_example(data, spec)


def test_missing_required_features_are_reported_in_name_order():
    spec = {"zeta": FixedLenFeature([], "int64"), "alpha": FixedLenFeature([2], "float32")}
    with pytest.raises(SchemaError, match=r"Feature: alpha \(data type: float\) is required but could not be found"):
        parse_example(encode_example({}), spec)


def test_results_follow_the_spec_order_and_defaults_are_fresh_copies():
    spec = {"b": FixedLenFeature([2], "int64", [4, 5]), "a": VarLenFeature(str)}
    first = parse_example(encode_example({}), spec)
    assert list(first) == ["b", "a"]
    first["b"][0] = 99
    again = parse_example(encode_example({}), spec)["b"]
    assert again.tolist() == [4, 5] and again.flags.writeable
    assert again.dtype == np.int64
    assert first["a"].values.dtype == object and first["a"].indices.shape == (0, 1)


# --------------------------------------------------------------------------- specs


def test_spec_dtype_spellings_are_equivalent():
    assert FixedLenFeature([], np.float32) == FixedLenFeature((), "float32")
    assert FixedLenFeature([3], "int64", [1, 2, 3]) == FixedLenFeature((3,), np.int64, np.array([1, 2, 3]))
    assert hash(FixedLenFeature([3], "int64", [1, 2, 3])) == hash(FixedLenFeature((3,), np.int64, (1, 2, 3)))
    assert FixedLenFeature([3], "int64", [1, 2, 3]) != FixedLenFeature([3], "int64", [1, 2, 4])
    for s in (bytes, str, object, "string", np.bytes_):
        assert VarLenFeature(s).dtype == "string"
    assert VarLenFeature(np.int64) == VarLenFeature("int64")
    assert FixedLenFeature([], "string", "x").default_value.tolist() == b"x"
    for bad in (np.float64, "int32", complex):
        with pytest.raises(ValueError):
            VarLenFeature(bad)


def test_spec_rejects_bad_shapes_and_defaults():
    with pytest.raises(ValueError):
        FixedLenFeature([None], "float32")
    with pytest.raises(ValueError):
        FixedLenFeature([-1], "float32")
    with pytest.raises(ValueError, match="holds 3"):
        FixedLenFeature([3], "float32", 0.0)
    with pytest.raises(TypeError):
        parse_example(encode_example({}), {"x": "float32"})


# --------------------------------------------------------------------------- inputs and copies


def test_bytearray_and_memoryview_inputs_parse_the_same_and_never_alias(golden_bytes):
    data = golden_bytes[1]
    spec = {"b_multi": VarLenFeature("string"), "f_multi": FixedLenFeature([3], "float32")}
    want_view = parse_example(data)
    want_spec = parse_example(data, spec)
    buf = bytearray(data)
    for source in (buf, memoryview(buf), np.frombuffer(buf, np.uint8)):
        view = parse_example(source)
        got = parse_example(source, spec)
        buf[:] = b"\xaa" * len(buf)  # the caller reuses its buffer
        assert view["b_multi"] == want_view["b_multi"]
        assert view["f_multi"].view(np.uint32).tolist() == want_view["f_multi"].view(np.uint32).tolist()
        assert got["b_multi"].values.tolist() == want_spec["b_multi"].values.tolist()
        assert got["f_multi"].view(np.uint32).tolist() == want_spec["f_multi"].view(np.uint32).tolist()
        buf[:] = data


def test_a_large_bytes_value_is_copied_once():
    big = bytes(range(256)) * 4096  # 1 MiB
    data = encode_example({"embedding": big, "shape": np.array([1, 2, 3]), "t": 1.5})
    spec = {"embedding": FixedLenFeature([], "string"), "shape": VarLenFeature("int64")}
    for features in (None, spec):
        tracemalloc.start()
        try:
            out = parse_example(data, features)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        value = out["embedding"][0] if features is None else out["embedding"][()]
        assert value == big
        assert peak < 1.25 * len(big), (features is None, peak)


# --------------------------------------------------------------------------- encoding


def test_a2o_records_reencode_to_their_exact_bytes():
    count = 0
    for shard in A2O_SHARDS:
        for record in read_records(shard):
            parsed = parse_example(record)
            assert list(parsed) == ["embedding_shape", "embedding", "filename", "timestamp_s"]
            assert encode_example(parsed) == record
            assert encode_example(dict(reversed(parsed.items()))) == record
            count += 1
    assert count == 13


def test_map_order_is_upbs_deterministic_order():
    keys = ["embedding", "embedding_shape", "b", "a", "ab", "abc", "", "é", "x\x00", "xa"]
    data = encode_example({k: 1 for k in keys})
    # bytewise, except that a key comes after every key it is a prefix of ("" last)
    assert list(parse_example(data)) == ["abc", "ab", "a", "b", "embedding_shape", "embedding", "x\x00", "xa", "é", ""]


@needs_upb
@SETTINGS
@given(st.lists(st.text(max_size=4), max_size=8, unique=True))
def test_map_order_equals_upb_for_any_keys(names):
    ex = example_pb2.Example()
    ex.features.SetInParent()
    for k in names:
        ex.features.feature[k].int64_list.value.append(1)
    assert encode_example({k: 1 for k in names}) == ex.SerializeToString(deterministic=True)


@needs_upb
def test_encoding_equals_protobuf_deterministic_serialization():
    values = {
        "embedding_shape": np.array([12, 5, 1280]),
        "embedding": b"\x00" * 1000,
        "f": np.array([np.nan, -0.0, 1e-45], np.float32),
        "e": np.empty(0, np.float32),
        "i": np.empty(0, np.int64),
        "s": np.empty(0, "S"),
        "neg": [-1, -(2**63), 2**63 - 1],
        "": [b"", b"x"],
    }
    ex = example_pb2.Example()
    ex.features.SetInParent()
    for k, v in values.items():
        f = ex.features.feature[k]
        if k in ("embedding", ""):
            f.bytes_list.value.extend([v] if isinstance(v, bytes) else v)
        elif k in ("f", "e"):
            f.float_list.SetInParent()
            f.float_list.value.extend(np.asarray(v).tolist())
        elif k == "s":
            f.bytes_list.SetInParent()
        else:
            f.int64_list.SetInParent()
            f.int64_list.value.extend(np.asarray(v).tolist())
    want = ex.SerializeToString(deterministic=True)
    assert encode_example(values) == want
    assert encode_example({}) == b"\x0a\x00"


def test_python_values_map_to_the_expected_lists():
    data = encode_example(
        {
            "f": 1.5,
            "i": 3,
            "t": True,
            "s": "héllo",
            "b": b"\x00\xff",
            "fl": [1, 2.5],
            "il": [1, False, np.int8(-3)],
            "sl": ["a", b"b"],
            "f64": np.array([[0.1, 1e300]], np.float64),
            "u8": np.arange(3, dtype=np.uint8),
            "f16": np.float16(0.5),
            "nested": [[1, 2], [3, 4]],
        }
    )
    ex = example_pb2.Example.FromString(data)  # protobuf agrees with our framing
    kinds = {k: v.WhichOneof("kind") for k, v in ex.features.feature.items()}
    assert kinds == {
        "f": "float_list", "i": "int64_list", "t": "int64_list", "s": "bytes_list", "b": "bytes_list",
        "fl": "float_list", "il": "int64_list", "sl": "bytes_list", "f64": "float_list",
        "u8": "int64_list", "f16": "float_list", "nested": "int64_list",
    }  # fmt: skip
    view = parse_example(data)
    assert view["s"] == ["héllo".encode()] and view["sl"] == [b"a", b"b"]
    assert view["il"].tolist() == [1, 0, -3] and view["nested"].tolist() == [1, 2, 3, 4]
    assert view["f64"].tolist() == [np.float32(0.1), np.inf]
    assert view["fl"].tolist() == [1.0, 2.5] and view["t"].tolist() == [1]


def test_encoding_rejects_what_it_cannot_represent():
    for bad in ([], np.array([2**64 - 1], np.uint64), [2**63], np.array([1j]), None, {"a": 1}):
        with pytest.raises((TypeError, ValueError)):
            encode_example({"x": bad})
    with pytest.raises(TypeError):
        encode_example({1: 1.0})


def test_large_int64_arrays_use_the_vectorized_codec_exactly():
    rng = np.random.default_rng(7)
    vals = np.concatenate(
        [
            rng.integers(-(2**63), 2**63 - 1, 50_000, dtype=np.int64, endpoint=True),
            rng.integers(-300, 300, 50_000),
            np.array([0, -1, 1, 127, 128, 2**63 - 1, -(2**63), 2**35, -(2**35)], np.int64),
        ]
    )
    data = encode_example({"v": vals})
    pb = example_pb2.Example.FromString(data).features.feature["v"].int64_list.value
    assert np.array_equal(np.array(pb, dtype=np.int64), vals)
    assert np.array_equal(parse_example(data)["v"], vals)
    assert np.array_equal(parse_example(data, {"v": VarLenFeature("int64")})["v"].values, vals)
    fixed = parse_example(data, {"v": FixedLenFeature([len(vals)], "int64")})["v"]
    assert np.array_equal(fixed, vals)
    truncated = _example((b"v", _ld(3, _ld(1, _ld(1, b"\x81" * 60)))))
    with pytest.raises(DecodeError):
        parse_example(truncated)
    with pytest.raises(DecodeError, match="Parsing int64_list failed"):
        parse_example(truncated, {"v": VarLenFeature("int64")})


# --------------------------------------------------------------------------- property tests

keys = st.text(min_size=0, max_size=6)
# signalling NaNs (quieted by any trip through a C double), NaN payloads, -0.0, subnormals, inf
SPECIAL_BITS = [
    0x7F800001,
    0xFF800001,
    0x7FBFFFFF,
    0x7FC00001,
    0xFFFFFFFF,
    0x80000000,
    0x00000001,
    0x807FFFFF,
    0x7F800000,
]
float_bits = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from(SPECIAL_BITS))
float_arrays = st.lists(float_bits, max_size=20).map(lambda bits: np.array(bits, dtype=np.uint32).view(np.float32))
int_arrays = st.lists(st.integers(-(2**63), 2**63 - 1), max_size=20).map(lambda v: np.array(v, dtype=np.int64))
bytes_lists = st.lists(st.binary(max_size=40), max_size=6)
values = st.one_of(float_arrays, int_arrays, bytes_lists)
feature_maps = st.dictionaries(keys, values, max_size=6)


def _for_encoding(value):
    """An empty list carries no kind: hand the encoder a typed empty array."""
    return np.empty(0, "S") if isinstance(value, list) and not value else value


def assert_same_value(got, want) -> None:
    if isinstance(want, list):
        assert got == want
    else:
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype
        assert got.view(np.uint8).tobytes() == want.view(np.uint8).tobytes()  # bitwise


def spec_for(value, fixed: bool):
    dtype = "string" if isinstance(value, list) else value.dtype
    return FixedLenFeature([len(value)], dtype) if fixed else VarLenFeature(dtype)


def as_flat(result, value):
    """A parse_example(spec) result as the plain value it encodes."""
    arr = result.values if isinstance(result, SparseValue) else result
    if isinstance(value, list):
        assert arr.dtype == object
        return arr.tolist()
    return arr


@SETTINGS
@given(feature_maps)
def test_round_trip_protobuf_view(mapping):
    data = encode_example({k: _for_encoding(v) for k, v in mapping.items()})
    view = parse_example(data)
    assert set(view) == set(mapping)
    for k, v in mapping.items():
        assert_same_value(view[k], v)


@SETTINGS
@given(feature_maps, st.booleans())
def test_round_trip_with_spec(mapping, fixed):
    data = encode_example({k: _for_encoding(v) for k, v in mapping.items()})
    out = parse_example(data, {k: spec_for(v, fixed) for k, v in mapping.items()})
    for k, v in mapping.items():
        res = out[k]
        if isinstance(res, SparseValue):
            n = len(v)
            assert res.indices.tolist() == [[i] for i in range(n)] and res.dense_shape.tolist() == [n]
        assert_same_value(as_flat(res, v), v)


@SETTINGS
@given(feature_maps, feature_maps, st.randoms(use_true_random=False), st.booleans())
def test_any_entry_order_and_extra_features(mapping, extra, rnd, fixed):
    """Entries in any order, split over concatenated Examples, with unrequested extras."""
    extra = {k: v for k, v in extra.items() if k not in mapping}
    items = list(mapping.items()) + list(extra.items())
    rnd.shuffle(items)
    data = b"".join(encode_example({k: _for_encoding(v)}) for k, v in items)
    view = parse_example(data)
    assert set(view) == set(mapping) | set(extra)
    for k, v in items:
        assert_same_value(view[k], v)
    out = parse_example(data, {k: spec_for(v, fixed) for k, v in mapping.items()})
    assert set(out) == set(mapping)
    for k, v in mapping.items():
        assert_same_value(as_flat(out[k], v), v)


@SETTINGS
@given(keys, values, values)
def test_duplicate_keys_last_one_wins_in_both_views(key, first, last):
    data = encode_example({key: _for_encoding(first)}) + encode_example({key: _for_encoding(last)})
    assert_same_value(parse_example(data)[key], last)
    assert_same_value(as_flat(parse_example(data, {key: spec_for(last, False)})[key], last), last)


# --------------------------------------------------------------------------- differential: our walker vs upb


def _unknown(field: st.SearchStrategy[int]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.tuples(field, st.integers(0, 2**64 - 1)).map(lambda t: _tag(t[0], 0) + _varint(t[1])),
        st.tuples(field, st.binary(max_size=6)).map(lambda t: _ld(t[0], t[1])),
        st.tuples(field, st.binary(min_size=4, max_size=4)).map(lambda t: _tag(t[0], 5) + t[1]),
        st.tuples(field, st.binary(min_size=8, max_size=8)).map(lambda t: _tag(t[0], 1) + t[1]),
        st.tuples(field, st.integers(0, 300)).map(lambda t: _tag(t[0], 3) + _tag(7, 0) + _varint(t[1]) + _tag(t[0], 4)),
    )


odd_field = st.integers(4, 40)
unknown = _unknown(odd_field)
wrong_wire_type = st.tuples(st.integers(1, 3), st.sampled_from([0, 1, 5])).map(
    lambda t: _tag(*t) + (b"\x01" if t[1] == 0 else b"\x00" * (8 if t[1] == 1 else 4))
)
varints = st.integers(0, 2**64 - 1).map(_varint)
list_bodies = {
    1: st.lists(st.one_of(st.binary(max_size=5).map(lambda b: _ld(1, b)), unknown), max_size=4),
    2: st.lists(
        st.one_of(
            st.lists(st.binary(min_size=4, max_size=4), max_size=3).map(lambda v: _ld(1, b"".join(v))),
            st.binary(min_size=4, max_size=4).map(lambda b: _tag(1, 5) + b),
            st.binary(max_size=7).map(lambda b: _ld(1, b)),  # often not a multiple of 4
            unknown,
        ),
        max_size=4,
    ),
    3: st.lists(
        st.one_of(
            st.lists(varints, max_size=3).map(lambda v: _ld(1, b"".join(v))),
            varints.map(lambda v: _tag(1, 0) + v),
            st.binary(max_size=4).map(lambda b: _ld(1, b)),  # maybe a truncated varint
            unknown,
        ),
        max_size=4,
    ),
}
feature_body = st.lists(
    st.one_of(
        *[body.map(lambda parts, f=f: _ld(f, b"".join(parts))) for f, body in list_bodies.items()],
        unknown,
        wrong_wire_type,
    ),
    max_size=3,
).map(b"".join)
entry_body = st.lists(
    st.one_of(
        st.sampled_from([b"", b"a", b"b", b"ab", "é".encode(), b"\xff"]).map(lambda k: _ld(1, k)),
        feature_body.map(lambda f: _ld(2, f)),
        unknown,
    ),
    max_size=3,
).map(b"".join)
features_body = st.lists(st.one_of(entry_body.map(lambda e: _ld(1, e)), unknown), max_size=4).map(b"".join)
example_wire = st.lists(st.one_of(features_body.map(lambda f: _ld(1, f)), unknown), max_size=3).map(b"".join)


def upb_view(data: bytes) -> dict:
    """protobuf's own parse, float bits taken from the stored float32s (re-serialized)."""
    ex = example_pb2.Example.FromString(data)
    out = {}
    for k, f in ex.features.feature.items():
        kind = f.WhichOneof("kind")
        if kind == "bytes_list":
            out[k] = list(f.bytes_list.value)
        elif kind == "int64_list":
            out[k] = ("i", list(f.int64_list.value))
        elif kind == "float_list":
            fl = feature_pb2.FloatList()
            fl.CopyFrom(f.float_list)
            fl.DiscardUnknownFields()
            raw = fl.SerializeToString()
            out[k] = ("f", np.frombuffer(raw[len(raw) - 4 * len(fl.value) :], "<u4").tolist())
        else:
            out[k] = ("f", [])
    return out


def our_view(data: bytes) -> dict:
    out = {}
    for k, v in parse_example(data).items():
        if isinstance(v, list):
            out[k] = v
        elif v.dtype == np.int64:
            out[k] = ("i", v.tolist())
        else:
            out[k] = ("f", v.view(np.uint32).tolist())
    return out


def assert_agrees_with_upb(data: bytes) -> None:
    from google.protobuf.message import DecodeError as PBDecodeError

    try:
        want = upb_view(data)
    except PBDecodeError:
        with pytest.raises(DecodeError):
            parse_example(data)
        return
    assert our_view(data) == want


@needs_upb
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(example_wire, st.integers(0, 3), st.randoms(use_true_random=False))
def test_protobuf_view_agrees_with_upb_on_odd_wire_data(data, damage, rnd):
    buf = bytearray(data)
    for _ in range(damage):  # then break it a little: truncate, flip or insert a byte
        op = rnd.random()
        if op < 0.3 and buf:
            del buf[rnd.randrange(len(buf)) :]
        elif op < 0.65 and buf:
            buf[rnd.randrange(len(buf))] = rnd.randrange(256)
        else:
            buf.insert(rnd.randrange(len(buf) + 1), rnd.choice([0x04, 0x0B, 0x0C, 0x80, 0xFF, rnd.randrange(256)]))
    assert_agrees_with_upb(bytes(buf))


@needs_upb
def test_protobuf_view_agrees_with_upb_on_mutated_golden_records(golden_bytes):
    rnd = random.Random(1234)
    for _ in range(1500):
        buf = bytearray(rnd.choice(golden_bytes))
        for _ in range(rnd.randint(1, 3)):
            if rnd.random() < 0.5 and buf:
                buf[rnd.randrange(len(buf))] = rnd.randrange(256)
            else:
                buf.insert(rnd.randrange(len(buf) + 1), rnd.randrange(256))
        assert_agrees_with_upb(bytes(buf))


def test_protobuf_view_edge_cases():
    nested = b"".join(_tag(9, 3) for _ in range(120)) + b"".join(_tag(9, 4) for _ in range(120))
    with pytest.raises(DecodeError):  # deeper than upb's limit of 100
        parse_example(nested)
    shallow = b"".join(_tag(9, 3) for _ in range(50)) + b"".join(_tag(9, 4) for _ in range(50))
    assert parse_example(shallow) == {}
    with pytest.raises(DecodeError, match="UTF-8"):
        parse_example(_example((b"\xff", b"")))
    for bad in (b"\x0c", b"\x00\x01", b"\x0e", b"\x8a\x80\x80\x80\x80\x00\x00", b"\x0a\x80\x80\x80\x80\x80\x00"):
        with pytest.raises(DecodeError):
            parse_example(bad)


# --------------------------------------------------------------------------- read_examples


def test_read_examples_locates_parse_errors_by_record(tmp_path):
    parsed = []
    with pytest.raises(DecodeError) as info:
        for ex in read_examples(EXAMPLES):
            parsed.append(ex)
    assert len(parsed) == 21 and info.value.index == 21
    assert info.value.path == str(EXAMPLES) and "record 21" in str(info.value)

    spec = {"f_scalar": FixedLenFeature([], "float32", -1.0)}
    got = []
    with pytest.raises(SchemaError) as info:
        for ex in read_examples(str(EXAMPLES), spec, verify=True):
            got.append(ex["f_scalar"].view(np.uint32).tolist())
    assert info.value.index == 4 and "Key: f_scalar." in str(info.value)
    assert got == [r["fixed"]["f_scalar"]["result"]["f_scalar"]["float32_bits"] for r in RECORDS[:4]]

    with open(EXAMPLES, "rb") as fh:
        with pytest.raises(SchemaError) as info:
            list(read_examples(fh, spec))
    assert info.value.index == 4


def test_read_examples_reads_a_whole_shard():
    shard = A2O_SHARDS[0]
    spec = {
        "embedding": FixedLenFeature([], "string"),
        "embedding_shape": FixedLenFeature([3], "int64"),
        "timestamp_s": FixedLenFeature([], np.float32),
        "filename": FixedLenFeature([], bytes),
    }
    rows = list(read_examples(shard, spec))
    assert len(rows) == 5
    for row, record in zip(rows, read_records(shard)):
        view = parse_example(record)
        assert row["embedding"][()] == view["embedding"][0]
        assert row["embedding_shape"].tolist() == [12, 5, 1280]
        assert math.prod(row["embedding_shape"]) * 4 < len(row["embedding"][()])
        assert row["timestamp_s"].view(np.uint32) == view["timestamp_s"].view(np.uint32)[0]
