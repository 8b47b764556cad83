#!/usr/bin/env python3
"""Peak memory of extraction with the Perch options on: flat in the shard's size?

    python benchmarks/perch_memory.py [--sizes 50,200]

For each size, a shard laid out like the public A2O set (float16
``[12, 1, 512]`` embeddings, a ``nuisances`` head) is extracted in a fresh
process (``workers=1``), plain and with ``--schema perch --logits nuisances
--logits-in-metadata --metadata-format parquet`` plus the downstream filter;
the table gives each run's peak RSS (``ru_maxrss``) and time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tfrecord_numpy import RecordWriter
from tfrecord_numpy.perch.synth import a2o_example

RUN = """
import json, resource, sys, time
from tfrecord_numpy.a2o import extract
t = time.perf_counter()
extract([sys.argv[1]], sys.argv[2], workers=1, quiet=True, **json.loads(sys.argv[3]))
print(json.dumps({"seconds": time.perf_counter() - t, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

OPTIONS = {
    "plain (a2o)": {},
    "perch + logits": {"schema": "perch", "logits": "nuisances"},
    "perch + parquet": {"schema": "perch", "metadata_format": "parquet"},
    "perch + logits + parquet + filter": {
        "schema": "perch",
        "logits": "nuisances",
        "logits_in_metadata": True,
        "metadata_format": "parquet",
        "drop": ["nuisances[speech] > 1.0"],
    },
}


def make_shard(path: Path, megabytes: int) -> int:
    rng = np.random.default_rng(0)
    per_record = 12 * 512 * 2 + 12 * 3 * 4 + 300
    n = megabytes * 1_000_000 // per_record
    emb = rng.standard_normal((12, 1, 512)).astype(np.float16)
    nuisances = rng.standard_normal((12, 1, 3)).astype(np.float32)
    with RecordWriter(path) as w:
        for i in range(n):
            name = f"site_0277/20210428T{10 + i // 60 % 10:02d}0000+1000_Five-Rivers-Dry-A_{909057 + i // 60}.flac"
            w.write(a2o_example(name, 60.0 * (i % 60), emb, extra={"nuisances": nuisances}))
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="50,200")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tfrecord-numpy-perch-mem-"))
    try:
        print("| shard | records | options | seconds | peak RSS |")
        print("|---|---:|---|---:|---:|")
        for mb in (int(x) for x in args.sizes.split(",")):
            shard = work / f"embeddings-1690000000-{mb:05d}-of-00001"
            n = make_shard(shard, mb)
            for label, options in OPTIONS.items():
                out = work / f"out-{mb}-{len(label)}"
                proc = subprocess.run(
                    [sys.executable, "-c", RUN, str(shard), str(out), json.dumps(options)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                r = json.loads(proc.stdout)
                print(f"| {mb} MB | {n} | {label} | {r['seconds']:.2f} | {r['peak_mb']:.0f} MB |")
                shutil.rmtree(out)
            shard.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
