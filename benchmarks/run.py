#!/usr/bin/env python3
"""Throughput, memory and footprint benchmarks for tfrecord-numpy.

    python benchmarks/run.py                      # sizes 200,600 MB, 5 repeats
    python benchmarks/run.py --quick              # smoke run: 50 MB, 3 repeats
    python benchmarks/run.py --footprint --profile

Inputs are A2O/Perch-schema shards written with our own writer
(``tfrecord_numpy.perch.synth``) into a scratch directory (``--workdir``, default
``/tmp/tfrecord-numpy-bench``), cached there by size.  Every timed number is
the median of ``--repeats`` runs with a warm page cache; the benchmarks of one
input run round-robin (repeat 1 of each, then repeat 2 of each, ...) so that
load from other jobs on the machine hits them all alike: compare the ratios,
which are measured within one run, rather than absolute MB/s across runs.

The markdown report goes to stdout and to ``benchmarks/results/latest.md``
(``--out``; ``--quick`` writes ``benchmarks/results/quick.md``).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as _dt
import gc
import io
import json
import os
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

import tfrecord_numpy
from tfrecord_numpy.a2o import extract
from tfrecord_numpy.framing import RecordScanner
from tfrecord_numpy.perch.records import decode_a2o_record
from tfrecord_numpy.perch.synth import write_a2o_shard_of_size
from tfrecord_numpy.reader import iter_record_views, read_records
from tfrecord_numpy.storage import open_source

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
CHUNK = 8 << 20  # the block size of the "limit" read (and of our reader)
MB = 1e6

#: the generation parameters: the real A2O shards' shape (12 windows x 5 channels x 1280 dims, float32)
GEN = {"windows": 12, "channels": 5, "dims": 1280, "dtype": "float32"}


# --------------------------------------------------------------------------- inputs


@dataclass
class Input:
    path: Path
    records: int
    rows: int  # records * windows * channels
    dims: int
    dtype: str
    size: int  # bytes on disk
    data_size: int  # uncompressed bytes (== size unless compressed)
    compression: str | None = None

    @property
    def mb(self) -> float:
        return self.size / MB

    @property
    def label(self) -> str:
        return self.path.name


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _load_cached(path: Path, want: dict) -> Input | None:
    meta = _meta_path(path)
    if not (path.exists() and meta.exists()):
        return None
    try:
        info = json.loads(meta.read_text())
    except ValueError:
        return None
    if {k: info.get(k) for k in want} != want or info.get("size") != path.stat().st_size:
        return None
    return Input(
        path=path,
        records=info["records"],
        rows=info["rows"],
        dims=info["dims"],
        dtype=info["dtype"],
        size=info["size"],
        data_size=info["data_size"],
        compression=info.get("compression"),
    )


def _save_meta(inp: Input, want: dict) -> None:
    info = dict(want)
    info.update(
        records=inp.records,
        rows=inp.rows,
        dims=inp.dims,
        dtype=inp.dtype,
        size=inp.size,
        data_size=inp.data_size,
        compression=inp.compression,
    )
    _meta_path(inp.path).write_text(json.dumps(info, indent=1))


def shard(dirpath: Path, name: str, megabytes: float, *, seed: int = 0, log: Callable[[str], None] = print) -> Input:
    """A cached A2O shard of about ``megabytes`` MB, written with our writer."""
    path = dirpath / name
    want = {"target_mb": megabytes, "seed": seed, **GEN}
    cached = _load_cached(path, want)
    if cached is not None:
        return cached
    log(f"  generating {path} ({megabytes:g} MB) ...")
    t = time.perf_counter()
    tmp = path.with_name(path.name + ".tmp")
    records = write_a2o_shard_of_size(tmp, int(megabytes * MB), seed=seed, **GEN)
    os.replace(tmp, path)
    size = path.stat().st_size
    inp = Input(path, records, records * GEN["windows"] * GEN["channels"], GEN["dims"], GEN["dtype"], size, size)
    _save_meta(inp, want)
    log(f"    {records} records, {size / MB:.1f} MB in {time.perf_counter() - t:.1f} s")
    return inp


def gzip_copy(src: Input, *, log: Callable[[str], None] = print) -> Input:
    """A gzip copy (level 6, TensorFlow's default) of ``src``: the same records, compressed."""
    path = src.path.with_name(src.path.name + ".gz")
    want = {"source": src.path.name, "source_size": src.size, "level": 6}
    cached = _load_cached(path, want)
    if cached is not None:
        return cached
    log(f"  compressing {src.path.name} -> {path.name} ...")
    tmp = path.with_name(path.name + ".tmp")
    co = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    with open(src.path, "rb") as fi, open(tmp, "wb") as fo:
        while block := fi.read(CHUNK):
            fo.write(co.compress(block))
        fo.write(co.flush())
    os.replace(tmp, path)
    inp = Input(path, src.records, src.rows, src.dims, src.dtype, path.stat().st_size, src.size, "gzip")
    _save_meta(inp, want)
    return inp


def warm(paths: Iterable[Path]) -> None:
    """Read each file once so every timed run sees a warm page cache."""
    buf = bytearray(CHUNK)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


# --------------------------------------------------------------------------- the benchmarks
# Each returns the number of records it saw (checked against the input).


def bench_read_only(inp: Input) -> int:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(inp.path, "rb", buffering=0) as f:
        while f.readinto(view):
            pass
    return inp.records


def bench_limit(inp: Input) -> int:
    """(a) the limit: large readinto blocks into one reused buffer + crc32c over every byte."""
    import crc32c

    crc = crc32c.crc32c
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    c = 0
    with open(inp.path, "rb", buffering=0) as f:
        while n := f.readinto(view):
            c = crc(view[:n], c)
    return inp.records


def bench_limit_gzip(inp: Input) -> int:
    """(a) for gzip: read 8 MiB blocks, inflate them, crc32c over the inflated bytes."""
    import crc32c

    crc = crc32c.crc32c
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    c = 0
    with open(inp.path, "rb", buffering=0) as f:
        while n := f.readinto(view):
            c = crc(d.decompress(view[:n]), c)
    c = crc(d.flush(), c)
    return inp.records


def bench_read_records(verify: bool) -> Callable[[Input], int]:
    def run(inp: Input) -> int:
        n = 0
        for _ in read_records(str(inp.path), verify=verify):
            n += 1
        return n

    return run


def bench_record_views(inp: Input) -> int:
    opened = open_source(str(inp.path))
    scanner = RecordScanner(path=opened.name)
    n = 0
    try:
        for _ in iter_record_views(opened.stream, scanner):
            n += 1
    finally:
        opened.close()
    return n


def bench_tfrecord_iterator(inp: Input) -> int:
    """Peer: the PyPI ``tfrecord`` package's framing (skips both CRC checks)."""
    from tfrecord.reader import tfrecord_iterator

    n = 0
    for _ in tfrecord_iterator(str(inp.path), None, compression_type=inp.compression):
        n += 1
    return n


def bench_decode(inp: Input, out: np.ndarray) -> int:
    """(c) iter_record_views + decode_a2o_record, each [T*C, D] block copied into ``out``."""
    opened = open_source(str(inp.path))
    scanner = RecordScanner(path=opened.name)
    pos = n = 0
    try:
        for _, _, view in iter_record_views(opened.stream, scanner):
            emb = decode_a2o_record(view).embedding
            k = emb.shape[0] * emb.shape[1]
            out[pos : pos + k] = emb.reshape(k, emb.shape[2])
            pos += k
            n += 1
    finally:
        opened.close()
    assert pos == len(out), (pos, len(out))
    return n


def bench_direct(inp: Input, out: np.ndarray) -> int:
    """(c) ``direct.iter_a2o_into``: each record's tensor bytes ``readinto`` ``out`` itself
    (what ``a2o.read_shard`` does for an uncompressed local shard)."""
    from tfrecord_numpy.perch.direct import iter_a2o_into

    opened = open_source(str(inp.path))
    n = 0
    try:
        for n, _ in enumerate(iter_a2o_into(opened.stream, out, path=opened.name), 1):
            pass
    finally:
        opened.close()
    return n


def _tensor_array(tp, tensor_pb2, types_pb2) -> np.ndarray:
    assert tp.dtype == types_pb2.DT_FLOAT
    shape = [d.size for d in tp.tensor_shape.dim]
    return np.frombuffer(tp.tensor_content, "<f4").reshape(shape)


def bench_protobuf_peer(inp: Input, out: np.ndarray, reuse: bool = False) -> int:
    """Peer: the same framing (CRCs checked), then protobuf's Example and TensorProto + np.frombuffer.

    A fresh message per record (``FromString``), as ``tfrecord``'s loader does.  ``reuse=True``
    re-parses into one message pair with ``ParseFromString`` instead: with the upb backend that is
    several times slower and its memory grows with every record (the message's arena keeps each
    parse), so it is only measured with ``--pb-reuse``.
    """
    from tfrecord_numpy._proto import example_pb2, tensor_pb2, types_pb2

    opened = open_source(str(inp.path))
    scanner = RecordScanner(path=opened.name)
    ex = example_pb2.Example()
    tp = tensor_pb2.TensorProto()
    pos = n = 0
    try:
        for _, _, view in iter_record_views(opened.stream, scanner):
            if reuse:
                ex.ParseFromString(view)
            else:
                ex = example_pb2.Example.FromString(view)
            feats = ex.features.feature
            _filename = feats["filename"].bytes_list.value[0].decode("utf-8")
            _ts = np.float32(feats["timestamp_s"].float_list.value[0])
            if reuse:
                tp.ParseFromString(feats["embedding"].bytes_list.value[0])
            else:
                tp = tensor_pb2.TensorProto.FromString(feats["embedding"].bytes_list.value[0])
            emb = _tensor_array(tp, tensor_pb2, types_pb2)
            k = emb.shape[0] * emb.shape[1]
            out[pos : pos + k] = emb.reshape(k, emb.shape[2])
            pos += k
            n += 1
    finally:
        opened.close()
    assert pos == len(out), (pos, len(out))
    return n


def bench_tfrecord_loader_peer(inp: Input, out: np.ndarray) -> int:
    """Peer: ``tfrecord.tfrecord_loader`` (no CRC checks) + TensorProto + np.frombuffer."""
    from tfrecord.reader import tfrecord_loader

    from tfrecord_numpy._proto import tensor_pb2, types_pb2

    pos = n = 0
    for ex in tfrecord_loader(str(inp.path), None, compression_type=inp.compression):
        _filename = ex["filename"].decode("utf-8")
        _ts = ex["timestamp_s"][0]
        tp = tensor_pb2.TensorProto.FromString(ex["embedding"])
        emb = _tensor_array(tp, tensor_pb2, types_pb2)
        k = emb.shape[0] * emb.shape[1]
        out[pos : pos + k] = emb.reshape(k, emb.shape[2])
        pos += k
        n += 1
    assert pos == len(out), (pos, len(out))
    return n


def bench_tensorflow_peer(inp: Input, out: np.ndarray) -> int:
    """Peer: the reference notebook's pipeline (TFRecordDataset, parse_single_example, parse_tensor)."""
    import tensorflow as tf

    spec = {
        "timestamp_s": tf.io.FixedLenFeature([], tf.float32),
        "filename": tf.io.FixedLenFeature([], tf.string),
        "embedding": tf.io.FixedLenFeature([], tf.string),
        "embedding_shape": tf.io.FixedLenFeature([3], tf.int64),
    }
    ds = tf.data.TFRecordDataset(str(inp.path), compression_type="GZIP" if inp.compression else "")
    pos = n = 0
    for raw in ds:
        ex = tf.io.parse_single_example(raw, spec)
        emb = tf.io.parse_tensor(ex["embedding"], tf.float32).numpy()
        k = emb.shape[0] * emb.shape[1]
        out[pos : pos + k] = emb.reshape(k, emb.shape[2])
        pos += k
        n += 1
    return n


def _read_crc_write(src: Path, target: Path) -> memoryview:
    """The limit read (``readinto`` 8 MiB blocks + crc32c), every block written to ``target``;
    returns the block buffer for reuse."""
    import crc32c

    crc = crc32c.crc32c
    target.parent.mkdir(parents=True, exist_ok=True)
    view = memoryview(bytearray(CHUNK))
    c = 0
    with open(src, "rb", buffering=0) as f, open(target, "wb", buffering=0) as o:
        while n := f.readinto(view):
            c = crc(view[:n], c)
            o.write(view[:n])
    return view


def bench_extract_limit(dest: Path) -> Callable[[Input], int]:
    """(d) the extraction's I/O floor: the limit read (readinto + crc32c), every block written to a new
    file in the output directory, then that file read back through sha256 (as the manifest does)."""

    def run(inp: Input) -> int:
        import hashlib

        target = dest / "limit.bin"  # a new file: the previous run's is removed untimed (setup)
        view = _read_crc_write(inp.path, target)
        h = hashlib.sha256()
        with open(target, "rb", buffering=0) as f:
            while n := f.readinto(view):
                h.update(view[:n])
        return inp.records

    return run


def bench_io_floor(dest: Path) -> Callable[[Input], int]:
    """Issue #14's I/O floor of extraction: the limit read (readinto + crc32c), every block written to
    a new file in the output directory; nothing read back (the outputs' CRC32C is computed as they
    are written)."""

    def run(inp: Input) -> int:
        _read_crc_write(inp.path, dest / "floor.bin")  # a new file: the previous run's is removed untimed
        return inp.records

    return run


def bench_extract(dest: Path, **options: Any) -> Callable[[Input], int]:
    """(d) the flagship job: shard -> embeddings/<stem>.npy + metadata/<stem>.json, one worker.

    ``options`` go to ``extract`` (over ``quiet=True, overwrite=True``), e.g. ``checksum="sha256"``."""
    kwargs = {"quiet": True, "overwrite": True, **options}

    def run(inp: Input) -> int:
        summary = extract([str(inp.path)], str(dest), workers=1, **kwargs)
        assert summary["rows"] == inp.rows, (summary["rows"], inp.rows)
        return summary["records"]

    return run


# --------------------------------------------------------------------------- timing


@dataclass
class Result:
    name: str
    inp: Input
    times: list[float] = field(default_factory=list)
    note: str = ""
    skipped: str | None = None
    cpu: list[float] = field(default_factory=list)  # machine-wide busy CPU seconds during each run

    @property
    def cores(self) -> float:
        """CPU seconds per wall second over all runs (how many cores were busy)."""
        return sum(self.cpu) / sum(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def mb_s(self) -> float:
        return self.inp.size / MB / self.median

    @property
    def data_mb_s(self) -> float:
        return self.inp.data_size / MB / self.median

    @property
    def rec_s(self) -> float:
        return self.inp.records / self.median

    @property
    def spread(self) -> str:
        return f"{min(self.times):.3f}-{max(self.times):.3f}"


def run_round_robin(
    inp: Input,
    benches: list[tuple[str, Callable[[Input], int]]],
    repeats: int,
    log: Callable[[str], None] = print,
    check: Callable[[str], None] | None = None,
    setup: dict[str, Callable[[], None]] | None = None,
) -> dict[str, Result]:
    """Run every bench ``repeats`` times, interleaved; returns name -> Result.

    ``setup[name]`` runs untimed before each run of that bench (e.g. removing the previous
    run's outputs, so that every extraction writes into an empty directory as a first run does).
    """
    results = {name: Result(name, inp) for name, _ in benches}
    setup = setup or {}
    for r in range(repeats):
        for name, fn in benches:
            if name in setup:
                setup[name]()
            gc.collect()
            c0 = _cpu_seconds()
            t = time.perf_counter()
            n = fn(inp)
            dt = time.perf_counter() - t
            results[name].cpu.append(_cpu_seconds() - c0)
            if n != inp.records:
                raise AssertionError(f"{name}: saw {n} records, expected {inp.records}")
            if r == 0 and check is not None:
                check(name)
            results[name].times.append(dt)
        log(f"    repeat {r + 1}/{repeats}: " + ", ".join(f"{n}={results[n].times[-1]:.2f}s" for n, _ in benches))
    return results


def _cpu_seconds() -> float:
    """Machine-wide busy CPU seconds (user+nice+system+irq+softirq of all CPUs, from /proc/stat).

    Machine-wide rather than our own rusage: the extraction's workers may be forked by a
    forkserver, so they are not our children and ``RUSAGE_CHILDREN`` never sees them.  Other
    jobs on the machine count too: read it next to the load average.
    """
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _rmtree_fn(path: Path) -> Callable[[], None]:
    """Untimed set-up of a run that writes: remove the previous run's outputs, then ``sync`` so that
    every run starts with no dirty pages (otherwise the kernel's writeback of earlier runs' output
    throttles later runs at random)."""

    def clear() -> None:
        shutil.rmtree(path, ignore_errors=True)
        os.sync()

    return clear


def disk_write_mb_s(dirpath: Path, total: int) -> float:
    """Sequential write of ``total`` bytes in 8 MiB blocks + fsync: the disk's sustained write speed."""
    target = dirpath / "disk-write-test.bin"
    block = bytes(CHUNK)
    os.sync()
    t = time.perf_counter()
    with open(target, "wb", buffering=0) as f:
        for _ in range(max(1, total // CHUNK)):
            f.write(block)
        os.fsync(f.fileno())
    dt = time.perf_counter() - t
    target.unlink()
    return max(1, total // CHUNK) * CHUNK / MB / dt


# --------------------------------------------------------------------------- machine


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_info() -> dict:
    cpu = "unknown"
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    import crc32c
    import google.protobuf
    from google.protobuf.internal import api_implementation

    try:
        from importlib.metadata import version

        import tfrecord  # noqa: F401

        tfrecord_v = version("tfrecord")
    except Exception:
        tfrecord_v = "not installed"
    from importlib.metadata import version as _v

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "affinity": affinity,
        "ram_gib": mem_kb / (1 << 20),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "protobuf": f"{google.protobuf.__version__} ({api_implementation.Type()} backend)",
        "crc32c": f"{_v('crc32c')} (hardware: {'yes' if getattr(crc32c, 'hardware_based', False) else 'no'})",
        "tfrecord_numpy": tfrecord_numpy.__version__,
        "tfrecord": tfrecord_v,
        "tensorflow": _tensorflow_status(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
    }


def machine_section(info: dict[str, Any], disk_mb_s: float, disk_label: str, load_start: str) -> list[str]:
    """The report's "## Machine" section."""
    return [
        "## Machine",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores ({info['affinity']} usable), RAM {info['ram_gib']:.1f} GiB, Linux {info['kernel']}",
        f"- Python {info['python']}; numpy {info['numpy']}; protobuf {info['protobuf']}; crc32c {info['crc32c']}",
        f"- tfrecord-numpy {info['tfrecord_numpy']}; peers: tfrecord {info['tfrecord']}; tensorflow {info['tensorflow']}",
        f"- disk under the workdir: {disk_mb_s:,.0f} MB/s sustained sequential write "
        f"({disk_label} in 8 MiB blocks + fsync). Extraction writes about as many bytes "
        "as it reads, into the page cache; a job much larger than the dirty-page allowance is held to this speed",
        f"- OPENBLAS_CORETYPE={info['openblas_coretype'] or '(unset)'} (not relevant to this I/O benchmark; left as is)",
        f"- load average (1/5/15 min) at start: {load_start} — other jobs may share this machine, so compare the "
        "ratios (measured within this run) rather than absolute MB/s across runs",
        "",
    ]


def _tensorflow_status() -> str:
    import importlib.util

    return "importable" if importlib.util.find_spec("tensorflow") else "not importable"


def loadavg() -> str:
    return " ".join(_read("/proc/loadavg").split()[:3]) or "n/a"


# --------------------------------------------------------------------------- memory (fresh subprocess)

_RSS_CHILD = r"""
import json, resource, sys, time

def hwm_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

from tfrecord_numpy.a2o import extract
base = hwm_kb()
t = time.perf_counter()
s = extract([sys.argv[1]], sys.argv[2], workers=1, quiet=True, overwrite=True)
dt = time.perf_counter() - t
print(json.dumps({"baseline_kb": base, "hwm_kb": hwm_kb(), "seconds": dt, "rows": s["rows"],
                  "self_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

# ru_maxrss survives fork/vfork + exec (the kernel carries the old address
# space's high-water mark into the new process), so a child started straight
# from this big benchmark process would report *our* peak.  A small launcher
# interpreter starts the measured child instead and reports its
# RUSAGE_CHILDREN ru_maxrss; the child also reports its own VmHWM, which
# belongs to the new address space only.  The two should agree.
_RSS_LAUNCHER = r"""
import json, resource, subprocess, sys
p = subprocess.run([sys.executable, "-c", sys.argv[1], *sys.argv[2:]], capture_output=True, text=True)
if p.returncode:
    sys.stderr.write(p.stderr)
    sys.exit(p.returncode)
info = json.loads(p.stdout.strip().splitlines()[-1])
info["children_maxrss_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps(info))
"""


def rss_of_extraction(inp: Input, dest: Path, runs: int) -> dict:
    """Peak RSS of extracting ``inp`` in a fresh ``python -c`` child; max over runs."""
    out = []
    for _ in range(runs):
        p = subprocess.run(
            [sys.executable, "-c", _RSS_LAUNCHER, _RSS_CHILD, str(inp.path), str(dest)], capture_output=True, text=True
        )
        if p.returncode:
            raise RuntimeError(f"RSS child failed:\n{p.stderr}")
        info = json.loads(p.stdout.strip().splitlines()[-1])
        assert info["rows"] == inp.rows
        out.append(info)
    return {
        "maxrss_mb": max(i["children_maxrss_kb"] for i in out) * 1024 / MB,
        "hwm_mb": max(i["hwm_kb"] for i in out) * 1024 / MB,
        "baseline_mb": max(i["baseline_kb"] for i in out) * 1024 / MB,
        "seconds": statistics.median(i["seconds"] for i in out),
        "runs": runs,
    }


# --------------------------------------------------------------------------- footprint


_DIST_SIZES = r"""
import json, os, re
from importlib import metadata
out = {}
for d in metadata.distributions():
    name = re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower()
    size = 0
    for f in d.files or []:
        try:
            size += os.path.getsize(d.locate_file(f))
        except OSError:
            pass
    reqs = []
    for r in d.requires or []:
        if "extra ==" in r or 'extra==' in r:
            continue
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", r)
        if m:
            reqs.append(re.sub(r"[-_.]+", "-", m.group(1)).lower())
    out[name] = {"size": size, "requires": reqs}
print(json.dumps(out))
"""


def _closure(graph: dict, roots: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = [r for r in roots if r in graph]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        todo.extend(r for r in graph[n]["requires"] if r in graph)
    return seen


def dependency_breakdown(dist_info: dict, package: str = "tfrecord-numpy") -> list[tuple[str, float, int]]:
    """(direct dependency, MB it alone brings in, distributions) for each runtime dependency."""
    direct = [r for r in dist_info.get(package, {}).get("requires", []) if r in dist_info]
    out = []
    for dep in direct:
        others = _closure(dist_info, [d for d in direct if d != dep])
        only = _closure(dist_info, [dep]) - others
        out.append((dep, sum(dist_info[d]["size"] for d in only) / MB, len(only)))
    out.sort(key=lambda t: -t[1])
    return out


def _du_mb(path: Path) -> float:
    total = 0
    for root, dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            total += st.st_blocks * 512
    return total / MB


def footprint(workdir: Path, first_record_file: Path, runs: int = 5, log=print) -> dict:
    """Fresh venv, non-editable ``pip install`` of a copy of the project (runtime deps only)."""
    venv = workdir / "footprint-venv"
    src = workdir / "footprint-src"
    for d in (venv, src):
        if d.exists():
            shutil.rmtree(d)
    # install from a copy so that building the wheel leaves no build/ or egg-info in the work tree
    ignore = shutil.ignore_patterns(
        ".git",
        "__pycache__",
        "*.egg-info",
        "build",
        "dist",
        ".venv*",
        "benchmarks",
        ".pytest_cache",
        ".hypothesis",
        ".ci-venvs",
        "bench-out",
    )
    shutil.copytree(PROJECT, src, ignore=ignore)
    log("  creating venv ...")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    before = _du_mb(site)
    log("  pip install (non-editable, runtime dependencies only) ...")
    t = time.perf_counter()
    p = subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(src)],
        capture_output=True,
        text=True,
    )
    install_s = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"pip install failed:\n{p.stdout}\n{p.stderr}")
    total = _du_mb(site)
    # largest top-level entries (packages and their .libs), to see where the megabytes are
    entries = []
    for e in site.iterdir():
        if e.name.endswith((".dist-info", ".pth")) or e.name == "__pycache__":
            continue
        entries.append((_du_mb(e) if e.is_dir() else e.stat().st_size / MB, e.name))
    entries.sort(reverse=True)
    dists = subprocess.run(
        [str(py), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    # per-distribution size (from each RECORD) and the dependency graph, to see what each direct
    # dependency brings along
    p = subprocess.run([str(py), "-c", _DIST_SIZES], capture_output=True, text=True, check=True)
    dist_info = json.loads(p.stdout)

    probe = (
        "import time; t = time.perf_counter()\n"
        "import tfrecord_numpy\n"
        "t1 = time.perf_counter()\n"
        "r = next(iter(tfrecord_numpy.read_records(%r)))\n"
        "t2 = time.perf_counter()\n"
        "print(t1 - t, t2 - t1, len(r))\n" % str(first_record_file)
    )
    walls, imports, firsts, bare = [], [], [], []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([str(py), "-c", "pass"], check=True)
        bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        p = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, check=True)
        walls.append(time.perf_counter() - t)
        a, b, _ = p.stdout.split()
        imports.append(float(a))
        firsts.append(float(b))
    # where the import time goes: -X importtime's cumulative microseconds of a few modules
    watch = ("tfrecord_numpy", "numpy", "fsspec", "asyncio", "google.protobuf", "crc32c", "tqdm", "gcsfs")
    itimes: dict[str, list[float]] = {}
    for _ in range(3):
        p = subprocess.run(
            [str(py), "-X", "importtime", "-c", "import tfrecord_numpy"], capture_output=True, text=True, check=True
        )
        for line in p.stderr.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[2].strip() in watch:
                try:
                    itimes.setdefault(parts[2].strip(), []).append(int(parts[1]) / 1000)
                except ValueError:
                    pass
    return {
        "dist_info": dist_info,
        "importtime_ms": {k: statistics.median(v) for k, v in sorted(itimes.items(), key=lambda kv: -max(kv[1]))},
        "site_mb": total,
        "pip_setuptools_mb": before,
        "added_mb": total - before,
        "install_s": install_s,
        "top": entries[:8],
        "dists": [d for d in dists if not d.lower().startswith(("pip==", "setuptools=="))],
        "wall_s": statistics.median(walls),
        "import_s": statistics.median(imports),
        "first_record_s": statistics.median(firsts),
        "bare_python_s": statistics.median(bare),
        "runs": runs,
    }


# --------------------------------------------------------------------------- profile


def profile(fn: Callable[[], object], top: int = 10, sort: str = "cumulative") -> str:
    pr = cProfile.Profile()
    pr.enable()
    fn()
    pr.disable()
    s = io.StringIO()
    st = pstats.Stats(pr, stream=s)
    st.strip_dirs().sort_stats(sort).print_stats(top)
    lines = s.getvalue().splitlines()
    # drop pstats' preamble down to the header line
    for i, line in enumerate(lines):
        if "ncalls" in line:
            head = [ln for ln in lines[:i] if "function calls" in ln]
            return "\n".join(head + lines[i:]).rstrip()
    return s.getvalue().rstrip()


# --------------------------------------------------------------------------- report


def fmt_ratio(ours: Result, other: Result | None) -> str:
    if other is None or other.skipped or ours.skipped:
        return ""
    return f"{other.median / ours.median:.2f}×"


def throughput_table(title: str, rows: list[tuple[str, Result, str, str]], gzip_cols: bool = False) -> list[str]:
    """rows: (label, result, x-limit cell, vs-peer cell)."""
    out = [f"### {title}", ""]
    if gzip_cols:
        out += [
            "| benchmark | median s (min-max) | MB/s (gz file) | MB/s (inflated) | records/s | × limit | vs peers |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
    else:
        out += [
            "| benchmark | median s (min-max) | MB/s | records/s | × limit | vs peers |",
            "|---|---:|---:|---:|---:|---|",
        ]
    for label, r, xl, vs in rows:
        if r.skipped:
            cols = 7 if gzip_cols else 6
            out.append(f"| {label} | skipped: {r.skipped} |" + " |" * (cols - 2))
            continue
        cells = [label, f"{r.median:.3f} ({r.spread})", f"{r.mb_s:,.0f}"]
        if gzip_cols:
            cells.append(f"{r.data_mb_s:,.0f}")
        cells += [f"{r.rec_s:,.0f}", xl, vs]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    return out


def summary_table(files, all_results, gz, gres, rss_inputs, rss, mrows, fp) -> list[str]:
    """The headline numbers in one table (the README shows this table)."""
    labels = [i.label for i in files.values()]
    head = "| measure | " + " | ".join(f"{files[s].mb:.0f} MB file" for s in files) + " |"
    out = [
        "## Summary",
        "",
        "MB/s of input file; × limit = our speed / the read+crc32c limit's; "
        "× peer = peer's time / ours. Medians; details in the sections below.",
        "",
        head,
        "|---|" + "---:|" * len(files),
    ]

    def row(name: str, cell) -> None:
        out.append(f"| {name} | " + " | ".join(cell(all_results[lb]) for lb in labels) + " |")

    def mbs(r: Result) -> str:
        return f"{r.mb_s:,.0f}"

    def x(r: Result, lim: Result) -> str:
        return f"{lim.median / r.median:.2f}"

    row("(a) limit: readinto 8 MiB + crc32c, MB/s", lambda res: mbs(res["limit"]))
    row(
        "(b) `read_records`, CRCs verified: MB/s (× limit)",
        lambda res: f"{mbs(res['read_records verify'])} ({x(res['read_records verify'], res['limit'])})",
    )
    row(
        "(b) `read_records(verify=False)`: MB/s (× limit)",
        lambda res: f"{mbs(res['read_records noverify'])} ({x(res['read_records noverify'], res['limit'])})",
    )
    row(
        "(b) peer `tfrecord_iterator` (no CRC checks): MB/s (× limit)",
        lambda res: (
            "n/a"
            if res["peer tfrecord_iterator"].skipped
            else f"{mbs(res['peer tfrecord_iterator'])} ({x(res['peer tfrecord_iterator'], res['limit'])})"
        ),
    )
    row(
        "(c) decode into a preallocated array: MB/s (× limit)",
        lambda res: f"{mbs(res['decode'])} ({x(res['decode'], res['limit'])})",
    )
    row("(c) … records/s", lambda res: f"{res['decode'].rec_s:,.0f}")
    row(
        "(c) tensor bytes read straight into the array (`read_shard`'s path): MB/s (× limit)",
        lambda res: f"{mbs(res['decode direct'])} ({x(res['decode direct'], res['limit'])})",
    )
    row(
        "(c) … × protobuf `Example`+`TensorProto` peer",
        lambda res: fmt_ratio(res["decode"], res["peer decode protobuf"]),
    )
    row(
        "(c) … × `tfrecord.tfrecord_loader` peer",
        lambda res: fmt_ratio(res["decode"], res["peer decode tfrecord_loader"]) or "n/a",
    )
    row(
        "(c) … × TensorFlow notebook pipeline",
        lambda res: fmt_ratio(res["decode"], res["peer decode tensorflow"]) or "skipped (not importable)",
    )
    row(
        "(d) extraction to npy + json, workers=1: MB/s (× limit)",
        lambda res: f"{mbs(res['extract'])} ({x(res['extract'], res['limit'])})",
    )
    row(
        "(d) … × its I/O floor (read + write + sha256 the same bytes)",
        lambda res: f"{res['extract limit'].median / res['extract'].median:.2f}",
    )
    out.append(
        f"| (d) gzip copy of the {files[min(files)].mb:.0f} MB file ({gz.mb:.0f} MB): extraction MB/s of .gz "
        f"(inflated MB/s; × gzip limit) | {gres['extract'].mb_s:,.0f} ({gres['extract'].data_mb_s:,.0f}; "
        f"{gres['limit'].median / gres['extract'].median:.2f})" + " |" * len(files)
    )
    rss_cells = ", ".join(
        f"{inp.mb:.0f} MB: {max(rss[s]['maxrss_mb'], rss[s]['hwm_mb']):.1f} MB" for s, inp in rss_inputs.items()
    )
    out.append(
        f"| (d) peak RSS of extraction in a fresh process (target ≤ 150 MB, flat) | {rss_cells}" + " |" * len(files)
    )
    for label, total, w1, w2 in mrows[:-1]:
        out.append(
            f"| (f) extraction of {label}: workers=2 speedup over workers=1 | "
            f"{w1.median / w2.median:.2f}× ({w1.mb_s:,.0f} → {w2.mb_s:,.0f} MB/s)" + " |" * len(files)
        )
    if fp is not None:
        out.append(
            f"| (g) footprint: site-packages of a fresh venv (of which pip/setuptools) | "
            f"{fp['site_mb']:.0f} MB ({fp['pip_setuptools_mb']:.0f} MB)" + " |" * len(files)
        )
        out.append(
            f"| (g) cold start: `import tfrecord_numpy` + first record, wall | {fp['wall_s'] * 1000:.0f} ms"
            + " |" * len(files)
        )
    out.append("")
    return out


# --------------------------------------------------------------------------- issue #14 goals

#: the shaped link of the cloud goal (issue #14: "for example 40 ms and 40 MB/s") and its shard
CLOUD_LATENCY_MS = 40.0
CLOUD_RATE_MB = 40.0
CLOUD_MB = 600  # a real A2O shard is ~615 MB
CLOUD_TIMEOUT = 900  # seconds for the whole of cloud_read.py (its --timeout)

#: a child that times TensorFlow's GZIP reader over one file in-process: ``import tensorflow`` and
#: one untimed first record are left out; prints one JSON line
_TF_GZIP_CHILD = r"""
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
t = time.perf_counter()
import tensorflow as tf
import_s = time.perf_counter() - t
path, repeats = sys.argv[1], int(sys.argv[2])
for _ in tf.data.TFRecordDataset(path, compression_type="GZIP").take(1):
    pass
times = []
for _ in range(repeats):
    t = time.perf_counter()
    n = 0
    for _ in tf.data.TFRecordDataset(path, compression_type="GZIP"):
        n += 1
    times.append(time.perf_counter() - t)
print(json.dumps({"times": times, "records": n, "tensorflow": tf.__version__, "import_s": import_s}))
"""

_TF_VERSION_CHILD = "import tensorflow as tf; print(tf.__version__)"

#: drains the master side of the pseudo-terminal in its own process (as a terminal emulator
#: would) and prints how many bytes were drawn on it
_PTY_DRAIN = r"""
import os
n = 0
while True:
    try:
        b = os.read(0, 1 << 16)
    except OSError:  # EIO: the last slave descriptor is closed
        break
    if not b:
        break
    n += len(b)
print(n)
"""

_CLOUD_PROBE = (
    "import sys; sys.path.insert(0, sys.argv[1]); from gcs_emulator import emulator_binary; print(emulator_binary())"
)


@dataclass
class GoalRow:
    """One line of the goals table; ``number`` is the goal's number in issue #14 (the table's order)."""

    number: int
    goal: str
    measured: str
    target: str
    met: str = "–"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _secs(r: Result) -> str:
    return f"{r.median:.3f} s"


def _child_env() -> dict[str, str]:
    """The environment of the TensorFlow children: TensorFlow's C++ logging off."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def tf_version(tf_python: str | None) -> tuple[str | None, str]:
    """(TensorFlow's version in ``tf_python``, or None; why not, when None)."""
    if tf_python is None:
        return None, "no --tf-python"
    try:
        p = subprocess.run(
            [tf_python, "-c", _TF_VERSION_CHILD], capture_output=True, text=True, env=_child_env(), timeout=300
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"--tf-python {tf_python}: {exc}"
    if p.returncode:
        last = (p.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"`import tensorflow` fails in {tf_python}: {last}"
    return p.stdout.strip().splitlines()[-1], ""


def default_tf_python() -> str | None:
    """This interpreter when it can import TensorFlow, else None."""
    import importlib.util

    return sys.executable if importlib.util.find_spec("tensorflow") else None


class ChildTimes:
    """Times that a child process measures of itself (its start-up and imports left out).

    Each :meth:`run` appends the child's one timed run; after ``run_round_robin``, :meth:`adopt`
    puts these times in place of the wall times measured around the whole child."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.info: dict[str, Any] = {}

    def run(self, cmd: list[str], what: str) -> dict[str, Any]:
        p = subprocess.run(cmd, capture_output=True, text=True, env=_child_env())
        if p.returncode:
            raise RuntimeError(f"{what} failed (exit {p.returncode}):\n{p.stderr[-4000:]}")
        info: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
        if len(info["times"]) != 1:
            raise RuntimeError(f"{what}: expected one timed run, got {info['times']}")
        self.times.append(float(info["times"][0]))
        self.info = info
        return info

    def adopt(self, result: Result) -> Result:
        if len(self.times) != len(result.times):
            raise AssertionError(f"{result.name}: {len(self.times)} child times for {len(result.times)} runs")
        result.times = list(self.times)
        result.note = "child-timed"  # its machine-wide CPU seconds span the whole child: no "cores busy"
        return result


def bench_tf_gzip(tf_python: str, timer: ChildTimes) -> Callable[[Input], int]:
    """TensorFlow's ``TFRecordDataset(path, compression_type="GZIP")`` iterated to the end in a
    ``tf_python`` child: one timed iteration per call, after an untimed first record."""

    def run(inp: Input) -> int:
        info = timer.run([tf_python, "-c", _TF_GZIP_CHILD, str(inp.path), "1"], "TensorFlow's GZIP reader")
        return int(info["records"])

    return run


def bench_tf_notebook(tf_python: str, sites: Path, dest: Path, timer: ChildTimes) -> Callable[[Input], int]:
    """The notebook's extraction on TensorFlow (``benchmarks/tf_notebook.py``) in a ``tf_python``
    child: one timed run per call into an emptied ``dest``, after an untimed first record."""

    def run(inp: Input) -> int:
        cmd = [tf_python, str(HERE / "tf_notebook.py"), "--sites", str(sites), "--dest", str(dest)]
        info = timer.run([*cmd, "--repeats", "1", "--warmup", str(inp.path)], "tf_notebook.py")
        if info["rows"] != inp.rows:
            raise AssertionError(f"tf_notebook.py wrote {info['rows']} rows, expected {inp.rows}")
        return inp.records

    return run


def bench_read_shard(columnar: bool, keep: dict[str, object]) -> Callable[[Input], int]:
    """``a2o.read_shard(path, columnar=...)``: a fresh array per call, nothing pre-faulted. The result
    is kept in ``keep`` so that freeing it happens in the untimed set-up of the next run."""
    from tfrecord_numpy.a2o import read_shard

    def run(inp: Input) -> int:
        emb, meta = read_shard(inp.path, columnar=columnar)
        if emb.shape != (inp.rows, inp.dims):
            raise AssertionError(f"read_shard gave {emb.shape}, expected {(inp.rows, inp.dims)}")
        keep["last"] = (emb, meta)
        return inp.records

    return run


@contextmanager
def pseudo_terminal() -> Iterator[tuple[IO[str], dict[str, int]]]:
    """A 120 x 40 pseudo-terminal whose output a child process drains: the user's terminal.

    ``extract(quiet=False)`` draws its bar only when stderr is a terminal, so a redirect to a file
    or a ``StringIO`` would measure no bar at all.  Yields the text stream to use as stderr and a
    dict whose ``"bytes"`` (what was drawn) is filled in on exit."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()  # both non-inheritable: no other child holds them open
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    drain = subprocess.Popen([sys.executable, "-c", _PTY_DRAIN], stdin=master, stdout=subprocess.PIPE, text=True)
    os.close(master)
    tty = open(slave, "w", encoding="utf-8", errors="backslashreplace", buffering=1)  # as sys.stderr is
    drawn = {"bytes": 0}
    try:
        yield tty, drawn
    finally:
        tty.close()
        out, _ = drain.communicate(timeout=60)
        drawn["bytes"] = int(out.strip() or 0)


def bench_extract_with_bar(dest: Path, tty: IO[str]) -> Callable[[Input], int]:
    """``extract(..., quiet=False)`` with ``sys.stderr`` on a terminal: the job drawing its bar."""
    inner = bench_extract(dest, quiet=False)

    def run(inp: Input) -> int:
        real, sys.stderr = sys.stderr, tty
        try:
            return inner(inp)
        finally:
            sys.stderr = real

    return run


def dask_unavailable() -> str | None:
    """Why the Dask rows cannot run here, or None."""
    try:
        import distributed  # noqa: F401

        import tfrecord_numpy.perch.dask  # noqa: F401
    except ImportError as exc:
        return f"`distributed` not importable: {exc}"
    return None


@contextmanager
def dask_local_cluster(workers: int) -> Iterator[Any]:
    """A running ``LocalCluster`` of ``workers`` single-threaded processes on 127.0.0.1 (no dashboard)
    and a client of it; the workers import the job before anything is timed."""
    import logging

    import distributed

    dist: Any = distributed  # LocalCluster and Client are untyped
    cluster = dist.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # as extract_with_cluster: not :8787
        silence_logs=logging.ERROR,
    )
    client = dist.Client(cluster, set_as_default=False)
    try:
        client.run(exec, "import tfrecord_numpy.perch.dask")
        yield client
    finally:
        client.close()
        cluster.close()


def bench_pool(paths: list[str], dest: Path, workers: int) -> Callable[[Input], int]:
    """The local job over ``paths`` with ``workers`` processes (the pool's start-up included)."""

    def run(inp: Input) -> int:
        s = extract(paths, str(dest), workers=workers, quiet=True, overwrite=True)
        if s["rows"] != inp.rows or s["workers"] != workers:
            raise AssertionError(f"workers={workers}: {s}")
        return int(s["records"])

    return run


def bench_dask(paths: list[str], dest: Path, client: Any) -> Callable[[Input], int]:
    """``perch.dask.extract`` on a cluster that is already running."""
    from tfrecord_numpy.perch import dask as perch_dask

    def run(inp: Input) -> int:
        s = perch_dask.extract(paths, str(dest), client, quiet=True, overwrite=True)
        if s["rows"] != inp.rows:
            raise AssertionError(f"dask: {s}")
        return int(s["records"])

    return run


def bench_dask_with_cluster(paths: list[str], dest: Path, workers: int) -> Callable[[Input], int]:
    """``perch.dask.extract_with_cluster(local_workers=...)``: the cluster's start-up and shut-down included."""
    from tfrecord_numpy.perch import dask as perch_dask

    def run(inp: Input) -> int:
        s = perch_dask.extract_with_cluster(paths, str(dest), local_workers=workers, quiet=True, overwrite=True)
        if s["rows"] != inp.rows:
            raise AssertionError(f"dask with cluster: {s}")
        return int(s["records"])

    return run


def manifest_checksums(dest: Path) -> dict[str, int]:
    """How many outputs in ``dest/manifest.json`` record each checksum kind."""
    from tfrecord_numpy.checksum import recorded_checksum

    manifest = json.loads((dest / "manifest.json").read_text())
    kinds: dict[str, int] = {}
    for entry in manifest["shards"].values():
        for part in ("embeddings", "metadata"):
            rec = recorded_checksum(entry.get(part) or {})
            kind = rec[0] if rec else "none"
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def goals_one_shard(
    inp: Input, out: Path, tf_python: str | None, tf_why: str, repeats: int, log: Callable[[str], None]
) -> tuple[list[GoalRow], dict[str, Result]]:
    """Goals 1, 5 and 6 on one shard, side by side: the limit, ``read_shard`` both ways, the I/O
    floor, ``extract`` with crc32c (the default) and with sha256, the notebook on TensorFlow."""
    from tfrecord_numpy.a2o import load_site_mapping

    log(f"goals 1, 5, 6 on {inp.label} ({inp.mb:.1f} MB, {inp.records} records):")
    d_crc, d_sha, d_floor, d_tf = out / "extract_crc32c", out / "extract_sha256", out / "floor", out / "tf_notebook"
    keep: dict[str, object] = {}
    benches: list[tuple[str, Callable[[Input], int]]] = [
        ("limit", bench_limit),
        ("read_shard columnar", bench_read_shard(True, keep)),
        ("read_shard dicts", bench_read_shard(False, keep)),
        ("I/O floor", bench_io_floor(d_floor)),
        ("extract crc32c", bench_extract(d_crc)),
        ("extract sha256", bench_extract(d_sha, checksum="sha256")),
    ]
    setup = {
        "read_shard columnar": keep.clear,
        "read_shard dicts": keep.clear,
        "I/O floor": _rmtree_fn(d_floor),
        "extract crc32c": _rmtree_fn(d_crc),
        "extract sha256": _rmtree_fn(d_sha),
    }
    tf_timer = ChildTimes()
    if tf_python is not None:
        sites = out / "sites.json"  # what extract uses by default: the mapping shipped in the package
        sites.write_text(json.dumps(load_site_mapping()))
        benches.append(("TensorFlow notebook", bench_tf_notebook(tf_python, sites, d_tf, tf_timer)))
        setup["TensorFlow notebook"] = _rmtree_fn(d_tf)
    res = run_round_robin(inp, benches, repeats, log=log, setup=setup)
    keep.clear()
    kinds, sha_kinds = manifest_checksums(d_crc), manifest_checksums(d_sha)
    for d in (d_crc, d_sha, d_floor, d_tf):
        shutil.rmtree(d, ignore_errors=True)

    lim, col, dicts = res["limit"], res["read_shard columnar"], res["read_shard dicts"]
    floor, crc, sha = res["I/O floor"], res["extract crc32c"], res["extract sha256"]
    job = f"`extract([shard], dest, workers=1, quiet=True, overwrite=True)`, {inp.mb:.0f} MB"
    rows = [
        GoalRow(
            1,
            f"integrity: the manifest's checksum by default ({job})",
            f"manifest records {', '.join(f'{k} ×{n}' for k, n in sorted(kinds.items()))}; "
            f"crc32c {_secs(crc)}, sha256 {_secs(sha)}: sha256 costs {sha.median / crc.median:.2f}× the time "
            f"(sha256 run recorded {', '.join(sorted(sha_kinds))})",
            "crc32c is the default",
            _met(set(kinds) == {"crc32c"}),
        ),
        GoalRow(
            5,
            f"`read_shard(path, columnar=True)` vs the read + CRC32C limit ({inp.mb:.0f} MB, nothing pre-faulted)",
            f"{lim.median / col.median:.2f}× ({_secs(col)} vs {_secs(lim)})",
            "≥ 0.50×",
            _met(lim.median / col.median >= 0.5),
        ),
        GoalRow(
            5,
            "(info) `read_shard(path)`, metadata as a list of dicts, vs the limit",
            f"{lim.median / dicts.median:.2f}× ({_secs(dicts)})",
            "–",
        ),
        GoalRow(
            6,
            "end to end: `extract --workers 1` vs its I/O floor (read + CRC32C + write the same bytes)",
            f"{floor.median / crc.median:.2f}× ({_secs(crc)} vs {_secs(floor)})",
            "≥ 0.70×",
            _met(floor.median / crc.median >= 0.7),
        ),
    ]
    if tf_python is not None:
        tf = tf_timer.adopt(res["TensorFlow notebook"])
        rows.append(
            GoalRow(
                6,
                "end to end: `extract --workers 1` vs the notebook on TensorFlow (`tf_notebook.py`)",
                f"{tf.median / crc.median:.2f}× ({_secs(crc)} vs {_secs(tf)})",
                "≥ 8×",
                _met(tf.median / crc.median >= 8),
            )
        )
    else:
        rows.append(
            GoalRow(6, "end to end: `extract --workers 1` vs the notebook on TensorFlow", f"skipped ({tf_why})", "≥ 8×")
        )
    return rows, res


def goals_progress_bar(
    inp: Input, out: Path, repeats: int, log: Callable[[str], None]
) -> tuple[list[GoalRow], dict[str, Result]]:
    """Goal 6's progress bar: ``extract`` with the bar drawn on a terminal vs ``quiet=True``."""
    log(f"goal 6, the progress bar, on {inp.label} ({repeats} repeats):")
    import tqdm  # noqa: F401  (imported untimed: a once-per-process cost, not the bar's per-byte cost)

    # one destination for both: each run starts from the same state (the other's outputs removed)
    d_quiet = d_bar = out / "extract_progress"
    with pseudo_terminal() as (tty, drawn):
        res = run_round_robin(
            inp,
            [("quiet", bench_extract(d_quiet)), ("bar", bench_extract_with_bar(d_bar, tty))],
            repeats,
            log=log,
            setup={"quiet": _rmtree_fn(d_quiet), "bar": _rmtree_fn(d_bar)},
        )
    for d in (d_quiet, d_bar):
        shutil.rmtree(d, ignore_errors=True)
    quiet, bar = res["quiet"], res["bar"]
    cost = bar.median / quiet.median - 1
    cost_min = min(bar.times) / min(quiet.times) - 1
    drew = f"{drawn['bytes'] / repeats / 1000:.1f} kB drawn per run" if drawn["bytes"] else "**no bar was drawn**"
    row = GoalRow(
        6,
        f"progress bar: `quiet=False` with stderr on a terminal (a pty) vs `quiet=True`, {repeats} repeats",
        f"{cost:+.1%} of the job by medians ({_secs(quiet)} → {_secs(bar)}), {cost_min:+.1%} by minimums; {drew}",
        "< 2%",
        _met(cost < 0.02 and drawn["bytes"] > 0),
    )
    return [row], res


def goals_gzip(
    gz: Input, tf_python: str | None, tf_why: str, repeats: int, log: Callable[[str], None]
) -> tuple[list[GoalRow], dict[str, Result]]:
    """Goal 2: ``read_records`` on the gzip copy vs TensorFlow's GZIP reader."""
    log(f"goal 2 on {gz.label} ({gz.mb:.1f} MB compressed):")
    benches: list[tuple[str, Callable[[Input], int]]] = [("read_records", bench_read_records(True))]
    timer = ChildTimes()
    if tf_python is not None:
        benches.append(("TensorFlow GZIP", bench_tf_gzip(tf_python, timer)))
    res = run_round_robin(gz, benches, repeats, log=log)
    ours = res["read_records"]
    goal = f"gzip: `read_records` (CRCs verified) vs TensorFlow's `TFRecordDataset(compression_type='GZIP')` ({gz.mb:.0f} MB .gz)"
    if tf_python is None:
        return [GoalRow(2, goal, f"skipped ({tf_why}); ours {_secs(ours)}", "≥ 1.30×")], res
    tf = timer.adopt(res["TensorFlow GZIP"])
    ratio = tf.median / ours.median
    row = GoalRow(2, goal, f"{ratio:.2f}× ({_secs(ours)} vs {_secs(tf)})", "≥ 1.30×", _met(ratio >= 1.3))
    return [row], res


def goals_workers(
    label: str, total: Input, paths: list[str], out: Path, repeats: int, log: Callable[[str], None]
) -> tuple[list[GoalRow], dict[str, Result]]:
    """Goal 3: the local pool with 1 and 2 workers, Dask on a running LocalCluster and with its start-up."""
    log(f"goal 3 on {label} ({total.mb:.1f} MB):")
    d1, d2, dd, dc = out / "pool1", out / "pool2", out / "dask", out / "dask_cluster"
    benches: list[tuple[str, Callable[[Input], int]]] = [
        ("workers=1", bench_pool(paths, d1, 1)),
        ("workers=2", bench_pool(paths, d2, 2)),
    ]
    setup = {"workers=1": _rmtree_fn(d1), "workers=2": _rmtree_fn(d2), "dask": _rmtree_fn(dd)}
    setup["dask with cluster"] = _rmtree_fn(dc)
    why = dask_unavailable()
    if why is None:
        with dask_local_cluster(2) as client:
            benches.append(("dask", bench_dask(paths, dd, client)))
            benches.append(("dask with cluster", bench_dask_with_cluster(paths, dc, 2)))
            res = run_round_robin(total, benches, repeats, log=log, setup=setup)
    else:
        res = run_round_robin(total, benches, repeats, log=log, setup=setup)
    for d in (d1, d2, dd, dc):
        shutil.rmtree(d, ignore_errors=True)
    w1, w2 = res["workers=1"], res["workers=2"]
    rows = [
        GoalRow(
            3,
            f"workers: `extract(..., workers=2)` vs `workers=1`, {label}",
            f"{w1.median / w2.median:.2f}× ({_secs(w1)} → {_secs(w2)})",
            "≥ 1.60×",
            _met(w1.median / w2.median >= 1.6),
        )
    ]
    dask_goal = "Dask: `perch.dask.extract` on a running LocalCluster (2 single-threaded worker processes) vs the local pool, workers=2"
    info_goal = (
        "(info) Dask with the cluster's start-up: `extract_with_cluster(local_workers=2)` vs the local pool, workers=2"
    )
    if why is not None:
        rows.append(GoalRow(3, dask_goal, f"skipped ({why})", "≥ 0.90×"))
        rows.append(GoalRow(3, info_goal, f"skipped ({why})", "–"))
        return rows, res
    dk, dkc = res["dask"], res["dask with cluster"]
    rows.append(
        GoalRow(
            3, dask_goal, f"{w2.median / dk.median:.2f}× ({_secs(dk)})", "≥ 0.90×", _met(w2.median / dk.median >= 0.9)
        )
    )
    rows.append(GoalRow(3, info_goal, f"{w2.median / dkc.median:.2f}× ({_secs(dkc)})", "–"))
    return rows, res


def cloud_unavailable() -> str | None:
    """Why ``cloud_read.py`` cannot run here (no fake-gcs-server binary), or None."""
    p = subprocess.run(
        [sys.executable, "-c", _CLOUD_PROBE, str(PROJECT / "tests")], capture_output=True, text=True, timeout=120
    )
    if p.returncode:
        return "no fake-gcs-server binary: " + ((p.stderr.strip().splitlines() or ["?"])[-1])
    return None


def markdown_table(text: str, first_header: str) -> list[dict[str, str]]:
    """The rows of the first markdown table in ``text`` whose first column is ``first_header``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_header:
            head, rows = cells, []
            for body in lines[i + 2 :]:
                if not body.startswith("|"):
                    break
                rows.append(dict(zip(head, (c.strip() for c in body.strip().strip("|").split("|")))))
            return rows
    return []


def goals_cloud(out: Path, repeats: int, timeout: int, log: Callable[[str], None]) -> list[GoalRow]:
    """Goal 4: ``benchmarks/cloud_read.py`` (fake-gcs-server behind the shaping proxy) in a child,
    its table read back: every shaped concurrency against 0.8 x min(connections x cap, decode limit)."""
    target = f"≥ 0.8 × min(C × {CLOUD_RATE_MB:g} MB/s, decode limit)"
    report = out / "cloud_read.md"
    cmd = [sys.executable, str(HERE / "cloud_read.py"), "--mb", str(CLOUD_MB), "--repeats", str(repeats)]
    cmd += ["--latency-ms", f"{CLOUD_LATENCY_MS:g}", "--rate-mb", f"{CLOUD_RATE_MB:g}", "--timeout", str(timeout)]
    log(f"goal 4: {' '.join(cmd[1:])} ...")
    try:
        p = subprocess.run([*cmd, "--out", str(report)], capture_output=True, text=True, timeout=timeout + 120)
        failed = f"exit {p.returncode}: {(p.stderr.strip().splitlines() or ['?'])[-1]}" if p.returncode else ""
    except subprocess.TimeoutExpired:
        failed = f"no result within {timeout + 120} s"
    if failed:
        return [GoalRow(4, "cloud reads: `cloud_read.py`", f"failed ({failed})", target, "**no**")]
    table = markdown_table(report.read_text(), "read")
    limit = next(float(r["MB/s"].replace(",", "")) for r in table if r["read"].startswith("local file"))
    rows = []
    for r in table:
        m = re.match(r"shaped link, --read-concurrency (\d+), (\d+) MiB blocks", r["read"])
        if not m:
            continue
        c, speed = int(m.group(1)), float(r["MB/s"].replace(",", ""))
        ideal = min(c * CLOUD_RATE_MB, limit)
        try:  # what the link itself allows (cloud_read.py's model: latency, metadata round trips, ramp)
            model = speed * float(r["s"].split()[0]) / float(r["link model s"]) / ideal
            allows = f"; the link model allows {model:.2f} ×"
        except (KeyError, ValueError, IndexError, ZeroDivisionError):
            allows = ""
        rows.append(
            GoalRow(
                4,
                f"cloud reads: one {CLOUD_MB} MB shard via fake-gcs-server + shaping proxy "
                f"({CLOUD_LATENCY_MS:g} ms, {CLOUD_RATE_MB:g} MB/s per connection), `--read-concurrency {c}`, "
                f"{m.group(2)} MiB blocks",
                f"{speed:,.0f} MB/s = {speed / ideal:.2f} × {ideal:,.0f} (median of {repeats}{allows})",
                f"{target} = {0.8 * ideal:,.0f} MB/s",
                _met(speed >= 0.8 * ideal),
            )
        )
    if not rows:
        rows.append(
            GoalRow(4, "cloud reads: `cloud_read.py`", "failed (no shaped rows in its table)", target, "**no**")
        )
    rows.append(
        GoalRow(4, "(info) cloud reads: the decode limit (the same shard from a local file)", f"{limit:,.0f} MB/s", "–")
    )
    return rows


def goals_table(rows: list[GoalRow]) -> list[str]:
    """The goals as one markdown table, in the issue's order."""
    out = ["| # | goal | measured | target | met? |", "|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r.number):
        out.append(f"| {r.number} | {r.goal} | {r.measured} | {r.target} | {r.met} |")
    return out + [""]


def timings_table(groups: list[tuple[str, dict[str, Result]]]) -> list[str]:
    """Every timed run behind the goals: median, min-max, MB/s of its input and cores busy."""
    out = ["| input | run | median s (min-max) | runs | MB/s | cores busy |", "|---|---|---:|---:|---:|---:|"]
    for label, res in groups:
        for r in res.values():
            cores = "–" if r.note == "child-timed" else f"{r.cores:.2f}"
            out.append(
                f"| {label} | {r.name} | {r.median:.3f} ({r.spread}) | {len(r.times)} | {r.mb_s:,.0f} | {cores} |"
            )
    return out + [""]


def goals_report(args: argparse.Namespace, argv: list[str] | None, log: Callable[[str], None]) -> str:
    """``--goals``: the machine section and the issue #14 goals, measured side by side."""
    repeats = args.repeats or 5
    work = Path(args.workdir)
    inputs_dir, out = work / "inputs", work / "outputs" / "goals"
    inputs_dir.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    started = _dt.datetime.now(_dt.timezone.utc)
    load_start = loadavg()
    info = machine_info()
    tf_python = args.tf_python
    tf_ver, tf_why = tf_version(tf_python)
    if tf_ver is None:
        tf_python = None
    cloud_why: str | None = None  # --goals-cloud: run it whatever the probe says
    if args.goals_cloud is False:
        cloud_why = "--no-goals-cloud"
    elif args.goals_cloud is None:
        cloud_why = cloud_unavailable()

    log("inputs:")
    inp = shard(inputs_dir, f"a2o_{args.goals_mb:g}MB.tfrecord", args.goals_mb, log=log)
    gz = gzip_copy(inp, log=log)
    count, each = (float(x) for x in args.goals_multi.lower().split("x"))
    mdir = inputs_dir / f"multi_{int(count)}x{each:g}MB"
    mdir.mkdir(exist_ok=True)
    ms = [shard(mdir, f"shard_{i:02d}.tfrecord", each, seed=i + 1, log=log) for i in range(int(count))]
    size = sum(m.size for m in ms)
    total = Input(mdir, sum(m.records for m in ms), sum(m.rows for m in ms), ms[0].dims, ms[0].dtype, size, size)
    multi_label = f"{int(count)} × {each:g} MB"
    log("disk write speed ...")
    disk_mb_s = disk_write_mb_s(work / "outputs", 1 << 30)
    log("warming the page cache ...")
    warm([inp.path, gz.path, *(m.path for m in ms)])

    rows, groups = [], []
    r, res = goals_one_shard(inp, out, tf_python, tf_why, repeats, log)
    rows += r
    groups.append((inp.label, res))
    r, res = goals_progress_bar(inp, out, args.goals_repeats, log)
    rows += r
    groups.append((f"{inp.label} (progress bar)", res))
    r, res = goals_gzip(gz, tf_python, tf_why, repeats, log)
    rows += r
    groups.append((gz.label, res))
    r, res = goals_workers(multi_label, total, [str(m.path) for m in ms], out, repeats, log)
    rows += r
    groups.append((multi_label, res))
    if cloud_why is None:
        rows += goals_cloud(out, repeats, CLOUD_TIMEOUT, log)
    else:
        rows.append(GoalRow(4, "cloud reads (`cloud_read.py`)", f"skipped ({cloud_why})", "≥ 0.8 × C × cap"))
    shutil.rmtree(out, ignore_errors=True)

    cmd = "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    md = ["# tfrecord-numpy: issue #14 goals", ""]
    md += [f"`{cmd.strip()}` — {started:%Y-%m-%d %H:%M} UTC", ""]
    md += machine_section(info, disk_mb_s, "1 GiB", load_start)[:-1]
    md += [
        f"- TensorFlow for the TensorFlow rows: {tf_ver} in `{tf_python}`"
        if tf_ver
        else f"- TensorFlow rows: skipped ({tf_why})",
        "",
    ]
    md += [
        "## Issue #14 goals",
        "",
        f"Each goal of issue #14 measured in this one run, warm page cache, medians of {repeats} repeats "
        f"(the progress-bar pair: {args.goals_repeats}); the runs of one input interleaved round-robin "
        "(`run_round_robin`), every writing run into an empty directory after an untimed `sync`. "
        "Ratios are the other run's time / ours (above 1: ours is faster). TensorFlow runs in a child "
        "interpreter (`--tf-python`) once per repeat; the time counted is what the child measures around its "
        "own run, after `import tensorflow` and one untimed first record. The progress bar is drawn on a "
        "pseudo-terminal drained by another process (the bar is only drawn on a terminal). The Dask target row "
        "uses a cluster started before timing (its workers have imported the job); the start-up row starts "
        "its own. Cloud reads come from `benchmarks/cloud_read.py`, run as a child with "
        f"`--repeats {repeats}`, and its table read back.",
        "",
    ]
    md += goals_table(rows)
    md += [
        "### Timings",
        "",
        "Every timed run behind the table. MB/s of that row's input file; *cores busy* = machine-wide busy CPU "
        "seconds (`/proc/stat`, other jobs included) per wall second of its runs, which shows how much of the "
        "machine other jobs took (not given for the TensorFlow children, whose own time is counted).",
        "",
    ]
    md += timings_table(groups)
    md += [f"Load average at end: {loadavg()}.", ""]
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default=None, help="input sizes in MB, comma-separated (default 200,600)")
    ap.add_argument(
        "--repeats", type=int, default=None, help="timed runs per benchmark; the median is reported (default 5)"
    )
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: --sizes 50 --repeats 3, small memory and multi-shard inputs"
    )
    ap.add_argument("--rss-sizes", default=None, help="MB sizes for the peak-RSS check (default 150,<largest size>)")
    ap.add_argument(
        "--multi", default=None, help="multi-shard inputs as COUNTxMB, comma-separated (default 4x100,8x200)"
    )
    ap.add_argument(
        "--footprint",
        action="store_true",
        help="also measure a fresh venv install and cold-start time (a minute or two)",
    )
    ap.add_argument("--profile", action="store_true", help="also cProfile the decode (c) and extraction (d) paths once")
    ap.add_argument(
        "--pb-reuse",
        action="store_true",
        help="also time the protobuf peer re-parsing into one reused message (slow, memory grows)",
    )
    ap.add_argument("--workdir", default="/tmp/tfrecord-numpy-bench", help="scratch directory for inputs and outputs")
    ap.add_argument(
        "--out", default=None, help="markdown output (default benchmarks/results/latest.md; quick.md with --quick)"
    )
    goals = ap.add_argument_group("issue #14 goals (--goals runs only these, after the machine section)")
    goals.add_argument("--goals", action="store_true", help="measure the goals of issue #14 side by side, nothing else")
    goals.add_argument("--goals-mb", type=float, default=600, help="MB of the one-shard goals' input (default 600)")
    goals.add_argument("--goals-multi", default="8x200", help="COUNTxMB input of the workers goal (default 8x200)")
    goals.add_argument(
        "--goals-repeats", type=int, default=7, help="repeats of the progress-bar pair (default 7; others: --repeats)"
    )
    goals.add_argument(
        "--goals-cloud",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run benchmarks/cloud_read.py for the cloud goal (default: when fake-gcs-server is available)",
    )
    goals.add_argument(
        "--tf-python",
        default=default_tf_python(),
        help="a Python with TensorFlow for the TensorFlow rows (default: this one if it imports tensorflow)",
    )
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.goals:
        text = goals_report(args, argv, log)
        out_goals = Path(args.out) if args.out else HERE / "results" / "goals.md"
        print(text)
        out_goals.parent.mkdir(parents=True, exist_ok=True)
        out_goals.write_text(text)
        log(f"wrote {out_goals}")
        return 0

    sizes = [float(s) for s in (args.sizes or ("50" if args.quick else "200,600")).split(",") if s.strip()]
    repeats = args.repeats or (3 if args.quick else 5)
    rss_sizes = [float(s) for s in (args.rss_sizes or ("20,50" if args.quick else f"150,{max(sizes):g}")).split(",")]
    multi_specs = [
        (int(c), float(m))
        for c, m in (x.lower().split("x") for x in (args.multi or ("4x15" if args.quick else "4x100,8x200")).split(","))
    ]
    out_md = Path(args.out) if args.out else HERE / "results" / ("quick.md" if args.quick else "latest.md")
    work = Path(args.workdir)
    inputs_dir = work / "inputs"
    outputs_dir = work / "outputs"
    inputs_dir.mkdir(parents=True, exist_ok=True)
    outputs_dir.mkdir(parents=True, exist_ok=True)

    started = _dt.datetime.now(_dt.timezone.utc)
    load_start = loadavg()
    info = machine_info()
    have_tfrecord = info["tfrecord"] != "not installed"
    have_tf = info["tensorflow"] == "importable"

    # ---- inputs
    log("inputs:")
    files = {s: shard(inputs_dir, f"a2o_{s:g}MB.tfrecord", s, log=log) for s in sizes}
    gz = gzip_copy(files[min(sizes)], log=log)
    rss_inputs = {s: files.get(s) or shard(inputs_dir, f"a2o_{s:g}MB.tfrecord", s, log=log) for s in rss_sizes}
    multis: list[tuple[str, Path, list[Input]]] = []  # (label, dir, shards); the last is the pool start-up probe
    for m_count, m_mb in multi_specs:
        d = inputs_dir / f"multi_{m_count}x{m_mb:g}MB"
        d.mkdir(exist_ok=True)
        multis.append(
            (
                f"{m_count} × {m_mb:g} MB",
                d,
                [shard(d, f"shard_{i:02d}.tfrecord", m_mb, seed=i + 1, log=log) for i in range(m_count)],
            )
        )
    tiny_dir = inputs_dir / "tiny"
    tiny_dir.mkdir(exist_ok=True)
    tiny = [shard(tiny_dir, f"tiny_{i:02d}.tfrecord", 0.3, seed=i + 1, log=log) for i in range(2)]
    multis.append((f"{len(tiny)} × 1 record", tiny_dir, tiny))
    all_files = (
        [i.path for i in files.values()]
        + [gz.path]
        + [i.path for i in rss_inputs.values()]
        + [m.path for _, _, ms in multis for m in ms]
    )
    log("disk write speed ...")
    disk_mb_s = disk_write_mb_s(outputs_dir, (256 if args.quick else 1024) << 20)
    log("warming the page cache ...")
    warm(dict.fromkeys(all_files))

    md: list[str] = []
    md += ["# tfrecord-numpy benchmarks", ""]
    cmd = "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    md += [
        f"`{cmd.strip()}` — {started:%Y-%m-%d %H:%M} UTC, {repeats} repeats per number (median; min-max in brackets), "
        "warm page cache, benchmarks of one input interleaved round-robin.",
        "",
    ]
    md += machine_section(info, disk_mb_s, "256 MiB" if args.quick else "1 GiB", load_start)
    summary_at = len(md)  # the summary table goes here once everything is measured
    md += [
        "## Inputs",
        "",
        f"A2O/Perch-schema shards written by `tfrecord_numpy.perch.synth.write_a2o_shard_of_size` "
        f"(embedding float32 [{GEN['windows']}, {GEN['channels']}, {GEN['dims']}] per record as a serialized "
        "TensorProto, plus `filename`, `timestamp_s`, `embedding_shape`). MB = 10^6 bytes of input file.",
        "",
        "| file | MB | records | embedding rows | bytes/record |",
        "|---|---:|---:|---:|---:|",
    ]
    listed = list({i.path: i for i in [*files.values(), gz, *rss_inputs.values()]}.values())
    for i in listed:
        md.append(f"| {i.label} | {i.mb:.1f} | {i.records:,} | {i.rows:,} | {i.data_size / i.records:,.0f} |")
    for _, d, ms in multis[:-1]:
        md.append(
            f"| {d.name}/shard_*.tfrecord ({len(ms)} files) | {sum(m.size for m in ms) / MB:.1f} | "
            f"{sum(m.records for m in ms):,} | {sum(m.rows for m in ms):,} | {ms[0].data_size / ms[0].records:,.0f} |"
        )
    md.append("")

    # ---- throughput per uncompressed size
    md += ["## Throughput", ""]
    md += [
        "- **limit**: `readinto` of 8 MiB blocks into one reused buffer + `crc32c` over every byte "
        "(what a verified read cannot beat); *read only* drops the CRC.",
        "- **× limit** = our throughput / the limit's; **vs peers** = peer's time / ours (above 1: we are faster).",
        "- `tfrecord` (PyPI) checks neither CRC; the *protobuf* peer uses our framing (CRCs checked) and "
        "differs only in the decoding: a fresh `example_pb2.Example.FromString(view)` per record, then "
        "`tensor_pb2.TensorProto.FromString` + `np.frombuffer(tensor_content)` (re-parsing into one reused "
        "message with `ParseFromString` is ~3× slower under upb and its memory grows with every record; "
        "`--pb-reuse` times it).",
        "- decode rows copy each record's [T·C, D] block into one preallocated `np.empty((rows, D))` (pre-faulted).",
        "- extraction = `extract([file], tmpdir, workers=1, quiet=True, overwrite=True)` into an empty directory "
        "(previous run's outputs removed and `sync` run, untimed): npy + json written, "
        "outputs hashed (sha256) for the manifest. Its *I/O floor* reads the input as the limit does, writes "
        "the same number of bytes to a new file in the output directory and reads them back through sha256.",
        "",
    ]
    all_results: dict[str, dict[str, Result]] = {}
    for s, inp in files.items():
        log(f"benchmarks on {inp.label} ({inp.mb:.1f} MB, {inp.records} records):")
        out = np.empty((inp.rows, inp.dims), dtype=inp.dtype)
        out.fill(0)
        ref: dict[str, np.ndarray] = {}
        stride = max(1, inp.rows // 4096)

        def check(name: str, out=out, ref=ref, stride=stride) -> None:
            if not name.startswith("decode") and not name.startswith("peer decode"):
                return
            sample = out[::stride].copy()
            if "ref" not in ref:
                ref["ref"] = sample
            elif not np.array_equal(ref["ref"], sample):
                raise AssertionError(f"{name}: decoded embeddings differ from the first decoder's")
            out.fill(0)

        dest = outputs_dir / f"extract_{inp.path.stem}"
        benches: list[tuple[str, Callable[[Input], int]]] = [
            ("limit", bench_limit),
            ("read only", bench_read_only),
            ("read_records verify", bench_read_records(True)),
            ("read_records noverify", bench_read_records(False)),
            ("views", bench_record_views),
        ]
        if have_tfrecord:
            benches.append(("peer tfrecord_iterator", bench_tfrecord_iterator))
        benches.append(("decode", lambda i, out=out: bench_decode(i, out)))
        benches.append(("decode direct", lambda i, out=out: bench_direct(i, out)))
        benches.append(("peer decode protobuf", lambda i, out=out: bench_protobuf_peer(i, out)))
        if have_tfrecord:
            benches.append(("peer decode tfrecord_loader", lambda i, out=out: bench_tfrecord_loader_peer(i, out)))
        if have_tf:
            benches.append(("peer decode tensorflow", lambda i, out=out: bench_tensorflow_peer(i, out)))
        if args.pb_reuse:
            benches.append(("peer decode protobuf reuse", lambda i, out=out: bench_protobuf_peer(i, out, reuse=True)))
        floor_dest = outputs_dir / f"floor_{inp.path.stem}"
        benches.append(("extract limit", bench_extract_limit(floor_dest)))
        benches.append(("extract", bench_extract(dest)))
        res = run_round_robin(
            inp,
            benches,
            repeats,
            log=log,
            check=check,
            setup={"extract limit": _rmtree_fn(floor_dest), "extract": _rmtree_fn(dest)},
        )
        shutil.rmtree(floor_dest, ignore_errors=True)
        for name, why in (
            ("peer tfrecord_iterator", None if have_tfrecord else "`tfrecord` not installed"),
            ("peer decode tfrecord_loader", None if have_tfrecord else "`tfrecord` not installed"),
            ("peer decode tensorflow", None if have_tf else "`tensorflow` not importable"),
        ):
            if why:
                res[name] = Result(name, inp, skipped=why)
        all_results[inp.label] = res
        shutil.rmtree(dest, ignore_errors=True)
        del out
        gc.collect()

        lim = res["limit"]

        def xl(r: Result, lim=lim) -> str:
            return "" if r.skipped else f"{lim.median / r.median:.2f}"

        it = res.get("peer tfrecord_iterator")
        pbp, tfl, tfp = res["peer decode protobuf"], res["peer decode tfrecord_loader"], res["peer decode tensorflow"]

        def vs(r: Result, *peers: tuple[str, Result | None]) -> str:
            return ", ".join(f"{fmt_ratio(r, p)} {n}" for n, p in peers if p is not None and fmt_ratio(r, p))

        rows = [
            ("(a) limit: readinto 8 MiB + crc32c", lim, "1.00", ""),
            ("(a) read only: readinto 8 MiB, no CRC", res["read only"], xl(res["read only"]), ""),
            (
                "(b) `read_records`, CRCs verified (bytes per record)",
                res["read_records verify"],
                xl(res["read_records verify"]),
                vs(res["read_records verify"], ("tfrecord_iterator (no CRC)", it)),
            ),
            (
                "(b) `read_records(verify=False)`",
                res["read_records noverify"],
                xl(res["read_records noverify"]),
                vs(res["read_records noverify"], ("tfrecord_iterator", it)),
            ),
            (
                "(b) `iter_record_views`, CRCs verified (zero-copy views)",
                res["views"],
                xl(res["views"]),
                vs(res["views"], ("tfrecord_iterator (no CRC)", it)),
            ),
            ("peer: `tfrecord.reader.tfrecord_iterator` (no CRC checks)", it, xl(it), ""),
            (
                "(c) decode: `iter_record_views` + `decode_a2o_record` → prealloc",
                res["decode"],
                xl(res["decode"]),
                vs(res["decode"], ("protobuf", pbp), ("tfrecord_loader", tfl), ("tensorflow", tfp)),
            ),
            (
                "(c) direct: tensor bytes `readinto` the array (`direct.iter_a2o_into`)",
                res["decode direct"],
                xl(res["decode direct"]),
                vs(res["decode direct"], ("protobuf", pbp), ("tfrecord_loader", tfl)),
            ),
            ("peer: our framing + protobuf `Example` + `TensorProto` + `np.frombuffer` → prealloc", pbp, xl(pbp), ""),
            *(
                [
                    (
                        "peer: the same, re-parsing into one reused message pair (`ParseFromString`)",
                        res["peer decode protobuf reuse"],
                        xl(res["peer decode protobuf reuse"]),
                        "",
                    )
                ]
                if args.pb_reuse
                else []
            ),
            (
                "peer: `tfrecord.tfrecord_loader` (no CRC) + `TensorProto` + `np.frombuffer` → prealloc",
                tfl,
                xl(tfl),
                "",
            ),
            ("peer: TensorFlow notebook pipeline", tfp, xl(tfp), ""),
            (
                "(d) I/O floor: limit read + write the same bytes to a new file + sha256 read-back",
                res["extract limit"],
                xl(res["extract limit"]),
                "",
            ),
            (
                "(d) extract → npy + json (workers=1)",
                res["extract"],
                xl(res["extract"]),
                f"{res['extract limit'].median / res['extract'].median:.2f}× the I/O floor's speed, "
                f"{res['decode'].median / res['extract'].median:.2f}× (c) decode's",
            ),
        ]
        md += throughput_table(f"{inp.label} ({inp.mb:.1f} MB, {inp.records:,} records)", rows)

    # ---- gzip
    log(f"benchmarks on {gz.label} ({gz.mb:.1f} MB compressed, {gz.data_size / MB:.1f} MB inflated):")
    dest = outputs_dir / "extract_gz"
    gbenches: list[tuple[str, Callable[[Input], int]]] = [
        ("limit", bench_limit_gzip),
        ("read_records verify", bench_read_records(True)),
    ]
    if have_tfrecord:
        gbenches.append(("peer tfrecord_iterator", bench_tfrecord_iterator))
    gbenches.append(("extract", bench_extract(dest)))
    gres = run_round_robin(gz, gbenches, repeats, log=log, setup={"extract": _rmtree_fn(dest)})
    shutil.rmtree(dest, ignore_errors=True)
    glim = gres["limit"]
    git = gres.get("peer tfrecord_iterator")
    grows = [
        ("(a) limit: readinto 8 MiB + zlib inflate + crc32c", glim, "1.00", ""),
        (
            "(b) `read_records`, CRCs verified",
            gres["read_records verify"],
            f"{glim.median / gres['read_records verify'].median:.2f}",
            f"{fmt_ratio(gres['read_records verify'], git)} tfrecord_iterator (no CRC)" if git else "",
        ),
    ]
    if git:
        grows.append(
            ("peer: `tfrecord_iterator(compression_type='gzip')` (no CRC)", git, f"{glim.median / git.median:.2f}", "")
        )
    grows.append(
        ("(d) extract → npy + json (workers=1)", gres["extract"], f"{glim.median / gres['extract'].median:.2f}", "")
    )
    md += throughput_table(
        f"{gz.label} (gzip level 6: {gz.mb:.1f} MB on disk, {gz.data_size / MB:.1f} MB inflated)", grows, gzip_cols=True
    )

    # ---- memory
    log("peak RSS of extraction in fresh subprocesses ...")
    rss_runs = min(repeats, 3)
    rss = {}
    for s, inp in rss_inputs.items():
        dest = outputs_dir / f"rss_{inp.path.stem}"
        rss[s] = rss_of_extraction(inp, dest, rss_runs)
        shutil.rmtree(dest, ignore_errors=True)
        log(f"  {inp.label}: ru_maxrss {rss[s]['maxrss_mb']:.1f} MB, VmHWM {rss[s]['hwm_mb']:.1f} MB")
    md += [
        "## Peak memory of extraction",
        "",
        f"A fresh `python -c` child imports `tfrecord_numpy.a2o` and runs "
        f"`extract([file], tmpdir, workers=1, quiet=True, overwrite=True)`; max of {rss_runs} runs. "
        "*ru_maxrss* is `getrusage(RUSAGE_CHILDREN).ru_maxrss` read by a small launcher interpreter that starts "
        "the child (started straight from the benchmark process, the child would inherit the benchmark's own "
        "high-water mark through fork+exec); *VmHWM* is the child's own `/proc/self/status` peak. "
        "*After import* is the child's VmHWM before extracting (interpreter + numpy + protobuf + fsspec). "
        "Target: ≤ 150 MB and flat across sizes.",
        "",
        "| input | MB | peak RSS (ru_maxrss) MB | peak RSS (VmHWM) MB | after import MB | extraction's own MB | extraction s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s, inp in rss_inputs.items():
        r = rss[s]
        md.append(
            f"| {inp.label} | {inp.mb:.1f} | {r['maxrss_mb']:.1f} | {r['hwm_mb']:.1f} | {r['baseline_mb']:.1f} | "
            f"{r['hwm_mb'] - r['baseline_mb']:.1f} | {r['seconds']:.2f} |"
        )
    peaks = [max(r["maxrss_mb"], r["hwm_mb"]) for r in rss.values()]
    verdict = "met" if max(peaks) <= 150 else "NOT met"
    md += [
        "",
        f"Target ≤ 150 MB: **{verdict}** (highest peak {max(peaks):.1f} MB); largest minus smallest input's peak: "
        f"{peaks[-1] - peaks[0]:+.1f} MB for {max(rss_sizes) / min(rss_sizes):.0f}× the data.",
        "",
    ]

    # ---- multi-core
    mdest = outputs_dir / "extract_multi"
    clear = {"workers=1": _rmtree_fn(mdest), "workers=2": _rmtree_fn(mdest)}

    shard_secs: dict[tuple[str, int], list[float]] = {}

    def multi_bench(paths: list[str], rows: int, workers: int, key: str) -> Callable[[Input], int]:
        def run(_: Input) -> int:
            s = extract(paths, str(mdest), workers=workers, quiet=True, overwrite=True)
            assert s["rows"] == rows and s["workers"] == workers
            # each shard's own time (decode + write + publish; hashing comes after, in the parent's thread)
            manifest = json.loads((mdest / "manifest.json").read_text())
            shard_secs.setdefault((key, workers), []).append(sum(e["seconds"] for e in manifest["shards"].values()))
            return s["records"]

        return run

    mrows = []
    for label, d, ms in multis:
        log(f"multi-shard extraction ({label}), workers=1 vs 2 ...")
        total = Input(
            d,
            sum(m.records for m in ms),
            sum(m.rows for m in ms),
            GEN["dims"],
            GEN["dtype"],
            sum(m.size for m in ms),
            sum(m.size for m in ms),
        )
        paths = [str(m.path) for m in ms]
        mres = run_round_robin(
            total,
            [
                ("workers=1", multi_bench(paths, total.rows, 1, label)),
                ("workers=2", multi_bench(paths, total.rows, 2, label)),
            ],
            repeats,
            log=log,
            setup=clear,
        )
        mrows.append((label, total, mres["workers=1"], mres["workers=2"]))
    shutil.rmtree(mdest, ignore_errors=True)
    md += [
        "## Multi-core extraction",
        "",
        "`extract(shards, tmpdir, workers=N, quiet=True, overwrite=True)` into an empty directory each run "
        "(after an untimed `sync`); "
        "the worker pool's start-up is included. *cores busy* = machine-wide busy CPU seconds (`/proc/stat`, all "
        "processes, so other jobs count too) per wall second, over all runs. *Σ shard s* = the sum of the "
        "shards' own times from the manifest (decode + write + publish; the `.npy` is hashed by a thread "
        "while it is written when its rows can be predicted, as here), median. The last input (one record per "
        "shard) shows the fixed cost of starting the worker pool.",
        "",
        "| input | MB | workers=1 s (min-max) | MB/s | cores busy | Σ shard s | workers=2 s (min-max) | MB/s | "
        "cores busy | Σ shard s | speedup |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, total, w1, w2 in mrows:
        sh1 = statistics.median(shard_secs[(label, 1)])
        sh2 = statistics.median(shard_secs[(label, 2)])
        md.append(
            f"| {label} | {total.mb:.1f} | {w1.median:.3f} ({w1.spread}) | {w1.mb_s:,.0f} | {w1.cores:.2f} | "
            f"{sh1:.2f} | {w2.median:.3f} ({w2.spread}) | {w2.mb_s:,.0f} | {w2.cores:.2f} | {sh2:.2f} | "
            f"**{w1.median / w2.median:.2f}×** |"
        )
    label, total, w1, w2 = mrows[-1]
    md += ["", f"Worker-pool start-up: ≈ {w2.median - w1.median:.2f} s (workers=2 minus workers=1 on {label}).", ""]

    # ---- footprint
    if args.footprint:
        log("footprint: fresh venv + pip install ...")
        fp = footprint(work, files[min(sizes)].path, log=log)
        md += [
            "## Footprint",
            "",
            "A fresh venv in the workdir, `pip install <copy of the project>` (non-editable, runtime dependencies "
            'only). Cold start: wall time of `python -c "import tfrecord_numpy; '
            'next(iter(tfrecord_numpy.read_records(FILE)))"` in the venv, median of '
            f"{fp['runs']} runs, nothing subtracted.",
            "",
            "| what | value |",
            "|---|---:|",
            f"| site-packages after install | {fp['site_mb']:.1f} MB |",
            f"| of which pip/setuptools (the empty venv) | {fp['pip_setuptools_mb']:.1f} MB |",
            f"| added by tfrecord-numpy and its dependencies | {fp['added_mb']:.1f} MB |",
            f"| pip install time (network, wheel cache warm or not) | {fp['install_s']:.1f} s |",
            f"| cold start: import + first record, wall | {fp['wall_s'] * 1000:.0f} ms |",
            f"| … of which `import tfrecord_numpy` (in-process) | {fp['import_s'] * 1000:.0f} ms |",
            f"| … of which reading the first record (in-process) | {fp['first_record_s'] * 1000:.1f} ms |",
            f"| for scale: `python -c pass`, wall | {fp['bare_python_s'] * 1000:.0f} ms |",
            "",
            "Import time by module (`python -X importtime -c 'import tfrecord_numpy'`, cumulative, median of 3; "
            "nested, so they overlap; a module absent here is not imported): "
            + ", ".join(f"`{k}` {v:.0f} ms" for k, v in fp["importtime_ms"].items())
            + ".",
            "",
            "What each runtime dependency brings in on its own (its dependency closure minus what the other "
            "dependencies also need, so 0 where another dependency pulls it in too; sizes from the distributions' "
            "RECORD files): "
            + ", ".join(f"`{d}` {mb:.1f} MB ({n} distributions)" for d, mb, n in dependency_breakdown(fp["dist_info"]))
            + ".",
            "",
            "Largest entries in site-packages: " + ", ".join(f"{n} {mb:.1f} MB" for mb, n in fp["top"]) + ".",
            "",
            f"Installed distributions ({len(fp['dists'])}): " + ", ".join(f"`{d}`" for d in fp["dists"]) + ".",
            "",
        ]
    else:
        md += ["## Footprint", "", "Not measured in this run (`--footprint`).", ""]

    # ---- profile
    if args.profile:
        inp = files[min(sizes)]
        log(f"profiling (c) and (d) on {inp.label} ...")
        out = np.empty((inp.rows, inp.dims), dtype=inp.dtype)
        out.fill(0)
        p_dec = profile(lambda: bench_decode(inp, out))
        p_dec_t = profile(lambda: bench_decode(inp, out), top=10, sort="tottime")
        del out
        pdest = outputs_dir / "extract_profile"
        p_ext = profile(lambda: extract([str(inp.path)], str(pdest), workers=1, quiet=True, overwrite=True))
        shutil.rmtree(pdest, ignore_errors=True)  # both runs write into an empty directory
        p_ext_t = profile(
            lambda: extract([str(inp.path)], str(pdest), workers=1, quiet=True, overwrite=True), top=10, sort="tottime"
        )
        shutil.rmtree(pdest, ignore_errors=True)
        md += [
            "## Profile",
            "",
            f"cProfile, one run each on {inp.label} (profiling overhead included).",
            "",
            "### (c) decode: top 10 by cumulative time",
            "",
            "```",
            p_dec,
            "```",
            "",
            "### (c) decode: top 10 by own time",
            "",
            "```",
            p_dec_t,
            "```",
            "",
            "### (d) extraction: top 10 by cumulative time",
            "",
            "```",
            p_ext,
            "```",
            "",
            "### (d) extraction: top 10 by own time",
            "",
            "```",
            p_ext_t,
            "```",
            "",
        ]

    md += [f"Load average at end: {loadavg()}.", ""]
    md[summary_at:summary_at] = summary_table(
        files, all_results, gz, gres, rss_inputs, rss, mrows, fp if args.footprint else None
    )
    text = "\n".join(md)
    print(text)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(text)
    log(f"wrote {out_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
