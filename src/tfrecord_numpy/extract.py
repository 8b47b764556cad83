"""The extraction job: A2O/Perch shards -> ``embeddings/<stem>.npy`` + ``metadata/<stem>.json``.

It does what the reference notebook does (section 3.1), without TensorFlow
and in constant memory: records stream from the reader's buffer straight into
the output files, each shard's outputs are published atomically, and
``manifest.json`` says which shards are complete, so a rerun redoes only
what is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fsspec.core import url_to_fs

from . import a2o
from .errors import DecodeError, SchemaError, TFRecordError
from .fastpath import PREFIX_BYTES, EmbeddingLayout, a2o_fields, embedding_layout, packed_int64s
from .framing import DEFAULT_MAX_RECORD_BYTES, HEADER_BYTES, OVERHEAD_BYTES, RecordScanner
from .outputs import AtomicFile, JsonArrayWriter, NpyStreamWriter, StreamHasher, is_tmp_name, sha256_of, write_json_atomic
from .reader import iter_record_views
from .storage import expand_sources, normalize_compression, open_source
from .tensor import parse_tensor

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "tfrecord-numpy/extract/1"
ON_CORRUPT = ("error", "skip")
ON_UNKNOWN_SITE = ("error", "null")


# --------------------------------------------------------------------------- records


@dataclass
class A2ORecord:
    """One decoded record: the embedding is ``[T, C, D]`` (maybe a view into the read buffer)."""

    filename: str
    timestamp_s: np.float32
    embedding: np.ndarray


def _general_decode(payload: bytes) -> tuple[bytes, np.float32, bytes, np.ndarray | None]:
    """The notebook's ``tf.io.parse_single_example`` spec, by TensorFlow's rules."""
    from .example import FixedLenFeature, parse_example

    spec = {
        "timestamp_s": FixedLenFeature([], "float32"),
        "filename": FixedLenFeature([], "string"),
        "embedding": FixedLenFeature([], "string"),
        "embedding_shape": FixedLenFeature([3], "int64"),
    }
    out = parse_example(payload, spec)
    return (
        out["filename"][()],
        np.float32(out["timestamp_s"][()]),
        out["embedding"][()],
        np.asarray(out["embedding_shape"]),
    )


def decode_a2o_record(view: memoryview) -> A2ORecord:
    """Decode one A2O/Perch Example; other features (logits heads) are ignored."""
    filename_b = ts = emb_bytes = declared = None
    fields = a2o_fields(view)
    if fields is not None:
        ts_payload, filename_b, emb_bytes, shape_payload = fields
        shape_vals = packed_int64s(shape_payload)
        if len(ts_payload) == 4 and shape_vals is not None and len(shape_vals) == 3:
            ts = np.frombuffer(ts_payload, "<f4")[0]
            declared = shape_vals
    if ts is None or filename_b is None or emb_bytes is None:
        filename_b, ts, emb_bytes, declared = _general_decode(bytes(view))
    embedding = parse_tensor(emb_bytes)
    if embedding.ndim != 3:
        raise SchemaError(f"embedding has shape {list(embedding.shape)}, expected [windows, channels, dims]")
    if declared is not None and tuple(int(x) for x in declared) != embedding.shape:
        raise SchemaError(
            f"embedding_shape {[int(x) for x in declared]} disagrees with the embedding's shape {list(embedding.shape)}"
        )
    try:
        filename = bytes(filename_b).decode("utf-8")
    except UnicodeDecodeError:
        raise SchemaError(f"filename is not UTF-8: {bytes(filename_b)[:80]!r}") from None
    return A2ORecord(filename=filename, timestamp_s=np.float32(ts), embedding=embedding)


@dataclass
class RecordStats:
    """What a run of records produced, for the manifest and cross-split checks."""

    records: int = 0
    rows: int = 0
    dtype: np.dtype | None = None
    dim: int | None = None
    first_index: int | None = None  # of the first decoded record
    first_offset: int | None = None
    decode_skipped: list[str] = field(default_factory=list)


def consume_records(
    records: Iterable[tuple[int, int, memoryview]],
    source: str,
    options: "ExtractOptions",
    encoder: "RowEncoder",
    emit: Callable[[np.ndarray, list[str]], None],
    stats: RecordStats,
) -> None:
    """Decode A2O records into ``emit(block [rows, D], encoded metadata rows)``.

    The one per-record loop of the job (local shards, Dask shards and splits):
    undecodable records are skipped or raised per ``on_corrupt``, every error
    is located (file, record, offset), and all records must share one
    embedding dtype and width.
    """
    for index, offset, view in records:
        try:
            rec = decode_a2o_record(view)
        except DecodeError as exc:
            exc.located(path=source, index=index, offset=offset)
            if options.on_corrupt == "skip":
                stats.decode_skipped.append(str(exc))
                continue
            raise
        except SchemaError as exc:
            raise exc.located(path=source, index=index, offset=offset)
        emb = rec.embedding
        block = emb.reshape(emb.shape[0] * emb.shape[1], emb.shape[2])
        if stats.dtype is None:
            stats.dtype, stats.dim = block.dtype, int(block.shape[1])
            stats.first_index, stats.first_offset = index, offset
        elif block.dtype != stats.dtype or block.shape[1] != stats.dim:
            raise SchemaError(
                f"embedding is {block.dtype}[..., {block.shape[1]}] but earlier records are "
                f"{stats.dtype}[..., {stats.dim}]",
                path=source,
                index=index,
                offset=offset,
            )
        emit(block, encoder.rows(rec, index, offset))
        stats.records += 1
        stats.rows += int(block.shape[0])


# --------------------------------------------------------------------------- options


@dataclass
class ExtractOptions:
    """What decides a shard's output (and so goes into the manifest's fingerprint)."""

    hop_seconds: float = 5
    compression: str | None = "auto"
    on_corrupt: str = "error"
    on_unknown_site: str = "error"
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    storage_options: dict = field(default_factory=dict)

    @classmethod
    def build(cls, *, storage_options: dict | None = None, **kwargs: Any) -> "ExtractOptions":
        """Options from the API's keywords, validated."""
        options = cls(storage_options=dict(storage_options or {}), **kwargs)
        options.validate()
        return options

    def validate(self) -> None:
        if self.on_corrupt not in ON_CORRUPT:
            raise ValueError(f"on_corrupt must be one of {ON_CORRUPT}, not {self.on_corrupt!r}")
        if self.on_unknown_site not in ON_UNKNOWN_SITE:
            raise ValueError(f"on_unknown_site must be one of {ON_UNKNOWN_SITE}, not {self.on_unknown_site!r}")
        self.compression = normalize_compression(self.compression)
        if not (isinstance(self.hop_seconds, (int, float)) and self.hop_seconds > 0):
            raise ValueError(f"hop_seconds must be a positive number, not {self.hop_seconds!r}")


