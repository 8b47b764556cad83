#!/usr/bin/env python3
"""Records/s of batched ``tf.train.Example`` parsing, side by side, one core each.

    PYTHONPATH=src /path/to/python-with-tensorflow benchmarks/batch.py      # what results/batch.md holds
    python benchmarks/batch.py --records 100000 --repeats 1                 # quick, without TensorFlow

Contenders, each run in a fresh subprocess pinned to one core (peak RSS from
``resource.getrusage`` in that process, imports included):

* ``read_batches``: ``tfrecord_numpy.read_batches(path, spec, 1024)``;
* ``per-record loop``: ``read_examples(path, spec)`` collected into columns
  (``np.stack``), the way to do it before ``read_batches``;
* ``TensorFlow``: ``tf.data.TFRecordDataset(path).batch(1024).map(tf.io.parse_example)``,
  one thread (``tf.config.threading`` and the dataset's private thread pool),
  when ``tensorflow`` is importable;
* ``tfrecord (PyPI)``: ``tfrecord.reader.tfrecord_loader`` records stacked into
  batches of 1024, when ``tfrecord`` is importable.

Every contender reads the whole file (the two per-record loops stop after
``--loop-limit`` records, to keep the run bounded) and folds its output into a
checksum (record count, sum of labels, sum of the float bit patterns, last
filename), which must agree between contenders.  Building the pipeline
(``read_batches(...)``, TF's dataset and its traced map function) is untimed;
iterating it is timed.  Repeats run round-robin; the median is reported.

Inputs: small Examples -- ``features`` float32[3], ``label`` int64 (0..999),
``filename`` bytes (41 to 47 bytes) -- about 136 bytes a record with framing,
written with our writer and cached in ``--workdir``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SPEC_NAMES = ("features", "label", "filename")


# --------------------------------------------------------------------------- input


def make_input(path: Path, records: int, seed: int = 0) -> None:
    """``records`` small Examples in ``path`` (cached: skipped when the file exists with the same meta)."""
    from tfrecord_numpy import RecordWriter, encode_example

    meta = path.with_name(path.name + ".json")
    want = {"records": records, "seed": seed, "version": 1}
    if path.exists() and meta.exists() and json.loads(meta.read_text()) == want:
        return
    print(f"  generating {path} ({records} records) ...", file=sys.stderr)
    rng = np.random.default_rng(seed)
    tmp = path.with_name(path.name + ".tmp")
    chunk = 100_000
    with RecordWriter(tmp) as w:
        for lo in range(0, records, chunk):
            n = min(chunk, records - lo)
            feats = rng.standard_normal((n, 3)).astype(np.float32)
            labels = rng.integers(0, 1000, n).tolist()
            sites = rng.integers(1, 10_000, n).tolist()
            for i in range(n):
                name = b"site_%d/20201014T%06d+1030_Arkaba-Dry-A.flac" % (sites[i], (lo + i) % 1_000_000)
                w.write(encode_example({"features": feats[i], "label": labels[i], "filename": name}))
    os.replace(tmp, path)
    meta.write_text(json.dumps(want))


# --------------------------------------------------------------------------- contenders (run in the child)


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


class Checksum:
    """What every contender must agree on (cheap to fold per batch)."""

    def __init__(self) -> None:
        self.records = 0
        self.labels = 0
        self.float_bits = 0
        self.last = b""

    def add(self, features: np.ndarray, labels: np.ndarray, filenames: list | np.ndarray) -> None:
        self.records += len(labels)
        self.labels += int(np.asarray(labels, dtype=np.int64).sum())
        self.float_bits += int(np.ascontiguousarray(features, dtype=np.float32).view(np.uint32).sum(dtype=np.uint64))
        if len(filenames):
            self.last = bytes(filenames[-1])

    def as_dict(self) -> dict:
        return {"records": self.records, "labels": self.labels, "float_bits": self.float_bits, "last": self.last.hex()}


def run_read_batches(path: str, batch: int, limit: int) -> tuple[float, Checksum]:
    from tfrecord_numpy import FixedLenFeature, read_batches

    spec = {
        "features": FixedLenFeature([3], "float32"),
        "label": FixedLenFeature([], "int64"),
        "filename": FixedLenFeature([], "string"),
    }
    check = Checksum()
    batches = read_batches(path, spec, batch)
    t = time.perf_counter()
    for b in batches:
        check.add(b["features"], b["label"], b["filename"])
    return time.perf_counter() - t, check


def run_per_record(path: str, batch: int, limit: int) -> tuple[float, Checksum]:
    from tfrecord_numpy import FixedLenFeature, read_examples

    spec = {
        "features": FixedLenFeature([3], "float32"),
        "label": FixedLenFeature([], "int64"),
        "filename": FixedLenFeature([], "string"),
    }
    check = Checksum()
    cols: dict[str, list] = {k: [] for k in SPEC_NAMES}
    t = time.perf_counter()
    for i, ex in enumerate(read_examples(path, spec)):
        if i == limit:
            break
        for k in SPEC_NAMES:
            cols[k].append(ex[k])
    out = {k: np.stack(v) for k, v in cols.items()}
    dt = time.perf_counter() - t
    check.add(out["features"], out["label"], out["filename"])
    return dt, check


def run_tensorflow(path: str, batch: int, limit: int) -> tuple[float, Checksum]:
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    spec = {
        "features": tf.io.FixedLenFeature([3], tf.float32),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "filename": tf.io.FixedLenFeature([], tf.string),
    }
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    ds = tf.data.TFRecordDataset(path).batch(batch).map(lambda s: tf.io.parse_example(s, spec)).with_options(options)
    check = Checksum()
    t = time.perf_counter()
    for b in ds:
        check.add(b["features"].numpy(), b["label"].numpy(), b["filename"].numpy())
    return time.perf_counter() - t, check


def run_tfrecord_pypi(path: str, batch: int, limit: int) -> tuple[float, Checksum]:
    from tfrecord.reader import tfrecord_loader

    description = {"features": "float", "label": "int", "filename": "byte"}
    check = Checksum()
    t = time.perf_counter()
    rows: list[dict] = []
    for i, rec in enumerate(tfrecord_loader(path, None, description)):
        if i == limit:
            break
        rows.append(rec)
        if len(rows) == batch:
            _fold_pypi(check, rows)
            rows = []
    if rows:
        _fold_pypi(check, rows)
    return time.perf_counter() - t, check


def _fold_pypi(check: Checksum, rows: list[dict]) -> None:
    feats = np.stack([r["features"] for r in rows])
    labels = np.concatenate([r["label"] for r in rows])
    names = [bytes(r["filename"]) for r in rows]
    check.add(feats, labels, names)


CONTENDERS = {
    "read_batches": (run_read_batches, "tfrecord_numpy"),
    "per-record loop": (run_per_record, "tfrecord_numpy"),
    "TensorFlow": (run_tensorflow, "tensorflow"),
    "tfrecord (PyPI)": (run_tfrecord_pypi, "tfrecord"),
}
LIMITED = {"per-record loop", "tfrecord (PyPI)"}


def child(name: str, path: str, batch: int, limit: int, cpu: int) -> None:
    _pin(cpu)
    fn = CONTENDERS[name][0]
    seconds, check = fn(path, batch, limit)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "rss_mb": rss_kb / 1024, **check.as_dict()}))


# --------------------------------------------------------------------------- driver


def importable(module: str) -> bool:
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([sys.executable, "-c", code], env=_env()).returncode == 0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent / "src"), env.get("PYTHONPATH")]))
    return env


def run_child(name: str, path: Path, batch: int, limit: int, cpu: int) -> dict:
    cmd = [sys.executable, __file__, "--child", name, "--file", str(path), "--batch-size", str(batch)]
    cmd += ["--loop-limit", str(limit), "--cpu", str(cpu)]
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        lscpu = ""
    info = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    model = info.get("Model name", platform.processor() or "?").strip()
    cores = info.get("CPU(s)", str(os.cpu_count())).strip()
    return f"{model}, {cores} CPU(s) (lscpu); {platform.system()} {platform.release()}"


def versions() -> str:
    code = (
        "import importlib.metadata as md, platform, numpy\n"
        "out = ['Python ' + platform.python_version(), 'numpy ' + numpy.__version__]\n"
        "for dist in ('protobuf', 'crc32c', 'tensorflow-cpu', 'tensorflow', 'tfrecord'):\n"
        "    try:\n"
        "        out.append(dist + ' ' + md.version(dist))\n"
        "    except md.PackageNotFoundError:\n"
        "        pass\n"
        "print('; '.join(out))\n"
    )
    return subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", default="100000,2000000", help="input sizes, comma separated")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--loop-limit", type=int, default=200_000, help="records read by the per-record loops")
    ap.add_argument("--cpu", type=int, default=None, help="core to pin each run to (default: the last one allowed)")
    ap.add_argument("--workdir", default="/tmp/tfrecord-numpy-bench-batch")
    ap.add_argument("--out", default=str(HERE / "results" / "batch.md"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cpu is None:
        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
        args.cpu = allowed[-1]
    if args.child:
        child(args.child, args.file, args.batch_size, args.loop_limit, args.cpu)
        return

    sys.path.insert(0, str(HERE.parent / "src"))
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.records.split(",")]
    names = [n for n, (_, module) in CONTENDERS.items() if importable(module)]
    skipped = [n for n in CONTENDERS if n not in names]
    started = _dt.datetime.now(_dt.timezone.utc)
    load = os.getloadavg() if hasattr(os, "getloadavg") else ()
    lines = [
        "# Batched Example parsing: records/s",
        "",
        f"`PYTHONPATH=src python {' '.join(sys.argv)}` (python: {sys.executable}) — {started:%Y-%m-%d %H:%M} UTC, "
        f"{args.repeats} repeats (median; min–max in brackets), runs interleaved round-robin, "
        f"each in a fresh process pinned to CPU {args.cpu}, batch size {args.batch_size}.",
        "",
        f"- Machine: {machine()}",
        f"- {versions()}",
        f"- load average at start: {' '.join(f'{x:.2f}' for x in load)} (the machine is shared: compare ratios within a run)",
        "- Records: `features` float32[3], `label` int64, `filename` bytes[41..47]; "
        "~136 bytes each with framing, uncompressed, CRCs verified by every contender but the PyPI reader "
        "(which checks none).",
        f"- The per-record loops stop after {args.loop_limit:,} records (their rate does not depend on the file size).",
        "- Building the pipeline is untimed, iterating it is timed; peak RSS is the whole process's "
        "(`ru_maxrss`, interpreter and imports included).",
    ]
    if skipped:
        lines.append(f"- Skipped (not importable here): {', '.join(skipped)}.")
    for size in sizes:
        path = workdir / f"small-{size}.tfrecord"
        make_input(path, size)
        results: dict[str, list[dict]] = {n: [] for n in names}
        for rep in range(args.repeats):
            for n in names:
                r = run_child(n, path, args.batch_size, args.loop_limit, args.cpu)
                results[n].append(r)
                print(
                    f"  {size:>9} {n:<16} rep {rep}: {r['records'] / r['seconds']:>12,.0f} records/s", file=sys.stderr
                )
        full = [rs[0] for n, rs in results.items() if n not in LIMITED]
        assert all(
            {k: v for k, v in r.items() if k not in ("seconds", "rss_mb")}
            == {k: v for k, v in full[0].items() if k not in ("seconds", "rss_mb")}
            for r in full
        ), "contenders disagree"
        rate = {n: statistics.median(r["records"] / r["seconds"] for r in rs) for n, rs in results.items()}
        tf_rate = rate.get("TensorFlow")
        mb = path.stat().st_size / 1e6
        lines += [
            "",
            f"## {size:,} records ({mb:.0f} MB)",
            "",
            "| contender | records read | records/s | × TensorFlow | × per-record loop | peak RSS (MB) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for n, rs in results.items():
            rates = [r["records"] / r["seconds"] for r in rs]
            vs_tf = f"{rate[n] / tf_rate:.2f}" if tf_rate else "–"
            vs_loop = f"{rate[n] / rate['per-record loop']:.1f}" if "per-record loop" in rate else "–"
            rss = statistics.median(r["rss_mb"] for r in rs)
            lines.append(
                f"| {n} | {rs[0]['records']:,} | {rate[n]:,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) "
                f"| {vs_tf} | {vs_loop} | {rss:,.0f} |"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
