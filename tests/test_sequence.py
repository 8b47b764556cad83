"""tf.train.SequenceExample parsing against TensorFlow's own goldens and protobuf.

* every record of ``data/sequence`` is parsed with every spec the golden
  holds and compared with ``tf.io.parse_single_sequence_example``
  (TensorFlow 2.21): values bitwise, errors by class and message;
* the spec-less view is compared with protobuf's (the golden's, and upb's on
  mutated records);
* SequenceExamples built with protobuf and with ``encode_example`` must
  round-trip through both views.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfrecord_numpy
from tfrecord_numpy._proto import example_pb2, feature_pb2
from tfrecord_numpy.errors import DecodeError, SchemaError, TFRecordError
from tfrecord_numpy.example import FixedLenFeature, SparseValue, VarLenFeature, encode_example
from tfrecord_numpy.reader import read_records
from tfrecord_numpy.sequence import FixedLenSequenceFeature, parse_sequence_example, read_sequence_examples

DATA = Path(__file__).parent / "data" / "sequence"
FILE = DATA / "sequences.tfrecord"
GOLDEN = json.loads((DATA / "sequences.golden.json").read_text())
RECORDS = GOLDEN["records"]
SPECS = GOLDEN["specs"]

try:
    from google.protobuf.internal import api_implementation

    PB_RUNTIME = api_implementation.Type()
except Exception:  # pragma: no cover - very old runtimes
    PB_RUNTIME = "unknown"
needs_upb = pytest.mark.skipif(PB_RUNTIME != "upb", reason="the protobuf view follows upb's rules")

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- golden helpers


def _hex_default(d: dict[str, Any]) -> Any:
    default = d.get("default_value")
    if d["dtype"] == "string" and default is not None:
        return bytes.fromhex(default) if isinstance(default, str) else [bytes.fromhex(x) for x in default]
    return default


def make_feature(d: dict[str, Any]) -> Any:
    """A spec object from the golden's description."""
    if d["type"] == "VarLenFeature":
        return VarLenFeature(d["dtype"])
    if d["type"] == "FixedLenFeature":
        return FixedLenFeature(d["shape"], d["dtype"], _hex_default(d))
    return FixedLenSequenceFeature(d["shape"], d["dtype"], d["allow_missing"], _hex_default(d))


