"""Arrow tables and Parquet files: ``tfrecord_numpy.arrow.read_table`` / ``convert`` and ``tfrecord-numpy convert``.

Values are checked against our own per-record parser (``parse_example``,
``parse_tensor``), which is bit-exact with TensorFlow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from conftest import A2O_GZIP_SHARDS, A2O_SHARDS, CORRUPT, DATA  # noqa: E402
from tfrecord_numpy import (  # noqa: E402
    CorruptRecordError,
    FixedLenFeature,
    SchemaError,
    TFRecordError,
    VarLenFeature,
    encode_example,
    parse_example,
    parse_tensor,
    read_records,
    serialize_tensor,
    write_records,
)
from tfrecord_numpy import arrow as tfa  # noqa: E402
from tfrecord_numpy.atomic import AtomicFile, is_tmp_name  # noqa: E402
from tfrecord_numpy.cli import main  # noqa: E402
from tfrecord_numpy.reader import iter_records  # noqa: E402

EXAMPLES = DATA / "examples" / "examples.tfrecord"
GOLDEN = json.loads((DATA / "examples" / "examples.golden.json").read_text())


# --------------------------------------------------------------------------- helpers


def _feature(spec: dict) -> FixedLenFeature | VarLenFeature:
    if spec["type"] == "VarLenFeature":
        return VarLenFeature(spec["dtype"])
    default = spec["default_value"]
    if default is not None and spec["dtype"] == "string":
        default = np.vectorize(bytes.fromhex, otypes=[object])(np.array(default, dtype=object))
    return FixedLenFeature(spec["shape"], spec["dtype"], default_value=default)


def _golden_spec(group: str, labels: list[str] | None = None) -> dict:
    specs = GOLDEN["specs"][group]
    return {s["feature"]: _feature(s) for label, s in specs.items() if labels is None or label in labels}


SPECS = {
    "fixed": _golden_spec(
        "fixed",
        ["f_scalar", "f_multi", "i_scalar", "i_multi", "b_scalar", "b_multi", "f_empty", "sometimes", "kind_unset"],
    ),
    "fixed_3x1": _golden_spec("fixed", ["f_multi_3x1", "b_multi", "i_empty"]),
    "varlen": _golden_spec("varlen"),
    "both": {**_golden_spec("varlen", ["f_multi", "b_scalar", "kind_unset"]), **_golden_spec("fixed", ["i_multi"])},
}
A2O_SPEC = {
    "embedding": FixedLenFeature([], "string"),
    "embedding_shape": FixedLenFeature([3], "int64"),
    "filename": FixedLenFeature([], "string"),
    "timestamp_s": FixedLenFeature([], "float32"),
}


def _leaves(column) -> tuple[object, list]:
    """A column's innermost values (numpy, or a list of bytes) and, per list level, its lengths."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if isinstance(arr.type, pa.ExtensionType):
        arr = arr.storage
    lengths = []
    while pa.types.is_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        lengths.append(arr.value_lengths().to_numpy() if pa.types.is_list(arr.type) else arr.type.list_size)
        arr = arr.flatten()
    if pa.types.is_binary(arr.type):
        return arr.to_pylist(), lengths
    return arr.to_numpy(zero_copy_only=False), lengths


def _bits(a: np.ndarray) -> np.ndarray:
    """Values compared bit for bit (NaN payloads, -0.0)."""
    a = np.ascontiguousarray(a)
    return a.view(np.dtype(f"u{a.dtype.itemsize}")) if a.dtype.kind == "f" else a


def _assert_column_is(column, values: list, feat) -> None:
    """``column`` holds ``values`` (one parse_example result per row), value by value."""
    got, lengths = _leaves(column)
    if isinstance(feat, VarLenFeature):
        want = [sv.values for sv in values]
        assert lengths[0].tolist() == [len(v) for v in want]
    else:
        want = [np.asarray(v).reshape(-1) for v in values]
        assert lengths == list(feat.shape)  # nested fixed_size_list sizes
    if feat.dtype == "string":
        assert got == [b for v in want for b in v.tolist()]
    else:
        flat = np.concatenate(want) if want else np.empty(0, feat.dtype)
        assert got.dtype == flat.dtype
        np.testing.assert_array_equal(_bits(got), _bits(flat))


