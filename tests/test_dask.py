"""The Dask scale-out on a real LocalCluster: same bytes as the local job, splits, lost workers."""

from __future__ import annotations

import datetime
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

dask = pytest.importorskip("dask", reason="dask is not installed: pip install 'tfrecord-numpy[dask]'")
distributed = pytest.importorskip(
    "distributed", reason="distributed is not installed: pip install 'tfrecord-numpy[dask]'"
)

from conftest import A2O, A2O_GZIP_SHARDS, A2O_SHARDS, CORRUPT  # noqa: E402
from tfrecord_numpy import TFRecordError, encode_record  # noqa: E402
from tfrecord_numpy import dask as tfd  # noqa: E402
from tfrecord_numpy.a2o import extract as local_extract  # noqa: E402
from tfrecord_numpy.perch import dask as perch_dask  # noqa: E402
from tfrecord_numpy.perch.synth import a2o_example, recording_name, write_a2o_shard  # noqa: E402
from tfrecord_numpy.split import plan_splits  # noqa: E402

SITES = A2O / "site_name_to_id_mapping.json"
# dask.compute(array, dataframe) warns that it materializes the DataFrame's expressions: expected
MIXED = pytest.mark.filterwarnings("ignore:Computing mixed collections:UserWarning")
GOLDEN = A2O / "golden"
TIMING = ("seconds",)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # HTTP routes: localhost, free port
    )
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def files_of(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` but the manifest (hidden ones too: no parts or temporaries may remain)."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def shard_entries(out: Path) -> dict[str, dict]:
    shards = json.loads((out / "manifest.json").read_text())["shards"]
    return {stem: {k: v for k, v in e.items() if k not in TIMING} for stem, e in shards.items()}


def assert_same_outputs(got: Path, want: Path) -> None:
    assert files_of(got) == files_of(want)
    assert shard_entries(got) == shard_entries(want)
    assert not (got / ".parts").exists()


def assert_same_summary(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for k in (
        "shards",
        "shards_extracted",
        "shards_already_complete",
        "records",
        "rows",
        "bytes",
        "corrupt_records_skipped",
        "truncated_tails",
        "unknown_site_rows",
    ):
        assert got[k] == want[k], k


# --------------------------------------------------------------------------- same as local


@pytest.mark.parametrize("shards", [A2O_SHARDS, A2O_GZIP_SHARDS], ids=["plain", "gzip"])
@pytest.mark.parametrize("split_bytes", [None, 300_000])
def test_golden_identical_to_local(client, tmp_path, shards, split_bytes):
    want = local_extract(shards, tmp_path / "local", sites=SITES, workers=1, quiet=True)
    got = tfd.extract(shards, tmp_path / "dask", client, sites=SITES, quiet=True, split_bytes=split_bytes)
    assert_same_outputs(tmp_path / "dask", tmp_path / "local")
    assert_same_summary(got, want)
    assert got["workers"] == 2
    for shard in shards:  # and the notebook's golden bytes
        stem = shard.name.split(".")[0]
        assert (tmp_path / "dask" / "embeddings" / f"{stem}.npy").read_bytes() == (GOLDEN / f"{stem}.npy").read_bytes()


def test_rerun_skips_complete_shards_either_way(client, tmp_path):
    local_extract(A2O_SHARDS, tmp_path, sites=SITES, workers=1, quiet=True)
    again = tfd.extract(A2O_SHARDS, tmp_path, client, sites=SITES, quiet=True)
    assert again["shards_already_complete"] == 3 and again["shards_extracted"] == 0
    victim = tmp_path / "metadata" / f"{A2O_SHARDS[2].name}.json"
    victim.write_text(victim.read_text().replace("Wet", "Dry", 1))
    redo = tfd.extract(A2O_SHARDS, tmp_path, client, sites=SITES, quiet=True, split_bytes=500_000)
    assert redo["shards_extracted"] == 1 and redo["shards_already_complete"] == 2
    local = local_extract(A2O_SHARDS, tmp_path, sites=SITES, workers=1, quiet=True)
    assert local["shards_already_complete"] == 3  # the local job accepts the cluster's work
    assert victim.read_bytes() == (GOLDEN / victim.name).read_bytes()


def test_errors_match_the_local_job(client, tmp_path):
    bad = tmp_path / "in" / "payload_crc_flipped_r1"
    bad.parent.mkdir()
    bad.write_bytes((CORRUPT / bad.name).read_bytes())
    good = A2O_SHARDS[1]
    with pytest.raises(TFRecordError) as local_err:
        local_extract([good, bad], tmp_path / "local", sites=SITES, workers=1, quiet=True)
    for split_bytes in (None, 100_000):
        out = tmp_path / f"dask-{split_bytes}"
        with pytest.raises(TFRecordError) as info:
            tfd.extract([good, bad], out, client, sites=SITES, quiet=True, split_bytes=split_bytes)
        assert type(info.value) is type(local_err.value)
        assert (info.value.index, info.value.offset, info.value.path) == (1, 307390, str(bad))
        assert str(info.value) == str(local_err.value)
        assert list(json.loads((out / "manifest.json").read_text())["shards"]) == [good.name]
        assert not (out / "embeddings" / f"{bad.name}.npy").exists()
    # on_corrupt="skip" shards are never split (resync needs the whole file): same skips as local
    local = local_extract([bad], tmp_path / "ls", sites=SITES, workers=1, quiet=True, on_corrupt="skip")
    got = tfd.extract([bad], tmp_path / "ds", client, sites=SITES, quiet=True, on_corrupt="skip", split_bytes=100_000)
    assert_same_outputs(tmp_path / "ds", tmp_path / "ls")
    assert got["corrupt_records_skipped"] == local["corrupt_records_skipped"] == 1


def test_dtype_change_across_splits_is_the_local_error(client, tmp_path, monkeypatch):
    shard = tmp_path / "mixed-0"
    from tfrecord_numpy import write_records
    from tfrecord_numpy.perch.synth import iter_a2o_records

    f32 = list(iter_a2o_records(6, dims=256, seed=1))
    f16 = list(iter_a2o_records(4, dims=256, dtype="float16", seed=2))
    write_records(shard, f32 + f16)
    with pytest.raises(TFRecordError) as local_err:
        local_extract([shard], tmp_path / "local", workers=1, quiet=True)
    assert local_err.value.index == 6
    size = shard.stat().st_size
    change = sum(len(encode_record(r)) for r in f32)  # where the float16 records begin
    plans = [None, [(0, change - 10), (change - 10, size)], [(0, change), (change, size)]]
    for plan in plans:  # inside a split; first record of a split (scanned; known)
        if plan is not None:
            monkeypatch.setattr(perch_dask, "plan_splits", lambda *a, **k: plan)
        with pytest.raises(TFRecordError) as info:
            tfd.extract([shard], tmp_path / "dask", client, quiet=True, split_bytes=size // 5)
        assert str(info.value) == str(local_err.value)


# --------------------------------------------------------------------------- one big shard, split


@pytest.fixture(scope="module")
def big_shard(tmp_path_factory):
    """60 records (~18 MB) and its unsplit local extraction."""
    root = tmp_path_factory.mktemp("big")
    shard = root / "src" / "big-00000.tfrecord"
    shard.parent.mkdir()
    write_a2o_shard(shard, 60, seed=7, minutes_per_recording=7, last_windows=3)
    local_extract([shard], root / "local", workers=1, quiet=True)
    return shard, root / "local"


def test_split_extraction_of_a_large_shard(client, tmp_path, big_shard):
    shard, ref = big_shard
    assert len(plan_splits(str(shard), split_bytes=4 << 20)) == 4
    summary = tfd.extract([shard], tmp_path, client, quiet=True, split_bytes=4 << 20)
    assert summary["records"] == 60
    assert_same_outputs(tmp_path, ref)


class KillOnceSites(dict):
    """A site mapping whose first lookup anywhere, while ``marker`` exists, SIGKILLs
    the process doing it -- a worker in the middle of a task."""

    def __init__(self, data: dict, marker: str) -> None:
        super().__init__(data)
        self.marker = marker

    def get(self, key, default=None):
        try:
            os.rename(self.marker, self.marker + ".fired")  # atomic: exactly one process fires
        except FileNotFoundError:
            pass
        else:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().get(key, default)


def test_worker_killed_mid_task_is_retried(client, tmp_path, big_shard):
    from tfrecord_numpy.a2o import load_site_mapping

    shard, ref = big_shard
    marker = tmp_path / "kill-marker"
    marker.write_text("armed")
    sites = KillOnceSites(load_site_mapping(None), str(marker))
    pids_before = set(client.run(os.getpid).values())
    tfd.extract([shard], tmp_path / "out", client, sites=sites, quiet=True, split_bytes=4 << 20)
    assert not marker.exists() and Path(str(marker) + ".fired").exists()  # a worker did die
    client.wait_for_workers(2, timeout=60)
    assert set(client.run(os.getpid).values()) != pids_before  # ... and was replaced
    assert_same_outputs(tmp_path / "out", ref)


# --------------------------------------------------------------------------- fake headers


def _shard_with_fake_headers(path: Path) -> tuple[bytes, bytes]:
    """A2O records whose payloads embed complete, CRC-valid A2O records (fake headers)."""
    emb = np.arange(2 * 5 * 64, dtype=np.float32).reshape(2, 5, 64)
    inner = b"".join(
        encode_record(
            a2o_example(
                recording_name(datetime.datetime(2021, 1, 1, 3, k), "+1000", "Arkaba", "Dry-A", 700 + k), 0.0, emb * k
            )
        )
        for k in range(3)
    )
    carrier = np.frombuffer(inner, dtype=np.uint8)
    from tfrecord_numpy import write_records

    records = [
        a2o_example(
            recording_name(datetime.datetime(2020, 5, 5, 1, 0), "+1030", "Baniga", "Wet-A", 900),
            60.0 * i,
            emb + i,
            extra={"smuggled": carrier},
        )
        for i in range(4)
    ]
    write_records(path, records)
    return path.read_bytes(), inner


@MIXED
def test_fake_headers_inside_payloads(client, tmp_path, monkeypatch):
    shard = tmp_path / "src" / "fakes-0"
    shard.parent.mkdir()
    data, inner = _shard_with_fake_headers(shard)
    fake_at = data.find(inner)
    assert fake_at > 0
    local_extract([shard], tmp_path / "local", workers=1, quiet=True)
    # a split boundary just before the first fake header: that split syncs on it
    splits = [(0, fake_at - 5), (fake_at - 5, fake_at + 200), (fake_at + 200, len(data))]
    monkeypatch.setattr(perch_dask, "plan_splits", lambda *a, **k: splits)  # planning is client-side
    tfd.extract([shard], tmp_path / "dask", client, quiet=True, split_bytes=1)
    assert_same_outputs(tmp_path / "dask", tmp_path / "local")
    emb, meta = tfd.read_embeddings([shard], split_bytes=1)
    got_emb, got_meta = dask.compute(emb, meta)
    assert got_emb.tobytes() == np.load(tmp_path / "local" / "embeddings" / "fakes-0.npy").tobytes()
    assert got_meta.to_dict("records") == json.loads((tmp_path / "local" / "metadata" / "fakes-0.json").read_text())


# --------------------------------------------------------------------------- read_embeddings


@MIXED
@pytest.mark.parametrize("shards,split_bytes", [(A2O_SHARDS, None), (A2O_SHARDS, 300_000), (A2O_GZIP_SHARDS, 300_000)])
def test_read_embeddings_matches_golden(client, shards, split_bytes):
    emb, meta = tfd.read_embeddings(shards, sites=SITES, split_bytes=split_bytes)
    assert emb.shape[1] == 1280 and emb.dtype == np.float32 and np.isnan(emb.shape[0])
    got_emb, got_meta = dask.compute(emb, meta)
    stems = [s.name.split(".")[0] for s in shards]
    want = np.concatenate([np.load(GOLDEN / f"{s}.npy") for s in stems])
    assert got_emb.dtype == want.dtype and got_emb.tobytes() == want.tobytes()
    rows = sum((json.loads((GOLDEN / f"{s}.json").read_text()) for s in stems), [])
    assert got_meta.to_dict("records") == rows
    assert list(got_meta.columns) == list(rows[0])
    assert emb.compute_chunk_sizes().shape == want.shape


def test_read_embeddings_metadata_is_a_bag_without_dataframes(client, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "dask.dataframe", None)  # "not installed"
    emb, meta = tfd.read_embeddings(A2O_SHARDS[:2], sites=SITES, split_bytes=500_000)
    assert isinstance(meta, dask.bag.Bag)
    rows = meta.compute()
    stems = [s.name for s in A2O_SHARDS[:2]]
    assert rows == sum((json.loads((GOLDEN / f"{s}.json").read_text()) for s in stems), [])


def test_read_embeddings_error_is_located(client, tmp_path):
    bad = tmp_path / "payload_crc_flipped_r1"
    bad.write_bytes((CORRUPT / bad.name).read_bytes())
    for split_bytes in (None, 100_000):
        emb, _ = tfd.read_embeddings([bad], sites=SITES, split_bytes=split_bytes)
        with pytest.raises(TFRecordError) as info:
            emb.compute()
        assert (info.value.index, info.value.offset) == (1, 307390)


# --------------------------------------------------------------------------- the CLI's entry point


def test_extract_with_cluster_local(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        tfd.extract_with_cluster(A2O_SHARDS, tmp_path, quiet=True)
    summary = tfd.extract_with_cluster(A2O_SHARDS[:1], tmp_path / "o", local_workers=1, sites=SITES, quiet=True)
    assert summary["shards_extracted"] == 1 and summary["workers"] == 1
    stem = A2O_SHARDS[0].name
    assert (tmp_path / "o" / "embeddings" / f"{stem}.npy").read_bytes() == (GOLDEN / f"{stem}.npy").read_bytes()


def test_extract_with_cluster_scheduler_address(client, tmp_path):
    summary = tfd.extract_with_cluster(
        A2O_SHARDS[:1], tmp_path, scheduler=client.scheduler.address, sites=SITES, quiet=True
    )
    assert summary["shards_extracted"] == 1 and summary["workers"] == 2
    assert distributed.default_client() is client  # the temporary client did not take over


# --------------------------------------------------------------------------- sources on the GCS emulator


from gcs_emulator import gcs_bucket, gcs_emulator  # noqa: E402,F401  (fixtures)


@pytest.mark.parametrize("split_bytes", [None, 500_000])
def test_gcs_sources_on_the_cluster_match_golden(client, gcs_emulator, gcs_bucket, tmp_path, split_bytes):
    import fsspec

    opts = gcs_emulator.storage_options
    fs = fsspec.filesystem("gcs", **opts)
    urls = []
    for shard in A2O_SHARDS:
        fs.pipe(f"{gcs_bucket}/dask/{shard.name}", shard.read_bytes())
        urls.append(f"gs://{gcs_bucket}/dask/{shard.name}")
    fs.invalidate_cache()
    summary = tfd.extract(
        urls, tmp_path, client, sites=SITES, quiet=True, storage_options=opts, split_bytes=split_bytes
    )
    assert summary["records"] == 13 and summary["shards_extracted"] == 3
    for shard in A2O_SHARDS:
        assert (tmp_path / "embeddings" / f"{shard.name}.npy").read_bytes() == (
            GOLDEN / f"{shard.name}.npy"
        ).read_bytes()
        got = json.loads((tmp_path / "metadata" / f"{shard.name}.json").read_text())
        assert got == json.loads((GOLDEN / f"{shard.name}.json").read_text())
