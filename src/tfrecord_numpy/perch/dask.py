"""Scale-out on Dask: the extraction job on a cluster, embeddings as a dask array.

Needs the optional extra: ``pip install 'tfrecord-numpy[dask]'``.  Nothing
else in the package imports this module (``import tfrecord_numpy`` never
pulls in dask).

* :func:`extract` runs :func:`tfrecord_numpy.a2o.extract` on a Dask
  cluster and writes exactly what the local job writes: the same
  ``embeddings/<stem>.npy`` and ``metadata/<stem>.json`` bytes, the same
  manifest entries (so either job can resume the other's run), the same
  summary.  One task per shard; with ``split_bytes``, an uncompressed shard
  larger than that is read by one task per byte range (see :mod:`.split`),
  each writing part files under ``DEST/.parts/<stem>/``, and a per-shard
  merge task checks the splits' boundaries, concatenates the parts into the
  final outputs and publishes them atomically.  ``DEST`` must be storage
  every worker and the client can reach (a shared disk, ``gs://``, ...;
  not ``memory://``), and, as for the local job, one run at a time may
  write to it.  Splitting costs a second pass over the output bytes (the
  merge), so it pays off when reading a shard is the bottleneck (few huge
  shards, remote storage, many workers), not for many mid-sized shards.
* :func:`extract_with_cluster` is the same with a cluster it creates and
  closes (the CLI's ``--dask-scheduler`` / ``--dask-local``).
* :func:`read_embeddings` gives the embeddings as a lazy ``dask.array`` with a
  chunk per shard (or split) and the metadata as a dask DataFrame.

Workers that die are handled by distributed: their tasks are re-run on
other workers (each task is idempotent: outputs and parts are written under
temporary names and moved into place), up to the scheduler's
``distributed.scheduler.allowed-failures`` (default 3) deaths per task.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from fsspec.core import url_to_fs

try:
    import dask
    from dask.delayed import delayed as _delayed
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "tfrecord_numpy.dask needs dask (and distributed for extract): pip install 'tfrecord-numpy[dask]'"
    ) from exc

from ..atomic import AtomicFile
from ..errors import DecodeError, SchemaError, TFRecordError
from ..framing import DEFAULT_MAX_RECORD_BYTES, RecordScanner
from ..reader import iter_record_views
from ..split import SplitRecords, SplitReport, iter_split_records, plan_splits, reconcile_splits, shift_error
from ..storage import expand_sources, open_source
from .job import Job
from .manifest import finalize_entry, output_paths
from .names import METADATA_COLUMNS, load_site_mapping
from .options import ExtractOptions, Sources, shard_stem
from .outputs import JsonArrayWriter, NpyStreamWriter
from .plan import PARTS_DIR, remove_stale_tmp, source_size
from .records import RecordStats, consume_records, decode_a2o_record
from .rows import PERCH_COLUMNS, RowEncoder
from .shard import extract_shard

if TYPE_CHECKING:  # pragma: no cover
    import dask.array
    import distributed

__all__ = ["extract", "extract_with_cluster", "read_embeddings", "METADATA_COLUMNS"]

delayed: Any = _delayed  # untyped in dask: called through Any

_COPY_BYTES = 8 << 20


# --------------------------------------------------------------------------- decoding


def _mismatch(stats: RecordStats, dtype: np.dtype, dim: int | None, source: str, index_base: int) -> SchemaError:
    return SchemaError(
        f"embedding is {stats.dtype}[..., {stats.dim}] but earlier records are {dtype}[..., {dim}]",
        path=source,
        index=index_base + (stats.first_index or 0),
        offset=stats.first_offset,
    )


def _root(dest: str, options: ExtractOptions) -> tuple[Any, str]:
    fs, root = url_to_fs(dest, **options.storage_options)
    return fs, root.rstrip("/") or "/"


def _split_of(
    source: str, options: ExtractOptions, start: int, end: int, known_start: bool, size: int | None
) -> SplitRecords:
    """The records of one byte range of ``source`` (see :mod:`tfrecord_numpy.split`)."""
    return iter_split_records(
        source,
        start,
        end,
        known_start=known_start,
        max_record_bytes=options.max_record_bytes,
        storage_options=options.storage_options,
        size=size,
    )


# --------------------------------------------------------------------------- extraction tasks


@dataclass
class _Part:
    """A split task's result: its boundary report, stats and part files."""

    report: SplitReport
    stats: RecordStats
    unknown_site_rows: int
    npy_path: str | None
    json_path: str | None
    seconds: float


