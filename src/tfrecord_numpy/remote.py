"""Reading objects from remote stores (``gs://``, ``s3://``, ``https://``...) robustly.

fsspec's own remote file objects fetch a block only when it is asked for, so
the network and the decoder take turns; they retry a failed request but do
not notice a response body that is shorter than the range asked for; and
gcsfs reads an object stored with ``Content-Encoding: gzip`` (GCS
"decompressive transcoding") only up to its *compressed* size, silently
dropping the tail.  :func:`open_input` fixes all three, through the generic
fsspec calls ``info`` and ``cat_file(path, start, end)``:

* **Concurrent prefetch.**  Blocks of ``block_size`` bytes are fetched in
  background threads, up to ``concurrency`` range requests at once, and
  handed out strictly in order while the current one is decoded.  One
  connection to a cloud store is held to its own bandwidth (TCP window over
  round trip, the store's per-stream limit); several in flight fill the link.
* **Exact resume.**  Every block is checked against the range requested and
  the object's size.  A request that fails (5xx, reset or dropped
  connection, timeout) or returns fewer bytes than asked is retried from the
  exact byte it stopped at; what did arrive is kept, so no byte is repeated
  or skipped.  After ``retries`` failed attempts at one block,
  :class:`RemoteReadError` names the URL and the byte offset; it is raised
  when the reader reaches that block, after every byte before it.  On GCS the
  object's generation is pinned, so a resumed read can never mix two
  versions of an object that is overwritten meanwhile.
* **Transcoded objects.**  When the object's info says its content encoding
  is gzip, the *stored* gzip bytes are fetched by range (with the HTTP
  client's automatic decompression turned off, so ranges are exact and
  resumable against the known stored size) and inflated here; the stream
  returned holds the object's true content.

Choosing ``block_size``
-----------------------
Each request costs a round trip (10-50 ms to a cloud store from outside its
region, ~1 ms inside), so a block must be large enough that transfer time
dominates: at 40 MB/s per connection the default 16 MiB block takes ~420 ms,
so a 40 ms round trip costs ~9 %; from inside the region (1-2 GB/s per
stream and ~1 ms round trips) it keeps each request well past TCP slow-start.
A connection therefore carries at most ``B / (B + rtt x rate)`` of its
bandwidth whatever the concurrency: 0.91 for 16 MiB at 40 ms and 40 MB/s,
only 0.84 for 8 MiB, which misses 0.8 of the link once the first requests'
ramp and the metadata round trips are counted (``benchmarks/cloud_read.py``).
A failed request is retried for the part of the block not yet received, so
a larger block does not make faults costlier.  Smaller blocks (256 KiB-1
MiB) only help tests that want many requests per object.

Choosing ``concurrency``
------------------------
Throughput is about ``concurrency`` times one connection's, until the link
or the decoder is the limit; memory is what it costs.  A reader holds at most
``concurrency + 1`` blocks (those in flight or ready, and the one being
consumed), so the default 4 x 16 MiB means ~80 MiB per open source, times the
number of worker processes.  (An HTTP server that ignores ``Range`` sends the
whole object at once; it is then kept, not fetched again per block.)  The
default is :data:`DEFAULT_READ_CONCURRENCY`, or the environment variable
``TFRECORD_NUMPY_READ_CONCURRENCY`` when set (a positive integer): the
variable reaches worker processes too, so a command-line option can set it
once for a whole job.  ``concurrency=1`` is one request ahead of the reader.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import os
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .compression import GZIP_MAGIC, DecompressingReader
from .errors import TFRecordError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

#: bytes per range request (see *Choosing block_size* above)
DEFAULT_BLOCK_SIZE = 16 << 20
#: range requests in flight per open object, unless ``concurrency=`` or the variable below says otherwise
DEFAULT_READ_CONCURRENCY = 4
#: environment variable that overrides :data:`DEFAULT_READ_CONCURRENCY` (crosses into worker processes)
READ_CONCURRENCY_ENV = "TFRECORD_NUMPY_READ_CONCURRENCY"
DEFAULT_RETRIES = 6
DEFAULT_RETRY_DELAY = 0.5
#: seconds one range request may take before it counts as a failed (retried) attempt
DEFAULT_REQUEST_TIMEOUT = 30.0
#: seconds of failed attempts on one block before giving up, however the retries go
DEFAULT_RETRY_SECONDS = 180.0
MAX_RETRY_DELAY = 16.0
# short responses that still brought bytes do not use up ``retries``, up to this many per block
_MAX_PARTIAL_RESPONSES = 64

# HTTP statuses worth retrying: timeouts, throttling and server errors
_RETRY_STATUS = frozenset([408, 425, 429, *range(500, 600)])
# OSError subclasses that mean "ask again", not "this will never work"
_PERMANENT_OSERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


class RemoteReadError(TFRecordError, OSError):
    """A remote object could not be read in full, after retrying.

    Both a :class:`~tfrecord_numpy.errors.TFRecordError` (so it carries the
    URL as ``path`` and the byte ``offset`` where reading stopped, and callers
    that catch the library's errors catch it) and an :class:`OSError` (it is
    an I/O failure, not bad data).
    """

    def __reduce__(self) -> tuple[Callable[..., RemoteReadError], tuple[object, ...]]:
        # TFRecordError's pickling cannot build an OSError subclass
        return (_rebuild_remote, (type(self), self.reason, self.path, self.index, self.offset, dict(self.__dict__)))


def _rebuild_remote(
    cls: type[RemoteReadError],
    reason: str,
    path: str | None,
    index: int | None,
    offset: int | None,
    state: dict[str, Any],
) -> RemoteReadError:
    err = cls(reason, path=path, index=index, offset=offset)
    err.__dict__.update(state)
    return err


class _ShortBody(Exception):
    """A response held fewer bytes than the range asked for (internal, retried)."""


def should_use_remote(url: Any) -> bool:
    """Whether ``url`` names a remote object that :func:`open_input` should read.

    True for a plain ``protocol://`` URL whose fsspec filesystem is neither
    the local disk nor in-process memory.  Chained URLs (``simplecache::gs://``)
    are left to fsspec: the chain already decides how bytes are fetched.
    """
    if not isinstance(url, (str, os.PathLike)):
        return False
    url = os.fspath(url)
    if "::" in url:
        return False
    from fsspec.core import split_protocol

    protocol, _ = split_protocol(url)
    if not protocol:
        return False
    import fsspec
    from fsspec.implementations.local import LocalFileSystem
    from fsspec.implementations.memory import MemoryFileSystem

    try:
        cls = fsspec.get_filesystem_class(protocol)
    except (ValueError, ImportError):
        return False
    return not issubclass(cls, (LocalFileSystem, MemoryFileSystem))


def is_transient(exc: BaseException) -> bool:
    """Whether a failed request is worth repeating (network trouble, 5xx, throttling).

    Works on the exceptions of any fsspec backend without importing them:
    HTTP status codes are read from ``code``/``status`` attributes, and the
    aiohttp / requests / botocore client-error families are recognised by
    their class names.
    """
    if isinstance(exc, _ShortBody):
        return True
    if isinstance(exc, _PERMANENT_OSERRORS):
        return False
    for attr in ("status", "code", "status_code"):
        value = getattr(exc, attr, None)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int) and 100 <= value < 600:
            return value in _RETRY_STATUS
    if isinstance(exc, (ConnectionError, TimeoutError, EOFError)):
        return True
    for klass in type(exc).__mro__:
        module = klass.__module__.split(".", 1)[0]
        if module == "aiohttp" and klass.__name__ == "ClientError":
            return True
        if module == "requests" and klass.__name__ == "RequestException":
            return True
        if module in ("botocore", "urllib3") and klass.__name__ in (
            "ConnectionError",
            "HTTPClientError",
            "ReadTimeoutError",
            "ProtocolError",
            "IncompleteReadError",
            "ResponseStreamingError",
        ):
            return True
        if module == "fsspec" and klass.__name__ == "FSTimeoutError":
            return True
    if isinstance(exc, OSError) and exc.errno is not None:
        return True  # a socket-level failure (ECONNRESET, EPIPE, ...)
    return False


def _content_encoding(info: dict[str, Any]) -> str | None:
    """The object's stored content encoding, whatever the backend calls the key."""
    for key, value in info.items():
        if isinstance(key, str) and key.replace("_", "").replace("-", "").lower() == "contentencoding":
            if isinstance(value, str) and value.strip():
                return value.strip().lower()
    return None


def _is_gcs(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return any(p in ("gs", "gcs") for p in protocol)


def read_concurrency(concurrency: int | None = None) -> int:
    """The number of range requests to keep in flight: ``concurrency`` if given, else
    ``$TFRECORD_NUMPY_READ_CONCURRENCY`` if set, else :data:`DEFAULT_READ_CONCURRENCY`.

    Read at every call (not at import), so a CLI option can set the variable
    before work starts and every worker process sees it.
    """
    source: str = "concurrency"
    value: object = concurrency
    if value is None:
        env = os.environ.get(READ_CONCURRENCY_ENV, "").strip()
        source, value = (READ_CONCURRENCY_ENV, env) if env else ("DEFAULT_READ_CONCURRENCY", DEFAULT_READ_CONCURRENCY)
    n = 0
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str) and value.strip().isdigit():
        n = int(value)
    if n < 1:
        raise ValueError(f"{source} must be a positive integer, not {value!r}")
    return n


def _may_ignore_range(fs: Any) -> bool:
    """Whether the backend may be a plain web server that answers a range with the whole object.

    Object stores (GCS, S3, Azure...) honour ``Range`` by contract; an
    ``http(s)`` server need not, and N concurrent first requests would then
    each download the whole object.
    """
    protocol = getattr(fs, "protocol", ())
    protocols = protocol if isinstance(protocol, (tuple, list)) else (protocol,)
    return any(p in ("http", "https") for p in protocols)


async def _within(aw: Awaitable[Any], timeout: float | None) -> Any:
    """``aw`` bounded by ``timeout`` seconds (None: unbounded), run on the filesystem's loop."""
    if timeout:
        return await asyncio.wait_for(aw, timeout)
    return await aw


class RangedInput(io.RawIOBase):
    """A read-only stream of bytes ``[0, size)`` of one object, block by block.

    Not seekable: it exists to be read front to back once, as fast as the
    network allows.  With ``prefetch``, up to ``concurrency`` blocks (default:
    :func:`read_concurrency`) are requested at once on a thread pool and
    handed out in order; without it, each block is fetched in the caller's
    thread when needed.  ``concurrency`` is the number in use;
    ``attempts_failed`` counts the requests that had to be repeated (for
    tests and logs).
    """

    def __init__(
        self,
        fs: Any,
        path: str,
        *,
        url: str,
        size: int,
        block_size: int = DEFAULT_BLOCK_SIZE,
        prefetch: bool = True,
        retries: int = DEFAULT_RETRIES,
        retry_delay: float | None = None,
        fetch_kwargs: dict[str, Any] | None = None,
        request_timeout: float | None = None,
        retry_seconds: float | None = None,
        concurrency: int | None = None,
    ) -> None:
        super().__init__()
        if block_size <= 0:
            raise ValueError(f"block_size must be positive, not {block_size}")
        self._fs = fs
        self._path = path
        self.name = url
        self.size = int(size)
        self._block_size = int(block_size)
        self._retries = max(0, int(retries))
        self._retry_delay = max(0.0, float(DEFAULT_RETRY_DELAY if retry_delay is None else retry_delay))
        self._fetch_kwargs = dict(fetch_kwargs or {})
        self._timeout = DEFAULT_REQUEST_TIMEOUT if request_timeout is None else request_timeout
        self._retry_seconds = DEFAULT_RETRY_SECONDS if retry_seconds is None else retry_seconds
        self.concurrency = read_concurrency(concurrency)
        self._block = memoryview(b"")
        self._block_pos = 0
        self._next_start = 0  # first byte not yet requested
        self._pos = 0  # bytes handed out
        self._lock = threading.Lock()
        self.attempts_failed = 0
        # blocks requested and not yet handed out, in object order; the head is the next one
        self._window: deque[Future[bytes]] = deque()
        self._requests: set[concurrent.futures.Future[Any]] = set()  # async requests in flight, for close()
        self._whole: memoryview | None = None  # the whole object, if a server ignored Range
        # until a first block shows the server honours Range, ask for one at a time
        self._probing = self.concurrency > 1 and _may_ignore_range(fs)
        self._pool = (
            ThreadPoolExecutor(self.concurrency, thread_name_prefix="tfrecord-numpy-prefetch") if prefetch else None
        )
        self._fill()

    # ----------------------------------------------------------------- fetching

    def _fill(self) -> None:
        """Request blocks in the background until ``concurrency`` are in flight or ready."""
        if self._pool is None or self.closed:
            return
        limit = 1 if self._probing else self.concurrency
        while len(self._window) < limit and self._next_start < self.size:
            start, end = self._next_start, min(self._next_start + self._block_size, self.size)
            self._next_start = end
            self._window.append(self._pool.submit(self._fetch, start, end))

    def _cat(self, start: int, end: int) -> Any:
        """One range request, abandoned (and so retried) after ``request_timeout`` seconds."""
        fs = self._fs
        if getattr(fs, "async_impl", False) and getattr(fs, "loop", None) is not None:
            return self._cat_async(fs, start, end)
        return fs.cat_file(self._path, start=start, end=end, **self._fetch_kwargs)

    def _cat_async(self, fs: Any, start: int, end: int) -> Any:
        """``fs._cat_file`` on the filesystem's event loop, cancelled by a timeout or by close()."""
        loop = fs.loop
        if loop.is_closed():
            raise RuntimeError("the filesystem's event loop is closed")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise NotImplementedError("cannot read a remote block from inside the filesystem's own event loop")
        with self._lock:  # registered before close() can look, or not started at all
            if self.closed:
                raise ValueError("I/O operation on closed file")
            coro = _within(fs._cat_file(self._path, start=start, end=end, **self._fetch_kwargs), self._timeout)
            request = asyncio.run_coroutine_threadsafe(coro, loop)
            self._requests.add(request)
        try:
            # the loop enforces the timeout; this wait only guards against a loop that stopped
            return request.result(timeout=self._timeout + 30 if self._timeout else None)
        except (asyncio.TimeoutError, concurrent.futures.TimeoutError) as exc:
            request.cancel()
            from fsspec.exceptions import FSTimeoutError

            raise FSTimeoutError(f"no response within {self._timeout} s") from exc
        finally:
            with self._lock:
                self._requests.discard(request)

    def _pause(self, seconds: float) -> None:
        """Back off between attempts, in naps short enough that close() ends the wait soon."""
        deadline = time.monotonic() + seconds
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    def _fetch(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``, retried from the exact byte each failure stopped at."""
        parts: list[bytes] = []
        pos = start
        failures = 0  # in a row without a byte of progress: bounded by ``retries``
        failed = 0  # all failed requests for this block: bounded too, against a trickle
        last: BaseException | None = None
        first_failure: float | None = None
        while pos < end:
            if self.closed:
                raise ValueError("I/O operation on closed file")
            want = end - pos
            before = pos
            whole = self._whole
            if whole is not None:
                parts.append(bytes(whole[pos:end]))
                break
            try:
                data = self._cat(pos, end)
                if not isinstance(data, (bytes, bytearray, memoryview)):
                    data = bytes(data)
                if len(data) > want:
                    if len(data) == self.size:  # the server ignored Range and sent it all:
                        self._whole = memoryview(data)  # keep it rather than fetch it again per block
                        data = self._whole[pos:end]
                    else:
                        raise RemoteReadError(
                            f"server sent {len(data)} bytes for a {want}-byte range", path=self.name, offset=pos
                        )
                if len(data) < want:
                    if data:
                        parts.append(bytes(data))
                        pos += len(data)
                    raise _ShortBody(f"response ended after {len(data)} of {want} bytes (object size {self.size})")
                parts.append(bytes(data))
                pos += len(data)
            except RemoteReadError:
                raise
            except Exception as exc:
                if self.closed:  # close() cancelled this request: nobody waits for the block
                    raise ValueError("I/O operation on closed file") from exc
                if not is_transient(exc):
                    raise RemoteReadError(
                        f"cannot read remote object at byte {pos}: {type(exc).__name__}: {exc}",
                        path=self.name,
                        offset=pos,
                    ) from exc
                last = exc
                failures = 1 if pos > before else failures + 1
                failed += 1
                with self._lock:
                    self.attempts_failed += 1
                if first_failure is None:
                    first_failure = time.monotonic()
                out_of_time = time.monotonic() - first_failure > self._retry_seconds
                if out_of_time or failures > self._retries or failed > self._retries + _MAX_PARTIAL_RESPONSES:
                    raise RemoteReadError(
                        f"gave up reading remote object at byte offset {pos} after {failed} failed "
                        f"attempts; last error: {type(exc).__name__}: {exc}",
                        path=self.name,
                        offset=pos,
                    ) from last
                delay = min(MAX_RETRY_DELAY, self._retry_delay * 2 ** (failures - 1))
                self._pause(delay * (0.5 + random.random() / 2))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _next_block(self) -> bool:
        """Make the next block current; False at the end of the object."""
        # the consumed block goes first, so that at most ``concurrency + 1`` are held
        self._block = memoryview(b"")
        self._block_pos = 0
        if self._pool is not None:
            if not self._window:
                return False
            # a failed block raises here, in order, and stays at the head: reading on raises again
            try:
                data = self._window[0].result()
            except concurrent.futures.CancelledError:  # close(), from another thread
                raise ValueError("I/O operation on closed file") from None
            if self.closed:
                raise ValueError("I/O operation on closed file")
            self._window.popleft()
            self._probing = False
            self._fill()  # the slot it held goes to the next block
        else:
            if self._next_start >= self.size:
                return False
            start, end = self._next_start, min(self._next_start + self._block_size, self.size)
            data = self._fetch(start, end)
            self._next_start = end  # only once fetched: after an error, reading on retries this block
        self._block = memoryview(data)
        return True

    # ------------------------------------------------------------------ reading

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._pos

    def peek(self, n: int = 1) -> bytes:
        """Up to ``n`` bytes at the current position, without consuming them."""
        if self._block_pos >= len(self._block) and not self._next_block():
            return b""
        return bytes(self._block[self._block_pos : self._block_pos + n])

    def readinto(self, b: WriteableBuffer) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        view = memoryview(b).cast("B")
        if not len(view):
            return 0
        if self._block_pos >= len(self._block) and not self._next_block():
            return 0
        n = min(len(view), len(self._block) - self._block_pos)
        view[:n] = self._block[self._block_pos : self._block_pos + n]
        self._block_pos += n
        self._pos += n
        return n

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if size is None or size < 0:
            chunks = []
            while True:
                if self._block_pos < len(self._block):
                    chunks.append(bytes(self._block[self._block_pos :]))
                    self._pos += len(self._block) - self._block_pos
                    self._block_pos = len(self._block)
                if not self._next_block():
                    return b"".join(chunks)
        buf = bytearray(size)
        n = self.readinto(buf)
        del buf[n:]
        return bytes(buf)

    def close(self) -> None:
        """Stop: queued blocks are dropped, requests in flight cancelled; nothing is waited for.

        Requests on an async filesystem (gcsfs, s3fs, http) are cancelled on
        its event loop at once; a synchronous backend's request in flight ends
        on its own, and its thread then sees the stream closed and stops.
        """
        if self.closed:
            return
        with self._lock:
            super().close()  # from here no new request starts, and none is retried
            requests = list(self._requests)
        self._block = memoryview(b"")
        self._whole = None
        window, self._window = self._window, deque()
        for fut in window:
            fut.cancel()
        for request in requests:
            request.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class DecodedInput(io.RawIOBase):
    """The true content of a gzip-transcoded object: its stored bytes, inflated here.

    ``transcoded`` is True, so a caller that guesses compression from the
    name (``x.tfrecord.gz``) knows the gzip layer the name promises has
    already been removed (``gsutil cp -Z`` style uploads of ``.gz`` files
    hold gzip twice, and the second layer shows in the magic bytes).
    """

    transcoded = True

    def __init__(self, stored: RangedInput, *, url: str) -> None:
        super().__init__()
        self.stored = stored
        self.name = url
        self.size = None  # unknown until the end: metadata only knows the stored size
        self._stream = DecompressingReader(stored, "gzip", name=url)
        self._pos = 0

    @property
    def attempts_failed(self) -> int:
        return self.stored.attempts_failed

    def stored_position(self) -> int:
        """Stored (compressed) bytes consumed: what progress against ``fs.size`` should use."""
        return self.stored.tell()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._pos

    def readinto(self, b: WriteableBuffer) -> int:
        n = self._stream.readinto(b)
        self._pos += n
        return n

    def read(self, size: int | None = -1) -> bytes:
        out = self._stream.read(-1 if size is None else size)
        self._pos += len(out)
        return out

    def close(self) -> None:
        if not self.closed:
            try:
                self._stream.close()
            finally:
                super().close()


def open_input(
    url: str,
    *,
    storage_options: dict[str, Any] | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    prefetch: bool = True,
    retries: int = DEFAULT_RETRIES,
    retry_delay: float | None = None,
    concurrency: int | None = None,
) -> Any:
    """Open a remote object for one front-to-back read, with concurrent prefetch and exact resume.

    Returns a non-seekable binary stream (``read``, ``readinto``, ``tell``,
    ``close``, ``name``): a :class:`RangedInput`, or a :class:`DecodedInput`
    for a gzip-transcoded object; where the backend cannot tell the object's
    size (an HTTP server without ``Content-Length``), fsspec's own streaming
    file.  ``retries`` is how many times one block may fail
    (besides the backend's own retries) before :class:`RemoteReadError`;
    ``retry_delay`` the first back-off in seconds (default
    ``DEFAULT_RETRY_DELAY``), doubled at each failure in a row.
    ``concurrency`` is how many range requests may be in flight at once
    (default :func:`read_concurrency`: ``$TFRECORD_NUMPY_READ_CONCURRENCY``
    or :data:`DEFAULT_READ_CONCURRENCY`); memory is about
    ``(concurrency + 1) * block_size``.  See the module docstring for both.
    """
    from fsspec.core import url_to_fs

    url = os.fspath(url)
    options = dict(storage_options or {})
    fs, path = url_to_fs(url, **options)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise
    except Exception as exc:
        if not is_transient(exc):
            raise
        info = _retry_info(fs, path, url, retries, retry_delay, exc)
    if info.get("type", "file") != "file":
        raise IsADirectoryError(f"{url!r} is not a file")
    if info.get("size") is None:  # the server does not say (HTTP without Content-Length): stream
        return fs.open(path, "rb", block_size=block_size)
    size = int(info["size"])
    fetch_kwargs: dict[str, Any] = {}
    if _is_gcs(fs) and info.get("generation"):
        fetch_kwargs["generation"] = info["generation"]
    encoding = _content_encoding(info)
    kwargs: dict[str, Any] = dict(
        block_size=block_size,
        prefetch=prefetch,
        retries=retries,
        retry_delay=retry_delay,
        concurrency=read_concurrency(concurrency),
    )
    if encoding != "gzip":
        return RangedInput(fs, path, url=url, size=size, fetch_kwargs=fetch_kwargs, **kwargs)
    # Decompressive transcoding: ``size`` is the stored (gzip) size.  Ask for
    # the stored bytes -- HTTP clients send "Accept-Encoding: gzip", which
    # makes GCS serve them as they are -- and keep the client from inflating
    # them, so byte ranges are exact and resumable.
    raw_fs = _raw_fs(fs, url, options)
    stored = RangedInput(raw_fs, path, url=url, size=size, fetch_kwargs=fetch_kwargs, **kwargs)
    try:
        if stored.peek(2) != GZIP_MAGIC:
            return stored  # labelled gzip but stored plain: the stored bytes are the content
    except BaseException:
        stored.close()
        raise
    return DecodedInput(stored, url=url)


def _raw_fs(fs: Any, url: str, options: dict[str, Any]) -> Any:
    """A filesystem like ``fs`` whose HTTP client hands over bodies undecoded.

    gcsfs's aiohttp session inflates a ``Content-Encoding: gzip`` body by
    itself, which breaks every range but the first; a second instance with
    ``auto_decompress=False`` sees the stored bytes.  Other backends (s3fs:
    S3 never transcodes) already return stored bytes and are used as they are.
    """
    from fsspec.core import url_to_fs

    if hasattr(fs, "session_kwargs"):  # gcsfs: kwargs for aiohttp.ClientSession
        session_kwargs = {**(options.get("session_kwargs") or {}), "auto_decompress": False}
        raw_fs, _ = url_to_fs(url, **{**options, "session_kwargs": session_kwargs})
        return raw_fs
    return fs


def _retry_info(
    fs: Any, path: str, url: str, retries: int, retry_delay: float | None, first: BaseException
) -> dict[str, Any]:
    """``fs.info`` retried like a block (the object's size decides everything after)."""
    retry_delay = DEFAULT_RETRY_DELAY if retry_delay is None else retry_delay
    last = first
    for attempt in range(1, max(0, retries) + 1):
        time.sleep(min(MAX_RETRY_DELAY, retry_delay * 2 ** (attempt - 1)))
        try:
            info: dict[str, Any] = fs.info(path)
            return info
        except FileNotFoundError:
            raise
        except Exception as exc:
            if not is_transient(exc):
                raise
            last = exc
    raise RemoteReadError(
        f"cannot get the size of the remote object: {type(last).__name__}: {last}", path=url, offset=0
    ) from last


__all__ = [
    "RemoteReadError",
    "RangedInput",
    "DecodedInput",
    "open_input",
    "read_concurrency",
    "should_use_remote",
    "is_transient",
]
