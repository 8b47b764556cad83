"""The local engine: whole shards on a pool of worker processes (or in-process).

At most one shard per worker is in flight, so a dead worker can be named
by its shard and a stop has nothing queued to throw away.  Ctrl-C or
SIGTERM stops the workers at once; every shard already published stays
recorded (see :class:`.job.Job`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

from .job import Job, Progress
from .manifest import finalize_entry
from .options import ExtractOptions, Sources
from .plan import dest_root
from .shard import extract_shard


class Terminated(KeyboardInterrupt):
    """The run was stopped by a signal (``signum``); the CLI exits with 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum


class WorkerDied(RuntimeError):
    """A worker process ended without a result (killed, out of memory)."""


_worker_queue: Any = None


def _init_worker(queue: Any) -> None:  # runs in each worker process
    global _worker_queue
    _worker_queue = queue
    # the parent decides when to stop: a Ctrl-C to the terminal's process
    # group must not make every worker print a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _worker_progress(n: int) -> None:
    if _worker_queue is not None:
        _worker_queue.put(n)


def _run_shard(source: str, dest: str, options: ExtractOptions, sites: dict[str, Any]) -> dict[str, Any]:
    """A worker's whole share of a shard: decode, write, and hash (in parallel, not in the parent)."""
    progress = _worker_progress if _worker_queue is not None else None  # --quiet: no position calls
    entry = extract_shard(source, dest, options, sites, progress=progress)
    fs, root = dest_root(dest, options.storage_options)
    return finalize_entry(fs, root, entry, options.checksum)


def _process_local(url: str) -> bool:
    """Whether ``url`` names storage that exists only in this process (memory://)."""
    return os.fspath(url).startswith("memory://")


def _process_context() -> Any:
    """forkserver where the platform has it, with our modules preloaded, so each
    worker starts as a cheap fork instead of a fresh interpreter importing numpy;
    spawn elsewhere.  (Plain fork is unsafe: the parent runs threads.)"""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["tfrecord_numpy.perch.local"])
        return ctx
    return mp.get_context("spawn")