def make_specs(spec: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    ctx = spec.get("context")
    seq = spec.get("sequence")
    return (
        None if ctx is None else {k: make_feature(d) for k, d in ctx.items()},
        None if seq is None else {k: make_feature(d) for k, d in seq.items()},
    )


def assert_dense(got: np.ndarray, gold: dict[str, Any], where: str) -> None:
    assert isinstance(got, np.ndarray), where
    assert list(got.shape) == gold["shape"], (where, got.shape, gold["shape"])
    if gold["dtype"] == "float32":
        assert got.dtype == np.float32, where
        assert got.view(np.uint32).ravel().tolist() == gold["bits"], where
    elif gold["dtype"] == "int64":
        assert got.dtype == np.int64 and got.ravel().tolist() == gold["value"], where
    else:
        assert got.dtype == object, where
        assert got.ravel().tolist() == [bytes.fromhex(v) for v in gold["value"]], where
        assert all(type(v) is bytes for v in got.ravel().tolist()), where


def assert_result(got: Any, gold: dict[str, Any], where: str) -> None:
    """One output against TF's: dtype, shape and values bitwise; sparse layout included."""
    if not gold["sparse"]:
        assert not isinstance(got, SparseValue), where
        assert_dense(got, gold, where)
        return
    assert isinstance(got, SparseValue), where
    assert_dense(got.indices, gold["indices"], f"{where}.indices")
    assert_dense(got.values, gold["values"], f"{where}.values")
    assert got.dense_shape.dtype == np.int64 and got.dense_shape.tolist() == gold["dense_shape"], where


def real_type(name: str) -> str:
    """The kind the golden records store under ``name`` (by their naming convention)."""
    if "float" in name or name == "c_empty_list":
        return "float"
    return "int64" if "int" in name else "string"


def expected_error(record: str, message: str) -> type[TFRecordError]:
    """Which of our classes TF's InvalidArgumentError maps to (TF has one class for all)."""
    if message.startswith(("Invalid protocol message input", "Error in ")):
        return DecodeError
    if "Data types don't match" in message:
        # TF says the same for another kind and for a broken list of the right kind
        name = re.search(r"(?:Context feature|Feature list): (\w+)", message)
        assert name is not None
        expected = message.rsplit("Expected type: ", 1)[1]
        return DecodeError if expected == real_type(name.group(1)) else SchemaError
    if message.startswith("Unexpected number of elements in example") and record == "hand_bytes_overrun_context":
        return DecodeError
    return SchemaError


def _features(spec: dict[str, Any]) -> int:
    return len(spec.get("context") or {}) + len(spec.get("sequence") or {})


def _counting_pass(message: str) -> bool:
    """Errors of TF's first pass over the values, which walks features in hash-map order."""
    return "Data types don't match" in message or message.startswith("Error in sequence feature")


def check_call(rec: dict[str, Any], data: bytes, label: str, where: str) -> None:
    spec, gold = SPECS[label], rec["calls"][label]
    ctx, seq = make_specs(spec)
    if gold["ok"]:
        context, sequences = parse_sequence_example(data, ctx, seq)
        assert set(context) == set(gold["context"]), where
        assert set(sequences) == set(gold["sequence"]), where
        for name, want in gold["context"].items():
            assert_result(context[name], want, f"{where}/context/{name}")
        for name, want in gold["sequence"].items():
            assert_result(sequences[name], want, f"{where}/sequence/{name}")
        return
    with pytest.raises(TFRecordError) as info:
        parse_sequence_example(data, ctx, seq)
    got = str(info.value)
    if "crash" in gold:  # TF dies; we say why, as a DecodeError
        assert type(info.value) is DecodeError and "crashes" in got, (where, got)
        return
    assert gold["error"] == "InvalidArgumentError", where
    want = gold["message"]
    if not got.startswith(want) and _features(spec) > 1 and _counting_pass(want) and _counting_pass(got):
        # two features broken in the same pass: TF reports whichever its hash map
        # visits first (absl's seed varies per process), we the first by name.
        # Both must be what TF says of that feature alone.
        alone = {c["message"] for lb, c in rec["calls"].items() if not c["ok"] and _features(SPECS[lb]) == 1}
        assert want in alone and any(got.startswith(m) for m in alone), (where, got, want)
        want = next(m for m in alone if got.startswith(m))
    assert type(info.value) is expected_error(rec["name"], want), (where, got)
    assert got.startswith(want), (where, got, want)


@pytest.fixture(scope="module")
def golden_bytes() -> list[bytes]:
    return list(read_records(FILE))


def test_golden_file_holds_the_golden_records(golden_bytes: list[bytes]) -> None:
    assert GOLDEN["tensorflow_version"] == "2.21.0"
    assert [hashlib.sha256(r).hexdigest() for r in golden_bytes] == [r["sha256"] for r in RECORDS]
    assert len(RECORDS) == 29


def test_golden_covers_the_cases_we_claim() -> None:
    """Guard against a golden file that silently lost its interesting cases."""
    names = {r["name"] for r in RECORDS}
    for n in (
        "zero_steps",
        "context_only",
        "some_missing",
        "zero_value_steps",
        "specials",
        "hand_truncated",
        "hand_value_before_key",
        "hand_trailing_after_list",
        "hand_split_packed_step",
        "hand_bytes_overrun_step",
        "hand_context_length_past_end",
    ):
        assert n in names
    messages = {c.get("message", "") for r in RECORDS for c in r["calls"].values()}
    for phrase in (
        "Feature list 's_missing' is required but could not be found",  # missing, allow_missing=False
        "Feature list: s_float2, Index: 0.  Data types don't match. Expected type: int64",  # wrong dtype
        "Context feature: c_float.  Data types don't match",
        "Number of values != expected.  values size: 2 but output shape: [1]",  # wrong step length
        "is not consistent with output shape: [?,4]",
        "Invalid protocol message input, example id: <unknown>",  # malformed bytes
        "Inconsistent max number of elements for feature c_missing",
        "Unexpected number of elements in example <unknown>",
    ):
        assert any(phrase in m for m in messages), phrase
    crashes = {label for r in RECORDS for label, c in r["calls"].items() if "crash" in c}
    assert {"s_bytes_var/varlen", "c_bytes_var/varlen"} <= crashes
    ok = [c for r in RECORDS for c in r["calls"].values() if c["ok"]]
    assert len(ok) > 900


# --------------------------------------------------------------------------- TensorFlow's view


@pytest.mark.parametrize("rec", RECORDS, ids=[r["name"] for r in RECORDS])
def test_specs_match_tensorflow(rec: dict[str, Any], golden_bytes: list[bytes]) -> None:
    data = golden_bytes[rec["index"]]
    assert set(rec["calls"]) == set(SPECS)
    for label in rec["calls"]:
        check_call(rec, data, label, f"{rec['name']}/{label}")


def test_python_level_refusals_match_tensorflow(golden_bytes: list[bytes]) -> None:
    full = golden_bytes[0]
    errors = GOLDEN["python_errors"]
    assert set(errors) == {
        "no_features",
        "default_value_on_sequence_feature",
        "fixed_len_feature_in_sequence",
        "sequence_feature_in_context",
    }
    for label, gold in errors.items():
        assert gold["error"] == "ValueError"
        ctx, seq = make_specs(gold["spec"])
        with pytest.raises(ValueError) as info:
            parse_sequence_example(full, ctx, seq)
        assert not isinstance(info.value, TFRecordError)
        want = gold["message"]
        if want.startswith("Unsupported "):  # TF prints its own repr of the spec object
            kind, key = want.split(" ")[1], want.rsplit(" for key ", 1)[1]
            assert str(info.value).startswith(f"Unsupported {kind} ") and str(info.value).endswith(key), label
        else:
            assert str(info.value) == want, label


def test_a_shape_without_values_is_refused_where_tensorflow_crashes() -> None:
    assert GOLDEN["crashes"]["s_int/fixed_0"]["crash"] == "SIGFPE"
    for shape in ([0], [3, 0], (0, 2)):
        with pytest.raises(ValueError, match="holds no value"):
            FixedLenSequenceFeature(shape, "int64", allow_missing=True)


# --------------------------------------------------------------------------- protobuf's view


def _pb_value(want: dict[str, Any]) -> tuple[str, list[Any]]:
    kind = want["kind"]
    if kind == "bytes_list":
        return ("b", [bytes.fromhex(v) for v in want["value"]])
    if kind == "int64_list":
        return ("i", want["value"])
    if kind == "float_list":
        return ("f", want["bits"])
    return ("f", [])  # no kind set: documented as an empty float32 array


def _our_value(v: Any) -> tuple[str, list[Any]]:
    if isinstance(v, list):
        assert all(type(b) is bytes for b in v)
        return ("b", v)
    assert isinstance(v, np.ndarray) and v.ndim == 1
    if v.dtype == np.int64:
        return ("i", v.tolist())
    assert v.dtype == np.float32
    return ("f", v.view(np.uint32).tolist())


def our_view(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    context, lists = parse_sequence_example(data)
    return (
        {k: _our_value(v) for k, v in context.items()},
        {k: [_our_value(s) for s in steps] for k, steps in lists.items()},
    )


@pytest.mark.parametrize("rec", RECORDS, ids=[r["name"] for r in RECORDS])
def test_protobuf_view_matches_golden(rec: dict[str, Any], golden_bytes: list[bytes]) -> None:
    data = golden_bytes[rec["index"]]
    pb = rec["protobuf"]
    if not pb["ok"]:
        with pytest.raises(DecodeError, match="tensorflow.SequenceExample"):
            parse_sequence_example(data)
        return
    want = (
        {k: _pb_value(v) for k, v in pb["context"].items()},
        {k: [_pb_value(s) for s in steps] for k, steps in pb["feature_lists"].items()},
    )
    assert our_view(data) == want


def upb_view(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """protobuf's own parse, float bits taken from the stored float32s (re-serialized)."""
    se = example_pb2.SequenceExample.FromString(data)

    def value(f: feature_pb2.Feature) -> tuple[str, list[Any]]:
        kind = f.WhichOneof("kind")
        if kind == "bytes_list":
            return ("b", list(f.bytes_list.value))
        if kind == "int64_list":
            return ("i", list(f.int64_list.value))
        if kind == "float_list":
            fl = feature_pb2.FloatList()
            fl.CopyFrom(f.float_list)
            fl.DiscardUnknownFields()
            raw = fl.SerializeToString()
            return ("f", np.frombuffer(raw[len(raw) - 4 * len(fl.value) :], "<u4").tolist())
        return ("f", [])

    return (
        {k: value(f) for k, f in se.context.feature.items()},
        {k: [value(f) for f in fl.feature] for k, fl in se.feature_lists.feature_list.items()},
    )


def assert_agrees_with_upb(data: bytes) -> None:
    from google.protobuf.message import DecodeError as PBDecodeError

    try:
        want = upb_view(data)
    except PBDecodeError:
        with pytest.raises(DecodeError):
            parse_sequence_example(data)
        return
    assert our_view(data) == want


@needs_upb
def test_protobuf_view_agrees_with_upb_on_mutated_golden_records(golden_bytes: list[bytes]) -> None:
    rnd = random.Random(4321)
    for _ in range(1500):
        buf = bytearray(rnd.choice(golden_bytes))
        for _ in range(rnd.randint(1, 3)):
            if rnd.random() < 0.5 and buf:
                buf[rnd.randrange(len(buf))] = rnd.randrange(256)
            else:
                buf.insert(rnd.randrange(len(buf) + 1), rnd.randrange(256))
        assert_agrees_with_upb(bytes(buf))


def test_mutated_records_never_raise_anything_but_our_errors(golden_bytes: list[bytes]) -> None:
    """TF's view on damaged input: a result or a TFRecordError, never a crash of ours."""
    rnd = random.Random(99)
    specs = [make_specs(SPECS[label]) for label in ("all/varlen", "all/fixed", "s_float2/fixed_2x1")]
    for _ in range(600):
        buf = bytearray(rnd.choice(golden_bytes))
        for _ in range(rnd.randint(1, 3)):
            if rnd.random() < 0.5 and buf:
                buf[rnd.randrange(len(buf))] = rnd.randrange(256)
            else:
                del buf[rnd.randrange(len(buf) + 1) :]
        for ctx, seq in specs:
            try:
                parse_sequence_example(bytes(buf), ctx, seq)
            except TFRecordError:
                pass


# --------------------------------------------------------------------------- round trips

SPECIAL_BITS = [0x7FC00000, 0x7FA00001, 0xFFC12345, 0x80000000, 0x00000001, 0x7F800000, 0xFF800000]
keys = st.text(min_size=1, max_size=8)
float_bits = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from(SPECIAL_BITS))


def kinded_values(kind: str, min_size: int = 0, max_size: int = 6) -> st.SearchStrategy[Any]:
    if kind == "f":
        return st.lists(float_bits, min_size=min_size, max_size=max_size).map(
            lambda b: np.array(b, dtype=np.uint32).view(np.float32)
        )
    if kind == "i":
        return st.lists(st.integers(-(2**63), 2**63 - 1), min_size=min_size, max_size=max_size).map(
            lambda v: np.array(v, dtype=np.int64)
        )
    return st.lists(st.binary(max_size=12), min_size=min_size, max_size=max_size)


any_value = st.sampled_from("fib").flatmap(kinded_values)


@st.composite
def feature_list(draw: st.DrawFn) -> tuple[str, int | None, list[Any]]:
    """(kind, fixed length or None, steps); all steps of one list share a kind."""
    kind = draw(st.sampled_from("fib"))
    width = draw(st.one_of(st.none(), st.integers(1, 4)))
    lo, hi = (0, 5) if width is None else (width, width)
    steps = draw(st.lists(kinded_values(kind, lo, hi), max_size=5))
    return kind, width, steps


sequence_examples = st.tuples(
    st.dictionaries(keys, any_value, max_size=4),
    st.dictionaries(keys, feature_list(), max_size=4),
)


def _fill(feature: feature_pb2.Feature, value: Any) -> None:
    if isinstance(value, list):
        feature.bytes_list.SetInParent()
        feature.bytes_list.value.extend(value)
    elif value.dtype == np.int64:
        feature.int64_list.SetInParent()
        feature.int64_list.value.extend(value.tolist())
    else:  # float bits exactly: let protobuf parse them from the wire
        feature.float_list.CopyFrom(
            feature_pb2.FloatList.FromString(b"\x0a" + _varint(4 * len(value)) + value.tobytes())
        )
        feature.float_list.SetInParent()


def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def build_with_protobuf(context: dict[str, Any], lists: dict[str, Any]) -> bytes:
    se = example_pb2.SequenceExample()
    for k, v in context.items():
        _fill(se.context.feature[k], v)
    for k, (_, _, steps) in lists.items():
        target = se.feature_lists.feature_list[k]
        for v in steps:
            _fill(target.feature.add(), v)
    return se.SerializeToString(deterministic=True)


def build_with_encoder(context: dict[str, Any], lists: dict[str, Any]) -> bytes:
    """Our encode_example writes the context (an Example's features are field 1, as a
    SequenceExample's context is); protobuf writes the feature lists after it."""
    typed = {k: (np.empty(0, "S") if isinstance(v, list) and not v else v) for k, v in context.items()}
    head = encode_example(typed) if context else b""
    return head + build_with_protobuf({}, lists)


def _same(got: Any, want: Any) -> None:
    if isinstance(want, list):
        assert isinstance(got, list) and got == want
    else:
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype
        assert got.tobytes() == want.tobytes()  # bitwise


def _dtype(kind: str) -> str:
    return {"f": "float32", "i": "int64", "b": "string"}[kind]


def _kind_of(value: Any) -> str:
    return "b" if isinstance(value, list) else ("i" if value.dtype == np.int64 else "f")


def _flat(values: Any, kind: str) -> Any:
    return values.tolist() if kind == "b" else values


@SETTINGS
@given(sequence_examples, st.booleans())
def test_round_trip(example: tuple[dict[str, Any], dict[str, Any]], encoder: bool) -> None:
    context, lists = example
    data = build_with_encoder(context, lists) if encoder else build_with_protobuf(context, lists)
    # protobuf's view
    ctx_view, list_view = parse_sequence_example(data)
    assert set(ctx_view) == set(context) and set(list_view) == set(lists)
    for k, v in context.items():
        _same(ctx_view[k], v)
    for k, (_, _, steps) in lists.items():
        assert len(list_view[k]) == len(steps)
        for got, want in zip(list_view[k], steps):
            _same(got, want)
    if encoder and PB_RUNTIME == "upb":  # encode_example writes upb's deterministic bytes
        assert data == build_with_protobuf(context, lists)

    # TensorFlow's view: VarLen everywhere, then fixed shapes where steps are uniform
    ctx_spec = {k: VarLenFeature(_dtype(_kind_of(v))) for k, v in context.items()}
    seq_spec: dict[str, Any] = {k: VarLenFeature(_dtype(kind)) for k, (kind, _, _) in lists.items()}
    if ctx_spec or seq_spec:
        got_ctx, got_seq = parse_sequence_example(data, ctx_spec, seq_spec)
        for k, v in context.items():
            kind = _kind_of(v)
            _same(_flat(got_ctx[k].values, kind), v)
            assert got_ctx[k].dense_shape.tolist() == [len(v)]
        for k, (kind, _, steps) in lists.items():
            sp = got_seq[k]
            lengths = [len(s) for s in steps]
            assert sp.dense_shape.tolist() == [len(steps), max(lengths, default=0)]
            assert sp.indices.shape == (sum(lengths), 2)
            assert sp.indices.tolist() == [[r, c] for r, n in enumerate(lengths) for c in range(n)]
            want = [b for s in steps for b in s] if kind == "b" else np.concatenate([np.empty(0, _dtype(kind)), *steps])
            _same(_flat(sp.values, kind), want)

    fixed = {k: FixedLenSequenceFeature([w], _dtype(kind)) for k, (kind, w, _) in lists.items() if w is not None}
    ctx_fixed = {k: FixedLenFeature([len(v)], _dtype(_kind_of(v))) for k, v in context.items() if len(v)}
    if fixed or ctx_fixed:
        got_ctx, got_seq = parse_sequence_example(data, ctx_fixed, fixed)
        for k, spec in ctx_fixed.items():
            _same(_flat(got_ctx[k], _kind_of(context[k])), context[k])
        for k, spec in fixed.items():
            kind, width, steps = lists[k]
            assert got_seq[k].shape == (len(steps), width)
            flat = got_seq[k].reshape(-1)
            want = [b for s in steps for b in s] if kind == "b" else np.concatenate([np.empty(0, _dtype(kind)), *steps])
            _same(_flat(flat, kind), want)


# --------------------------------------------------------------------------- API details


def test_exports_and_spec_details() -> None:
    assert tfrecord_numpy.FixedLenSequenceFeature is FixedLenSequenceFeature
    assert tfrecord_numpy.parse_sequence_example is parse_sequence_example
    a = FixedLenSequenceFeature([2], np.float32)
    assert a == FixedLenSequenceFeature((2,), "float") and hash(a) == hash(FixedLenSequenceFeature([2], "float32"))
    assert a != FixedLenSequenceFeature([2], "float32", allow_missing=True)
    assert FixedLenSequenceFeature([], bytes).dtype == "string" and FixedLenSequenceFeature(3, "int64").shape == (3,)
    with pytest.raises(ValueError):
        FixedLenSequenceFeature([None], "float32")
    with pytest.raises(ValueError):
        FixedLenSequenceFeature([2], "float32", default_value=[1.0, 2.0])  # a padding value is a scalar
    with pytest.raises(TypeError):
        parse_sequence_example(b"", {"a": "not a spec"}, None)
    with pytest.raises(TypeError):
        parse_sequence_example(b"", None, {1: VarLenFeature("int64")})


def test_results_follow_the_spec_order_and_never_alias_the_input(golden_bytes: list[bytes]) -> None:
    data = bytearray(golden_bytes[0])
    ctx = {"c_missing": FixedLenFeature([2], "float32", [1.0, 2.0]), "c_bytes": VarLenFeature(bytes)}
    seq = {"s_int": VarLenFeature("int64"), "s_float2": FixedLenSequenceFeature([2], "float32")}
    c, s = parse_sequence_example(data, ctx, seq)
    assert list(c) == list(ctx) and list(s) == list(seq)
    default = c["c_missing"]
    assert default.flags.writeable and not np.shares_memory(default, ctx["c_missing"].default_value)
    before = s["s_float2"].copy()
    data[:] = bytes(len(data))  # the parse must not have kept views of the caller's buffer
    assert np.array_equal(s["s_float2"].view(np.uint32), before.view(np.uint32))
    c2, s2 = parse_sequence_example(memoryview(golden_bytes[0]), ctx, seq)
    assert s2["s_float2"].tobytes() == before.tobytes()


def test_read_sequence_examples_locates_errors(tmp_path: Path) -> None:
    rows = []
    with pytest.raises(DecodeError) as info:
        for row in read_sequence_examples(FILE):
            rows.append(row)
    first_bad = next(r["index"] for r in RECORDS if not r["protobuf"]["ok"])
    assert len(rows) == first_bad and info.value.index == first_bad
    assert info.value.path == str(FILE) and info.value.offset is not None and info.value.offset > 0

    spec = {"s_float2": FixedLenSequenceFeature([2], "float32", allow_missing=True)}
    got = []
    with pytest.raises(SchemaError) as info:
        for _, seq in read_sequence_examples([str(FILE)], None, spec, verify=True):
            got.append(seq["s_float2"].shape)
    bad = next(r["index"] for r in RECORDS if not r["calls"]["s_float2/fixed_allow_missing"]["ok"])
    assert info.value.index == bad and "'s_float2'" in str(info.value)
    assert len(got) == bad
