"""Batched Example parsing (``parse_examples``, ``read_batches``) against TensorFlow and ``parse_example``.

* ``data/batch``: what ``TFRecordDataset(f).batch(n).map(tf.io.parse_example)``
  (TensorFlow 2.21) made of clean, odd and damaged records, for several specs
  and batch sizes (``scripts/make_batch_goldens.py``) -- values bitwise,
  errors at the same record;
* every batch equals stacking ``parse_example`` of its records, on the
  Example corpus and on generated Examples (any entry order, extra, missing
  and duplicate features, wrong kinds and lengths);
* framing errors are ``iter_records``'s, at the same record;
* the fast path is checked by counts, never by the clock: no record of a
  clean file takes the per-record parser, and a batch costs a number of
  Python calls that does not grow with its number of records.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfrecord_numpy
import tfrecord_numpy.batch as batch_mod
from tfrecord_numpy import FixedLenFeature, SparseValue, VarLenFeature, encode_example, parse_example
from tfrecord_numpy._wire import encode_varint, read_varint
from tfrecord_numpy.batch import parse_examples, read_batches
from tfrecord_numpy.errors import SchemaError, TFRecordError
from tfrecord_numpy.reader import iter_records, read_records
from tfrecord_numpy.writer import write_records
from workcount import count_calls

DATA = Path(__file__).parent / "data"
BATCH = DATA / "batch"
GOLDEN = json.loads((BATCH / "batch.golden.json").read_text())
EXAMPLES_GOLDEN = json.loads((DATA / "examples" / "examples.golden.json").read_text())
EXAMPLES = DATA / "examples" / "examples.tfrecord"
NP_DTYPE = {"float32": np.float32, "int64": np.int64, "string": object}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- helpers


def spec_from(desc: dict) -> dict:
    out = {}
    for name, d in desc.items():
        if d[0] == "var":
            out[name] = VarLenFeature(d[1])
            continue
        _, shape, dtype, default = d
        if dtype == "string" and default is not None:
            default = bytes.fromhex(default) if isinstance(default, str) else [bytes.fromhex(x) for x in default]
        out[name] = FixedLenFeature(shape, dtype, default)
    return out


def examples_spec(d: dict) -> FixedLenFeature | VarLenFeature:
    """A spec from examples.golden.json's description (string defaults are hex there)."""
    if d["type"] == "VarLenFeature":
        return VarLenFeature(d["dtype"])
    default = d["default_value"]
    if d["dtype"] == "string" and default is not None:
        default = bytes.fromhex(default) if isinstance(default, str) else [bytes.fromhex(x) for x in default]
    return FixedLenFeature(d["shape"], d["dtype"], default)


def assert_plain(got: np.ndarray, gold: dict, dtype: str, where: str) -> None:
    assert isinstance(got, np.ndarray) and list(got.shape) == gold["shape"], (where, got.shape, gold["shape"])
    if dtype == "float32":
        assert got.dtype == np.float32, where
        assert got.view(np.uint32).ravel().tolist() == gold["float32_bits"], where
    elif dtype == "int64":
        assert got.dtype == np.int64 and got.ravel().tolist() == gold["int64"], where
    else:
        assert got.dtype == object and [x.hex() for x in got.ravel().tolist()] == gold["hex"], where
        assert all(type(x) is bytes for x in got.ravel().tolist()), where


def assert_golden_batch(got: dict, gold: dict, desc: dict, where: str) -> None:
    assert list(got) == list(desc), where
    for name, d in desc.items():
        value, want = got[name], gold[name]
        if d[0] == "var":
            assert isinstance(value, SparseValue), (where, name)
            assert value.indices.dtype == np.int64 and value.indices.tolist() == want["indices"], (where, name)
            assert value.indices.shape == (len(want["indices"]), 2), (where, name)
            assert value.dense_shape.dtype == np.int64 and value.dense_shape.tolist() == want["dense_shape"]
            assert_plain(value.values, want["values"], d[1], f"{where}/{name}")
        else:
            assert_plain(value, want, d[2], f"{where}/{name}")