def _parses(record: bytes, spec: dict) -> bool:
    try:
        parse_example(record, spec)
    except TFRecordError:
        return False
    return True


def _shards(tmp_path: Path, sources=A2O_SHARDS) -> list[Path]:
    """Copies of the sources (tests may touch or rewrite them)."""
    folder = tmp_path / "shards"
    folder.mkdir(exist_ok=True)
    out = []
    for src in sources:
        dst = folder / Path(src).name
        shutil.copyfile(src, dst)
        out.append(dst)
    return out


def _tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if is_tmp_name(str(p))]


# --------------------------------------------------------------------------- read_table with a spec


@pytest.mark.parametrize("name", sorted(SPECS))
def test_read_table_with_a_spec_stacks_parse_example(name, tmp_path):
    spec = SPECS[name]
    records = list(read_records(EXAMPLES))
    good = [r for r in records if _parses(r, spec)]
    assert len(good) >= 10
    path = tmp_path / "good.tfrecord"
    write_records(str(path), good)

    table = tfa.read_table(path, spec)
    assert table.num_rows == len(good) and table.column_names == list(spec)
    parsed = [parse_example(r, spec) for r in good]
    for key, feat in spec.items():
        column = table.column(key)
        if isinstance(feat, VarLenFeature):
            assert pa.types.is_list(column.type)
        elif feat.shape:
            assert pa.types.is_fixed_size_list(column.type) and column.type.list_size == feat.shape[0]
        else:
            assert column.type == {"float32": pa.float32(), "int64": pa.int64(), "string": pa.binary()}[feat.dtype]
        _assert_column_is(column, [p[key] for p in parsed], feat)


def test_fixed_len_matrix_is_a_nested_fixed_size_list():
    spec = SPECS["fixed_3x1"]
    good = [r for r in read_records(EXAMPLES) if _parses(r, spec)]
    table = tfa.read_table([_memory_file(good)], spec)
    assert table.schema.field("f_multi").type == pa.list_(pa.list_(pa.float32(), 1), 3)
    assert table.column("f_multi").to_pylist() == [parse_example(r, spec)["f_multi"].tolist() for r in good]


def _memory_file(records: list[bytes]):
    import io

    buf = io.BytesIO()
    write_records(buf, records)
    buf.seek(0)
    return buf


def test_read_table_raises_what_parse_example_raises_where_it_happened():
    spec = SPECS["varlen"]
    records = list(iter_records(EXAMPLES))
    first_bad = next(i for i, (_, _, _, v) in enumerate(records) if not _parses(bytes(v), spec))
    with pytest.raises(TFRecordError) as info:
        parse_example(bytes(records[first_bad][3]), spec)
    expected = info.value
    with pytest.raises(type(expected)) as info:
        tfa.read_table(EXAMPLES, spec)
    err = info.value
    assert err.reason == expected.reason
    assert (err.path, err.index, err.offset) == (str(EXAMPLES), first_bad, records[first_bad][2])


def test_max_records_reads_the_first_records_of_each_source():
    table = tfa.read_table(A2O_SHARDS, max_records=2)
    names = [parse_example(r)["filename"][0] for s in A2O_SHARDS for r in list(read_records(s))[:2]]
    assert table.column("filename").to_pylist() == names
    assert tfa.read_table(A2O_SHARDS, max_records=0).num_rows == 0
    with pytest.raises(ValueError, match="max_records"):
        tfa.read_table(A2O_SHARDS, max_records=-1)


# --------------------------------------------------------------------------- inferred columns


