"""Concurrent range requests in :class:`~tfrecord_numpy.remote.RangedInput`, against fake-gcs-server.

What is checked: at every concurrency the bytes come out exact and in order;
faults injected into requests that are in flight together (503s, bodies cut
short or truncated, dropped connections) are resumed at the exact byte, with
no byte fetched twice or lost; a block that keeps failing raises, in order,
after every byte before it; no more than ``concurrency + 1`` blocks are ever
held (counted, not timed); the requests really overlap on the wire (counted
in a proxy); and close() cancels requests in flight instead of waiting for
them.  Nothing here asserts on elapsed time: clocks only bound waits.
"""

from __future__ import annotations

import gzip
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from conftest import A2O_SHARDS
from gcs_emulator import HOST, FaultProxy, _ProxyHandler, fast_gcsfs_backoff, gcs_bucket, gcs_emulator  # noqa: F401
from tfrecord_numpy import read_records
from tfrecord_numpy.framing import RecordScanner
from tfrecord_numpy.reader import iter_record_views
from tfrecord_numpy.remote import RangedInput, RemoteReadError, open_input, read_concurrency

BLOCK = 16 << 10  # ~70 blocks per object below
SAFETY = 60.0  # seconds: a net against a hang, never a speed limit
CONCURRENCIES = [1, 2, 4, 8]