class SignalGate:
    """Where a stop signal may not land: :meth:`deferred` holds it until its block ends.

    Starting a worker forks a process that the pool registers only after
    ``start()`` returns; a stop raised in between would leave a worker the
    pool cannot terminate, which then fails (printing a traceback) on the
    semaphores the exiting parent removed.
    """

    def __init__(self) -> None:
        self._deferring = 0
        self._pending: int | None = None

    def signalled(self, signum: int) -> None:
        if self._deferring:
            self._pending = self._pending or signum
            return
        raise Terminated(signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if not self._deferring and self._pending is not None:
            signum, self._pending = self._pending, None
            raise Terminated(signum)


@contextmanager
def _signals_raise() -> Iterator[SignalGate]:
    """In the main thread, SIGINT, SIGTERM (and SIGHUP) raise :class:`Terminated` (a
    ``KeyboardInterrupt``), whatever disposition the process inherited: a job
    started from a background shell job inherits SIGINT ignored, yet Ctrl-C or
    ``kill -INT`` must still stop it cleanly.  Inside the yielded gate's
    :meth:`SignalGate.deferred` blocks the stop waits for the block to end."""
    gate = SignalGate()
    if threading.current_thread() is not threading.main_thread():
        yield gate
        return

    def handler(signum: int, frame: object) -> None:
        gate.signalled(signum)

    wanted = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {s: signal.signal(s, handler) for s in wanted}
    try:
        yield gate
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def extract(
    sources: Sources,
    dest: str | os.PathLike[str],
    *,
    workers: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Extract A2O/Perch shards into ``dest`` as the notebook does; return the summary.

    ``sources``: files, directories, globs or fsspec URLs.  ``dest``: a local
    directory or fsspec URL.  ``workers`` processes (default: the number of
    CPUs) take whole shards.  ``options`` are :class:`.options.ExtractOptions`:
    ``sites`` (a JSON mapping path/URL or a dict; default the public A2O
    mapping shipped in the package), ``hop_seconds=5``,
    ``compression="auto"``, ``on_corrupt="error"|"skip"``,
    ``on_unknown_site="error"|"null"``, ``overwrite=False``,
    ``quiet=False``, ``summary_json=None``, ``storage_options=None``,
    ``max_record_bytes=2**30``.
    """
    opts = ExtractOptions.build(**options)
    if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
        raise ValueError(f"workers must be a whole number >= 1, not {workers!r}")
    with _signals_raise() as gate, Job(sources, dest, opts) as job:
        todo = job.plan.todo
        n = max(1, min(int(workers or os.cpu_count() or 1), len(todo) or 1))
        plan = job.plan
        in_memory = [u for u in (plan.dest_url, *todo) if _process_local(u)]
        if in_memory and n > 1:
            if workers is not None:
                raise ValueError(
                    f"{in_memory[0]!r} lives in this process's memory, which worker processes cannot "
                    "reach: use workers=1 (--workers 1)"
                )
            n = 1
        if n == 1:
            bar = job.progress.bytes if job.progress.bar is not None else None
            for f in todo:
                job.shard_finished(extract_shard(f, plan.dest_url, opts.for_workers(), plan.site_map, progress=bar))
        elif todo:
            _run_pool(job, n, gate)
        return job.summary(n)


def _run_pool(job: Job, workers: int, gate: SignalGate) -> None:
    """Shards on ``workers`` processes, at most one in flight per worker.  A stop
    never lands while a worker starts or while the pool is taken down."""
    plan, progress = job.plan, job.progress
    ctx = _process_context()
    queue = ctx.Queue() if progress.bar is not None else None  # byte counts from workers
    drain = _start_drain(queue, progress)
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(queue,))
    options = plan.options.for_workers()
    pending: dict[Future[dict[str, Any]], str] = {}
    todo = iter(plan.todo)
    first_error: BaseException | None = None

    def submit(f: str) -> None:
        with gate.deferred():  # the pool may start a worker here
            pending[pool.submit(_run_shard, f, plan.dest_url, options, plan.site_map)] = f

    try:
        for f in todo:
            submit(f)
            if len(pending) >= workers:
                break
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                source = pending.pop(fut)
                try:
                    job.shard_finished(fut.result())
                except BrokenProcessPool:
                    in_flight = [source, *pending.values()]
                    raise WorkerDied(
                        "a worker process died (killed, or out of memory) while extracting "
                        + ", ".join(repr(s) for s in in_flight)
                    ) from None
                except BaseException as exc:  # the shard's own error: finish the others in flight
                    if first_error is None:
                        first_error = exc
            if first_error is None:
                for f in todo:
                    submit(f)
                    if len(pending) >= workers:
                        break
        if first_error is not None:
            raise first_error
    except BaseException:
        with gate.deferred():
            _kill_pool(pool)
        raise
    finally:
        with gate.deferred():
            pool.shutdown(wait=True, cancel_futures=True)
            _stop_drain(queue, drain)


def _kill_pool(pool: ProcessPoolExecutor) -> None:
    """Stop every worker now (their temporary files are cleaned by the next run)."""
    processes = dict(getattr(pool, "_processes", None) or {})
    for p in processes.values():
        try:
            p.terminate()
        except Exception:
            pass
    for p in processes.values():
        p.join(timeout=5)
        if p.is_alive():
            p.kill()


def _start_drain(queue: Any, progress: Progress) -> threading.Thread | None:
    if queue is None:
        return None

    def drain() -> None:
        while (n := queue.get()) is not None:
            progress.bytes(n)

    t = threading.Thread(target=drain, name="tfrecord-numpy-progress", daemon=True)
    t.start()
    return t


def _stop_drain(queue: Any, thread: threading.Thread | None) -> None:
    if queue is not None and thread is not None:
        queue.put(None)  # wakes the drain thread at once
        thread.join(timeout=5)