def test_inferred_a2o_embedding_is_a_fixed_shape_tensor_bit_for_bit():
    table = tfa.read_table(A2O_SHARDS)
    records = [r for s in A2O_SHARDS for r in read_records(s)]  # in order, shard after shard
    assert table.num_rows == len(records) == 13
    emb = table.column("embedding")
    assert emb.type == pa.fixed_shape_tensor(pa.float32(), [12, 5, 1280])
    got = np.concatenate([chunk.to_numpy_ndarray() for chunk in emb.chunks])
    want = np.stack([parse_tensor(parse_example(r)["embedding"][0]) for r in records])
    assert got.shape == want.shape == (13, 12, 5, 1280)
    np.testing.assert_array_equal(_bits(got), _bits(want))
    # the other columns: FixedLen as inspect reports them
    assert table.schema.field("embedding_shape").type == pa.list_(pa.int64(), 3)
    assert table.schema.field("filename").type == pa.binary()
    assert table.schema.field("timestamp_s").type == pa.float32()
    plain = [parse_example(r) for r in records]
    assert table.column("filename").to_pylist() == [p["filename"][0] for p in plain]
    assert table.column("embedding_shape").to_pylist() == [p["embedding_shape"].tolist() for p in plain]
    np.testing.assert_array_equal(
        _bits(table.column("timestamp_s").to_numpy()), _bits(np.concatenate([p["timestamp_s"] for p in plain]))
    )
    # gzip shards: the same table
    assert tfa.read_table(A2O_GZIP_SHARDS).equals(table)


def test_inference_rules(tmp_path):
    rng = np.random.default_rng(0)
    records = []
    for i in range(6):
        feats = {
            "fixed": np.arange(3, dtype=np.int64) + i,
            "scalar": np.float32(i) / 2,
            "varies": np.arange(i % 3 + 1, dtype=np.float32),
            "name": f"row{i}".encode(),
            "tensor": serialize_tensor(rng.integers(0, 9, (2, 3)).astype(np.int16)),
            "half": serialize_tensor(rng.standard_normal(4).astype(np.float16)),
            "ragged_tensor": serialize_tensor(np.zeros((i + 1, 2), np.float32)),
            "two_dtypes": serialize_tensor(np.zeros(2, np.float32 if i % 2 else np.float64)),
            "tensors": [serialize_tensor(np.zeros(2, np.float32))] * 2,
        }
        if i % 2:
            feats["sometimes"] = np.int64(i)
        records.append(encode_example(feats))
    path = tmp_path / "x.tfrecord"
    write_records(str(path), records)
    table = tfa.read_table(path)
    types = {f.name: f.type for f in table.schema}
    assert types == {
        "fixed": pa.list_(pa.int64(), 3),
        "half": pa.fixed_shape_tensor(pa.float16(), [4]),
        "name": pa.binary(),
        "ragged_tensor": pa.binary(),  # shapes differ: the serialized bytes stay
        "scalar": pa.float32(),
        "sometimes": pa.list_(pa.int64()),  # missing from some records
        "tensor": pa.fixed_shape_tensor(pa.int16(), [2, 3]),
        "tensors": pa.list_(pa.binary(), 2),  # several tensors a record: bytes
        "two_dtypes": pa.binary(),
        "varies": pa.list_(pa.float32()),
    }
    parsed = [parse_example(r) for r in records]
    got = table.column("tensor").combine_chunks().to_numpy_ndarray()
    np.testing.assert_array_equal(got, np.stack([parse_tensor(p["tensor"][0]) for p in parsed]))
    half = table.column("half").combine_chunks().to_numpy_ndarray()
    np.testing.assert_array_equal(_bits(half), _bits(np.stack([parse_tensor(p["half"][0]) for p in parsed])))
    assert table.column("sometimes").to_pylist() == [[] if i % 2 == 0 else [i] for i in range(6)]
    assert table.column("varies").to_pylist() == [list(range(i % 3 + 1)) for i in range(6)]
    # a seekable file object is read twice, and put back
    with open(path, "rb") as f:
        assert tfa.read_table(f).equals(table)


def test_mixed_kinds_or_other_records_need_a_spec(tmp_path):
    path = tmp_path / "mixed.tfrecord"
    write_records(str(path), [encode_example({"x": 1}), encode_example({"x": 1.5})])
    with pytest.raises(SchemaError, match="'x'.*different kinds"):
        tfa.read_table(path)
    assert tfa.read_table(path, {"x": VarLenFeature("int64")}, max_records=1).num_rows == 1
    with pytest.raises(SchemaError, match="tf.train.Example records only"):
        tfa.read_table(EXAMPLES)  # record 21 is not a protobuf