def _data(n: int = 70 * BLOCK + 1234, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


@pytest.fixture
def obj(gcs_emulator, gcs_bucket) -> tuple[str, bytes]:
    """A random object of many blocks (not a whole number of them): (URL, content)."""
    data = _data()
    gcs_emulator.upload(gcs_bucket, "obj", data)
    return f"gs://{gcs_bucket}/obj", data


def _wait_for(cond: Any, what: str) -> None:
    deadline = time.monotonic() + SAFETY
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting after {SAFETY} s for {what}")
        time.sleep(0.005)


# --------------------------------------------------------------------------- proxies


def _range_start(header: str) -> int | None:
    m = re.match(r"bytes=(\d+)-", header or "")
    return int(m.group(1)) if m else None


class _CountingHandler(_ProxyHandler):
    """The fault proxy's handler, telling the proxy when a media download starts and ends."""

    def _counted(self) -> None:
        proxy = self.server.proxy  # type: ignore[attr-defined]
        media = self.command == "GET" and "alt=media" in self.path
        if media:
            proxy.enter(self.headers.get("Range", ""))
        try:
            self._handle()
        finally:
            if media:
                proxy.leave()

    do_GET = _counted


class WireProxy(FaultProxy):
    """A pass-through proxy that counts media downloads in flight at once.

    ``gate``: the first downloads are held until ``gate`` of them are in
    flight together (bounded by SAFETY), so overlap is proven by a count, not
    hoped for by timing.  ``stall_from``: downloads of ranges that start at
    or after this byte are held until :meth:`release` (bounded by SAFETY).
    """

    def __init__(self, upstream: str, *, gate: int = 0, stall_from: int | None = None) -> None:
        super().__init__(upstream, mode="503", every=10**9, burst=0, max_faults=0)
        self.server.RequestHandlerClass = _CountingHandler
        self.gate = gate
        self.stall_from = stall_from
        self.inflight = 0
        self.max_inflight = 0
        self.stalled = 0
        self.gate_timed_out = False
        self._cond = threading.Condition()
        self._released = threading.Event()

    def enter(self, range_header: str) -> None:
        with self._cond:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            self._cond.notify_all()
            if self.gate and not self._cond.wait_for(lambda: self.max_inflight >= self.gate, timeout=SAFETY):
                self.gate_timed_out = True
            start = _range_start(range_header)
            stall = self.stall_from is not None and start is not None and start >= self.stall_from
            if stall:
                self.stalled += 1
        if stall:
            self._released.wait(SAFETY * 2)

    def leave(self) -> None:
        with self._cond:
            self.inflight -= 1

    def release(self) -> None:
        self._released.set()

    def stop(self) -> None:
        self.release()
        super().stop()


class BlockFaultProxy(FaultProxy):
    """Faults the requests whose range starts at one of ``starts``, ``burst`` times each.

    Counting per start offset keeps the schedule deterministic however the
    concurrent requests interleave: a retry from the same byte meets the
    next fault of its burst, a resumed request (later start) passes.
    """

    def __init__(self, upstream: str, *, mode: str, starts: list[int], burst: int | None) -> None:
        super().__init__(upstream, mode=mode, every=1, burst=None)
        self.starts = set(starts)
        self.block_burst = burst
        self.per_start: dict[int, int] = {}

    def decide(self, method: str, path: str, range_header: str) -> str | None:
        if method != "GET" or "alt=media" not in path:
            return None
        start = _range_start(range_header)
        with self._lock:
            self.media_requests += 1
            if start not in self.starts:
                return None
            done = self.per_start.get(start, 0)
            if self.block_burst is not None and done >= self.block_burst:
                return None
            self.per_start[start] = done + 1
            self.faults += 1
            self.fault_log.append((self.mode, range_header))
            return self.mode


@pytest.fixture
def proxies(gcs_emulator) -> Iterator[list[FaultProxy]]:
    """Proxies a test starts (append them); each one is stopped after the test."""
    made: list[FaultProxy] = []
    try:
        yield made
    finally:
        for proxy in made:
            proxy.stop()


def _opts(proxy: FaultProxy) -> dict[str, Any]:
    assert proxy.url.startswith(f"http://{HOST}:")  # loopback only
    return proxy.storage_options


@pytest.fixture
def cat_log(monkeypatch) -> list[tuple[int, int, int]]:
    """Every range request that returned: (start, end asked, bytes received)."""
    log: list[tuple[int, int, int]] = []
    lock = threading.Lock()
    real = RangedInput._cat

    def logged(self: RangedInput, start: int, end: int) -> Any:
        data = real(self, start, end)
        with lock:
            log.append((start, end, len(data)))
        return data

    monkeypatch.setattr(RangedInput, "_cat", logged)
    return log


def assert_each_byte_once(log: list[tuple[int, int, int]], size: int) -> None:
    """The bytes received tile [0, size): none fetched twice, none skipped."""
    pieces = sorted((start, start + got) for start, _, got in log if got)
    pos = 0
    for start, end in pieces:
        assert start == pos, f"bytes {min(start, pos)}-{max(start, pos)} {'fetched twice' if start < pos else 'lost'}"
        pos = end
    assert pos == size


# --------------------------------------------------------------------------- settings


def test_read_concurrency_argument_then_environment_then_module_default(monkeypatch):
    import tfrecord_numpy.remote as remote

    monkeypatch.delenv("TFRECORD_NUMPY_READ_CONCURRENCY", raising=False)
    assert read_concurrency() == remote.DEFAULT_READ_CONCURRENCY
    monkeypatch.setattr(remote, "DEFAULT_READ_CONCURRENCY", 3)
    assert read_concurrency() == 3
    monkeypatch.setenv("TFRECORD_NUMPY_READ_CONCURRENCY", "6")
    assert read_concurrency() == 6
    assert read_concurrency(2) == 2
    for bad in ("0", "-2", "four", "2.5"):
        monkeypatch.setenv("TFRECORD_NUMPY_READ_CONCURRENCY", bad)
        with pytest.raises(ValueError, match="TFRECORD_NUMPY_READ_CONCURRENCY"):
            read_concurrency()
    for bad_arg in (0, -1, True):
        with pytest.raises(ValueError, match="concurrency"):
            read_concurrency(bad_arg)


def test_open_input_takes_the_environment_default(gcs_emulator, obj, monkeypatch):
    url, data = obj
    opts = gcs_emulator.storage_options
    monkeypatch.setenv("TFRECORD_NUMPY_READ_CONCURRENCY", "3")
    with open_input(url, storage_options=opts, block_size=BLOCK) as f:
        assert f.concurrency == 3
        assert f.read() == data
    with open_input(url, storage_options=opts, block_size=BLOCK, concurrency=5) as f:
        assert f.concurrency == 5


def test_open_source_reads_remote_objects_in_16_mib_ranges(gcs_emulator, obj):
    """The job's reads of a bucket go by remote.DEFAULT_BLOCK_SIZE (16 MiB: 0.91 of a
    40 ms / 40 MB/s connection instead of 0.84 for 8 MiB), unless a size is asked."""
    from tfrecord_numpy.remote import DEFAULT_BLOCK_SIZE, RangedInput
    from tfrecord_numpy.storage import open_source

    url, data = obj
    assert DEFAULT_BLOCK_SIZE == 16 << 20
    opened = open_source(url, compression=None, storage_options=gcs_emulator.storage_options)
    try:
        assert isinstance(opened.raw, RangedInput) and opened.raw._block_size == DEFAULT_BLOCK_SIZE
        assert opened.stream.read() == data
    finally:
        opened.close()
    asked = open_source(url, compression=None, storage_options=gcs_emulator.storage_options, block_size=BLOCK)
    try:
        assert asked.raw._block_size == BLOCK
    finally:
        asked.close()


# --------------------------------------------------------------------------- exact bytes


@pytest.mark.parametrize("concurrency", CONCURRENCIES)
def test_byte_exact_at_each_concurrency(gcs_emulator, obj, cat_log, concurrency):
    url, data = obj
    with open_input(url, storage_options=gcs_emulator.storage_options, block_size=BLOCK, concurrency=concurrency) as f:
        assert f.concurrency == concurrency
        # odd-sized reads straddle block boundaries; then the rest in one go
        got = bytearray()
        for n in (1, 7, BLOCK - 3, BLOCK + 5, 3 * BLOCK + 11):
            got += f.read(n)
        assert f.peek(5) == data[len(got) : len(got) + 5]
        got += f.read()
        assert f.read() == b"" and f.read(10) == b""
        assert f.tell() == len(data)
        assert f.attempts_failed == 0
    assert bytes(got) == data
    assert_each_byte_once(cat_log, len(data))
    assert len(cat_log) == -(-len(data) // BLOCK)  # one request per block


@pytest.mark.parametrize("concurrency", [2, 8])
def test_records_of_a_shard_at_concurrency(gcs_emulator, gcs_bucket, concurrency):
    shard = A2O_SHARDS[0]
    gcs_emulator.upload(gcs_bucket, shard.name, shard.read_bytes())
    url = f"gs://{gcs_bucket}/{shard.name}"
    opts = gcs_emulator.storage_options
    with open_input(url, storage_options=opts, block_size=BLOCK, concurrency=concurrency) as f:
        scanner = RecordScanner(path=url)
        got = [bytes(v) for _, _, v in iter_record_views(f, scanner, chunk_bytes=1 << 20)]
    assert got == list(read_records(shard))


@pytest.mark.parametrize("concurrency", [2, 8])
def test_transcoded_object_at_concurrency(gcs_emulator, gcs_bucket, proxies, fast_gcsfs_backoff, concurrency):
    """Stored gzip bytes fetched by concurrent ranges (some cut short) and inflated in order."""
    content = _data(40 * BLOCK, seed=1)
    gz = gzip.compress(content, compresslevel=1)
    gcs_emulator.upload(gcs_bucket, "tc", gz, content_encoding="gzip")
    proxy = BlockFaultProxy(gcs_emulator.url, mode="short", starts=[BLOCK, 3 * BLOCK], burst=1).start()
    proxies.append(proxy)
    url = f"gs://{gcs_bucket}/tc"
    with open_input(url, storage_options=_opts(proxy), block_size=BLOCK, concurrency=concurrency) as f:
        assert getattr(f, "transcoded", False)
        assert f.read() == content
        assert f.attempts_failed == 2
    assert proxy.faults == 2


# --------------------------------------------------------------------------- faults


# bursts that outlast gcsfs's own retries on one request (see tests/test_gcs.py)
# and so reach the reader's exact resume; "short" is never noticed below it
FAULT_BURSTS = [("503", 8), ("truncate", 7), ("drop", 13), ("short", 1)]


@pytest.mark.parametrize("concurrency", [2, 4, 8])
@pytest.mark.parametrize("mode, burst", FAULT_BURSTS)
def test_faults_in_concurrent_requests_are_byte_exact(
    gcs_emulator, obj, proxies, cat_log, fast_gcsfs_backoff, mode, burst, concurrency
):
    url, data = obj
    # faulted blocks inside one window (in flight together) and in later ones
    starts = [0, BLOCK, 2 * BLOCK, 9 * BLOCK, 40 * BLOCK]
    proxy = BlockFaultProxy(gcs_emulator.url, mode=mode, starts=starts, burst=burst).start()
    proxies.append(proxy)
    opts = _opts(proxy)
    with open_input(url, storage_options=opts, block_size=BLOCK, retry_delay=0.01, concurrency=concurrency) as f:
        got = f.read()
        failed = f.attempts_failed
    assert got == data
    assert proxy.faults == burst * len(starts)  # every fault was injected
    assert failed >= len(starts)  # and each burst reached the reader, which resumed
    assert_each_byte_once(cat_log, len(data))


@pytest.mark.parametrize("concurrency", [2, 4])
def test_a_block_that_keeps_failing_raises_in_order(gcs_emulator, obj, proxies, fast_gcsfs_backoff, concurrency):
    """Every byte before the bad block arrives first; then the error, naming URL and offset, every time."""
    url, data = obj
    bad = 5 * BLOCK
    proxy = BlockFaultProxy(gcs_emulator.url, mode="503", starts=[bad], burst=None).start()
    proxies.append(proxy)
    opts = _opts(proxy)
    f = open_input(url, storage_options=opts, block_size=BLOCK, retries=1, retry_delay=0.01, concurrency=concurrency)
    got = bytearray()
    with pytest.raises(RemoteReadError) as info:
        while chunk := f.read(1000):
            got += chunk
    assert bytes(got) == data[:bad]
    err = info.value
    assert err.path == url and err.offset == bad
    assert url in str(err) and str(bad) in str(err) and "2 failed attempts" in str(err)
    with pytest.raises(RemoteReadError):  # reading on never skips the block
        f.read(1)
    assert f.tell() == bad
    f.close()


# --------------------------------------------------------------------------- memory and overlap


@pytest.mark.parametrize("concurrency", [1, 2, 4])
def test_at_most_concurrency_plus_one_blocks_are_held(gcs_emulator, obj, monkeypatch, concurrency):
    """A block counts from the start of its fetch until the reader drops it (a counter, not a clock)."""
    url, data = obj
    counts = {"held": 0, "max": 0}
    lock = threading.Lock()

    class Tracked(bytes):
        def __del__(self) -> None:
            with lock:
                counts["held"] -= 1

    real = RangedInput._fetch

    def tracked_fetch(self: RangedInput, start: int, end: int) -> bytes:
        with lock:
            counts["held"] += 1
            counts["max"] = max(counts["max"], counts["held"])
        try:
            return Tracked(real(self, start, end))
        except BaseException:
            with lock:
                counts["held"] -= 1
            raise

    monkeypatch.setattr(RangedInput, "_fetch", tracked_fetch)
    f = open_input(url, storage_options=gcs_emulator.storage_options, block_size=BLOCK, concurrency=concurrency)
    got = bytearray()
    while True:
        # a slow consumer: every block it may hold ahead is fetched before it reads on
        _wait_for(lambda: all(fut.done() for fut in list(f._window)), "the window to fill")
        chunk = f.read(BLOCK)
        if not chunk:
            break
        got += chunk
    f.close()
    assert bytes(got) == data
    assert counts["max"] == concurrency + 1  # reached, never passed
    _wait_for(lambda: counts["held"] == 0, "every block to be dropped")


@pytest.mark.parametrize("concurrency", [2, 4, 8])
def test_requests_overlap_on_the_wire(gcs_emulator, obj, proxies, concurrency):
    """The proxy sees ``concurrency`` downloads in flight at once, and never more."""
    url, data = obj
    proxy = WireProxy(gcs_emulator.url, gate=concurrency).start()
    proxies.append(proxy)
    with open_input(url, storage_options=_opts(proxy), block_size=BLOCK, concurrency=concurrency) as f:
        assert f.read() == data
    assert not proxy.gate_timed_out
    assert proxy.max_inflight == concurrency


def test_concurrency_one_keeps_one_request_in_flight(gcs_emulator, obj, proxies):
    url, data = obj
    proxy = WireProxy(gcs_emulator.url).start()
    proxies.append(proxy)
    with open_input(url, storage_options=_opts(proxy), block_size=BLOCK, concurrency=1) as f:
        assert f.read() == data
    assert proxy.max_inflight == 1


# --------------------------------------------------------------------------- close


@pytest.mark.parametrize("concurrency", [2, 4])
def test_close_cancels_requests_in_flight(gcs_emulator, obj, proxies, concurrency):
    """With downloads stalled in the server, close() returns and the fetch threads end.

    The request timeout is set far beyond the safety net, so only
    cancellation (not a timeout) can end the stalled requests in time.
    """
    from fsspec.core import url_to_fs

    url, data = obj
    proxy = WireProxy(gcs_emulator.url, stall_from=BLOCK).start()  # all but the first block
    proxies.append(proxy)
    fs, path = url_to_fs(url, **_opts(proxy))
    f = RangedInput(
        fs, path, url=url, size=len(data), block_size=BLOCK, concurrency=concurrency, request_timeout=10 * SAFETY
    )
    assert f.read(BLOCK) == data[:BLOCK]
    _wait_for(lambda: proxy.stalled >= concurrency, "the next blocks to be in flight")
    threads = list(f._pool._threads)
    closer = threading.Thread(target=f.close)
    closer.start()
    closer.join(SAFETY)
    assert not closer.is_alive(), "close() hung"
    for t in threads:
        t.join(SAFETY)
        assert not t.is_alive(), "a fetch thread outlived close()"
    assert f.closed
    with pytest.raises(ValueError):
        f.read(1)
