"""The prefault thread: it faults a fresh array in ahead of its writer and never
touches a byte the writer owns."""

from __future__ import annotations

import numpy as np
import pytest

import tfrecord_numpy.prefault as prefault
from tfrecord_numpy.prefault import Prefaulter


def test_prefaulter_hands_over_in_order_and_never_overwrites_the_writer():
    arr = np.empty(3 << 20, np.uint8)
    src = np.random.default_rng(1).integers(1, 255, arr.size, dtype=np.uint8)  # no zero bytes
    chunk = 12345  # not page-aligned: the writer's ranges straddle the thread's steps
    with Prefaulter(arr, step=1 << 16, min_bytes=0) as p:
        assert p.active
        for start in range(0, arr.size, chunk):
            end = min(start + chunk, arr.size)
            p.ready(end)
            assert p.faulted_bytes >= end
            arr[start:end] = src[start:end]
    assert p.faulted_bytes == arr.size
    np.testing.assert_array_equal(arr, src)  # a zero written by the thread would show here


def test_prefaulter_stops_early_and_then_never_waits():
    arr = np.empty(8 << 20, np.uint8)
    p = Prefaulter(arr, step=1 << 12, min_bytes=0).start()
    p.ready(1 << 12)
    p.stop()
    p.ready(arr.size)  # returns: the thread has stopped and handed over the rest
    assert p.faulted_bytes == arr.size


def test_prefaulter_idle_for_small_arrays_or_one_cpu(monkeypatch):
    small = Prefaulter(np.empty(1 << 20, np.uint8))  # under MIN_PREFAULT_BYTES
    assert not small.active
    with small:
        small.ready(1 << 20)
    monkeypatch.setattr(prefault, "_usable_cpus", lambda: 1)
    one_cpu = Prefaulter(np.empty(1 << 20, np.uint8), min_bytes=0)
    assert not one_cpu.active
    with pytest.raises(ValueError):
        Prefaulter(np.empty((4, 4), np.uint8)[:, ::2])


def test_read_shard_prefaults_its_array_and_gives_the_same_answer(monkeypatch):
    """read_shard's output array is faulted in by the helper thread (forced on here,
    as the test shard is under the size threshold), with identical results."""
    from conftest import A2O_SHARDS
    from tfrecord_numpy.a2o import read_shard

    shard = A2O_SHARDS[1]
    sites = shard.parent / "site_name_to_id_mapping.json"
    emb, meta = read_shard(shard, sites=sites)
    started = []
    real_start = Prefaulter.start

    def spy(self):
        started.append(self.active)
        return real_start(self)

    monkeypatch.setattr(prefault, "MIN_PREFAULT_BYTES", 0)
    monkeypatch.setattr(prefault, "STEP_BYTES", 4096)
    monkeypatch.setattr(Prefaulter, "start", spy)
    emb2, meta2 = read_shard(shard, sites=sites)
    assert started == [True]
    assert emb2.tobytes() == emb.tobytes() and meta2 == meta