def stack(results: list[dict], spec: dict) -> dict:
    """What a batch must equal: ``parse_example`` of each record, stacked as TF batches them."""
    out: dict = {}
    n = len(results)
    for name, feat in spec.items():
        dtype = NP_DTYPE[feat.dtype]
        if isinstance(feat, FixedLenFeature):
            out[name] = np.stack([r[name] for r in results]) if n else np.empty((0, *feat.shape), dtype)
            continue
        values = [r[name].values for r in results]
        counts = [len(v) for v in values]
        indices = np.array([[i, j] for i, c in enumerate(counts) for j in range(c)], dtype=np.int64).reshape(-1, 2)
        flat = np.concatenate(values).astype(dtype) if values else np.empty(0, dtype)
        out[name] = SparseValue(indices, flat, np.array([n, max(counts, default=0)], dtype=np.int64))
    return out


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == object:
        return all(type(x) is bytes for x in a.ravel().tolist()) and a.tolist() == b.tolist()
    return a.tobytes() == b.tobytes()


def assert_same(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for name, w in want.items():
        g = got[name]
        if isinstance(w, SparseValue):
            assert isinstance(g, SparseValue), name
            for x, y in zip(g, w):
                assert same_array(x, y), (name, x, y)
        else:
            assert isinstance(g, np.ndarray) and same_array(g, w), (name, g, w)


def expect_like_stacking(records: list[bytes], spec: dict) -> str:
    """``parse_examples`` equals stacking ``parse_example``, or raises its first error; "ok"/"error"."""
    results = []
    for i, r in enumerate(records):
        try:
            results.append(parse_example(r, spec))
        except TFRecordError as exc:
            with pytest.raises(TFRecordError) as info:
                parse_examples(records, spec)
            got = info.value
            assert type(got) is type(exc) and got.reason == exc.reason and got.index == i, (got, exc, i)
            assert got.path is None and got.offset is None
            return "error"
    assert_same(parse_examples(records, spec), stack(results, spec))
    return "ok"


@pytest.fixture
def fallbacks(monkeypatch):
    """Counts the records the fast paths hand to the exact per-record parser."""
    calls = []
    exact = batch_mod._parse_record

    def counting(buf, plan):
        calls.append(bytes(buf))
        return exact(buf, plan)

    monkeypatch.setattr(batch_mod, "_parse_record", counting)
    return calls


def small_examples(n: int, seed: int = 0, *, odd_every: int = 0) -> list[bytes]:
    """Records like the benchmark's (plus an optional odd one every ``odd_every``)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        rec = encode_example(
            {
                "features": rng.standard_normal(3).astype(np.float32),
                "label": int(rng.integers(-5, 1000)),
                "filename": b"site_%d/%06d.flac" % (rng.integers(0, 200), i),
                "tags": rng.integers(0, 9, i % 4),
            }
        )
        if odd_every and i % odd_every == odd_every - 1:
            rec = encode_example({"label": 1}) + rec  # a duplicate key: the last one wins
        out.append(rec)
    return out


SMALL_SPEC = {
    "features": FixedLenFeature([3], "float32"),
    "label": FixedLenFeature([], "int64"),
    "filename": FixedLenFeature([], "string"),
    "tags": VarLenFeature("int64"),
}


# --------------------------------------------------------------------------- TensorFlow's goldens


def golden_cases():
    for fname, f in GOLDEN["files"].items():
        for label, by_size in f["results"].items():
            for size in by_size:
                yield pytest.param(fname, label, int(size), id=f"{fname}-{label}-{size}")


@pytest.mark.parametrize("fname, label, size", list(golden_cases()))
def test_read_batches_match_tensorflow(fname, label, size):
    f = GOLDEN["files"][fname]
    desc = f["specs"][label]
    result = f["results"][label][str(size)]
    path = BATCH / f["file"]
    got = read_batches(path, spec_from(desc), size)
    for k, gold in enumerate(result["batches"]):
        assert_golden_batch(next(got), gold, desc, f"{fname}/{label}/{size}/batch {k}")
    error = result["error"]
    if error is None:
        assert next(got, None) is None
        return
    with pytest.raises(TFRecordError) as info:
        next(got)
    check_golden_error(info.value, error, path, spec_from(desc))


def check_golden_error(exc: TFRecordError, error: dict, path: Path, spec: dict) -> None:
    """Same record as TF; ``parse_example``'s class and message; located in the file."""
    index = error["index"]
    records = list(iter_records(path))
    _, _, offset, view = records[index]
    assert (exc.path, exc.index, exc.offset) == (str(path), index, offset)
    with pytest.raises(TFRecordError) as single:
        parse_example(bytes(view), spec)
    assert type(exc) is type(single.value) is SchemaError and exc.reason == single.value.reason
    message = error["message"]
    if "is required but could not be found" in message:
        assert message.split("Name: <unknown>, ")[1] in exc.reason
    else:
        key = message.split("Key: ")[1].split(",")[0]
        assert exc.reason.startswith(f"Key: {key}.  ")
        if "Data types don't match" in message:
            assert message.split("Index: ")[1].split(".  ", 1)[1] in exc.reason


@pytest.mark.parametrize("fname", [n for n in GOLDEN["files"] if GOLDEN["files"][n]["serialized_hex"]])
def test_golden_files_hold_the_golden_records(fname):
    f = GOLDEN["files"][fname]
    assert [r.hex() for r in read_records(BATCH / f["file"])] == f["serialized_hex"]


@pytest.mark.parametrize("fname, label", [(f, s) for f in GOLDEN["files"] for s in GOLDEN["files"][f]["specs"]])
def test_parse_examples_match_tensorflow_in_memory(fname, label):
    """The same goldens through ``parse_examples``, one batch at a time."""
    f = GOLDEN["files"][fname]
    desc = f["specs"][label]
    spec = spec_from(desc)
    records = list(read_records(BATCH / f["file"]))
    for size, result in f["results"][label].items():
        size = int(size)
        for k, gold in enumerate(result["batches"]):
            assert_golden_batch(parse_examples(records[k * size : (k + 1) * size], spec), gold, desc, f"{k}")
        if result["error"] is not None:
            k = len(result["batches"])
            with pytest.raises(TFRecordError) as info:
                parse_examples(records[k * size : (k + 1) * size], spec)
            assert info.value.index == result["error"]["index"] - k * size


def test_goldens_cover_what_they_claim(fallbacks):
    odd = GOLDEN["files"]["odd"]["results"]["varlen"]["1"]["batches"]
    assert odd[5]["vf"]["dense_shape"] == [1, 0]  # a kindless last duplicate empties a batched VarLen row
    assert odd[3]["vf"]["values"]["float32_bits"] == np.array([9, 8], np.float32).view(np.uint32).tolist()
    errors = GOLDEN["files"]["errors"]["results"]
    assert {k: v["3"]["error"]["index"] for k, v in errors.items()} == {"dense": 3, "type": 5, "required": 2}
    for f in GOLDEN["files"].values():  # batch sizes that do not divide the record count
        assert any(f["records"] % int(s) for s in next(iter(f["results"].values())))
    # the same-layout file is decoded by the template path: only its one odd record takes the exact parser
    many = GOLDEN["files"]["many"]
    list(read_batches(BATCH / many["file"], spec_from(many["specs"]["all"]), 200))
    assert fallbacks == [list(read_records(BATCH / many["file"]))[150]]


def test_batched_kindless_duplicate_differs_from_the_single_example_parser():
    """TF's batched parser lets a kindless last entry empty a VarLen row; parse_single_example does not."""

    def entry(key: bytes, feature: bytes) -> bytes:
        body = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(feature)]) + feature
        return b"\x0a" + bytes([len(body)]) + body

    ints = b"\x1a\x04\x0a\x02\x01\x02"  # int64_list [1, 2]
    body = entry(b"k", ints) + entry(b"k", b"")
    record = b"\x0a" + bytes([len(body)]) + body
    spec = {"k": VarLenFeature("int64")}
    assert parse_example(record, spec)["k"].values.tolist() == [1, 2]
    got = parse_examples([record], spec)["k"]
    assert got.values.tolist() == [] and got.dense_shape.tolist() == [1, 0]


