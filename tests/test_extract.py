"""The extraction job against the notebook's golden output, and its guarantees."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import A2O, A2O_GZIP_SHARDS, A2O_SHARDS, CORRUPT
from tfrecord_numpy import SchemaError, TFRecordError, read_records, write_records
from tfrecord_numpy.a2o import extract, read_shard
from tfrecord_numpy.perch.synth import a2o_example, write_a2o_shard
from workcount import count_calls, hang_net

SITES = A2O / "site_name_to_id_mapping.json"
GOLDEN = A2O / "golden"


def _pairs(text: str):
    return json.loads(text, object_pairs_hook=lambda kv: kv)  # keeps key order


def assert_golden(out: Path, stems=None):
    for shard in A2O_SHARDS if stems is None else stems:
        stem = shard.name.split(".")[0] if isinstance(shard, Path) else shard
        got = np.load(out / "embeddings" / f"{stem}.npy")
        want = np.load(GOLDEN / f"{stem}.npy")
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()
        assert (out / "embeddings" / f"{stem}.npy").read_bytes() == (GOLDEN / f"{stem}.npy").read_bytes()
        got_meta = (out / "metadata" / f"{stem}.json").read_text()
        want_meta = (GOLDEN / f"{stem}.json").read_text()
        assert _pairs(got_meta) == _pairs(want_meta)


def gcs_crc32c(data: bytes) -> str:
    """CRC32C as Google Cloud Storage spells it: base64 of the big-endian value."""
    import base64

    import crc32c

    return base64.b64encode(crc32c.crc32c(data).to_bytes(4, "big")).decode()


def run_cli(*args, check=True, **kw):
    proc = subprocess.run(
        [sys.executable, "-m", "tfrecord_numpy.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        **kw,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def files_of(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


# --------------------------------------------------------------------------- golden


def test_api_golden_plain(tmp_path):
    summary = extract(A2O_SHARDS, tmp_path, sites=SITES, workers=1, quiet=True)
    assert_golden(tmp_path)
    assert summary["shards"] == 3 and summary["records"] == 13 and summary["rows"] == 13 * 60
    assert summary["corrupt_records_skipped"] == 0 and summary["unknown_site_rows"] == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert set(manifest["shards"]) == {p.name for p in A2O_SHARDS}
    e = manifest["shards"][A2O_SHARDS[0].name]
    assert e["records"] == 5 and e["rows"] == 300 and e["source_size"] == A2O_SHARDS[0].stat().st_size
    import hashlib

    golden = (GOLDEN / f"{A2O_SHARDS[0].name}.npy").read_bytes()
    assert e["embeddings"]["crc32c"] == gcs_crc32c(golden)  # the default: GCS's own checksum, base64 big-endian
    assert "sha256" not in e["embeddings"]
    again = extract(A2O_SHARDS[:1], tmp_path / "sha", sites=SITES, workers=1, quiet=True, checksum="sha256")
    assert again["shards_extracted"] == 1
    e = json.loads((tmp_path / "sha" / "manifest.json").read_text())["shards"][A2O_SHARDS[0].name]
    assert e["embeddings"]["sha256"] == hashlib.sha256(golden).hexdigest()


def test_api_golden_gzip(tmp_path):
    extract(A2O_GZIP_SHARDS, tmp_path, sites=SITES, workers=1, quiet=True)
    assert_golden(tmp_path)


def test_cli_golden_glob(tmp_path):
    summary_path = tmp_path / "summary.json"
    proc = run_cli(
        "extract",
        f"{A2O}/embeddings-*",
        "--out",
        tmp_path / "o",
        "--sites",
        SITES,
        "--workers",
        "1",
        "--summary-json",
        summary_path,
    )
    assert_golden(tmp_path / "o")
    summary = json.loads(summary_path.read_text())
    assert summary["records"] == 13 and summary["rows"] == 780
    assert "13 records" in proc.stderr and "780 rows" in proc.stderr


def test_cli_golden_gzip_directory(tmp_path):
    run_cli("extract", A2O_GZIP_SHARDS[0].parent, "--out", tmp_path, "--sites", SITES, "--quiet")
    assert_golden(tmp_path)


def test_read_shard_matches_golden():
    emb, meta = read_shard(A2O_SHARDS[1], sites=SITES)
    want = np.load(GOLDEN / f"{A2O_SHARDS[1].name}.npy")
    assert emb.tobytes() == want.tobytes()
    assert meta == json.loads((GOLDEN / f"{A2O_SHARDS[1].name}.json").read_text())


def test_workers_2_equals_workers_1(tmp_path):
    sources = A2O_SHARDS
    extract(sources, tmp_path / "w1", sites=SITES, workers=1, quiet=True)
    extract(sources, tmp_path / "w2", sites=SITES, workers=2, quiet=True)
    assert files_of(tmp_path / "w1") == files_of(tmp_path / "w2")
    m1 = json.loads((tmp_path / "w1" / "manifest.json").read_text())["shards"]
    m2 = json.loads((tmp_path / "w2" / "manifest.json").read_text())["shards"]
    for k in m1:
        for part in ("embeddings", "metadata"):
            assert m1[k][part] == m2[k][part]


def test_memory_url_destination(tmp_path):
    import fsspec

    extract(A2O_SHARDS[:1], "memory://tfn-out", sites=SITES, workers=1, quiet=True)
    fs = fsspec.filesystem("memory")
    stem = A2O_SHARDS[0].name
    assert fs.cat(f"/tfn-out/embeddings/{stem}.npy") == (GOLDEN / f"{stem}.npy").read_bytes()
    assert not [p for p in fs.find("/tfn-out") if ".tmp-" in p]


# --------------------------------------------------------------------------- schema variants


def _write(path: Path, records):
    write_records(path, records)
    return path


def test_float16_and_short_last_minute_and_extra_heads(tmp_path):
    shard = tmp_path / "src" / "f16.tfrecord"
    shard.parent.mkdir()
    write_a2o_shard(shard, 5, dims=512, dtype="float16", minutes_per_recording=3, last_windows=4, nuisances=True)
    out = tmp_path / "out"
    extract([shard], out, workers=1, quiet=True)
    emb = np.load(out / "embeddings" / "f16.npy")
    meta = json.loads((out / "metadata" / "f16.json").read_text())
    # records: 12, 12, 4 windows (recording 0), then 12, 12 (recording 1) -> x5 channels
    assert emb.dtype == np.float16 and emb.shape == ((12 + 12 + 4 + 12 + 12) * 5, 512)
    assert len(meta) == emb.shape[0]
    from tfrecord_numpy._proto import example_pb2
    from tfrecord_numpy.tensor import parse_tensor

    rows = []
    for rec in read_records(shard):
        f = example_pb2.Example.FromString(rec).features.feature
        e = parse_tensor(f["embedding"].bytes_list.value[0])
        rows.append(e.reshape(-1, e.shape[2]))
    assert np.concatenate(rows).tobytes() == emb.tobytes()
    last = [m for m in meta if m["recording_offset_in_file"] >= 120 and m["file_seq_id"] == 49500]
    assert max(m["recording_offset_in_file"] for m in last) == 120 + 5 * 3


def test_feature_order_and_unusual_encodings_take_the_general_path(tmp_path):
    """Records whose features come in another order decode the same."""
    from tfrecord_numpy._proto import example_pb2, feature_pb2

    recs = list(read_records(A2O_SHARDS[2]))
    shuffled = []
    for r in recs:
        ex = example_pb2.Example.FromString(r)
        items = list(ex.features.feature.items())
        extra = feature_pb2.Feature()
        extra.int64_list.value.extend([12, 5, 3])
        items.append(("nuisances_shape", extra))
        body = b""
        for key, feat in reversed(items):  # another order, and an extra feature
            k = key.encode()
            v = feat.SerializeToString()
            if key == "timestamp_s" and len(shuffled) % 2:
                # an unpacked float: valid protobuf the fast path leaves to the general one
                fl = b"\x0d" + np.float32(feat.float_list.value[0]).tobytes()
                v = b"\x12" + _varint(len(fl)) + fl
            entry = b"\x0a" + _varint(len(k)) + k + b"\x12" + _varint(len(v)) + v
            body += b"\x0a" + _varint(len(entry)) + entry
        shuffled.append(b"\x0a" + _varint(len(body)) + body)
    assert shuffled != recs
    src = _write(tmp_path / A2O_SHARDS[2].name, shuffled)
    extract([src], tmp_path / "out", sites=SITES, workers=1, quiet=True)
    assert_golden(tmp_path / "out", [A2O_SHARDS[2].name])


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_hop_seconds(tmp_path):
    extract(A2O_SHARDS[:1], tmp_path, sites=SITES, workers=1, quiet=True, hop_seconds=3)
    meta = json.loads((tmp_path / "metadata" / f"{A2O_SHARDS[0].name}.json").read_text())
    gold = json.loads((GOLDEN / f"{A2O_SHARDS[0].name}.json").read_text())
    for got, want in zip(meta, gold):
        window = (want["recording_offset_in_file"] - int(want["recording_offset_in_file"] // 60 * 60)) // 5
        assert got["recording_offset_in_file"] - want["recording_offset_in_file"] == -2 * window


# --------------------------------------------------------------------------- sites


def test_unknown_site_error_names_the_key(tmp_path):
    with pytest.raises(SchemaError, match="fowlers-gap-wet-b") as info:
        extract(A2O_SHARDS[:1], tmp_path, sites={"other-dry-a": 1}, workers=1, quiet=True)
    assert info.value.index == 0 and A2O_SHARDS[0].name in str(info.value)
    assert not (tmp_path / "embeddings" / f"{A2O_SHARDS[0].name}.npy").exists()


def test_unknown_site_null(tmp_path):
    sites = json.loads(SITES.read_text())
    sites.pop("fowlers-gap-wet-b")
    summary = extract(A2O_SHARDS[:1], tmp_path, sites=sites, workers=1, quiet=True, on_unknown_site="null")
    meta = json.loads((tmp_path / "metadata" / f"{A2O_SHARDS[0].name}.json").read_text())
    nulls = [m for m in meta if m["site_id"] is None]
    assert nulls and all(m["site_name"] == "Fowlers-Gap" and m["subsite_name"] == "Wet-B" for m in nulls)
    assert summary["unknown_site_rows"] == len(nulls)
    proc = run_cli("extract", A2O_SHARDS[0], "--out", tmp_path / "cli", "--sites", tmp_path / "s.json", check=False)
    assert proc.returncode == 1  # mapping file missing


def test_site_id_written_as_the_mapping_holds_it(tmp_path):
    sites = {k: str(v) for k, v in json.loads(SITES.read_text()).items()}
    extract(A2O_SHARDS[:1], tmp_path, sites=sites, workers=1, quiet=True)
    meta = json.loads((tmp_path / "metadata" / f"{A2O_SHARDS[0].name}.json").read_text())
    assert meta and all(isinstance(m["site_id"], str) for m in meta)


def test_hostile_filename_is_a_clear_error(tmp_path):
    import numpy as np

    emb = np.zeros((2, 1, 4), np.float32)
    good = a2o_example("20200120T043000+1030_Fowlers-Gap-Wet-B_231604.flac", 0, emb)
    # one-off costs (lazy imports: 6,400 calls in a fresh process) are not the name's
    extract([_write(tmp_path / "warm", [good])], tmp_path / "warm-out", sites=SITES, workers=1, quiet=True)
    for bad_name in ["x" * 10_000, "../../etc/passwd", "20200120T043000+1030_Fowlers-Gap_1.flac", "\u00e9" * 300]:
        shard = _write(tmp_path / "hostile", [good, a2o_example(bad_name, 60, emb)])
        # work counted, not timed (workers=1 runs in this process): ~3,000 calls
        # measured whatever the name's length (the same for 10,000 and 20,000
        # characters), 3,800 for a good shard; 4x that, plus 1 per 10 characters
        limit = 12_000 + len(bad_name) // 10
        with hang_net(), pytest.raises(SchemaError) as info, count_calls(limit) as work:
            extract([shard], tmp_path / "out", sites=SITES, workers=1, quiet=True, overwrite=True)
        assert work.calls <= limit
        assert info.value.index == 1 and "hostile" in str(info.value)
        assert not (tmp_path / "out" / "embeddings" / "hostile.npy").exists()


# --------------------------------------------------------------------------- corrupt data


def _corrupt_shard(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / "in" / name
    dst.parent.mkdir(exist_ok=True)
    dst.write_bytes((CORRUPT / name).read_bytes())
    return dst


def test_on_corrupt_error_keeps_completed_shards(tmp_path):
    bad = _corrupt_shard(tmp_path, "payload_crc_flipped_r1")
    good = A2O_SHARDS[1]
    with pytest.raises(TFRecordError) as info:
        extract([good, bad], tmp_path / "out", sites=SITES, workers=1, quiet=True)
    assert info.value.index == 1 and info.value.offset == 307390
    assert_golden(tmp_path / "out", [good.name])
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert list(manifest["shards"]) == [good.name]
    assert not (tmp_path / "out" / "embeddings" / "payload_crc_flipped_r1.npy").exists()


def test_on_corrupt_skip_counts(tmp_path):
    bad = _corrupt_shard(tmp_path, "payload_crc_flipped_r1")
    summary = extract([bad], tmp_path / "out", sites=SITES, workers=1, quiet=True, on_corrupt="skip")
    emb = np.load(tmp_path / "out" / "embeddings" / "payload_crc_flipped_r1.npy")
    gold = np.load(GOLDEN / f"{A2O_SHARDS[0].name}.npy")
    assert emb.tobytes() == np.concatenate([gold[:60], gold[120:180]]).tobytes()
    assert summary["corrupt_records_skipped"] == 1
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["shards"]["payload_crc_flipped_r1"]["skipped"]["corrupt_records"] == 1


@pytest.mark.parametrize("name", ["truncated_in_payload_r1", "truncated_in_header_r1", "trailing_garbage_5b"])
def test_truncated_tail_is_reported(tmp_path, name):
    bad = _corrupt_shard(tmp_path, name)
    with pytest.raises(TFRecordError, match="truncated"):
        extract([bad], tmp_path / "e", sites=SITES, workers=1, quiet=True)
    summary = extract([bad], tmp_path / "s", sites=SITES, workers=1, quiet=True, on_corrupt="skip")
    assert summary["truncated_tails"] == 1
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert "truncated" in manifest["shards"][name]["skipped"]["truncated_tail"]


def test_cli_error_exit_code_and_one_line(tmp_path):
    bad = _corrupt_shard(tmp_path, "length_crc_flipped_r1")
    proc = run_cli("extract", bad, "--out", tmp_path / "o", "--sites", SITES, "--workers", "1", check=False)
    assert proc.returncode == 1
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "record 1" in lines[0] and "offset 307390" in lines[0]


# --------------------------------------------------------------------------- reruns


def test_rerun_skips_complete_and_redoes_tampered(tmp_path):
    extract(A2O_SHARDS, tmp_path, sites=SITES, workers=1, quiet=True)
    again = extract(A2O_SHARDS, tmp_path, sites=SITES, workers=1, quiet=True)
    assert again["shards_already_complete"] == 3 and again["shards_extracted"] == 0
    victim = tmp_path / "embeddings" / f"{A2O_SHARDS[1].name}.npy"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 1
    victim.write_bytes(bytes(data))  # same size, different content: caught by the hash
    third = extract(A2O_SHARDS, tmp_path, sites=SITES, workers=1, quiet=True)
    assert third["shards_extracted"] == 1 and third["shards_already_complete"] == 2
    assert_golden(tmp_path)
    forced = extract(A2O_SHARDS, tmp_path, sites=SITES, workers=1, quiet=True, overwrite=True)
    assert forced["shards_extracted"] == 3
    changed = extract(A2O_SHARDS, tmp_path, sites=SITES, workers=1, quiet=True, hop_seconds=4)
    assert changed["shards_extracted"] == 3  # options are part of "complete"


def test_stem_collision_is_refused(tmp_path):
    a = tmp_path / "x" / "shard.tfrecord"
    b = tmp_path / "y" / "shard.tfrecord.gz"
    a.parent.mkdir()
    b.parent.mkdir()
    a.write_bytes(b"")
    b.write_bytes(b"")
    with pytest.raises(ValueError, match="same outputs"):
        extract([a, b], tmp_path / "o", quiet=True)


def test_empty_shard_writes_what_the_notebook_writes(tmp_path):
    empty = _corrupt_shard(tmp_path, "empty")
    extract([empty], tmp_path / "o", sites=SITES, workers=1, quiet=True)
    arr = np.load(tmp_path / "o" / "embeddings" / "empty.npy")
    assert arr.shape == (0,) and arr.dtype == np.float64
    assert (tmp_path / "o" / "metadata" / "empty.json").read_text() == "[]"


# --------------------------------------------------------------------------- kill -9


def _check_no_partial_finals(out: Path, ref: Path) -> None:
    """Every file under a final name is complete: equal to the uninterrupted run's."""
    for p in out.rglob("*"):
        rel = p.relative_to(out)
        if p.is_file() and not p.name.startswith(".") and p.name != "manifest.json" and rel.parts[0] != ".journal":
            assert p.read_bytes() == (ref / rel).read_bytes(), p
    manifest = out / "manifest.json"
    shards = json.loads(manifest.read_text())["shards"] if manifest.exists() else {}
    for p in (out / ".journal").glob("*.json"):  # shards recorded before the kill
        shards[json.loads(p.read_text())["stem"]] = json.loads(p.read_text())["entry"]
    for stem, entry in shards.items():  # the manifest only names finished shards
        assert (out / entry["embeddings"]["path"]).exists()


