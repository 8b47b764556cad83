"""One run of the job, whatever engine runs its shards (local pool or Dask).

:class:`Job` holds DEST's lock, plans the run, and owns the one "shard
finished" step: hash what was not hashed while written, stamp the entry
with the options' fingerprint and the source's identity, and record it in
the manifest's journal at once.  Engines only run shards and call
:meth:`Job.shard_finished` with each entry.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import numpy as np

from ..atomic import AtomicFile
from ..checksum import CHECKSUMS
from ..lock import DestLock
from .manifest import finalize_entry
from .options import ExtractOptions, Sources, shard_stem
from .plan import JobPlan, dest_root, plan_job


class Progress:
    """A tqdm bar over bytes (and a shard count), only when stderr is a terminal."""

    def __init__(self, total_bytes: int, shards: int, enabled: bool) -> None:
        self.bar: Any = None
        self.shards = shards
        self.done = 0
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_bytes,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"shards 0/{shards}",
                file=sys.stderr,
                dynamic_ncols=True,
            )

    def bytes(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def shard_done(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_description(f"shards {self.done}/{self.shards}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Job:
    """A locked, planned run into one DEST (a context manager).

    On leaving (normally, on an error or on Ctrl-C) the journal is folded
    into ``manifest.json`` and the lock released: every shard recorded so
    far stays recorded.
    """

    def __init__(self, sources: Sources, dest: str | os.PathLike[str], options: ExtractOptions) -> None:
        self.started = time.perf_counter()
        self.options = options
        fs, root = dest_root(dest, options.storage_options)
        fs.makedirs(root, exist_ok=True)
        self.lock = DestLock(fs, root).acquire()
        try:
            self.plan: JobPlan = plan_job(sources, dest, options)
        except BaseException:
            self.lock.release()
            raise
        self.done_entries: list[dict[str, Any]] = []
        todo_bytes = sum(self.plan.sizes.get(f) or 0 for f in self.plan.todo)
        self.progress = Progress(todo_bytes, len(self.plan.todo), enabled=not options.quiet)

    def __enter__(self) -> Job:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # the run's own error is the one to report: folding the journal is best effort
            self.close()
        except Exception:
            pass

    def shard_finished(self, entry: dict[str, Any]) -> None:
        """Record a shard whose outputs are published (in the parent, one at a time)."""
        plan = self.plan
        finalize_entry(plan.fs, plan.root, entry, self.options.checksum)
        entry["fingerprint"] = plan.fingerprint
        entry["source_identity"] = plan.identities.get(entry["source"])
        plan.manifest.record(shard_stem(entry["source"]), entry)
        self.done_entries.append(entry)
        self.progress.shard_done()

    def close(self) -> None:
        """Fold the journal into the manifest and release DEST (idempotent)."""
        if self.lock is None:
            return
        try:
            self.progress.close()
            self.plan.manifest.compact()
        finally:
            self.lock.release()
            self.lock = None  # type: ignore[assignment]

    def shape_empty_shards(self) -> list[str]:
        """Perch schema: give empty shards a ``(0, D)`` array of the run's dtype.

        A shard with no records cannot tell its embedding width; another shard
        of the run can.  Returns the stems still ``(0,)`` for want of one (the
        summary names them).  The A2O schema keeps the notebook's ``np.save(path, [])``.
        """
        plan = self.plan
        if self.options.schema != "perch":
            return []
        shards = [plan.manifest.shards[s] for s in plan.stems if s in plan.manifest.shards]
        known = {(e["dtype"], e["dim"]) for e in shards if e.get("dtype") and e.get("rows")}
        empty = [e for e in self.done_entries if not e.get("rows") and e.get("dim") in (None, 0)]
        if len(known) != 1:
            return [shard_stem(e["source"]) for e in empty]
        ((dtype, dim),) = known
        for entry in empty:
            info = entry["embeddings"]
            path = f"{plan.root}/{info['path']}"
            with AtomicFile(plan.fs, path) as out:
                np.save(out.f, np.empty((0, int(dim)), dtype=np.dtype(dtype)))
            info["bytes"] = plan.fs.size(path)
            for kind in CHECKSUMS:
                info.pop(kind, None)
            entry["dtype"], entry["dim"] = dtype, int(dim)
            finalize_entry(plan.fs, plan.root, entry, self.options.checksum)
            plan.manifest.record(shard_stem(entry["source"]), entry)
        return []

    def summary(self, workers: int) -> dict[str, Any]:
        """The run's summary (also written to ``summary_json`` when asked)."""
        unshaped = self.shape_empty_shards()
        plan = self.plan
        seconds = time.perf_counter() - self.started
        shards = [plan.manifest.shards[s] for s in plan.stems if s in plan.manifest.shards]
        in_bytes = sum(e.get("source_size") or 0 for e in self.done_entries)
        summary = {
            "dest": plan.dest_url,
            "shards": len(plan.stems),
            "shards_extracted": len(self.done_entries),
            "shards_already_complete": len(plan.already),
            "records": sum(e["records"] for e in shards),
            "rows": sum(e["rows"] for e in shards),
            "bytes": in_bytes,
            "seconds": round(seconds, 3),
            "mb_per_s": round(in_bytes / 1e6 / seconds, 1) if seconds > 0 else None,
            "corrupt_records_skipped": sum(e["skipped"]["corrupt_records"] for e in shards),
            "truncated_tails": sum(1 for e in shards if e["skipped"]["truncated_tail"]),
            "unknown_site_rows": sum(e.get("unknown_site_rows", 0) for e in shards),
            "dropped_rows": sum(e.get("dropped_rows", 0) for e in shards),
            "workers": workers,
        }
        if unshaped:
            summary["empty_shards_of_unknown_width"] = unshaped
        if self.options.summary_json is not None:
            with open(os.fspath(self.options.summary_json), "w", encoding="utf-8") as f:
                json.dump(summary, f, indent=1)
        return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The one-paragraph human summary the CLI prints."""
    return (
        f"{summary['shards']} shards ({summary['shards_extracted']} extracted, "
        f"{summary['shards_already_complete']} already complete), {summary['records']} records, "
        f"{summary['rows']} rows, {summary['bytes'] / 1e6:.1f} MB in {summary['seconds']:.2f} s "
        f"({summary['mb_per_s'] or 0:.1f} MB/s); corrupt records skipped: {summary['corrupt_records_skipped']}, "
        f"truncated tails: {summary['truncated_tails']}, unknown-site rows: {summary['unknown_site_rows']}"
        + (f", rows dropped by the filter: {summary['dropped_rows']}" if summary.get("dropped_rows") else "")
        + (
            f"; empty shards with no width to take (written as (0,)): {', '.join(summary['empty_shards_of_unknown_width'])}"
            if summary.get("empty_shards_of_unknown_width")
            else ""
        )
    )