# --------------------------------------------------------------------------- equal to stacking parse_example


def examples_specs():
    specs = EXAMPLES_GOLDEN["specs"]
    for kind in ("fixed", "varlen"):
        for label, d in specs[kind].items():
            yield pytest.param({d["feature"]: examples_spec(d)}, id=f"{kind}-{label}")
        yield pytest.param(
            {label: examples_spec(d) for label, d in specs[kind].items() if label == d["feature"]}, id=f"{kind}-all"
        )


@pytest.mark.parametrize("spec", list(examples_specs()))
def test_example_corpus_equals_stacked_parse_example(spec):
    records = list(read_records(EXAMPLES))
    expect_like_stacking(records, spec)
    good = []
    for r in records:
        assert expect_like_stacking([r], spec) in ("ok", "error")
        try:
            parse_example(r, spec)
            good.append(r)
        except TFRecordError:
            pass
    assert expect_like_stacking(good, spec) == "ok"
    shuffled = good * 40  # enough of each layout for the template path
    random.Random(1).shuffle(shuffled)
    assert expect_like_stacking(shuffled, spec) == "ok"
    assert expect_like_stacking(shuffled + records, spec) in ("ok", "error")


@pytest.mark.parametrize("kind", ["fixed", "varlen"])
def test_exact_parser_is_parse_example_on_the_corpus(kind):
    """The fallback parser (TF's batched rules) gives parse_example's values and errors on every record."""
    specs = EXAMPLES_GOLDEN["specs"][kind]
    spec_sets = [{d["feature"]: examples_spec(d)} for d in specs.values()]
    spec_sets.append({label: examples_spec(d) for label, d in specs.items() if label == d["feature"]})
    for spec in spec_sets:
        plan = batch_mod._plan(spec)
        for record in read_records(EXAMPLES):
            try:
                want = parse_example(record, spec)
            except TFRecordError as exc:
                with pytest.raises(type(exc)) as info:
                    batch_mod._parse_record(memoryview(record), plan)
                assert info.value.reason == exc.reason
                continue
            got = batch_mod._parse_record(memoryview(record), plan)
            assert_same(stack([got], spec), stack([want], spec))