def _shard_task(source: str, dest: str, options: ExtractOptions, sites: dict) -> dict:
    """A whole shard, exactly as the local job does it; hashed here, off the client."""
    entry = extract_shard(source, dest, options, sites)
    fs, root = _root(dest, options)
    return finalize_entry(fs, root, entry, options.checksum)


def _split_task(
    source: str,
    dest: str,
    options: ExtractOptions,
    sites: dict,
    stem: str,
    i: int,
    start: int,
    end: int,
    known_start: bool,
    size: int | None,
    tag: str = "",
) -> _Part:
    """Decode one byte range of a shard into part files (a valid ``.npy`` and a JSON array).

    Framing and decoding errors are *returned* in the report, not raised: a
    split that synced on a fake header often fails, and only the merge task,
    which knows the true boundaries, can tell whether the error is real.
    """
    started = time.perf_counter()
    fs, root = _root(dest, options)
    part_dir = f"{root}/{PARTS_DIR}/{stem}"
    fs.makedirs(part_dir, exist_ok=True)
    npy_path = f"{part_dir}/{i:06d}{tag}.npy"
    json_path = f"{part_dir}/{i:06d}{tag}.json"
    split = _split_of(source, options, start, end, known_start, size)
    encoder = RowEncoder(sites, options, source)
    stats = RecordStats()
    npy_out = AtomicFile(fs, npy_path)
    json_out = AtomicFile(fs, json_path)
    error: TFRecordError | None = None
    try:
        npy = NpyStreamWriter(npy_out.f)
        meta = JsonArrayWriter(json_out.f)

        def emit(block: np.ndarray, rows: list[str]) -> None:
            meta.write_encoded(rows)
            npy.write(block)

        try:
            consume_records(split, source, options, encoder, emit, stats)
        except TFRecordError as exc:
            error = exc
        if error is None:
            npy.close()
            meta.close()
            npy_out.commit()
            json_out.commit()
        else:
            npy_out.abort()
            json_out.abort()
    except BaseException:
        npy_out.abort()
        json_out.abort()
        raise
    ok = error is None
    return _Part(
        report=split.report(error),
        stats=stats,
        unknown_site_rows=encoder.unknown_sites,
        npy_path=npy_path if ok else None,
        json_path=json_path if ok else None,
        seconds=time.perf_counter() - started,
    )


