"""``--schema perch``: any Perch embedding set, against what TensorFlow decodes
(goldens made by scripts/make_perch_goldens.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfrecord_numpy import SchemaError
from tfrecord_numpy.a2o import extract, read_shard

PERCH = Path(__file__).parent / "data" / "perch"
SHARDS = sorted(p for p in PERCH.iterdir() if "golden" not in p.name)


@pytest.mark.parametrize("shard", SHARDS, ids=lambda p: p.name)
def test_perch_schema_extracts_what_tensorflow_decodes(tmp_path, shard):
    golden = np.load(PERCH / f"{shard.name}.golden.npz")
    rows = json.loads((PERCH / f"{shard.name}.golden.json").read_text())
    summary = extract([shard], tmp_path, schema="perch", workers=1, quiet=True)
    assert summary["rows"] == len(rows) and summary["unknown_site_rows"] == 0
    emb = np.load(tmp_path / "embeddings" / f"{shard.name}.npy")
    want = golden["embeddings"]
    assert emb.dtype == want.dtype and emb.shape == want.shape and emb.tobytes() == want.tobytes()
    meta = json.loads((tmp_path / "metadata" / f"{shard.name}.json").read_text())
    assert meta == rows
    assert [list(r) for r in meta[:1]] == [["filename", "timestamp_s", "window_index", "offset_s", "channel_index"]]
    got, got_rows = read_shard(shard, schema="perch")
    assert got.tobytes() == want.tobytes() and got_rows == rows
    assert json.dumps(got_rows) == (tmp_path / "metadata" / f"{shard.name}.json").read_text()


def test_a2o_schema_still_refuses_names_it_cannot_parse(tmp_path):
    hoplite = PERCH / "hoplite-00000-of-00001"
    with pytest.raises(SchemaError, match="not an A2O recording name") as info:
        extract([hoplite], tmp_path, workers=1, quiet=True)
    assert info.value.index == 0 and info.value.path == str(hoplite)


def test_perch_schema_hop_and_cli(tmp_path):
    shard = PERCH / "hoplite-00000-of-00001"
    proc = subprocess.run(
        [sys.executable, "-m", "tfrecord_numpy.cli", "extract", str(shard), "--out", str(tmp_path),
         "--schema", "perch", "--hop-seconds", "2.5", "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "metadata" / f"{shard.name}.json").read_text())
    assert [m["offset_s"] - m["timestamp_s"] for m in meta[:3]] == [0.0, 2.5, 5.0]


def test_switching_schema_redoes_the_shard(tmp_path):
    shard = PERCH / "public-00000-of-00001"
    first = extract([shard], tmp_path, schema="perch", workers=1, quiet=True)
    same = extract([shard], tmp_path, schema="perch", workers=1, quiet=True)
    assert first["shards_extracted"] == 1 and same["shards_already_complete"] == 1
    other = extract([shard], tmp_path, workers=1, quiet=True, sites={"five-rivers-dry-a": "1", "arkaba-dry-a": "2"})
    assert other["shards_extracted"] == 1  # the a2o rows are other outputs
    meta = json.loads((tmp_path / "metadata" / f"{shard.name}.json").read_text())
    assert meta[0]["site_id"] == "1" and meta[0]["file_seq_id"] == 909057


# --------------------------------------------------------------------------- logits heads


@pytest.mark.parametrize("shard,head", [(SHARDS[0], "label"), (SHARDS[1], "nuisances")], ids=lambda x: str(x)[-12:])
def test_logits_heads_equal_what_tensorflow_decodes(tmp_path, shard, head):
    golden = np.load(PERCH / f"{shard.name}.golden.npz")
    for logits in (head, "all"):
        out = tmp_path / logits
        extract([shard], out, schema="perch", logits=logits, workers=1, quiet=True)
        got = np.load(out / "logits" / head / f"{shard.name}.npy")
        want = golden[head]
        assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()
        assert got.shape[0] == np.load(out / "embeddings" / f"{shard.name}.npy").shape[0]  # row-aligned
        entry = json.loads((out / "manifest.json").read_text())["shards"][shard.name]
        assert entry["logits"][head]["path"] == f"logits/{head}/{shard.name}.npy"
        assert entry["logits"][head]["crc32c"]


def test_logits_in_metadata_rows(tmp_path):
    shard = PERCH / "public-00000-of-00001"
    proc = subprocess.run(
        [sys.executable, "-m", "tfrecord_numpy.cli", "extract", str(shard), "--out", str(tmp_path),
         "--schema", "perch", "--logits", "nuisances", "--logits-in-metadata", "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "metadata" / f"{shard.name}.json").read_text())
    want = np.load(PERCH / f"{shard.name}.golden.npz")["nuisances"]
    assert [m["nuisances"] for m in meta] == want.astype(np.float64).tolist()
    plain = json.loads((PERCH / f"{shard.name}.golden.json").read_text())
    assert [{k: v for k, v in m.items() if k != "nuisances"} for m in meta] == plain


def test_logits_resume_and_a_missing_head(tmp_path):
    shard = PERCH / "hoplite-00000-of-00001"
    first = extract([shard], tmp_path, schema="perch", logits="label", workers=1, quiet=True)
    again = extract([shard], tmp_path, schema="perch", logits="label", workers=1, quiet=True)
    assert first["shards_extracted"] == 1 and again["shards_already_complete"] == 1
    head = tmp_path / "logits" / "label" / f"{shard.name}.npy"
    head.unlink()  # a lost head output: the shard is redone
    redo = extract([shard], tmp_path, schema="perch", logits="label", workers=1, quiet=True)
    assert redo["shards_extracted"] == 1 and head.exists()
    with pytest.raises(SchemaError, match="logits head 'nuisances' is missing") as info:
        extract([shard], tmp_path / "x", schema="perch", logits="nuisances", workers=1, quiet=True)
    assert info.value.index == 0
    assert not (tmp_path / "x" / "embeddings" / f"{shard.name}.npy").exists()  # nothing half-published


# --------------------------------------------------------------------------- config.json


def _perch_folder(tmp_path: Path, shard: str, config: dict | None) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / shard).write_bytes((PERCH / shard).read_bytes())
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def _config(hop: float, dtype: str) -> dict:
    return {
        "embed_fn_config": {
            "model_config": {"window_size_s": 5.0, "hop_size_s": hop, "sample_rate": 32000},
            "tensor_dtype": dtype,
        }
    }


def test_config_json_beside_the_shards_drives_the_hop(tmp_path):
    import hashlib

    shard = "public-00000-of-00001"
    folder = _perch_folder(tmp_path, shard, _config(2.5, "float16"))
    out = tmp_path / "out"
    summary = extract([folder], out, schema="perch", workers=1, quiet=True)
    assert summary["shards"] == 1  # config.json is not taken for a shard
    meta = json.loads((out / "metadata" / f"{shard}.json").read_text())
    assert [m["offset_s"] - m["timestamp_s"] for m in meta[:3]] == [0.0, 2.5, 5.0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["perch_config"]["sha256"] == hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()
    explicit = tmp_path / "explicit"
    extract([folder / shard], explicit, schema="perch", hop_seconds=1, workers=1, quiet=True)
    meta = json.loads((explicit / "metadata" / f"{shard}.json").read_text())
    assert meta[1]["offset_s"] - meta[1]["timestamp_s"] == 1.0  # --hop-seconds wins over the config


def test_config_dtype_must_agree_with_the_embeddings(tmp_path):
    shard = "hoplite-00000-of-00001"  # float32 embeddings
    folder = _perch_folder(tmp_path, shard, _config(5.0, "float16"))
    with pytest.raises(SchemaError, match="tensor_dtype float16") as info:
        extract([folder / shard], tmp_path / "out", schema="perch", workers=1, quiet=True)
    assert info.value.index == 0
    named = tmp_path / "elsewhere.json"
    named.write_text(json.dumps(_config(5.0, "float32")))
    summary = extract(
        [folder / shard], tmp_path / "out2", schema="perch", perch_config=str(named), workers=1, quiet=True
    )
    assert summary["rows"] == 31
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: Perch config is not valid JSON"):
        extract([folder / shard], tmp_path / "out3", schema="perch", perch_config=str(bad), workers=1, quiet=True)


# --------------------------------------------------------------------------- the downstream filter

RULES = ("nuisances[speech] > -0.25", "nuisances[empty] > 1.5 @ 0", "nuisances[empty] > 0 @ 1-4")


def _nuisance_shard(tmp_path: Path) -> Path:
    from tfrecord_numpy.perch.synth import write_a2o_shard

    path = tmp_path / "src" / "embeddings-00000-of-00001"
    path.parent.mkdir(parents=True)
    write_a2o_shard(path, 8, windows=12, channels=5, dims=16, nuisances=True, seed=3)
    return path


def test_filter_equals_the_numpy_rule_on_the_unfiltered_output(tmp_path):
    shard = _nuisance_shard(tmp_path)
    full = tmp_path / "full"
    extract([shard], full, schema="perch", logits="nuisances", workers=1, quiet=True)
    emb = np.load(full / "embeddings" / f"{shard.name}.npy")
    nuis = np.load(full / "logits" / "nuisances" / f"{shard.name}.npy")
    meta = json.loads((full / "metadata" / f"{shard.name}.json").read_text())
    channel = np.array([m["channel_index"] for m in meta])
    empty, speech = nuis[:, 0].astype(np.float64), nuis[:, 1].astype(np.float64)
    blocked = (meta[0]["filename"], meta[0]["timestamp_s"])
    in_blocklist = np.array([(m["filename"], m["timestamp_s"]) == blocked for m in meta])
    keep = ~(
        (speech > -0.25) | ((empty > 1.5) & (channel == 0)) | ((empty > 0.0) & np.isin(channel, [1, 2, 3, 4]))
        | in_blocklist
    )  # fmt: skip
    assert 0 < keep.sum() < keep.size  # the rule really drops some rows and keeps others
    csv = tmp_path / "blocklist.csv"
    csv.write_text(f"filename,timestamp_s\n{blocked[0]},{blocked[1]}\n")
    out = tmp_path / "filtered"
    summary = extract(
        [shard], out, schema="perch", logits="nuisances", drop=RULES, blocklist=str(csv), workers=1, quiet=True
    )
    assert summary["dropped_rows"] == keep.size - keep.sum()
    assert np.load(out / "embeddings" / f"{shard.name}.npy").tobytes() == emb[keep].tobytes()
    assert np.load(out / "logits" / "nuisances" / f"{shard.name}.npy").tobytes() == nuis[keep].tobytes()
    kept_meta = json.loads((out / "metadata" / f"{shard.name}.json").read_text())
    assert kept_meta == [m for m, k in zip(meta, keep) if k]
    entry = json.loads((out / "manifest.json").read_text())["shards"][shard.name]
    assert entry["dropped_rows"] == summary["dropped_rows"] and entry["rows"] == keep.sum()


def test_filter_from_the_command_line_and_rule_errors(tmp_path):
    shard = _nuisance_shard(tmp_path)
    args = [sys.executable, "-m", "tfrecord_numpy.cli", "extract", str(shard), "--schema", "perch", "--quiet"]
    drops = [arg for rule in RULES for arg in ("--drop", rule)]
    proc = subprocess.run([*args, "--out", str(tmp_path / "a"), *drops], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = extract([shard], tmp_path / "b", schema="perch", drop=RULES, workers=1, quiet=True)
    assert (tmp_path / "a" / "embeddings" / f"{shard.name}.npy").read_bytes() == (
        tmp_path / "b" / "embeddings" / f"{shard.name}.npy"
    ).read_bytes()
    assert summary["dropped_rows"] > 0
    bad = subprocess.run([*args, "--out", str(tmp_path / "c"), "--drop", "nuisances[speech] => 1"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 1 and "is not HEAD[CLASS] OP THRESHOLD" in bad.stderr
    with pytest.raises(SchemaError, match="class 'talk' unknown"):
        extract([shard], tmp_path / "d", schema="perch", drop=("nuisances[talk] > 0",), workers=1, quiet=True)
    with pytest.raises(SchemaError, match="logits head 'label' is missing"):
        extract([shard], tmp_path / "e", schema="perch", drop=("label[0] > 0",), workers=1, quiet=True)


# --------------------------------------------------------------------------- Parquet metadata


def test_parquet_metadata_equals_the_json_metadata(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    from conftest import A2O_SHARDS

    shard = PERCH / "public-00000-of-00001"
    for schema, source, kw in (
        ("perch", shard, {"logits": "nuisances", "logits_in_metadata": True}),
        ("a2o", A2O_SHARDS[0], {"sites": A2O_SHARDS[0].parent / "site_name_to_id_mapping.json"}),
    ):
        js, pa_out = tmp_path / f"{schema}-json", tmp_path / f"{schema}-parquet"
        extract([source], js, schema=schema, workers=1, quiet=True, **kw)
        summary = extract([source], pa_out, schema=schema, metadata_format="parquet", workers=1, quiet=True, **kw)
        want = json.loads((js / "metadata" / f"{source.name}.json").read_text())
        table = pq.read_table(pa_out / "metadata" / f"{source.name}.parquet")
        assert table.to_pylist() == want
        assert (pa_out / "embeddings" / f"{source.name}.npy").read_bytes() == (
            js / "embeddings" / f"{source.name}.npy"
        ).read_bytes()
        entry = json.loads((pa_out / "manifest.json").read_text())["shards"][source.name]
        assert entry["metadata"]["path"] == f"metadata/{source.name}.parquet" and entry["metadata"]["crc32c"]
        again = extract([source], pa_out, schema=schema, metadata_format="parquet", workers=1, quiet=True, **kw)
        assert summary["shards_extracted"] == 1 and again["shards_already_complete"] == 1  # resumes
    types = {
        f.name: str(f.type) for f in pq.read_schema(tmp_path / "perch-parquet" / "metadata" / f"{shard.name}.parquet")
    }
    assert types["timestamp_s"] == "double" and types["window_index"] == "int64"
    assert types["nuisances"].startswith("fixed_size_list<element: float>[3]")


def test_empty_perch_shards_take_the_runs_width_and_dtype(tmp_path):
    from tfrecord_numpy import write_records

    src = tmp_path / "src"
    src.mkdir()
    (src / "public-00000-of-00002").write_bytes((PERCH / "public-00000-of-00001").read_bytes())
    write_records(src / "public-00001-of-00002", [])
    summary = extract([src], tmp_path / "out", schema="perch", workers=1, quiet=True)
    empty = np.load(tmp_path / "out" / "embeddings" / "public-00001-of-00002.npy")
    assert empty.shape == (0, 512) and empty.dtype == np.float16
    assert "empty_shards_of_unknown_width" not in summary
    again = extract([src], tmp_path / "out", schema="perch", workers=1, quiet=True)
    assert again["shards_already_complete"] == 2  # the rewritten file verifies
    alone = extract([src / "public-00001-of-00002"], tmp_path / "alone", schema="perch", workers=1, quiet=True)
    assert alone["empty_shards_of_unknown_width"] == ["public-00001-of-00002"]
    assert np.load(tmp_path / "alone" / "embeddings" / "public-00001-of-00002.npy").shape == (0,)


def test_the_packaged_public_set_sample(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tfrecord_numpy.cli", "extract", "--sample", "public", "--out", str(tmp_path),
         "--schema", "perch", "--logits", "nuisances"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (emb,) = (tmp_path / "embeddings").iterdir()
    arr = np.load(emb)
    assert arr.dtype == np.float16 and arr.shape == (50, 512)
    assert np.load(tmp_path / "logits" / "nuisances" / emb.name).shape == (50, 3)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["perch_config"]["url"].endswith("config.json")
    meta = json.loads((tmp_path / "metadata" / emb.name.replace(".npy", ".json")).read_text())
    assert meta[0]["filename"].startswith("site_0277/")


# --------------------------------------------------------------------------- columnar metadata


@pytest.mark.parametrize("schema", ["a2o", "perch"])
def test_columnar_metadata_holds_the_rows_values(schema):
    from conftest import A2O_GZIP_SHARDS, A2O_SHARDS

    sites = A2O_SHARDS[0].parent / "site_name_to_id_mapping.json"
    for shard in (A2O_SHARDS[1], A2O_GZIP_SHARDS[1]):  # the direct path, and the general one
        emb, rows = read_shard(shard, sites=sites, schema=schema)
        emb2, cols = read_shard(shard, sites=sites, schema=schema, columnar=True)
        assert emb2.tobytes() == emb.tobytes()
        assert list(cols) == list(rows[0])  # the same columns, in the same order
        for key, values in cols.items():
            assert len(values) == len(rows)
            assert values.tolist() == [r[key] for r in rows], key
        if schema == "a2o":
            assert cols["file_timestamp"].dtype == np.int64 and cols["site_id"].dtype == object


def _edge_shard(path: Path, timestamps: list[float], windows: int = 3) -> Path:
    from tfrecord_numpy import write_records
    from tfrecord_numpy.perch.synth import a2o_example

    rng = np.random.default_rng(5)
    names = ["20200101T000000Z_Arkaba-Dry-A_1.flac", "20200102T101010+1000_Unmapped-Wet-B_2.flac"]
    write_records(
        path,
        [
            a2o_example(names[i % 2], ts, rng.standard_normal((windows, 2, 8)).astype(np.float32))
            for i, ts in enumerate(timestamps)
        ],
    )
    return path


@pytest.mark.parametrize("hop", [5, 0.96, 3.2])
def test_columnar_offsets_follow_the_rows_float32_arithmetic(tmp_path, hop):
    """Per-row offsets are computed in one vectorised step: they must equal the row
    encoder's per-record float32 arithmetic at rounding edges, any hop, any sign."""
    edge = float(np.nextafter(np.float32(1), np.float32(0)))  # 0.99999994: + 5 rounds up in float32
    shard = _edge_shard(tmp_path / "edge.tfrecord", [edge, -0.5, 16777216.0, 59.0, 1e9, 0.25])
    kw = {"hop_seconds": hop, "on_unknown_site": "null"}
    _, rows = read_shard(shard, **kw)
    _, cols = read_shard(shard, columnar=True, **kw)
    for key, values in cols.items():
        assert values.tolist() == [r[key] for r in rows], key
    assert cols["site_id"].tolist().count(None) == 18  # 3 unmapped records x 3 windows x 2 channels
    if hop == 5:
        assert cols["recording_offset_in_file"][:6].tolist() == [0, 0, 6, 6, 11, 11]  # float32 rounds up


@pytest.mark.parametrize("schema", ["a2o", "perch"])
def test_columnar_non_finite_timestamp_names_the_record(tmp_path, schema):
    shard = _edge_shard(tmp_path / "nan.tfrecord", [1.0, 2.0, float("nan"), 3.0])
    with pytest.raises(SchemaError, match="finite") as err:
        read_shard(shard, columnar=True, schema=schema, on_unknown_site="null")
    assert err.value.index == 2 and err.value.path == str(shard)
    assert err.value.offset == 2 * (shard.stat().st_size // 4)  # records are the same size here