@pytest.fixture(params=["templates", "lockstep"])
def one_path(request, monkeypatch):
    """Force every record through the template path (any group size), or through the lockstep walk only."""
    if request.param == "templates":
        monkeypatch.setattr(batch_mod, "_MIN_GROUP", 1)
        monkeypatch.setattr(batch_mod, "_MAX_GROUPS", 10**9)
        monkeypatch.setattr(batch_mod, "_MAX_TEMPLATES", 10**9)
    else:
        monkeypatch.setattr(batch_mod, "_MIN_GROUP", 10**9)
    return request.param


@pytest.mark.parametrize("fname", list(GOLDEN["files"]))
def test_each_path_alone_matches_tensorflow(one_path, fname):
    f = GOLDEN["files"][fname]
    for label, desc in f["specs"].items():
        for size, result in f["results"][label].items():
            got = read_batches(BATCH / f["file"], spec_from(desc), int(size))
            for k, gold in enumerate(result["batches"]):
                assert_golden_batch(next(got), gold, desc, f"{one_path}/{fname}/{label}/{size}/{k}")
            if result["error"] is not None:
                with pytest.raises(TFRecordError) as info:
                    next(got)
                assert info.value.index == result["error"]["index"]


def test_each_path_alone_equals_stacked_parse_example(one_path):
    records = list(read_records(EXAMPLES))
    for spec in examples_specs():
        expect_like_stacking(records, spec.values[0])
        expect_like_stacking([r for r in records if ok_alone(r, spec.values[0])] * 3, spec.values[0])
    mixed = small_examples(200, seed=12, odd_every=9)
    expect_like_stacking(mixed, SMALL_SPEC)


# --------------------------------------------------------------------------- property tests

keys = st.sampled_from(["a", "b", "c", "é", "", "key_long_name"])
float_bits = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0x7F800001, 0xFFFFFFFF, 0x80000000, 1]))
floats = st.lists(float_bits, max_size=5).map(lambda b: np.array(b, dtype=np.uint32).view(np.float32))
ints = st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(0, 300)), max_size=5).map(
    lambda v: np.array(v, dtype=np.int64)
)
strings = st.lists(st.binary(max_size=12), max_size=4)
values = st.one_of(floats, ints, strings)
feature_maps = st.dictionaries(keys, values, max_size=4)