def _copy_npy_rows(fs: Any, path: str, npy: NpyStreamWriter, dtype: np.dtype, dim: int) -> None:
    """Append the rows of a part ``.npy`` to ``npy``, a bounded block at a time."""
    row_bytes = dtype.itemsize * dim
    per_block = max(1, _COPY_BYTES // max(row_bytes, 1))
    with fs.open(path, "rb") as f:
        fmt = np.lib.format
        version = fmt.read_magic(f)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, _ = read_header(f)
        left = int(shape[0])
        while left:
            n = min(left, per_block)
            data = f.read(n * row_bytes)
            if len(data) != n * row_bytes:
                raise OSError(f"part file {path} is shorter than its header says")
            npy.write(np.frombuffer(data, dtype=dtype).reshape(n, dim))
            left -= n


def _copy_json_rows(fs: Any, path: str, out: Any, first: bool) -> None:
    """Append a part's rows (its JSON array text without the brackets)."""
    size = fs.size(path)
    with fs.open(path, "rb") as f:
        f.seek(1)
        left = size - 2
        if not first:
            out.write(b", ")
        while left > 0:
            chunk = f.read(min(left, _COPY_BYTES))
            if not chunk:
                raise OSError(f"part file {path} is shorter than it was")
            out.write(chunk)
            left -= len(chunk)


def _merge_task(
    source: str,
    dest: str,
    options: ExtractOptions,
    sites: dict,
    stem: str,
    splits: list[tuple[int, int]],
    size: int | None,
    parts: list[_Part],
) -> dict:
    """Verify the splits' boundaries (re-running any that synced on a fake
    header), raise the first real error in file order, else concatenate the
    parts into the shard's outputs and publish them; returns the manifest entry."""
    started = time.perf_counter()
    parts = list(parts)

    def rerun(i: int, boundary: int) -> SplitReport:
        parts[i] = _split_task(source, dest, options, sites, stem, i, boundary, splits[i][1], True, size, tag=".rerun")
        return parts[i].report

    accepted = reconcile_splits([p.report for p in parts], rerun)
    dtype: np.dtype | None = None
    dim: int | None = None
    for report, part in zip(accepted, parts):
        st = part.stats
        if st.dtype is not None:
            if dtype is None:
                dtype, dim = st.dtype, st.dim
            elif st.dtype != dtype or st.dim != dim:
                assert report.index_base is not None  # reconcile_splits sets it on every accepted report
                raise _mismatch(st, dtype, dim, source, report.index_base)
        if report.error is not None:
            raise shift_error(report.error, report.index_base)

    fs, root = _root(dest, options)
    rel = output_paths(stem)
    npy_final = f"{root}/{rel['embeddings']}"
    json_final = f"{root}/{rel['metadata']}"
    fs.makedirs(f"{root}/embeddings", exist_ok=True)
    fs.makedirs(f"{root}/metadata", exist_ok=True)
    npy_out = AtomicFile(fs, npy_final)
    json_out = AtomicFile(fs, json_final)
    try:
        npy = NpyStreamWriter(npy_out.f)
        json_out.f.write(b"[")
        first = True
        for part in parts:
            if part.stats.rows:
                assert dtype is not None and dim is not None
                assert part.npy_path is not None and part.json_path is not None  # a part with rows succeeded
                _copy_npy_rows(fs, part.npy_path, npy, dtype, dim)
                _copy_json_rows(fs, part.json_path, json_out.f, first)
                first = False
        npy.close()
        json_out.f.write(b"]")
        npy_out.commit()
        json_out.commit()
    except BaseException:
        npy_out.abort()
        json_out.abort()
        raise
    entry: dict[str, Any] = {
        "source": source,
        "source_size": source_size(source, options.storage_options),
        "records": sum(p.stats.records for p in parts),
        "rows": npy.rows,
        "dtype": None if npy.dtype is None else npy.dtype.name,
        "dim": npy.dim,
        "embeddings": {"path": rel["embeddings"], "bytes": fs.size(npy_final), options.checksum: None},
        "metadata": {"path": rel["metadata"], "bytes": fs.size(json_final), options.checksum: None},
        "skipped": {"corrupt_records": 0, "errors": [], "truncated_tail": None},
        "unknown_site_rows": sum(p.unknown_site_rows for p in parts),
        "dropped_rows": sum(p.stats.dropped_rows for p in parts),
        # task time spent on this shard (splits + merge), not wall time
        "seconds": round(sum(p.seconds for p in parts) + time.perf_counter() - started, 6),
    }
    return finalize_entry(fs, root, entry, options.checksum)


# --------------------------------------------------------------------------- the job


def _default_client() -> distributed.Client:
    import distributed

    try:
        return cast(Any, distributed).default_client()
    except ValueError:
        raise ValueError(
            "no Dask client: pass client=distributed.Client(...), create one first, or use "
            "tfrecord_numpy.dask.extract_with_cluster(..., local_workers=N)"
        ) from None


def _splits_for(
    source: str, size: int | None, split_bytes: int | None, options: ExtractOptions
) -> list[tuple[int, int]] | None:
    """The byte ranges to read ``source`` by, or None for one whole-shard task.

    Only uncompressed shards larger than ``split_bytes`` are split, and only
    with ``on_corrupt="error"``: skipping damaged records resynchronises
    with scanner state carried from the start of the file, which a split
    cannot know.
    """
    if split_bytes is None or size is None or size <= split_bytes or options.on_corrupt != "error":
        return None
    splits = plan_splits(
        source,
        split_bytes=split_bytes,
        storage_options=options.storage_options,
        compression=options.compression,
        size=size,
    )
    return splits if len(splits) > 1 else None


def extract(
    sources: Sources,
    dest: str | os.PathLike[str],
    client: distributed.Client | None = None,
    *,
    split_bytes: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """:func:`tfrecord_numpy.a2o.extract` on a Dask cluster; same outputs, same summary.

    ``client``: a ``distributed.Client``; ``None`` uses the current default
    client (the last one created) and is an error when there is none -- a
    cluster is never started behind your back (see
    :func:`extract_with_cluster` for that).  ``split_bytes``: read
    uncompressed shards larger than this as several byte-range tasks
    (``on_corrupt="error"`` only).  ``options`` as for the local job
    (:class:`.options.ExtractOptions`); the summary's ``workers`` is the
    cluster's thread count.  The client alone records shards in the
    manifest, each as soon as its task ends; workers write the outputs.
    On an error, tasks not yet finished are cancelled, shards already
    finished stay recorded, and the first error is raised (for a split
    shard: the error the local job would raise, same record index and offset).
    """
    if client is None:
        client = _default_client()
    import distributed

    # untyped parts of distributed's API (as_completed, Client.nthreads/cancel, Future.done)
    dist: Any = distributed
    untyped_client: Any = client
    if split_bytes is not None and (isinstance(split_bytes, bool) or int(split_bytes) <= 0):
        raise ValueError(f"split_bytes must be a positive integer, not {split_bytes!r}")
    opts = ExtractOptions.build(**options)
    if split_bytes is not None and (opts.logits or opts.metadata_format != "json"):
        raise ValueError(
            "split_bytes cannot be combined with logits or Parquet metadata: split shards write "
            "embeddings and JSON metadata only"
        )
    with Job(sources, dest, opts) as job:
        plan = job.plan
        fs, root = plan.fs, plan.root
        parts_root = f"{root}/{PARTS_DIR}"
        _rm_tree(fs, parts_root)  # parts of a killed run: stale
        workers = sum(untyped_client.nthreads().values()) or 1
        worker_opts = opts.for_workers()
        run = uuid.uuid4().hex[:8]
        futures: list[Any] = []
        for f in plan.todo:
            stem = shard_stem(f)
            splits = _splits_for(f, plan.sizes.get(f), split_bytes, worker_opts)
            if splits is None:
                futures.append(
                    client.submit(
                        _shard_task, f, plan.dest_url, worker_opts, plan.site_map, key=f"tfn-shard-{stem}-{run}"
                    )
                )
                continue
            parts = [
                client.submit(
                    _split_task,
                    f,
                    plan.dest_url,
                    worker_opts,
                    plan.site_map,
                    stem,
                    i,
                    s,
                    e,
                    s == 0,
                    plan.sizes.get(f),
                    key=f"tfn-split-{stem}-{i}-{run}",
                )
                for i, (s, e) in enumerate(splits)
            ]
            futures.append(
                client.submit(
                    _merge_task,
                    f,
                    plan.dest_url,
                    worker_opts,
                    plan.site_map,
                    stem,
                    splits,
                    plan.sizes.get(f),
                    parts,
                    key=f"tfn-merge-{stem}-{run}",
                )
            )
        recorded: set[str] = set()

        def record(entry: dict[str, Any]) -> None:
            stem = shard_stem(entry["source"])
            job.shard_finished(entry)
            _rm_tree(fs, f"{parts_root}/{stem}")
            recorded.add(stem)
            job.progress.bytes(entry.get("source_size") or 0)

        first_error: BaseException | None = None
        try:
            for fut in dist.as_completed(futures, loop=client.loop):  # not the default client's loop
                try:
                    entry = fut.result()
                except Exception as exc:
                    first_error = exc
                    break
                record(entry)
            if first_error is not None:
                untyped_client.cancel([f for f in futures if not f.done()])
                for fut in futures:  # keep what finished meanwhile, as the local job does
                    if fut.status == "finished":
                        entry = fut.result()
                        if shard_stem(entry["source"]) not in recorded:
                            record(entry)
                raise first_error
        finally:
            untyped_client.cancel([f for f in futures if not f.done()])
        remove_stale_tmp(fs, root)  # left by workers lost mid-write
        _rm_tree(fs, parts_root)
        return job.summary(workers)


def _rm_tree(fs: Any, path: str) -> None:
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except (FileNotFoundError, OSError):
        pass


def extract_with_cluster(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    dest: str | os.PathLike[str],
    *,
    scheduler: str | None = None,
    local_workers: int | None = None,
    **options: Any,
) -> dict:
    """:func:`extract` with a client this call opens and closes.

    ``scheduler``: address of a running cluster (``tcp://host:8786``).
    ``local_workers``: start a ``LocalCluster`` of that many single-threaded
    worker processes on 127.0.0.1 (no dashboard) for the duration of the
    job.  Exactly one of the two.  ``options`` go to :func:`extract`.
    """
    if (scheduler is None) == (local_workers is None):
        raise ValueError("give exactly one of scheduler= and local_workers=")
    import distributed

    dist: Any = distributed  # Client and LocalCluster are untyped
    cluster = None
    if scheduler is not None:
        client = dist.Client(scheduler, set_as_default=False)
    else:
        assert local_workers is not None  # exactly one of the two, checked above
        if int(local_workers) < 1:
            raise ValueError(f"local_workers must be >= 1, not {local_workers!r}")
        cluster = dist.LocalCluster(
            n_workers=int(local_workers),
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # the scheduler's HTTP routes still start: on a free localhost port, not :8787
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        )
        client = dist.Client(cluster, set_as_default=False)
    try:
        return extract(sources, dest, client, **options)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# --------------------------------------------------------------------------- read_embeddings


@dataclass
class _Loaded:
    """A split's decoded records, in memory."""

    report: SplitReport
    stats: RecordStats
    array: np.ndarray
    rows: list[str]


def _collect(
    records: Iterable[tuple[int, int, memoryview]],
    source: str,
    options: ExtractOptions,
    sites: dict,
    dtype: np.dtype,
    dim: int,
) -> tuple[np.ndarray, list[str], RecordStats]:
    blocks: list[np.ndarray] = []
    rows: list[str] = []
    stats = RecordStats()

    def emit(block: np.ndarray, encoded: list[str]) -> None:
        blocks.append(block.copy())  # the record's view dies with the next record
        rows.extend(encoded)

    consume_records(records, source, options, RowEncoder(sites, options, source), emit, stats)
    array = np.concatenate(blocks) if blocks else np.empty((0, dim), dtype=dtype)
    return array, rows, stats


def _check_dtype(stats: RecordStats, dtype: np.dtype, dim: int, source: str, index_base: int) -> None:
    if stats.dtype is not None and (stats.dtype != dtype or stats.dim != dim):
        raise _mismatch(stats, dtype, dim, source, index_base)


def _load_whole(
    source: str, options: ExtractOptions, sites: dict, dtype: np.dtype, dim: int
) -> tuple[np.ndarray, list[str]]:
    """A whole shard (compressed, unsplit, or read with on_corrupt="skip")."""
    opened = open_source(source, compression=options.compression, storage_options=options.storage_options)
    scanner = RecordScanner(
        max_record_bytes=options.max_record_bytes, path=source, skip_corrupt=options.on_corrupt == "skip"
    )
    try:
        array, rows, stats = _collect(iter_record_views(opened.stream, scanner), source, options, sites, dtype, dim)
    finally:
        opened.close()
    _check_dtype(stats, dtype, dim, source, 0)
    return array, rows


def _load_split(
    source: str,
    options: ExtractOptions,
    sites: dict,
    start: int,
    end: int,
    known_start: bool,
    size: int | None,
    dtype: np.dtype,
    dim: int,
) -> _Loaded:
    split = _split_of(source, options, start, end, known_start, size)
    try:
        array, rows, stats = _collect(split, source, options, sites, dtype, dim)
    except TFRecordError as exc:  # real or not: the reconcile step decides
        return _Loaded(split.report(exc), RecordStats(), np.empty((0, dim), dtype=dtype), [])
    return _Loaded(split.report(), stats, array, rows)


def _report_of(loaded: _Loaded) -> SplitReport:
    return loaded.report


def _reconcile(
    source: str,
    options: ExtractOptions,
    splits: list[tuple[int, int]],
    size: int | None,
    reports: list[SplitReport],
) -> list[SplitReport]:
    """The verified boundaries of one shard's splits (framing only; chunks re-decode)."""
    reports = list(reports)

    def rerun(i: int, boundary: int) -> SplitReport:
        split = iter_split_records(
            source,
            boundary,
            splits[i][1],
            known_start=True,
            max_record_bytes=options.max_record_bytes,
            storage_options=options.storage_options,
            size=size,
        )
        try:
            for _ in split:
                pass
        except TFRecordError as exc:
            return split.report(exc)
        return split.report()

    return reconcile_splits(reports, rerun)


def _split_chunk(
    loaded: _Loaded,
    accepted: list[SplitReport],
    i: int,
    source: str,
    options: ExtractOptions,
    sites: dict,
    size: int | None,
    end: int,
    dtype: np.dtype,
    dim: int,
) -> tuple[np.ndarray, list[str]]:
    """Split ``i``'s rows once its boundary is verified (re-decoded from the
    true boundary when it synced on a fake header)."""
    if i >= len(accepted):  # the chain broke before this split: that error is the real one
        bad = accepted[-1]
        assert bad.error is not None  # reconcile_splits stops early only at an error
        raise shift_error(bad.error, bad.index_base)
    report = accepted[i]
    assert report.index_base is not None  # reconcile_splits sets it on every accepted report
    if report.error is not None:
        raise shift_error(report.error, report.index_base)
    if report.sync != loaded.report.sync:
        loaded = _load_split(source, options, sites, report.sync, end, True, size, dtype, dim)
        if loaded.report.error is not None:
            raise shift_error(loaded.report.error, report.index_base)
    _check_dtype(loaded.stats, dtype, dim, source, report.index_base)
    return loaded.array, loaded.rows


def _rows_to_dicts(rows: list[str]) -> list[dict]:
    return json.loads("[" + ", ".join(rows) + "]")


def _rows_frame(rows: list[str], meta: Any) -> Any:
    import pandas as pd

    frame = pd.DataFrame.from_records(_rows_to_dicts(rows), columns=list(meta.columns))
    return frame.astype(meta.dtypes.to_dict())


def _first_record(files: list[str], options: ExtractOptions, sites: dict) -> tuple[np.dtype, int, list[str]]:
    """Decode the first record of the first non-empty shard: D, dtype and sample rows."""
    for f in files:
        opened = open_source(f, compression=options.compression, storage_options=options.storage_options)
        scanner = RecordScanner(
            max_record_bytes=options.max_record_bytes, path=f, skip_corrupt=options.on_corrupt == "skip"
        )
        try:
            for index, offset, view in iter_record_views(opened.stream, scanner):
                try:
                    rec = decode_a2o_record(view)
                except DecodeError:
                    if options.on_corrupt == "skip":
                        continue
                    raise
                emb = rec.embedding
                rows = RowEncoder(sites, options, f).rows(rec, index, offset)
                return emb.dtype, int(emb.shape[2]), rows
        finally:
            opened.close()
    return np.dtype("float64"), 0, []


def read_embeddings(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    sites: str | os.PathLike[str] | dict | None = None,
    storage_options: dict | None = None,
    split_bytes: int | None = None,
    hop_seconds: float = 5,
    compression: str | None = "auto",
    on_corrupt: str = "error",
    on_unknown_site: str = "error",
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    schema: str = "a2o",
) -> tuple[dask.array.Array, Any]:
    """Lazy ``(embeddings, metadata)`` of A2O/Perch shards.

    ``embeddings`` is a ``dask.array`` of shape ``(rows, D)`` with one chunk
    per shard (or per split with ``split_bytes``, as in :func:`extract`);
    the rows per chunk are unknown until read, so the shape is
    ``(nan, D)``: call ``.compute_chunk_sizes()`` where known sizes are
    needed (it reads everything once).  ``D`` and the dtype come from
    decoding the first record now; every shard must agree (SchemaError).
    Row ``k`` is the row ``k`` of the concatenated ``embeddings/*.npy``
    that :func:`extract` writes for these sources.

    ``metadata`` has one row per embedding row, the notebook's fields
    (:data:`METADATA_COLUMNS`; with ``schema="perch"`` the generic Perch
    fields, :data:`.rows.PERCH_COLUMNS`): a ``dask.dataframe.DataFrame`` (one
    partition per chunk, each with its own 0-based index; ``site_id`` is
    an object column, ``None`` for unknown sites) when dask.dataframe and
    pandas are importable, else a ``dask.bag.Bag`` of dicts.  Both share
    their decoding tasks: compute them together
    (``dask.compute(embeddings, metadata)``) to read each shard once (dask
    may warn that this materializes the DataFrame's expressions: harmless).
    Runs on whatever scheduler is active (a distributed client if one exists).
    """
    if split_bytes is not None and int(split_bytes) <= 0:
        raise ValueError(f"split_bytes must be a positive integer, not {split_bytes!r}")
    import dask.array as _da

    da: Any = _da  # dask.array's functions are untyped
    options = ExtractOptions.build(
        hop_seconds=hop_seconds,
        compression=compression,
        on_corrupt=on_corrupt,
        on_unknown_site=on_unknown_site,
        max_record_bytes=max_record_bytes,
        storage_options=storage_options,
        schema=schema,
    )
    if schema == "perch":
        site_map: dict[str, Any] = {}
    else:
        site_map = sites if isinstance(sites, dict) else load_site_mapping(sites, storage_options=storage_options)
    files = expand_sources(sources, storage_options=storage_options)
    dtype, dim, sample_rows = _first_record(files, options, site_map)
    token = uuid.uuid4().hex[:8]
    sites_d = delayed(site_map, name=f"tfn-sites-{token}")
    chunks = []  # Delayed (array, rows) per chunk
    for f in files:
        stem = shard_stem(f)
        size = source_size(f, options.storage_options)
        splits = _splits_for(f, size, split_bytes, options)
        if splits is None:
            chunks.append(
                delayed(_load_whole, pure=False)(
                    f, options, sites_d, dtype, dim, dask_key_name=f"tfn-load-{stem}-{token}"
                )
            )
            continue
        loaded = [
            delayed(_load_split, pure=False)(
                f, options, sites_d, s, e, s == 0, size, dtype, dim, dask_key_name=f"tfn-split-{stem}-{i}-{token}"
            )
            for i, (s, e) in enumerate(splits)
        ]
        reports = [
            delayed(_report_of, pure=False)(ld, dask_key_name=f"tfn-report-{stem}-{i}-{token}")
            for i, ld in enumerate(loaded)
        ]
        accepted = delayed(_reconcile, pure=False)(
            f, options, splits, size, reports, dask_key_name=f"tfn-reconcile-{stem}-{token}"
        )
        for i, ld in enumerate(loaded):
            chunks.append(
                delayed(_split_chunk, pure=False)(
                    ld,
                    accepted,
                    i,
                    f,
                    options,
                    sites_d,
                    size,
                    splits[i][1],
                    dtype,
                    dim,
                    dask_key_name=f"tfn-chunk-{stem}-{i}-{token}",
                )
            )
    arrays = [
        da.from_delayed(c[0], shape=(np.nan, dim), dtype=dtype, name=f"tfn-emb-{k}-{token}")
        for k, c in enumerate(chunks)
    ]
    if arrays:
        embeddings = da.concatenate(arrays, axis=0) if len(arrays) > 1 else arrays[0]
    else:  # pragma: no cover - expand_sources never returns nothing
        embeddings = da.empty((0, dim), dtype=dtype)
    columns = PERCH_COLUMNS if schema == "perch" else METADATA_COLUMNS
    return embeddings, _metadata(chunks, sample_rows, columns)


def _metadata(chunks: list[Any], sample_rows: list[str], columns: tuple[str, ...]) -> Any:
    """A dask DataFrame of the chunks' rows, or a dask Bag of dicts without pandas."""
    try:
        import dask.dataframe as dd
        import pandas as pd
    except ImportError:
        import dask.bag as db

        return cast(Any, db).from_delayed([delayed(_rows_to_dicts, pure=True)(c[1]) for c in chunks])
    sample = pd.DataFrame.from_records(_rows_to_dicts(sample_rows), columns=list(columns))
    meta = sample.iloc[:0].astype({"site_id": object}) if "site_id" in columns else sample.iloc[:0]
    parts = [delayed(_rows_frame, pure=True)(c[1], meta) for c in chunks]
    # keep site_id an object column (ints, strings or None as the mapping
    # holds them) instead of dask's default conversion to strings
    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_delayed(parts, meta=meta, verify_meta=False)