# --------------------------------------------------------------------------- convert


def test_convert_writes_one_parquet_per_shard_equal_to_read_table(tmp_path):
    out = tmp_path / "out"
    summary = tfa.convert(A2O_SHARDS, out)
    assert summary["shards"] == summary["converted"] == 3 and summary["already_complete"] == 0
    assert summary["records"] == 13 and summary["seconds"] >= 0
    names = sorted(p.name for p in out.iterdir() if p.is_file())
    assert names == sorted([f"{p.name}.parquet" for p in A2O_SHARDS] + ["convert-manifest.json"])
    for shard in A2O_SHARDS:
        written = pq.read_table(out / f"{shard.name}.parquet")
        assert written.equals(tfa.read_table(shard))
        assert written.schema.field("embedding").type == pa.fixed_shape_tensor(pa.float32(), [12, 5, 1280])
    manifest = json.loads((out / "convert-manifest.json").read_text())
    entry = manifest["shards"][A2O_SHARDS[0].name]
    assert entry["records"] == 5 and entry["output"]["path"] == f"{A2O_SHARDS[0].name}.parquet"
    assert entry["output"]["bytes"] == (out / entry["output"]["path"]).stat().st_size
    assert entry["source_identity"]["size"] == A2O_SHARDS[0].stat().st_size
    assert not list((out / ".convert-journal").glob("*.json")) and not _tmp_files(out)
    # the stem stops at the first '.', whatever the compression suffix
    gz = tfa.convert([A2O_GZIP_SHARDS[0]], tmp_path / "gz", features=None)
    assert gz["converted"] == 1
    assert pq.read_table(tmp_path / "gz" / f"{A2O_GZIP_SHARDS[0].name.split('.')[0]}.parquet").equals(
        tfa.read_table(A2O_SHARDS[0])
    )


def test_convert_with_a_spec(tmp_path):
    spec = {"timestamp_s": FixedLenFeature([], "float32"), "embedding_shape": VarLenFeature("int64")}
    tfa.convert(A2O_SHARDS[:2], tmp_path / "out", features=spec)
    for shard in A2O_SHARDS[:2]:
        written = pq.read_table(tmp_path / "out" / f"{shard.name}.parquet")
        assert written.column_names == ["timestamp_s", "embedding_shape"]
        assert written.equals(tfa.read_table(shard, spec))


def test_a_failure_midway_leaves_no_output_and_no_temporaries(tmp_path, monkeypatch):
    out = tmp_path / "out"
    bad = CORRUPT / "payload_crc_flipped_r1"  # record 1 of 3 is damaged
    # inferring the columns reads every source first: the damage stops the run before any output
    with pytest.raises(CorruptRecordError):
        tfa.convert([A2O_SHARDS[0], bad], out)
    assert not list(out.glob("*.parquet")) and not _tmp_files(out)
    with pytest.raises(CorruptRecordError) as info:
        # with a spec: shard 0 is converted, then record 0 of the bad one is written before the failure
        tfa.convert([A2O_SHARDS[0], bad], out, features=A2O_SPEC, batch_records=1)
    assert info.value.index == 1 and info.value.path == str(bad)
    assert (out / f"{A2O_SHARDS[0].name}.parquet").exists()  # finished before: published and recorded
    assert not (out / "payload_crc_flipped_r1.parquet").exists() and not _tmp_files(out)
    assert not (out / ".convert.lock").exists()
    manifest = json.loads((out / "convert-manifest.json").read_text())
    assert list(manifest["shards"]) == [A2O_SHARDS[0].name]

    # a run killed mid-shard leaves its temporary (no abort ran) ...
    monkeypatch.setattr(AtomicFile, "abort", lambda self: None)
    with pytest.raises(CorruptRecordError):
        tfa.convert([bad], out, features=A2O_SPEC, batch_records=1)
    assert len(_tmp_files(out)) == 1 and not (out / "payload_crc_flipped_r1.parquet").exists()
    monkeypatch.undo()
    # ... which the next run removes
    summary = tfa.convert([A2O_SHARDS[0]], out, features=A2O_SPEC)
    assert summary["already_complete"] == 1 and not _tmp_files(out)