def encode_any(mapping: dict, rnd: random.Random) -> bytes:
    """Entries in a random order, sometimes split over concatenated Examples or duplicated."""
    items = [(k, np.empty(0, "S") if isinstance(v, list) and not v else v) for k, v in mapping.items()]
    rnd.shuffle(items)
    if rnd.random() < 0.3:
        return b"".join(encode_example({k: v}) for k, v in items)
    data = encode_example(dict(items))
    if items and rnd.random() < 0.15:
        k, v = rnd.choice(items)
        data = encode_example({k: v}) + data  # a duplicate: the later entry wins
    return data


def spec_for_maps(maps: list[dict], rnd: random.Random) -> dict:
    """A spec over keys seen (and one never seen), with kinds and shapes that mostly fit."""
    seen: dict[str, object] = {}
    for m in maps:
        for k, v in m.items():
            seen.setdefault(k, v)
    spec = {}
    for k, v in seen.items():
        if rnd.random() < 0.2:
            continue  # an extra feature nobody asks for
        dtype = "string" if isinstance(v, list) else str(v.dtype)
        if rnd.random() < 0.1:
            dtype = rnd.choice(["float32", "int64", "string"])  # maybe the wrong kind
        if rnd.random() < 0.5:
            spec[k] = VarLenFeature(dtype)
        else:
            n = len(v)
            default = None if rnd.random() < 0.3 else ([b"d"] * n if dtype == "string" else np.zeros(n))
            spec[k] = FixedLenFeature([n], dtype, default)
    spec["never"] = rnd.choice([VarLenFeature("int64"), FixedLenFeature([2], "float32", [1.0, 2.0])])
    return spec


@SETTINGS
@given(st.lists(feature_maps, min_size=0, max_size=6), st.randoms(use_true_random=False), st.integers(1, 40))
def test_any_batch_equals_stacked_parse_example(maps, rnd, copies):
    records = [encode_any(m, rnd) for m in maps for _ in range(copies if len(maps) < 3 else 1)]
    rnd.shuffle(records)
    spec = spec_for_maps(maps, rnd)
    expect_like_stacking(records, spec)


@SETTINGS
@given(st.lists(feature_maps, min_size=1, max_size=3), st.randoms(use_true_random=False))
def test_same_layout_runs_equal_stacked_parse_example(maps, rnd):
    """Many records of a few layouts: the template path, with odd records mixed in."""
    records = [
        encode_example({k: (np.empty(0, "S") if isinstance(v, list) and not v else v) for k, v in m.items()})
        for m in maps
    ]
    batch = [records[rnd.randrange(len(records))] for _ in range(80)]
    for _ in range(rnd.randrange(4)):
        batch[rnd.randrange(len(batch))] = encode_any(rnd.choice(maps), rnd)
    expect_like_stacking(batch, spec_for_maps(maps, rnd))


def test_mutated_records_hidden_in_runs_of_their_original():
    """Records one or two byte edits away from a common layout, often the same length: each is decoded exactly."""
    rnd = random.Random(7)
    base = small_examples(30, seed=1) + list(read_records(EXAMPLES))[:7]
    specs = [
        SMALL_SPEC,
        {
            "features": VarLenFeature("float32"),
            "filename": VarLenFeature("string"),
            "tags": FixedLenFeature([2], "int64", [0, 0]),
        },
        {"label": FixedLenFeature([], "int64", 0), "tags": VarLenFeature("int64"), "f_multi": VarLenFeature("float32")},
    ]
    for _ in range(300):
        spec, src = rnd.choice(specs), rnd.choice(base)
        batch = [src] * rnd.randrange(1, 40)
        for _ in range(rnd.randrange(1, 4)):
            r = bytearray(src)
            for _ in range(rnd.randrange(1, 3)):
                i = rnd.randrange(len(r))
                op = rnd.randrange(4)
                if op == 0:
                    r[i] = rnd.randrange(256)
                elif op == 1:
                    r[i] ^= 1 << rnd.randrange(8)
                elif op == 2:
                    del r[i]
                else:
                    r.insert(i, rnd.randrange(256))
            batch.insert(rnd.randrange(len(batch) + 1), bytes(r))
        expect_like_stacking(batch, spec)
        expect_like_stacking([r for r in batch if ok_alone(r, spec)], spec)


def ok_alone(record: bytes, spec: dict) -> bool:
    try:
        parse_example(record, spec)
    except TFRecordError:
        return False
    return True