def shard_stem(source: str) -> str:
    """The notebook's output name: the file name up to its first '.'."""
    name = source.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
    stem = name.split(".")[0]
    if not stem or stem in (".", "..") or "/" in stem or "\x00" in stem:
        raise ValueError(f"shard name {name!r} gives no usable output name")
    return stem


def _fingerprint(options: ExtractOptions, sites: dict) -> str:
    blob = json.dumps(
        {
            "hop_seconds": options.hop_seconds,
            "on_unknown_site": options.on_unknown_site,
            "on_corrupt": options.on_corrupt,
            "sites": sites,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


# --------------------------------------------------------------------------- one shard


class RowEncoder:
    """Metadata rows of a record as JSON text, byte-identical to ``json.dumps`` of
    :func:`a2o.metadata_rows` (a test holds the two together).

    Rows of one record share all but two fields, so each record's text is
    built from one template instead of 60 ``json.dumps`` calls.
    """

    def __init__(self, sites: dict, options: ExtractOptions, shard: str) -> None:
        self.sites = sites
        self.options = options
        self.shard = shard
        self.unknown_sites = 0

    def site_id(self, name: a2o.RecordName, rows: int, index: int, offset: int) -> Any:
        key = name.site_key
        site_id = self.sites.get(key)
        if not site_id:  # the notebook's test: a falsy id counts as missing
            if self.options.on_unknown_site == "error":
                raise SchemaError(f"No site id found for site: {key}", path=self.shard, index=index, offset=offset)
            site_id = None
            self.unknown_sites += rows
        return site_id

    def rows(self, rec: A2ORecord, index: int, offset: int) -> list[str]:
        T, C, _ = rec.embedding.shape
        try:
            name = a2o.parse_filename(rec.filename, path=self.shard, index=index, offset=offset)
            offsets = a2o.recording_offsets(rec.timestamp_s, T, self.options.hop_seconds)
        except TFRecordError as exc:
            raise exc.located(path=self.shard, index=index, offset=offset)
        site_id = self.site_id(name, T * C, index, offset)
        dumps = json.dumps
        head = (
            f'{{"file_timestamp": {name.file_timestamp}, '
            f'"file_seconds_since_midnight": {name.file_seconds_since_midnight}, '
            f'"recording_offset_in_file": '
        )
        tail = (
            f', "site_id": {dumps(site_id)}, "site_name": {dumps(name.site_name)}, '
            f'"subsite_name": {dumps(name.subsite_name)}, "file_seq_id": {name.file_seq_id}, '
            f'"filename": {dumps(rec.filename)}}}'
        )
        return [f'{head}{off}, "channel_index": {c}{tail}' for off in offsets for c in range(C)]


def extract_shard(
    source: str,
    dest: str,
    options: ExtractOptions,
    sites: dict,
    *,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Extract one shard into ``dest``; returns its manifest entry."""
    stem = shard_stem(source)
    fs, root = url_to_fs(dest, **options.storage_options)
    root = root.rstrip("/")
    npy_final = f"{root}/embeddings/{stem}.npy"
    json_final = f"{root}/metadata/{stem}.json"
    fs.makedirs(f"{root}/embeddings", exist_ok=True)
    fs.makedirs(f"{root}/metadata", exist_ok=True)
    started = time.perf_counter()
    opened = open_source(source, compression=options.compression, storage_options=options.storage_options)
    scanner = RecordScanner(
        max_record_bytes=options.max_record_bytes,
        path=source,
        skip_corrupt=options.on_corrupt == "skip",
    )
    encoder = RowEncoder(sites, options, source)
    size = _source_size(source, options.storage_options)
    npy_out = AtomicFile(fs, npy_final)
    json_out = AtomicFile(fs, json_final)
    stats = RecordStats()
    last_pos = 0
    # with the row count known up front the .npy header is final at once, so
    # the bytes are hashed as they are written (a spooled upload hashes itself)
    rows_hint = None if npy_out.spooled else _predict_rows(source, opened, options, size)
    hasher = StreamHasher() if rows_hint else None

    def emit(block: np.ndarray, rows: list[str]) -> None:
        nonlocal last_pos
        meta.write_encoded(rows)
        npy.write(block)
        if progress is not None:
            pos = opened.raw_position()
            if pos > last_pos:
                progress(pos - last_pos)
                last_pos = pos

    npy_sha = None
    try:
        npy = NpyStreamWriter(npy_out.f, rows_hint=rows_hint, hasher=hasher)
        meta = JsonArrayWriter(json_out.f)
        consume_records(iter_record_views(opened.stream, scanner), source, options, encoder, emit, stats)
        npy.close()
        meta.close()
        if hasher is not None:
            if npy.header_rewritten:  # the prediction missed: hash after publishing
                hasher.cancel()
            else:
                npy_sha = hasher.result()
        npy_out.commit()
        json_out.commit()
    except BaseException:
        if hasher is not None:
            hasher.cancel()
        npy_out.abort()
        json_out.abort()
        raise
    finally:
        opened.close()
    if progress is not None and size and size > last_pos:
        progress(size - last_pos)
    skipped = [str(e) for e in scanner.skipped] + stats.decode_skipped
    return {
        "source": source,
        "source_size": size,
        "records": stats.records,
        "rows": npy.rows,
        "dtype": None if npy.dtype is None else npy.dtype.name,
        "dim": npy.dim,
        # a hash still None is filled in by finalize_entry(), off the decoding path
        "embeddings": {
            "path": f"embeddings/{stem}.npy", "bytes": fs.size(npy_final), "sha256": npy_out.sha256 or npy_sha,
        },
        "metadata": {"path": f"metadata/{stem}.json", "bytes": fs.size(json_final), "sha256": meta.sha256},
        "skipped": {
            "corrupt_records": len(skipped),
            "errors": skipped[:100],
            "truncated_tail": None if scanner.truncated_tail is None else str(scanner.truncated_tail),
        },
        "unknown_site_rows": encoder.unknown_sites,
        "seconds": round(time.perf_counter() - started, 6),
    }


def _predict_layout(
    source: str, opened: Any, options: ExtractOptions, size: int | None
) -> tuple[int, EmbeddingLayout] | None:
    """(rows, the first record's embedding layout) of an uncompressed local
    shard, read off the first bytes of each record (a seek and a small read
    per record), or None if that does not show plainly.  Only a hint: the
    real pass checks everything."""
    from .remote import should_use_remote

    if opened.compression is not None or not size or should_use_remote(source):
        return None
    fs, path = url_to_fs(source, **options.storage_options)
    rows = pos = 0
    first = None
    with fs.open(path, "rb") as f:
        while pos < size:
            f.seek(pos)
            head = f.read(HEADER_BYTES + PREFIX_BYTES)
            if len(head) < HEADER_BYTES:
                return None
            (length,) = struct.unpack_from("<Q", head)
            if length > options.max_record_bytes or pos + OVERHEAD_BYTES + length > size:
                return None
            layout = embedding_layout(memoryview(head)[HEADER_BYTES : HEADER_BYTES + min(length, PREFIX_BYTES)], length)
            if layout is None:
                return None
            first = first or layout
            rows += layout.shape[0] * layout.shape[1]
            pos += OVERHEAD_BYTES + length
    return (rows, first) if first is not None else None


def _predict_rows(source: str, opened: Any, options: ExtractOptions, size: int | None) -> int | None:
    """The rows :func:`_predict_layout` reads off a shard, or None."""
    predicted = _predict_layout(source, opened, options, size)
    return None if predicted is None else predicted[0]


def finalize_entry(fs: Any, root: str, entry: dict) -> dict:
    """Fill in the sha256 of a shard's published outputs (read back from the store).

    The ``.npy`` header is only final once the shard ends, so its hash cannot
    be taken while streaming; the job runs this in a thread, overlapping the
    next shard's decoding.
    """
    for part in ("embeddings", "metadata"):
        info = entry[part]
        if info.get("sha256") is None:
            info["sha256"] = sha256_of(fs, f"{root}/{info['path']}")
    return entry


def _source_size(source: str, storage_options: dict) -> int | None:
    try:
        fs, path = url_to_fs(source, **storage_options)
        return int(fs.size(path))
    except Exception:
        return None


# --------------------------------------------------------------------------- manifest


def read_manifest(fs: Any, root: str) -> dict:
    path = f"{root}/{MANIFEST_NAME}"
    if not fs.exists(path):
        return {"format": MANIFEST_FORMAT, "shards": {}}
    with fs.open(path, "rb") as f:
        try:
            data = json.loads(f.read())
        except ValueError as exc:
            raise ValueError(f"{path}: manifest is not valid JSON ({exc}); remove it or use --overwrite") from None
    if not isinstance(data, dict) or not isinstance(data.get("shards"), dict):
        raise ValueError(f"{path}: not a tfrecord-numpy manifest; remove it or use --overwrite")
    return data


def _is_complete(fs: Any, root: str, entry: dict | None, source: str, size: int | None, fingerprint: str) -> bool:
    """Checked, not assumed: same source, size and options, and outputs whose hashes match."""
    if not entry or entry.get("source") != source or entry.get("source_size") != size:
        return False
    if entry.get("fingerprint") != fingerprint:
        return False
    for part in ("embeddings", "metadata"):
        info = entry.get(part) or {}
        path = f"{root}/{info.get('path', '')}"
        try:
            if fs.size(path) != info.get("bytes") or sha256_of(fs, path) != info.get("sha256"):
                return False
        except (FileNotFoundError, OSError):
            return False
    return True


def _remove_stale_tmp(fs: Any, root: str) -> None:
    for sub in ("embeddings", "metadata", ""):
        d = f"{root}/{sub}".rstrip("/")
        try:
            entries = fs.ls(d, detail=False)
        except (FileNotFoundError, OSError):
            continue
        for p in entries:
            if is_tmp_name(p):
                try:
                    fs.rm(p)
                except Exception:
                    pass


# --------------------------------------------------------------------------- the job


_worker_queue = None


def _init_worker(queue) -> None:  # runs in each worker process
    global _worker_queue
    _worker_queue = queue


def _worker_progress(n: int) -> None:
    if _worker_queue is not None:
        _worker_queue.put(n)


def _run_shard(source: str, dest: str, options: ExtractOptions, sites: dict) -> dict:
    """A worker's whole share of a shard: decode, write, and hash (in parallel, not in the parent)."""
    entry = extract_shard(source, dest, options, sites, progress=_worker_progress)
    fs, root = url_to_fs(dest, **options.storage_options)
    return finalize_entry(fs, root.rstrip("/"), entry)


def _process_context():
    """forkserver where the platform has it, with our modules preloaded, so each
    worker starts as a cheap fork instead of a fresh interpreter importing numpy;
    spawn elsewhere.  (Plain fork is unsafe: the parent runs threads.)"""
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["tfrecord_numpy.extract"])
        return ctx
    return mp.get_context("spawn")


class _Progress:
    """A tqdm bar over bytes (and a shard count), only when stderr is a terminal."""

    def __init__(self, total_bytes: int, shards: int, enabled: bool) -> None:
        self.bar = None
        self.shards = shards
        self.done = 0
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024,
                            desc=f"shards 0/{shards}", file=sys.stderr, dynamic_ncols=True)

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


@dataclass
class JobPlan:
    """What a run must do: the shards, where they go, and which are already complete."""

    options: ExtractOptions
    site_map: dict
    fingerprint: str
    stems: dict[str, str]  # output stem -> source URL
    fs: Any
    root: str
    dest_url: str
    manifest: dict
    sizes: dict[str, int | None]
    todo: list[str]
    already: list[str]


def plan_job(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    dest: str | os.PathLike[str],
    options: ExtractOptions,
    *,
    sites: str | os.PathLike[str] | dict | None = None,
    overwrite: bool = False,
) -> JobPlan:
    """Expand the sources, refuse clashing output names, clear stale temporaries,
    and check (re-hash) which shards the manifest shows complete."""
    storage_options = options.storage_options
    site_map = sites if isinstance(sites, dict) else a2o.load_site_mapping(sites, storage_options=storage_options)
    fingerprint = _fingerprint(options, site_map)
    stems: dict[str, str] = {}
    for f in expand_sources(sources, storage_options=storage_options):
        stem = shard_stem(f)
        if stem in stems:
            raise ValueError(f"two shards would write the same outputs {stem!r}: {stems[stem]!r} and {f!r}")
        stems[stem] = f
    dest_url = os.fspath(dest)
    fs, root = url_to_fs(dest_url, **storage_options)
    root = root.rstrip("/") or "/"
    fs.makedirs(root, exist_ok=True)
    _remove_stale_tmp(fs, root)
    manifest = {"format": MANIFEST_FORMAT, "shards": {}} if overwrite else read_manifest(fs, root)
    sizes = {f: _source_size(f, storage_options) for f in stems.values()}
    todo, already = [], []
    for stem, f in stems.items():
        if not overwrite and _is_complete(fs, root, manifest["shards"].get(stem), f, sizes[f], fingerprint):
            already.append(stem)
        else:
            manifest["shards"].pop(stem, None)
            todo.append(f)
    return JobPlan(options, site_map, fingerprint, stems, fs, root, dest_url, manifest, sizes, todo, already)


def extract(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    dest: str | os.PathLike[str],
    *,
    sites: str | os.PathLike[str] | dict | None = None,
    workers: int | None = None,
    hop_seconds: float = 5,
    compression: str | None = "auto",
    on_corrupt: str = "error",
    on_unknown_site: str = "error",
    overwrite: bool = False,
    quiet: bool = False,
    summary_json: str | os.PathLike[str] | None = None,
    storage_options: dict | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> dict:
    """Extract A2O/Perch shards into ``dest`` as the notebook does; return the summary.

    ``sources``: files, directories, globs or fsspec URLs.  ``dest``: a local
    directory or fsspec URL.  ``sites``: a JSON mapping (path/URL) or a dict;
    by default the public A2O mapping shipped in the package.  ``workers``
    processes (default: the number of CPUs) take whole shards.
    """
    started = time.perf_counter()
    options = ExtractOptions.build(
        hop_seconds=hop_seconds, compression=compression, on_corrupt=on_corrupt,
        on_unknown_site=on_unknown_site, max_record_bytes=max_record_bytes, storage_options=storage_options,
    )
    job = plan_job(sources, dest, options, sites=sites, overwrite=overwrite)
    fs, root, manifest, fingerprint, sizes, todo = job.fs, job.root, job.manifest, job.fingerprint, job.sizes, job.todo
    dest_url, site_map = job.dest_url, job.site_map
    if workers is None:
        workers = os.cpu_count() or 1
    workers = max(1, min(int(workers), len(todo) or 1))
    progress = _Progress(sum(sizes[f] or 0 for f in todo), len(todo), enabled=not quiet)

    done_entries: list[dict] = []

    def finish(entry: dict) -> None:
        """Hash the outputs, then record the shard as complete (one thread only)."""
        finalize_entry(fs, root, entry)
        entry["fingerprint"] = fingerprint
        manifest["shards"][shard_stem(entry["source"])] = entry
        manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_json_atomic(fs, f"{root}/{MANIFEST_NAME}", manifest)
        done_entries.append(entry)
        progress.shard_done()

    finisher = ThreadPoolExecutor(1, thread_name_prefix="tfrecord-numpy-finish")
    finishing: list[Future] = []

    def record(entry: dict) -> None:
        finishing.append(finisher.submit(finish, entry))

    try:
        if workers == 1:
            for f in todo:
                record(extract_shard(f, dest_url, options, site_map, progress=progress.bytes))
        elif todo:
            _run_parallel(todo, dest_url, options, site_map, workers, record, progress)
    finally:
        finisher.shutdown(wait=True)
        progress.close()
    for fut in finishing:
        fut.result()  # surface any error from hashing / writing the manifest
    summary = _summary(manifest, job.stems, todo, job.already, done_entries, time.perf_counter() - started, dest_url, workers)
    if summary_json is not None:
        with open(os.fspath(summary_json), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)
    return summary


def _run_parallel(todo, dest_url, options, site_map, workers, record, progress) -> None:
    import threading

    ctx = _process_context()
    queue = ctx.Queue() if progress.bar is not None else None  # byte counts from workers

    def drain() -> None:
        while (n := queue.get()) is not None:
            progress.bytes(n)

    t = threading.Thread(target=drain, daemon=True) if queue is not None else None
    if t is not None:
        t.start()
    first_error: BaseException | None = None
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(queue,)) as pool:
        pending = {pool.submit(_run_shard, f, dest_url, options, site_map) for f in todo}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in finished:
                exc = fut.exception()
                if exc is not None:
                    if first_error is None:
                        first_error = exc
                        for p in pending:
                            p.cancel()
                    continue
                record(fut.result())
            pending = {p for p in pending if not p.cancelled()}
    if t is not None:
        queue.put(None)  # wakes the drain thread at once
        t.join(timeout=5)
    if first_error is not None:
        raise first_error


def _summary(manifest, stems, todo, already, entries, seconds, dest, workers) -> dict:
    shards = [manifest["shards"][s] for s in stems if s in manifest["shards"]]
    in_bytes = sum(e.get("source_size") or 0 for e in entries)
    return {
        "dest": dest,
        "shards": len(stems),
        "shards_extracted": len(entries),
        "shards_already_complete": len(already),
        "records": sum(e["records"] for e in shards),
        "rows": sum(e["rows"] for e in shards),
        "bytes": in_bytes,
        "seconds": round(seconds, 3),
        "mb_per_s": round(in_bytes / 1e6 / seconds, 1) if seconds > 0 else None,
        "corrupt_records_skipped": sum(e["skipped"]["corrupt_records"] for e in shards),
        "truncated_tails": sum(1 for e in shards if e["skipped"]["truncated_tail"]),
        "unknown_site_rows": sum(e.get("unknown_site_rows", 0) for e in shards),
        "workers": workers,
    }


def format_summary(summary: dict) -> str:
    """The one-paragraph human summary the CLI prints."""
    return (
        f"{summary['shards']} shards ({summary['shards_extracted']} extracted, "
        f"{summary['shards_already_complete']} already complete), {summary['records']} records, "
        f"{summary['rows']} rows, {summary['bytes'] / 1e6:.1f} MB in {summary['seconds']:.2f} s "
        f"({summary['mb_per_s'] or 0:.1f} MB/s); corrupt records skipped: {summary['corrupt_records_skipped']}, "
        f"truncated tails: {summary['truncated_tails']}, unknown-site rows: {summary['unknown_site_rows']}"
    )


# --------------------------------------------------------------------------- notebook use


def read_shard(
    source: str | os.PathLike[str],
    *,
    sites: str | os.PathLike[str] | dict | None = None,
    hop_seconds: float = 5,
    compression: str | None = "auto",
    on_unknown_site: str = "error",
    storage_options: dict | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """``(embeddings [rows, D], metadata rows)`` of one shard, in memory, for interactive use.

    The same values the job writes to ``<stem>.npy`` and ``<stem>.json``
    (an empty shard gives the notebook's ``np.array([])``).  Where the row
    count can be read off the records' first bytes (an uncompressed local
    file), each record's rows are copied once, into one preallocated array.
    """
    options = ExtractOptions.build(
        hop_seconds=hop_seconds, compression=compression, on_unknown_site=on_unknown_site,
        storage_options=storage_options,
    )
    site_map = sites if isinstance(sites, dict) else a2o.load_site_mapping(sites, storage_options=storage_options)
    src = os.fspath(source)
    direct = _read_shard_direct(src, options, site_map)
    if direct is not None:
        return direct
    opened = open_source(src, compression=options.compression, storage_options=options.storage_options)
    try:
        scanner = RecordScanner(max_record_bytes=options.max_record_bytes, path=src)
        encoder = RowEncoder(site_map, options, src)
        blocks: list[np.ndarray] = []
        texts: list[str] = []

        def emit(block: np.ndarray, rows: list[str]) -> None:
            texts.extend(rows)
            blocks.append(block.copy())  # the view is only valid until the next record

        consume_records(iter_record_views(opened.stream, scanner), src, options, encoder, emit, RecordStats())
    finally:
        opened.close()
    # an empty shard: what the notebook's np.save(path, []) holds
    emb = np.concatenate(blocks) if blocks else np.array([])
    return emb, json.loads("[" + ", ".join(texts) + "]")


def _read_shard_direct(src: str, options: ExtractOptions, site_map: dict) -> tuple[np.ndarray, list[dict]] | None:
    """read_shard for an uncompressed local shard whose rows can be predicted:
    the tensor bytes are read straight into one preallocated array.  None
    (nothing done) where that does not apply or a record does not fit."""
    from .direct import DoesNotFit, iter_a2o_into

    opened = open_source(src, compression=options.compression, storage_options=options.storage_options)
    try:
        predicted = _predict_layout(src, opened, options, _source_size(src, options.storage_options))
        if predicted is None:
            return None
        rows, layout = predicted
        out = np.empty((rows, layout.shape[2]), dtype=layout.dtype)
        encoder = RowEncoder(site_map, options, src)
        texts: list[str] = []
        filled = 0
        try:
            for index, offset, rec, row in iter_a2o_into(
                opened.stream, out, path=src, max_record_bytes=options.max_record_bytes
            ):
                texts.extend(encoder.rows(rec, index, offset))
                filled = row + rec.embedding.shape[0] * rec.embedding.shape[1]
        except DoesNotFit:
            return None
    finally:
        opened.close()
    if filled != rows:
        return None
    return out, json.loads("[" + ", ".join(texts) + "]")


__all__ = ["extract", "extract_shard", "read_shard", "decode_a2o_record", "shard_stem", "format_summary", "A2ORecord"]
