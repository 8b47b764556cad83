"""A loopback TCP proxy that makes a local server look like a distant cloud store.

    python benchmarks/shaping_proxy.py --upstream 127.0.0.1:PORT --latency-ms 40 --rate-mb 40

Listens on 127.0.0.1 only and forwards every connection to an upstream that
must itself be on the loopback interface (fake-gcs-server, here).  Two
things are added, per client connection, to what the server sends back:

* **first-byte latency**: the first byte of each response leaves no earlier
  than ``latency`` after the request that asked for it arrived (a round trip
  plus the store's time to first byte); one request at a time per connection,
  as HTTP/1.1 clients do;
* **bandwidth cap**: the bytes of a connection are paced to ``rate`` bytes/s
  (the per-stream limit of a long fat pipe or of the store), with no credit
  saved up while idle.

Connections are independent, so N connections in parallel get N x ``rate``:
what a reader with several range requests in flight can gain over one.
Requests (client to server) are not delayed or paced.  It runs until
SIGTERM/SIGINT or until its stdin closes (so it never outlives the benchmark
that started it), then prints one JSON line of statistics.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

HOST = "127.0.0.1"
CHUNK = 128 << 10  # bytes sent per paced write: 3.3 ms at 40 MB/s


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Stats:
    connections: int = 0
    max_open: int = 0
    requests: int = 0
    bytes_down: int = 0
    open: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict[str, int]:
        with self.lock:
            return {
                "connections": self.connections,
                "max_open_connections": self.max_open,
                "requests": self.requests,
                "bytes_down": self.bytes_down,
            }


class _Link:
    """One client connection and its upstream connection, shaped downstream."""

    def __init__(self, proxy: ShapingProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = socket.create_connection(proxy.upstream, timeout=30)
        self.upstream.settimeout(None)
        for s in (self.client, self.upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle/delayed-ACK stalls
        self.request_at: float | None = None  # when the request awaiting its first response byte arrived
        self.lock = threading.Lock()

    def run(self) -> None:
        up = threading.Thread(target=self._requests, daemon=True)
        up.start()
        try:
            self._responses()
        finally:
            self._close()
            up.join(timeout=5)

    def _close(self) -> None:
        for s in (self.client, self.upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _requests(self) -> None:
        """Client -> server, unshaped; note when each request starts."""
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        try:
            while True:
                n = self.client.recv_into(buf)
                if not n:
                    break
                with self.lock:
                    if self.request_at is None:
                        self.request_at = time.monotonic()
                        with self.proxy.stats.lock:
                            self.proxy.stats.requests += 1
                self.upstream.sendall(view[:n])
        except OSError:
            pass
        finally:
            try:
                self.upstream.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _responses(self) -> None:
        """Server -> client: held until the first-byte time, then paced to ``rate``."""
        latency, rate = self.proxy.latency, self.proxy.rate
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        free_at = 0.0  # when the paced link can take the next byte
        try:
            while True:
                n = self.upstream.recv_into(buf)
                if not n:
                    break
                with self.lock:
                    asked, self.request_at = self.request_at, None
                now = time.monotonic()
                if asked is not None and latency > 0 and asked + latency > now:
                    time.sleep(asked + latency - now)
                    now = time.monotonic()
                free_at = max(free_at, now)  # idle time earns no burst
                if rate > 0 and free_at > now:
                    time.sleep(free_at - now)
                self.client.sendall(view[:n])
                if rate > 0:
                    free_at += n / rate
                with self.proxy.stats.lock:
                    self.proxy.stats.bytes_down += n
        except OSError:
            pass


class ShapingProxy:
    """The listener: one :class:`_Link` (two threads) per accepted connection."""

    def __init__(self, upstream: tuple[str, int], *, latency: float, rate: float, port: int = 0) -> None:
        if not _loopback(upstream[0]):
            raise ValueError(f"upstream must be on the loopback interface, not {upstream[0]!r}")
        self.upstream = upstream
        self.latency = max(0.0, latency)
        self.rate = max(0.0, rate)
        self.stats = Stats()
        self.sock = socket.create_server((HOST, port), backlog=64)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()

    def serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            client.settimeout(None)
            with self.stats.lock:
                self.stats.connections += 1
                self.stats.open += 1
                self.stats.max_open = max(self.stats.max_open, self.stats.open)
            threading.Thread(target=self._serve_link, args=(client,), daemon=True).start()
        self.sock.close()

    def _serve_link(self, client: socket.socket) -> None:
        try:
            _Link(self, client).run()
        except OSError:
            client.close()
        finally:
            with self.stats.lock:
                self.stats.open -= 1

    def stop(self) -> None:
        self._stop.set()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the server (loopback only)")
    ap.add_argument("--port", type=int, default=0, help="port to listen on, on 127.0.0.1 (0: any free one)")
    ap.add_argument("--latency-ms", type=float, default=40.0, help="first-byte latency per request")
    ap.add_argument("--rate-mb", type=float, default=40.0, help="bandwidth cap per connection, MB/s (10^6 B); 0: none")
    args = ap.parse_args()
    host, _, port = args.upstream.rpartition(":")
    proxy = ShapingProxy((host, int(port)), latency=args.latency_ms / 1000, rate=args.rate_mb * 1e6, port=args.port)

    def stop(*_: object) -> None:
        proxy.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def watch_stdin() -> None:  # the parent went away: so do we
        while sys.stdin.buffer.read(1 << 16):
            pass
        proxy.stop()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"listening {HOST}:{proxy.port}", flush=True)
    proxy.serve()
    print(json.dumps(proxy.stats.as_dict()), flush=True)


if __name__ == "__main__":
    main()