def test_damaged_records_in_a_batch_fail_at_the_first_one():
    good = small_examples(60)
    bad = good[10][:-3]  # cut inside its last entry
    spec = SMALL_SPEC
    for where in (0, 17, 59):
        batch = list(good)
        batch[where] = bad
        batch[where + 1 if where < 59 else 0] = encode_example({"label": 1.5})  # a wrong kind too
        with pytest.raises(TFRecordError) as info:
            parse_examples(batch, spec)
        first = min(where, where + 1 if where < 59 else 0)
        assert info.value.index == first
        with pytest.raises(type(info.value)) as single:
            parse_example(batch[first], spec)
        assert single.value.reason == info.value.reason


# --------------------------------------------------------------------------- API


def test_empty_batch_has_tensorflows_shapes():
    spec = {"d": FixedLenFeature([2, 3], "string", [[b""] * 3] * 2), "v": VarLenFeature("float32")}
    out = parse_examples([], spec)
    assert out["d"].shape == (0, 2, 3) and out["d"].dtype == object
    assert out["v"].indices.shape == (0, 2) and out["v"].values.dtype == np.float32
    assert out["v"].dense_shape.tolist() == [0, 0]


def test_inputs_of_any_bytes_like_kind_and_no_aliasing():
    records = small_examples(50)
    want = parse_examples(records, SMALL_SPEC)
    bufs = [bytearray(r) for r in records]
    for kind in (list, tuple, iter):
        for conv in (bytes, bytearray, memoryview, lambda b: np.frombuffer(b, np.uint8)):
            got = parse_examples(kind([conv(b) for b in bufs]), SMALL_SPEC)
            for b in bufs:
                b[:] = b"\xaa" * len(b)  # the caller reuses its buffers
            assert_same(got, want)
            for b, r in zip(bufs, records):
                b[:] = r
    with pytest.raises(TypeError):
        parse_examples(["not bytes"], SMALL_SPEC)


def test_spec_and_batch_size_are_checked_early():
    with pytest.raises(TypeError):
        parse_examples([], {"x": "float32"})
    with pytest.raises(TypeError):
        read_batches(EXAMPLES, {1: VarLenFeature("int64")})
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            read_batches(EXAMPLES, SMALL_SPEC, bad)


def test_public_names():
    assert tfrecord_numpy.parse_examples is parse_examples and tfrecord_numpy.read_batches is read_batches
    assert {"parse_examples", "read_batches"} <= set(tfrecord_numpy.__all__)


# --------------------------------------------------------------------------- files, batches, framing


@pytest.fixture
def three_files(tmp_path):
    paths = []
    records = small_examples(301, seed=3, odd_every=50)
    for k, (a, b) in enumerate([(0, 100), (100, 101), (101, 301)]):  # one file holds a single record
        p = tmp_path / f"part-{k}.tfrecord"
        write_records(p, records[a:b])
        paths.append(p)
    return paths, records


@pytest.mark.parametrize("size", [1, 2, 7, 64, 100, 101, 300, 301, 1024])
def test_batches_run_across_files_and_blocks(three_files, monkeypatch, size):
    paths, records = three_files
    import tfrecord_numpy.reader as reader_mod

    monkeypatch.setattr(reader_mod, "INITIAL_CHUNK_BYTES", 256)  # many small read blocks:
    monkeypatch.setattr(reader_mod, "DEFAULT_CHUNK_BYTES", 2048)  # batches straddle them
    got = list(read_batches(paths, SMALL_SPEC, size))
    assert [len(b["label"]) for b in got] == [min(size, 301 - a) for a in range(0, 301, size)]
    for k, b in enumerate(got):
        assert_same(b, parse_examples(records[k * size : (k + 1) * size], SMALL_SPEC))


def test_read_batches_equal_on_a_directory_a_glob_and_gzip(tmp_path):
    records = small_examples(120, seed=5)
    write_records(tmp_path / "a.tfrecord", records[:70])
    write_records(tmp_path / "b.tfrecord.gz", records[70:], compression="gzip")
    want = [parse_examples(records[a : a + 32], SMALL_SPEC) for a in range(0, 120, 32)]
    for source in (tmp_path, str(tmp_path / "*.tfrecord*"), [tmp_path / "a.tfrecord", tmp_path / "b.tfrecord.gz"]):
        got = list(read_batches(source, SMALL_SPEC, 32))
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w)


