#!/usr/bin/env python3
"""``a2o.read_shard`` against the read + CRC32C limit, with list-of-dict and columnar metadata.

    python benchmarks/read_shard.py [--mb 200] [--repeats 5]

One A2O-schema shard (float32 ``[12, 5, 1280]``, ~307 KB records) is written
once; then, side by side in one run (round robin, medians, warm page cache):
the limit (``readinto`` 8 MiB blocks + crc32c), ``read_shard`` (metadata as a
list of dicts, the notebook's shape) and ``read_shard(columnar=True)``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import crc32c

from tfrecord_numpy.a2o import read_shard
from tfrecord_numpy.perch.synth import write_a2o_shard_of_size


def limit(path: Path) -> None:
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    crc = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(view):
            crc = crc32c.crc32c(view[:n], crc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tfrecord-numpy-read-shard-") as work:
        path = Path(work) / "embeddings-00000-of-00001"
        write_a2o_shard_of_size(path, args.mb * 1_000_000)
        size = path.stat().st_size
        runs = {
            "limit: read + crc32c": lambda: limit(path),
            "read_shard (list of dicts)": lambda: read_shard(path),
            "read_shard(columnar=True)": lambda: read_shard(path, columnar=True),
        }
        times: dict[str, list[float]] = {k: [] for k in runs}
        for fn in runs.values():
            fn()  # warm the page cache and the caches
        for _ in range(args.repeats):
            for name, fn in runs.items():
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        lim = statistics.median(times["limit: read + crc32c"])
        print(f"| {size / 1e6:.0f} MB shard | median s | MB/s | × limit |")
        print("|---|---:|---:|---:|")
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"| {name} | {med:.3f} | {size / 1e6 / med:,.0f} | {lim / med:.2f} |")


if __name__ == "__main__":
    main()
