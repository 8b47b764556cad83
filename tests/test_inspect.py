"""``inspect`` / ``head`` / ``--version``: seeing what an unknown file holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import A2O_SHARDS, DATA
from tfrecord_numpy import FixedLenFeature, VarLenFeature, __version__, write_records
from tfrecord_numpy.inspection import BYTES, EXAMPLE, PROTOBUF, SEQUENCE_EXAMPLE, classify, inspect_records
from tfrecord_numpy.perch.records import NOTEBOOK_SPEC

CLI = [sys.executable, "-m", "tfrecord_numpy.cli"]


def test_the_spec_inspect_writes_for_a2o_shards_is_the_notebooks():
    report = inspect_records(A2O_SHARDS)
    assert report["kinds"] == {EXAMPLE: report["records"]} and report["records"] == 13
    emb = report["features"]["embedding"]
    assert emb["kind"] == "bytes_list" and emb["tensor"]["dtype"] == "float32"
    assert emb["tensor"]["shape"][1:] == [5, 1280]
    namespace = {"FixedLenFeature": FixedLenFeature, "VarLenFeature": VarLenFeature}
    exec(report["spec"], namespace)  # ready to paste
    assert namespace["features"] == NOTEBOOK_SPEC


def test_counts_lengths_and_varying_features():
    report = inspect_records(DATA / "examples" / "examples.tfrecord")
    feats = report["features"]
    # record 21 is a truncated protobuf (TensorFlow cannot parse it either)
    assert report["records"] == 22 and report["kinds"] == {EXAMPLE: 21, BYTES: 1}
    assert feats["i_multi"] == {"kind": "int64_list", "present": 10, "of": 22, "min_len": 2, "max_len": 5}
    assert feats["f_empty"]["min_len"] == feats["f_empty"]["max_len"] == 0
    assert feats["type_varies"]["kind"] == "mixed"  # float in one record, int64 in another
    assert "'i_multi': VarLenFeature(\"int64\")" in report["spec"]
    assert "'type_varies': None  # mixed kinds" in report["spec"]
    first = inspect_records(DATA / "examples" / "examples.tfrecord", max_records=2)
    assert first["records"] == 2 and first["partial"]


def test_record_kinds(tmp_path):
    seq_feature = b"\x0a\x02\x0a\x00"  # Feature{bytes_list{}}: its first value is empty
    feature_list = b"\x0a" + bytes([len(seq_feature)]) + seq_feature
    entry = b"\x0a\x01s\x12" + bytes([len(feature_list)]) + feature_list
    seq = b"\x12" + bytes([len(entry) + 2]) + b"\x0a" + bytes([len(entry)]) + entry
    assert classify(seq) == SEQUENCE_EXAMPLE
    assert classify(b"\x08\x96\x01") == PROTOBUF  # a varint field: protobuf, not an Example
    assert classify(b"\xff\xff\xff") == BYTES
    path = tmp_path / "mixed.tfrecord"
    write_records(path, [os.urandom(50) + b"\xff", seq])
    report = inspect_records(path)
    assert report["kinds"] == {BYTES: 1, SEQUENCE_EXAMPLE: 1}
    assert "spec" not in report and report["feature_lists"]["s"]["present"] == 1


def test_cli_inspect_head_and_version():
    shard = str(A2O_SHARDS[0])
    proc = subprocess.run([*CLI, "inspect", shard, "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["records"] == 5
    proc = subprocess.run([*CLI, "inspect", shard, "--records", "1"], capture_output=True, text=True, timeout=120)
    assert "serialized tensor float32 [12, 5, 1280]" in proc.stdout and "FixedLenFeature" in proc.stdout
    proc = subprocess.run([*CLI, "head", shard, "-n", "2"], capture_output=True, text=True, timeout=120)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 2 and lines[0]["embedding"][0]["shape"] == [12, 5, 1280]
    assert lines[0]["filename"][0].endswith(".flac")
    proc = subprocess.run([*CLI, "--version"], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == f"tfrecord-numpy {__version__}"


def test_sequence_examples_real_and_damaged():
    """TensorFlow-written SequenceExamples (and hand-damaged ones) are told apart, never a crash."""
    report = inspect_records(DATA / "sequence" / "sequences.tfrecord")
    assert report["kinds"][SEQUENCE_EXAMPLE] >= 11 and report["records"] == sum(report["kinds"].values())
    assert report["feature_lists"]["s_bytes"]["present"] >= 1
    assert report["spec"].startswith("context_features = {")
    proc = subprocess.run(
        [*CLI, "head", str(DATA / "sequence" / "sequences.tfrecord"), "-n", "30"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 29 and any("feature_lists" in line for line in lines)