def test_options_reach_the_reader(tmp_path):
    """compression, verify and storage_options mean what they mean for read_records."""
    import fsspec

    records = small_examples(40, seed=6)
    want = parse_examples(records, SMALL_SPEC)
    gz = tmp_path / "data.bin"  # no suffix: "auto" sniffs the gzip header
    write_records(gz, records, compression="gzip")
    for compression in ("auto", "gzip"):
        assert_same(next(read_batches(gz, SMALL_SPEC, 64, compression=compression)), want)
    write_records(tmp_path / "plain", records)
    raw = bytearray((tmp_path / "plain").read_bytes())
    raw[-1] ^= 1  # the last record's data CRC
    (tmp_path / "plain").write_bytes(bytes(raw))
    with pytest.raises(TFRecordError, match="data CRC"):
        list(read_batches(tmp_path / "plain", SMALL_SPEC, 64))
    assert_same(next(read_batches(tmp_path / "plain", SMALL_SPEC, 64, verify=False)), want)
    with fsspec.open("memory://batch-test/data.tfrecord", "wb") as f:
        f.write((tmp_path / "plain").read_bytes())
    got = next(read_batches("memory://batch-test/data.tfrecord", SMALL_SPEC, 64, verify=False, storage_options={}))
    assert_same(got, want)


def test_parse_errors_name_the_file_the_record_and_its_offset(three_files):
    paths, records = three_files
    broken = list(records[101:301])
    broken[57] = encode_example({"features": np.zeros(2, np.float32), "label": 1, "filename": b"x"})
    write_records(paths[2], broken)
    offsets = [off for _, _, off, _ in iter_records(paths[2])]
    for size in (1, 10, 64, 1000):
        batches = read_batches(paths, SMALL_SPEC, size)
        seen = 0
        with pytest.raises(SchemaError) as info:
            for b in batches:
                seen += len(b["label"])
        assert (info.value.path, info.value.index, info.value.offset) == (str(paths[2]), 57, offsets[57])
        assert seen == (101 + 57) // size * size  # whole batches before the failing one
        assert "Key: features." in str(info.value) and f"offset {offsets[57]}" in str(info.value)


CORRUPT = sorted(p for p in (DATA / "corrupt").iterdir() if p.is_file() and p.suffix != ".json")


