#!/usr/bin/env python3
"""The costs of the job's state: many tiny shards, and skipping damage.

    python benchmarks/job_state.py [--shards 250,500,1000,2000] [--damage-mib 8]

* Many shards: ``a2o.extract`` (workers=1) over N one-record shards; with an
  O(1) record per shard the time per shard stays flat as N grows.
* Resync: ``read_records``-style scanning with ``on_corrupt="skip"`` over
  two good records, ``--damage-mib`` of zeros (and of random bytes), then two
  good records; reports MB/s of damage skipped.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from tfrecord_numpy.a2o import extract
from tfrecord_numpy.framing import RecordScanner, encode_records
from tfrecord_numpy.perch.synth import write_a2o_shard
from tfrecord_numpy.reader import iter_record_views


def many_shards(n: int, work: Path) -> float:
    src = work / f"src{n}"
    src.mkdir()
    for i in range(n):
        write_a2o_shard(src / f"embeddings-{i:05d}-of-{n:05d}", 1, seed=i, windows=1, channels=1, dims=4)
    t = time.perf_counter()
    summary = extract([str(src)], work / f"out{n}", workers=1, quiet=True)
    seconds = time.perf_counter() - t
    assert summary["shards_extracted"] == n
    return seconds


def resync(mib: int, kind: str) -> float:
    good = [os.urandom(100) for _ in range(4)]
    garbage = bytes(mib << 20) if kind == "zeros" else np.random.default_rng(0).bytes(mib << 20)
    data = encode_records(good[:2]) + garbage + encode_records(good[2:])
    best = float("inf")
    for _ in range(3):
        scanner = RecordScanner(skip_corrupt=True)
        t = time.perf_counter()
        got = [bytes(v) for _, _, v in iter_record_views(io.BytesIO(data), scanner)]
        best = min(best, time.perf_counter() - t)
        assert got == good and len(scanner.skipped) == 1
    return len(garbage) / best / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", default="250,500,1000,2000")
    ap.add_argument("--damage-mib", type=int, default=8)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tfrecord-numpy-state-"))
    try:
        print("| one-record shards | seconds | ms per shard |")
        print("|---:|---:|---:|")
        for n in (int(x) for x in args.shards.split(",")):
            s = many_shards(n, work)
            print(f"| {n} | {s:.2f} | {1000 * s / n:.2f} |")
        print()
        print(f"| damage skipped ({args.damage_mib} MiB) | MB/s |")
        print("|---|---:|")
        for kind in ("zeros", "random"):
            print(f"| {kind} | {resync(args.damage_mib, kind):.0f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