@pytest.mark.slow
def test_kill_9_at_random_points_then_rerun(tmp_path):
    import random

    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        write_a2o_shard(src / f"big-{i}", 100, seed=i)  # ~31 MB each
    ref = tmp_path / "ref"
    cmd = [sys.executable, "-m", "tfrecord_numpy.cli", "extract", str(src), "--workers", "1", "--quiet", "--out"]

    def start_and_wait_for_output(out: Path) -> subprocess.Popen:
        proc = subprocess.Popen(cmd + [str(out)])
        while proc.poll() is None and not any(".tmp-" in p.name for p in out.rglob("*")):
            time.sleep(0.002)
        return proc

    proc = start_and_wait_for_output(ref)
    t0 = time.perf_counter()
    assert proc.wait(timeout=300) == 0
    duration = time.perf_counter() - t0  # from the first output to the end
    rng = random.Random(1234)
    killed_mid_shard = 0
    for i in range(8):
        out = tmp_path / f"out{i}"
        proc = start_and_wait_for_output(out)  # then kill at a random moment
        time.sleep(rng.uniform(0.0, 0.9) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_mid_shard += any(".tmp-" in p.name for p in out.rglob("*"))
        _check_no_partial_finals(out, ref)
        rerun = subprocess.run(cmd + [str(out)], capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        assert files_of(out) == files_of(ref)
        assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
        ref_m = json.loads((ref / "manifest.json").read_text())["shards"]
        out_m = json.loads((out / "manifest.json").read_text())["shards"]
        assert set(ref_m) == set(out_m)
        for k in ref_m:
            assert ref_m[k]["embeddings"] == out_m[k]["embeddings"]
            assert ref_m[k]["metadata"] == out_m[k]["metadata"]
        import shutil

        shutil.rmtree(out)
    assert killed_mid_shard >= 2  # the kills really landed inside shards


def test_sample_cli(tmp_path):
    proc = run_cli("extract", "--sample", "--out", tmp_path)
    assert "2 shards" in proc.stderr
    emb0 = np.load(tmp_path / "embeddings" / "embeddings-00000-of-00002.npy")
    emb1 = np.load(tmp_path / "embeddings" / "embeddings-00001-of-00002.npy")
    assert emb0.dtype == np.float32 and emb0.shape[1] == 1280
    assert emb1.dtype == np.float16 and emb1.shape[1] == 512
    meta = json.loads((tmp_path / "metadata" / "embeddings-00000-of-00002.json").read_text())
    assert meta and all(isinstance(m["site_id"], str) for m in meta)  # the public mapping holds strings


# --------------------------------------------------------------------------- row encoder


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(
    site=st.from_regex(r"[A-Za-z][-A-Za-z0-9\u00e9]{0,20}", fullmatch=True),
    subsite=st.sampled_from(["Wet-A", "Wet-B", "Dry-A", "Dry-B"]),
    prefix=st.sampled_from(["", "site_0285/", 'a"b\\/']),
    tz=st.sampled_from(["Z", "+1030", "+0800", "-0330"]),
    day=st.integers(0, 3000),
    secs=st.integers(0, 86399),
    seq=st.integers(0, 10**9),
    ts=st.floats(0, 86400, width=32),
    T=st.integers(0, 13),
    C=st.integers(1, 6),
    hop=st.sampled_from([5, 3, 2.5]),
    site_id=st.one_of(st.integers(1, 500), st.text(min_size=1, max_size=5), st.none()),
)
def test_row_encoder_equals_json_dumps_of_metadata_rows(
    site, subsite, prefix, tz, day, secs, seq, ts, T, C, hop, site_id
):
    import datetime as dt

    from tfrecord_numpy import a2o
    from tfrecord_numpy.perch.options import ExtractOptions
    from tfrecord_numpy.perch.records import A2ORecord
    from tfrecord_numpy.perch.rows import RowEncoder

    start = dt.datetime(2019, 1, 1) + dt.timedelta(days=day, seconds=secs)
    filename = f"{prefix}{start:%Y%m%dT%H%M%S}{tz}_{site}-{subsite}_{seq}.flac"
    name = a2o.parse_filename(filename)
    sites = {name.site_key: site_id}
    rec = A2ORecord(filename=filename, timestamp_s=np.float32(ts), embedding=np.zeros((T, C, 2), np.float32))
    enc = RowEncoder(sites, ExtractOptions(hop_seconds=hop, on_unknown_site="null"), "shard")
    got = enc.rows(rec, 0, 0)
    want = a2o.metadata_rows(name, filename, np.float32(ts), T, C, site_id or None, hop_seconds=hop)
    assert got == [json.dumps(r) for r in want]
    assert enc.unknown_sites == (0 if site_id else T * C)


@pytest.mark.parametrize(
    "source,stem",
    [
        ("gs://b/p/embeddings-00000-of-00010.tfrecord.gz", "embeddings-00000-of-00010"),
        ("/x/y/shard", "shard"),
        ("memory://a/b/c.d.e", "c"),
        ("/x/../../etc/passwd", "passwd"),
    ],
)
def test_outputs_are_named_only_from_the_shard_name(source, stem):
    from tfrecord_numpy.perch.options import shard_stem

    assert shard_stem(source) == stem


@pytest.mark.parametrize("source", ["/x/..", "/x/.hidden", "/x/\x00evil", "..", "a/b/.."])
def test_shard_names_that_would_escape_dest_are_refused(source):
    from tfrecord_numpy.perch.options import shard_stem

    with pytest.raises(ValueError, match="usable output name"):
        shard_stem(source)


# --------------------------------------------------------------------------- fast path == general path


def _entry(key: bytes, feature: bytes) -> bytes:
    body = b"\x0a" + _varint(len(key)) + key + b"\x12" + _varint(len(feature)) + feature
    return b"\x0a" + _varint(len(body)) + body


def _feature(kind: int, payload: bytes) -> bytes:
    inner = b"\x0a" + _varint(len(payload)) + payload  # the list's one value field
    return bytes([kind]) + _varint(len(inner)) + inner


@settings(max_examples=150, deadline=None)
@given(
    T=st.integers(1, 4),
    C=st.integers(1, 3),
    D=st.integers(1, 6),
    dtype=st.sampled_from(["float32", "float16", "float64"]),
    ts=st.floats(0, 1e6, width=32),
    extra=st.lists(
        st.tuples(
            st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
            st.sampled_from([0x0A, 0x12, 0x1A]),
            st.binary(max_size=20),
        ),
        max_size=3,
        unique_by=lambda e: e[0],
    ),
    order=st.randoms(use_true_random=False),
)
def test_fast_path_equals_general_path_any_order_extra_features(T, C, D, dtype, ts, extra, order):
    from tfrecord_numpy.perch.fastpath import a2o_fields
    from tfrecord_numpy.perch.records import _general_decode, decode_a2o_record
    from tfrecord_numpy.tensor import parse_tensor, serialize_tensor

    emb = np.arange(T * C * D, dtype=dtype).reshape(T, C, D)
    name = b"site_0285/20201014T010000+1030_Arkaba-Dry-A_49500.flac"
    shape = b"".join(_varint(d) for d in (T, C, D))
    entries = [
        _entry(b"embedding", _feature(0x0A, serialize_tensor(emb))),
        _entry(b"filename", _feature(0x0A, name)),
        _entry(b"timestamp_s", _feature(0x12, np.float32(ts).tobytes())),
        _entry(b"embedding_shape", _feature(0x1A, shape)),
    ]
    entries += [
        _entry(k.encode(), _feature(kind, payload))
        for k, kind, payload in extra
        if k not in ("embedding", "filename", "timestamp_s", "embedding_shape")
    ]
    order.shuffle(entries)
    features = b"".join(entries)
    record = b"\x0a" + _varint(len(features)) + features
    assert a2o_fields(memoryview(record)) is not None  # the fast path is taken
    fast = decode_a2o_record(memoryview(record))
    filename, g_ts, g_emb, g_shape = _general_decode(record)
    general = parse_tensor(g_emb)
    assert fast.filename.encode() == bytes(filename) == name
    assert np.float32(fast.timestamp_s).tobytes() == np.float32(g_ts).tobytes() == np.float32(ts).tobytes()
    assert fast.embedding.dtype == general.dtype == emb.dtype
    assert fast.embedding.shape == general.shape == emb.shape == tuple(g_shape)
    assert fast.embedding.tobytes() == general.tobytes() == emb.tobytes()


@pytest.mark.parametrize("checksum", ["crc32c", "sha256"])
@pytest.mark.parametrize("name,on_corrupt", [("payload_crc_flipped_r1", "skip"), ("trailing_garbage_5b", "skip")])
def test_manifest_hashes_match_files_when_the_row_prediction_misses(tmp_path, name, on_corrupt, checksum):
    """Rows are predicted from record prefixes so the .npy can be hashed while
    written; when skipping makes the prediction wrong, the hash must still be
    the file's own."""
    import hashlib

    bad = _corrupt_shard(tmp_path, name)
    extract([bad], tmp_path / "o", sites=SITES, workers=1, quiet=True, on_corrupt=on_corrupt, checksum=checksum)
    entry = json.loads((tmp_path / "o" / "manifest.json").read_text())["shards"][name]
    for part in ("embeddings", "metadata"):
        data = (tmp_path / "o" / entry[part]["path"]).read_bytes()
        want = hashlib.sha256(data).hexdigest() if checksum == "sha256" else gcs_crc32c(data)
        assert entry[part][checksum] == want
        assert entry[part]["bytes"] == len(data)


def test_row_prediction_reads_record_prefixes_only():
    from tfrecord_numpy.perch.options import ExtractOptions
    from tfrecord_numpy.perch.shard import predict_rows
    from tfrecord_numpy.storage import open_source

    for shard in A2O_SHARDS:
        opened = open_source(str(shard))
        try:
            got = predict_rows(str(shard), opened, ExtractOptions(), shard.stat().st_size)
        finally:
            opened.close()
        assert got == np.load(GOLDEN / f"{shard.name}.npy").shape[0]
    opened = open_source(str(A2O_GZIP_SHARDS[0]))
    try:  # compressed: no seeking into it, no prediction
        assert predict_rows(str(A2O_GZIP_SHARDS[0]), opened, ExtractOptions(), 1) is None
    finally:
        opened.close()


@pytest.mark.parametrize("which", ["plain", "gzip", "float16", "empty"])
def test_read_shard_equals_what_extract_writes(tmp_path, which):
    if which == "plain":
        src, sites = A2O_SHARDS[0], SITES
    elif which == "gzip":
        src, sites = A2O_GZIP_SHARDS[2], SITES  # no row prediction through gzip: the concatenating path
    elif which == "float16":
        src, sites = tmp_path / "f16", None
        write_a2o_shard(src, 5, dims=16, dtype="float16", minutes_per_recording=2, last_windows=3)
    else:
        src, sites = _corrupt_shard(tmp_path, "empty"), SITES
    emb, meta = read_shard(src, sites=sites)
    extract([src], tmp_path / "o", sites=sites, workers=1, quiet=True)
    stem = src.name.split(".")[0]
    want = np.load(tmp_path / "o" / "embeddings" / f"{stem}.npy")
    assert emb.dtype == want.dtype and emb.shape == want.shape and emb.tobytes() == want.tobytes()
    text = (tmp_path / "o" / "metadata" / f"{stem}.json").read_text()
    assert meta == json.loads(text)
    assert json.dumps(meta) == text  # the same keys in the same order, the same types (1 is not 1.0)