@pytest.mark.parametrize("path", CORRUPT, ids=[p.name for p in CORRUPT])
@pytest.mark.parametrize("size", [1, 2, 3])
def test_framing_errors_are_iter_records_errors(path, size):
    spec = {"embedding_shape": VarLenFeature("int64"), "filename": FixedLenFeature([], "string")}
    good = []
    want_error = None
    try:
        for _, _, _, view in iter_records(path):
            good.append(bytes(view))
    except TFRecordError as exc:
        want_error = exc
    got = []
    try:
        for b in read_batches(path, spec, size):
            got.append(b)
    except TFRecordError as exc:
        assert want_error is not None
        assert type(exc) is type(want_error) and str(exc) == str(want_error)
        assert (exc.path, exc.index, exc.offset) == (want_error.path, want_error.index, want_error.offset)
        assert len(got) == len(good) // size  # the damaged record's batch never comes out
    else:
        assert want_error is None
        assert len(got) == -(-len(good) // size)
    for k, b in enumerate(got):
        assert_same(b, parse_examples(good[k * size : (k + 1) * size], spec))


def test_a2o_shards_gzip_or_not():
    spec = {
        "embedding": FixedLenFeature([], "string"),
        "embedding_shape": FixedLenFeature([3], "int64"),
        "filename": FixedLenFeature([], "string"),
        "timestamp_s": FixedLenFeature([], "float32"),
    }
    plain = sorted((DATA / "a2o").glob("embeddings-*"))
    gz = sorted((DATA / "a2o_gzip").glob("embeddings-*"))
    records = [r for p in plain for r in read_records(p)]
    for source in (plain, gz):
        got = list(read_batches(source, spec, 5))
        assert [len(b["filename"]) for b in got] == [5, 5, 3]
        for k, b in enumerate(got):
            assert_same(b, stack([parse_example(r, spec) for r in records[k * 5 : (k + 1) * 5]], spec))


# --------------------------------------------------------------------------- work, by counts


def test_no_record_of_a_clean_file_takes_the_exact_parser(tmp_path, fallbacks):
    path = tmp_path / "clean.tfrecord"
    write_records(path, small_examples(3000, seed=7))
    assert sum(len(b["label"]) for b in read_batches(path, SMALL_SPEC, 1024)) == 3000
    assert fallbacks == []
    records = small_examples(600, seed=8, odd_every=100)
    parse_examples(records, SMALL_SPEC)
    assert len(fallbacks) == 6  # exactly the records with a duplicate key
    for r in list(read_records(EXAMPLES))[:7]:  # the corpus' ordinary records, alone or in a crowd
        view = {k: v for k, v in parse_example(r).items() if k != "kind_unset"}  # no kind: the exact parser's
        kinds = {k: "string" if isinstance(v, list) else str(v.dtype) for k, v in view.items()}
        fixed = {k: FixedLenFeature([len(view[k])], t) for k, t in kinds.items()}
        for spec in ({k: VarLenFeature(t) for k, t in kinds.items()}, fixed):
            fallbacks.clear()
            parse_examples([r] * 50, spec)
            parse_examples([r], spec)
            assert fallbacks == [], spec


def calls_for(records: list[bytes], spec: dict) -> int:
    with count_calls() as work:
        parse_examples(records, spec)
    return work.calls


@pytest.mark.parametrize("seed, odd", [(0, 0), (1, 0), (2, 97)])
def test_python_calls_per_batch_do_not_grow_with_its_records(seed, odd):
    """One layout (templates), many layouts (lockstep walk), or odd records mixed in: O(1) calls per batch."""
    small = small_examples(2000, seed=seed, odd_every=odd)
    large = small_examples(8000, seed=seed, odd_every=odd)
    if seed == 1:  # every record its own entry order and its own extra key: no two layouts alike
        rnd = random.Random(seed)
        small, large = ([shuffled_entries(r, rnd) for r in recs] for recs in (small, large))
    spec = dict(SMALL_SPEC, absent=FixedLenFeature([2], "int64", [1, 2]))
    calls_small, calls_large = calls_for(small, spec), calls_for(large, spec)
    # the exact parser's own cost for the odd records (a few hundred calls each) is per record, by design
    exact = 400 * (6000 // odd) if odd else 0
    assert calls_small < 20_000, calls_small  # the per-record parser would make ~100 calls a record
    assert calls_large < calls_small + 300 + exact, (calls_small, calls_large)


def shuffled_entries(record: bytes, rnd: random.Random) -> bytes:
    """The record's map entries in a random order, with an extra key of its own, in one Example."""
    parsed = parse_example(record)
    items = list(parsed.items()) + [(f"extra{rnd.randrange(10**6)}", np.array([1], np.int64))]
    rnd.shuffle(items)
    body = b"".join(entries_of(encode_example({k: v})) for k, v in items)
    return b"\x0a" + encode_varint(len(body)) + body


def entries_of(example: bytes) -> bytes:
    _, pos = read_varint(example, 1, len(example))
    return example[pos:]


def test_one_huge_record_costs_the_batch_no_more_than_itself():
    """A record with thousands of entries among small ones: the walk hands it over, it never runs on."""
    small = small_examples(2000, seed=4)
    huge = encode_example(
        {f"k{i}": i for i in range(3000)} | {"features": np.zeros(3, np.float32), "label": 1, "filename": b"h"}
    )
    with count_calls() as alone:
        parse_example(huge, SMALL_SPEC)
    calls = calls_for(small + [huge], SMALL_SPEC)
    assert calls < calls_for(small, SMALL_SPEC) + 2 * alone.calls + 500


def test_read_batches_costs_a_few_calls_per_record(tmp_path):
    """Following the chain of record lengths is a Python loop (2 calls a record); nothing else is per record."""
    calls = []
    for n in (20000, 40000):
        path = tmp_path / f"f{n}.tfrecord"
        write_records(path, small_examples(n, seed=9))
        with count_calls() as work:
            for _ in read_batches(path, SMALL_SPEC, 1000):
                pass
        calls.append(work.calls)
    assert calls[1] - calls[0] < 2.5 * 20000, calls