def test_resume_skips_complete_shards_and_redoes_changed_ones(tmp_path, monkeypatch):
    shards = _shards(tmp_path)
    out = tmp_path / "out"
    assert tfa.convert(shards, out)["converted"] == 3
    again = tfa.convert(shards, out)
    assert (again["converted"], again["already_complete"], again["records"]) == (0, 3, 0)

    # touching one source redoes only it
    st = shards[1].stat()
    os.utime(shards[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert (tfa.convert(shards, out)["converted"], tfa.convert(shards, out)["converted"]) == (1, 0)

    # rewriting one (fewer records) redoes it, with the new content
    write_records(str(shards[2]), list(read_records(A2O_SHARDS[2]))[:1])
    summary = tfa.convert(shards, out)
    assert (summary["converted"], summary["already_complete"], summary["records"]) == (1, 2, 1)
    assert pq.read_table(out / f"{shards[2].name}.parquet").num_rows == 1

    # a damaged or missing output is redone; so is everything with overwrite
    with open(out / f"{shards[0].name}.parquet", "r+b") as f:
        f.seek(100)
        f.write(b"\0\0\0\0")
    (out / f"{shards[1].name}.parquet").unlink()
    assert tfa.convert(shards, out)["converted"] == 2
    assert tfa.convert(shards, out, overwrite=True)["converted"] == 3

    # other columns: every output is redone
    spec = {"timestamp_s": FixedLenFeature([], "float32")}
    assert tfa.convert(shards, out, features=spec)["converted"] == 3
    assert tfa.convert(shards, out, features=spec)["converted"] == 0
    assert tfa.convert(shards, out)["converted"] == 3

    # a run killed before folding the journal: the journal alone says what is done
    monkeypatch.setattr(tfa.Journal, "compact", lambda self: None)
    (out / "convert-manifest.json").unlink()
    assert tfa.convert(shards, out, overwrite=True)["converted"] == 3
    assert len(list((out / ".convert-journal").glob("*.json"))) == 3
    monkeypatch.undo()
    assert tfa.convert(shards, out)["already_complete"] == 3
    assert not list((out / ".convert-journal").glob("*.json"))


def test_inferred_columns_agree_across_outputs(tmp_path):
    """A new shard that changes the inferred columns makes the earlier outputs be redone."""
    a = tmp_path / "a.tfrecord"
    b = tmp_path / "b.tfrecord"
    write_records(str(a), [encode_example({"v": np.arange(2, dtype=np.int64)})] * 3)
    write_records(str(b), [encode_example({"v": np.arange(3, dtype=np.int64)})] * 2)
    out = tmp_path / "out"
    tfa.convert([a], out)
    assert pq.read_table(out / "a.parquet").schema.field("v").type == pa.list_(pa.int64(), 2)
    summary = tfa.convert([a, b], out)
    assert summary["converted"] == 2
    for name in ("a", "b"):
        assert pq.read_table(out / f"{name}.parquet").schema.field("v").type == pa.list_(pa.int64())


def test_batches_stay_bounded(tmp_path, monkeypatch):
    """Memory is bounded by the batch: no batch (= row group) holds more than the bound."""
    records = [encode_example({"x": np.arange(200 + i, dtype=np.float32), "i": i}) for i in range(50)]
    path = tmp_path / "big.tfrecord"
    write_records(str(path), records)
    sizes: list[int] = []
    real = pq.ParquetWriter.write_batch

    def spy(self, batch, *args, **kwargs):
        sizes.append(batch.num_rows)
        return real(self, batch, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_batch", spy)
    tfa.convert([path], tmp_path / "rows", batch_records=7)
    assert sum(sizes) == 50 and max(sizes) == 7
    groups = pq.ParquetFile(tmp_path / "rows" / "big.parquet").metadata
    assert [groups.row_group(i).num_rows for i in range(groups.num_row_groups)] == sizes

    sizes.clear()
    budget = 3 * len(records[0]) + 20  # bytes of payload: three or fewer records a batch
    tfa.convert([path], tmp_path / "bytes", batch_bytes=budget)
    assert sum(sizes) == 50 and max(sizes) <= 3
    lengths = [len(r) for r in records]
    at = 0
    for n in sizes:
        assert sum(lengths[at : at + n]) <= budget
        at += n
    assert pq.read_table(tmp_path / "bytes" / "big.parquet").equals(tfa.read_table(path))


def test_convert_to_another_filesystem_and_usage_errors(tmp_path):
    import fsspec

    url = f"memory://tfa-{uuid.uuid4().hex}/out"
    try:
        assert tfa.convert(A2O_SHARDS[:1], url)["converted"] == 1
        assert tfa.convert(A2O_SHARDS[:1], url)["already_complete"] == 1
        fs = fsspec.filesystem("memory")
        with fs.open(f"{url}/{A2O_SHARDS[0].name}.parquet", "rb") as f:
            assert pq.read_table(f).equals(tfa.read_table(A2O_SHARDS[0]))
    finally:
        fsspec.filesystem("memory").rm(url.rpartition("/")[0], recursive=True)

    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copyfile(A2O_SHARDS[0], twin / f"{A2O_SHARDS[0].name}.gz.bak")
    with pytest.raises(ValueError, match="would both be written"):
        tfa.convert([A2O_SHARDS[0], twin / f"{A2O_SHARDS[0].name}.gz.bak"], tmp_path / "o")
    with pytest.raises(ValueError, match="format"):
        tfa.convert(A2O_SHARDS, tmp_path / "o", format="csv")
    with pytest.raises(ValueError, match="batch_records"):
        tfa.convert(A2O_SHARDS, tmp_path / "o", batch_records=0)
    with open(A2O_SHARDS[0], "rb") as f, pytest.raises(TypeError, match="paths or URLs"):
        tfa.convert([f], tmp_path / "o")


def test_one_run_per_destination(tmp_path):
    from tfrecord_numpy.lock import DestinationLocked

    out = tmp_path / "out"
    out.mkdir()
    lock = out / ".convert.lock"
    import socket

    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": 0}))
    with pytest.raises(DestinationLocked, match="destination in use"):
        tfa.convert(A2O_SHARDS[:1], out)
    assert not list(out.glob("*.parquet"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "started": 0}))
    assert tfa.convert(A2O_SHARDS[:1], out)["converted"] == 1  # a dead holder's lock is taken over
    assert not lock.exists()


# --------------------------------------------------------------------------- the command and the extra


def test_cli_convert_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["convert", *map(str, A2O_SHARDS), "--out", str(out), "--format", "parquet"]
    assert main(args) == 0
    assert "3 shards (3 converted, 0 already complete), 13 records" in capsys.readouterr().err
    for shard in A2O_SHARDS:
        assert pq.read_table(out / f"{shard.name}.parquet").equals(tfa.read_table(shard))
    assert main(args) == 0
    assert "(0 converted, 3 already complete)" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--compression", "none"]) == 0
    assert "(3 converted, 0 already complete)" in capsys.readouterr().err

    assert main(["convert", str(CORRUPT / "payload_crc_flipped_r1"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CorruptRecordError" in err and "record 1" in err

    proc = subprocess.run(
        [sys.executable, "-m", "tfrecord_numpy.cli", "convert", str(A2O_SHARDS[0])], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "--out" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "tfrecord_numpy.cli", "convert", str(A2O_SHARDS[0]), "--out", str(out), "--format", "x"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2


def test_cli_without_pyarrow_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert main(["convert", str(A2O_SHARDS[0]), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'tfrecord-numpy[arrow]'" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ImportError, match=r"tfrecord-numpy\[arrow\]"):
        tfa.read_table(A2O_SHARDS[0])


def test_importing_the_package_does_not_import_pyarrow():
    code = (
        "import sys, tfrecord_numpy, tfrecord_numpy.arrow, tfrecord_numpy.cli; "
        "tfrecord_numpy.cli.build_parser(); assert 'pyarrow' not in sys.modules, 'pyarrow imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
