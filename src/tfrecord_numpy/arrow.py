"""TFRecord files of ``tf.train.Example`` as Arrow tables and Parquet files (the ``arrow`` extra).

:func:`read_table` reads records into a :class:`pyarrow.Table`;
:func:`convert` writes one Parquet file per input shard, streaming, atomic
and resumable.  Both take a spec of ``FixedLenFeature``/``VarLenFeature``
(TensorFlow's parsing semantics, through the batched parser) or infer one
with :func:`~tfrecord_numpy.inspection.inspect_records`:

* a FixedLen scalar is a ``float32``/``int64``/``binary`` column, a FixedLen
  ``[n]`` a ``fixed_size_list`` (nested for more dimensions), a VarLen a
  ``list`` column;
* inferred, a feature present in every record with one constant length is
  FixedLen, anything else VarLen; a single bytes value per record that is
  always a serialized (numeric, rank >= 1) tensor of one dtype and one shape
  becomes an ``arrow.fixed_shape_tensor`` column holding the decoded values,
  so nobody has to call ``parse_tensor`` on a Parquet file's bytes.

Records are decoded a bounded batch at a time (``batch_records`` records or
``batch_bytes`` of payload, whichever comes first), so memory does not grow
with the size of a shard.  pyarrow is imported only inside the functions:
``import tfrecord_numpy`` never needs it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .atomic import AtomicFile
from .batch import parse_examples
from .checksum import Digest, checksum_of
from .errors import SchemaError, TFRecordError
from .example import FixedLenFeature, SparseValue, VarLenFeature
from .inspection import EXAMPLE, inspect_records
from .journal import Journal, output_stem, remove_stale_tmp, source_identity
from .lock import DestLock
from .reader import iter_records
from .storage import Source, Sources, resolve_sources
from .tensor import parse_tensor

if TYPE_CHECKING:
    import pyarrow

__all__ = ["convert", "read_table"]

Feature = FixedLenFeature | VarLenFeature
Spec = Mapping[str, Feature]
#: places an error raised for row ``i`` of a batch in its file
_Locate = Callable[[TFRecordError, int], TFRecordError]

#: a batch ends at this many records, or once its payloads reach DEFAULT_BATCH_BYTES
DEFAULT_BATCH_RECORDS = 8192
DEFAULT_BATCH_BYTES = 64 << 20
_MAX_BATCH_BYTES = 1 << 30  # list/binary offsets are int32: stay far below 2 GiB per batch

MANIFEST_NAME = "convert-manifest.json"
JOURNAL_DIR = ".convert-journal"
LOCK_NAME = ".convert.lock"
MANIFEST_FORMAT = "tfrecord-numpy/convert/1"
FORMATS = {"parquet": ".parquet"}
#: keys of ``fs.info`` that change when an object is rewritten
_IDENTITY_KEYS = ("mtime", "generation", "etag", "ETag", "md5Hash", "crc32c", "LastModified", "last_modified")
_INSTALL = "pip install 'tfrecord-numpy[arrow]'"


def _pyarrow() -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``, or an ImportError that says how to get them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(f"Arrow tables and Parquet files need pyarrow: {_INSTALL}") from None
    return pa, pq


# --------------------------------------------------------------------------- columns


@dataclass(frozen=True)
class _Column:
    """One output column: the feature read, and for a tensor column the tensors' dtype and shape."""

    name: str
    feature: Feature
    tensor: tuple[np.dtype, tuple[int, ...]] | None = None

    def describe(self) -> dict[str, Any]:
        """A JSON description (the conversion's fingerprint is its hash)."""
        feat = self.feature
        out: dict[str, Any] = {"name": self.name, "dtype": feat.dtype}
        if isinstance(feat, VarLenFeature):
            out["kind"] = "varlen"
            return out
        out.update(kind="fixed", shape=list(feat.shape))
        default = feat.default_value
        if default is not None:
            flat = default.ravel()
            out["default"] = (
                [base64.b64encode(v).decode() for v in flat.tolist()]
                if feat.dtype == "string"
                else base64.b64encode(flat.tobytes()).decode()
            )
        if self.tensor is not None:
            out["tensor"] = {"dtype": self.tensor[0].name, "shape": list(self.tensor[1])}
        return out


def _columns_of_spec(features: Spec) -> list[_Column]:
    if not isinstance(features, Mapping):
        raise TypeError(
            f"features must be a mapping of name -> FixedLenFeature/VarLenFeature, not {type(features).__name__}"
        )
    out = []
    for name, feat in features.items():
        if not isinstance(name, str):
            raise TypeError(f"feature names must be str, not {type(name).__name__}")
        if not isinstance(feat, (FixedLenFeature, VarLenFeature)):
            raise TypeError(f"spec for {name!r} must be a FixedLenFeature or VarLenFeature, not {type(feat).__name__}")
        out.append(_Column(name, feat))
    return out


_KIND_DTYPE = {"float_list": "float32", "int64_list": "int64", "bytes_list": "string"}


def _tensor_type(st: dict[str, Any]) -> tuple[np.dtype, tuple[int, ...]] | None:
    """The one dtype and shape of a feature's tensors, if Arrow can hold them as a fixed-shape tensor."""
    info = st.get("tensor")
    if not isinstance(info, dict) or not isinstance(info.get("shape"), list):
        return None
    shape = info["shape"]
    if not shape or any(not isinstance(d, int) for d in shape) or math.prod(shape) == 0:
        return None  # varying or zero-size dimensions, scalars: keep the bytes
    try:
        dtype = np.dtype(info["dtype"])
        if dtype.kind not in "biuf":
            return None
        _pyarrow()[0].from_numpy_dtype(dtype)
    except Exception:  # "mixed", "string", bfloat16/float8 and other types Arrow lacks
        return None
    return dtype, tuple(shape)


def _columns_of_report(report: dict[str, Any]) -> list[_Column]:
    """The columns an :func:`inspect_records` report implies (see the module docstring)."""
    other = {k: n for k, n in report["kinds"].items() if k != EXAMPLE}
    if other:
        found = ", ".join(f"{n} {k}" for k, n in other.items())
        raise SchemaError(f"read_table infers columns of tf.train.Example records only; found {found} record(s)")
    records = report["records"]
    out = []
    for name, st in report["features"].items():
        kind = st["kind"]
        if kind == "mixed":
            raise SchemaError(
                f"feature {name!r} holds lists of different kinds across records: no column type fits; "
                "pass features= (without it, or with the kind you want)"
            )
        dtype = _KIND_DTYPE.get(kind, "float32")  # "always empty": TensorFlow's default for a kindless Feature
        n = st["min_len"]
        if st["present"] != records or n != st["max_len"] or not n:
            out.append(_Column(name, VarLenFeature(dtype)))
            continue
        feat = FixedLenFeature([] if n == 1 else [n], dtype)
        out.append(_Column(name, feat, _tensor_type(st) if dtype == "string" and n == 1 else None))
    return out


def _value_type(pa: Any, dtype: str) -> Any:
    return {"float32": pa.float32(), "int64": pa.int64(), "string": pa.binary()}[dtype]


def _arrow_type(pa: Any, col: _Column) -> Any:
    feat = col.feature
    if col.tensor is not None:
        dtype, shape = col.tensor
        return pa.fixed_shape_tensor(pa.from_numpy_dtype(dtype), list(shape))
    t = _value_type(pa, feat.dtype)
    if isinstance(feat, VarLenFeature):
        return pa.list_(t)
    shape = tuple(feat.shape)
    fixed = math.prod(shape) > 0  # pyarrow refuses (or crashes on) fixed_size_list of size 0
    for d in reversed(shape):
        t = pa.list_(t, d) if fixed else pa.list_(t)
    return t


def _schema(pa: Any, columns: Sequence[_Column]) -> Any:
    return pa.schema([pa.field(c.name, _arrow_type(pa, c)) for c in columns])


def _dictionary_columns(pa: Any, schema: Any) -> list[str]:
    """Parquet leaf columns worth dictionary-encoding: all but floats (embeddings
    do not repeat, and a float dictionary page would only add to the file)."""
    out = []
    for field in schema:
        t = field.type.storage_type if isinstance(field.type, pa.ExtensionType) else field.type
        depth = 0
        while pa.types.is_list(t) or pa.types.is_fixed_size_list(t):
            t, depth = t.value_type, depth + 1
        if not pa.types.is_floating(t):
            out.append(field.name + ".list.element" * depth)
    return out


def _fingerprint(columns: Sequence[_Column], fmt: str) -> str:
    text = json.dumps({"format": fmt, "columns": [c.describe() for c in columns]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# --------------------------------------------------------------------------- batches -> arrays


def _flat_values(pa: Any, values: np.ndarray, dtype: str) -> Any:
    if dtype == "string":
        return pa.array(values.reshape(-1), type=pa.binary())
    return pa.array(np.ascontiguousarray(values).reshape(-1))


def _nest(pa: Any, values: Any, shape: tuple[int, ...], rows: int) -> Any:
    """Flat values of ``rows`` items of ``shape`` as nested fixed-size lists (variable lists if empty)."""
    fixed = math.prod(shape) > 0
    for j in reversed(range(len(shape))):
        d = shape[j]
        if fixed:
            values = pa.FixedSizeListArray.from_arrays(values, d)
        else:
            lists = rows * math.prod(shape[:j])
            values = pa.ListArray.from_arrays(pa.array(np.arange(lists + 1, dtype=np.int32) * d), values)
    return values


def _tensor_array(pa: Any, col: _Column, values: np.ndarray, locate: _Locate) -> Any:
    """Serialized tensors (one per row) decoded into one ``[rows, *shape]`` array."""
    assert col.tensor is not None
    dtype, shape = col.tensor
    out = np.empty((len(values), *shape), dtype=dtype)
    for i, data in enumerate(values.tolist()):
        try:
            arr = parse_tensor(data)
        except TFRecordError as exc:
            raise locate(exc, i) from None
        if arr.dtype != dtype or arr.shape != shape:
            raise locate(
                SchemaError(
                    f"feature {col.name!r}: a {arr.dtype.name} tensor of shape {list(arr.shape)} where the "
                    f"column holds {dtype.name} {list(shape)} (pass features= to read it as bytes)"
                ),
                i,
            )
        out[i] = arr
    storage = pa.FixedSizeListArray.from_arrays(pa.array(out.reshape(-1)), math.prod(shape))
    return pa.ExtensionArray.from_storage(_arrow_type(pa, col), storage)


def _array(pa: Any, col: _Column, value: np.ndarray | SparseValue, rows: int, locate: _Locate) -> Any:
    feat = col.feature
    if isinstance(value, SparseValue):
        counts = np.bincount(value.indices[:, 0], minlength=rows)
        offsets = np.zeros(rows + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets), _flat_values(pa, value.values, feat.dtype))
    if col.tensor is not None:
        return _tensor_array(pa, col, value, locate)
    assert isinstance(feat, FixedLenFeature)
    return _nest(pa, _flat_values(pa, value, feat.dtype), tuple(feat.shape), rows)


def _located(exc: TFRecordError, path: str | None, index: int, offset: int) -> TFRecordError:
    """``exc`` (which knows at most its place in a batch) placed in its file."""
    exc.path = exc.index = exc.offset = None
    return exc.located(path=path, index=index, offset=offset)


def _record_batches(
    source: Source,
    columns: Sequence[_Column],
    schema: Any,
    *,
    compression: str | None,
    storage_options: dict[str, Any] | None,
    max_records: int | None,
    batch_records: int,
    batch_bytes: int,
) -> Iterator[Any]:
    """One source's records as RecordBatches of at most ``batch_records`` records and,
    unless one record is larger, at most ``batch_bytes`` of payload."""
    pa = _pyarrow()[0]
    spec = {c.name: c.feature for c in columns}

    def batch(path: str | None, first: int, records: list[bytes], offsets: list[int]) -> Any:
        def locate(exc: TFRecordError, i: int) -> TFRecordError:
            return _located(exc, path, first + i, offsets[i])

        try:
            decoded = parse_examples(records, spec)
        except TFRecordError as exc:
            i = exc.index if exc.index is not None and 0 <= exc.index < len(records) else 0
            raise locate(exc, i) from None
        arrays = [_array(pa, c, decoded[c.name], len(records), locate) for c in columns]
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    if max_records == 0:
        return
    records: list[bytes] = []
    offsets: list[int] = []
    first = size = 0
    path: str | None = None
    for path, index, offset, view in iter_records(source, compression=compression, storage_options=storage_options):
        if records and size + len(view) > batch_bytes:
            yield batch(path, first, records, offsets)  # ``view`` stays valid: no record is read meanwhile
            records, offsets, size = [], [], 0
        if not records:
            first = index
        records.append(bytes(view))
        offsets.append(offset)
        size += len(view)
        last = max_records is not None and index + 1 >= max_records
        if len(records) >= batch_records or last:
            yield batch(path, first, records, offsets)
            records, offsets, size = [], [], 0
        if last:
            break
    if records:
        yield batch(path, first, records, offsets)


def _check_positive(name: str, value: Any, upper: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (upper is not None and value > upper):
        limit = f" and at most {upper}" if upper is not None else ""
        raise ValueError(f"{name} must be a whole number of at least 1{limit}, not {value!r}")
    return value


# --------------------------------------------------------------------------- read_table


def _infer_columns(
    sources: Sequence[Source],
    *,
    max_records: int | None,
    compression: str | None,
    storage_options: dict[str, Any] | None,
) -> list[_Column]:
    """Columns from an inspection pass over exactly the records that are then read.

    File objects are read twice, so they must be seekable (they are put back
    where they were).
    """
    marks = []
    for src in sources:
        if not isinstance(src, (str, os.PathLike)):
            if not getattr(src, "seekable", lambda: False)():
                raise ValueError("inferring columns reads the records twice: pass features= or a seekable file")
            marks.append((src, src.tell()))
    report = inspect_records(
        list(sources), max_records=max_records, compression=compression, storage_options=storage_options
    )
    for f, pos in marks:
        f.seek(pos)
    return _columns_of_report(report)


def read_table(
    sources: Sources,
    features: Spec | None = None,
    *,
    compression: str | None = "auto",
    storage_options: dict[str, Any] | None = None,
    max_records: int | None = None,
) -> pyarrow.Table:
    """Read TFRecord files of ``tf.train.Example`` into a :class:`pyarrow.Table`, one row per record, in order.

    ``sources`` and the keyword options are those of
    :func:`~tfrecord_numpy.reader.read_records`.  With ``features`` the
    columns follow the spec (and its TensorFlow semantics: defaults, errors);
    without, they are inferred by an inspection pass over the same records
    (see the module docstring).  ``max_records`` reads only the first records
    of each source, as ``inspect_records`` does.  Errors carry the record's
    file, index and offset.
    """
    pa = _pyarrow()[0]
    if max_records is not None and (
        isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 0
    ):
        raise ValueError(f"max_records must be None or a whole number >= 0, not {max_records!r}")
    srcs = resolve_sources(sources, storage_options=storage_options)
    if features is not None:
        columns = _columns_of_spec(features)
    else:
        columns = _infer_columns(
            srcs, max_records=max_records, compression=compression, storage_options=storage_options
        )
    schema = _schema(pa, columns)
    batches = [
        batch
        for src in srcs
        for batch in _record_batches(
            src,
            columns,
            schema,
            compression=compression,
            storage_options=storage_options,
            max_records=max_records,
            batch_records=DEFAULT_BATCH_RECORDS,
            batch_bytes=DEFAULT_BATCH_BYTES,
        )
    ]
    return pa.Table.from_batches(batches, schema=schema)


# --------------------------------------------------------------------------- convert: bookkeeping


class _Sink:
    """Forwards the writer's bytes, counting them and their CRC32C (no read-back to checksum)."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.size = 0
        self.digest = Digest("crc32c")

    @property
    def closed(self) -> bool:
        return bool(self.f.closed)

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.f.write(view)
        self.digest.update(view)
        self.size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.f.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        """The AtomicFile closes (and publishes) the real file."""


@dataclass
class _Shard:
    source: str
    url: str  # canonical (protocol, absolute path): what the manifest records
    stem: str
    identity: dict[str, Any]


def _entry_ok(fs: Any, root: str, sh: _Shard, entry: dict[str, Any] | None, fmt: str) -> bool:
    """Checked, not assumed: the same source bytes, and an output whose size and CRC32C match."""
    if not entry or entry.get("source") != sh.url or entry.get("source_identity") != sh.identity:
        return False
    out = entry.get("output")
    rel = f"{sh.stem}{FORMATS[fmt]}"
    if entry.get("format") != fmt or not isinstance(out, dict) or out.get("path") != rel:
        return False  # never follow a path taken from the manifest
    path = f"{root}/{rel}"
    try:
        return bool(fs.size(path) == out.get("bytes") and checksum_of(fs, path, "crc32c") == out.get("crc32c"))
    except OSError:
        return False


# --------------------------------------------------------------------------- convert


def convert(
    sources: Sources,
    out: str | os.PathLike[str],
    *,
    format: str = "parquet",
    features: Spec | None = None,
    compression: str | None = "auto",
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    batch_records: int = DEFAULT_BATCH_RECORDS,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
) -> dict[str, Any]:
    """Write each input shard as ``out/<stem>.parquet`` (stem: the file name up to its first '.').

    Columns as :func:`read_table` makes them; without ``features`` they are
    inferred once over all the sources, so every output has the same schema.
    Each shard streams through bounded batches (one Parquet row group each)
    into a temporary file published by rename when complete.  Finished
    shards are journaled (source URL and identity, output size and CRC32C)
    and folded into ``out/convert-manifest.json``; a rerun skips shards
    whose source and output still check out, redoes the rest and removes
    temporaries of runs that died.  ``storage_options`` serve the sources and
    ``out``.  Returns a summary: shards, converted, already_complete, records
    (converted this run), seconds.
    """
    pa, pq = _pyarrow()
    from fsspec.core import url_to_fs

    if format not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, not {format!r}")
    batch_records = _check_positive("batch_records", batch_records)
    batch_bytes = _check_positive("batch_bytes", batch_bytes, _MAX_BATCH_BYTES)
    started = time.monotonic()
    opts = dict(storage_options or {})
    shards: list[_Shard] = []
    for src in resolve_sources(sources, storage_options=opts):
        if not isinstance(src, (str, os.PathLike)):
            raise TypeError("convert names its outputs after the source files: pass paths or URLs, not file objects")
        text = os.fspath(src)
        sfs, spath = url_to_fs(text, **opts)
        shards.append(_Shard(text, sfs.unstrip_protocol(spath), output_stem(text), source_identity(sfs, spath)))
    seen: dict[str, str] = {}
    for sh in shards:
        if sh.stem in seen:
            raise ValueError(f"{seen[sh.stem]!r} and {sh.source!r} would both be written as {sh.stem}{FORMATS[format]}")
        seen[sh.stem] = sh.source

    fs, root = url_to_fs(os.fspath(out), **opts)
    root = root.rstrip("/")
    fs.makedirs(root, exist_ok=True)
    # with a spec the columns are known now; inferred ones only once there is work to do
    columns = _columns_of_spec(features) if features is not None else None
    fingerprint = None if columns is None else _fingerprint(columns, format)
    converted = complete = records = 0
    with DestLock(fs, root, name=LOCK_NAME):
        remove_stale_tmp(fs, [root, f"{root}/{JOURNAL_DIR}"])
        manifest = Journal(fs, root, manifest=MANIFEST_NAME, journal=JOURNAL_DIR, fmt=MANIFEST_FORMAT).load()
        try:

            def done(sh: _Shard) -> bool:
                entry = manifest.shards.get(sh.stem)
                if overwrite or not entry or not _entry_ok(fs, root, sh, entry, format):
                    return False
                return entry.get("columns") == fingerprint if fingerprint is not None else entry.get("inferred") is True

            todo = [sh for sh in shards if not done(sh)]
            if todo and columns is None:
                columns = _infer_columns(
                    [sh.source for sh in shards], max_records=None, compression=compression, storage_options=opts
                )
                fingerprint = _fingerprint(columns, format)
                # outputs of an earlier run with other columns are redone as well, so that all agree
                todo = [sh for sh in shards if sh in todo or manifest.shards[sh.stem].get("columns") != fingerprint]
            schema = None if columns is None else _schema(pa, columns)
            for sh in shards:
                if sh not in todo:
                    complete += 1
                    continue
                assert columns is not None
                manifest.forget(sh.stem)
                rel = f"{sh.stem}{FORMATS[format]}"
                if fs.exists(f"{root}/{rel}"):
                    fs.rm(f"{root}/{rel}")  # stale: only complete, current outputs keep the final name
                n, size, crc = _write_shard(
                    pa,
                    pq,
                    fs,
                    f"{root}/{rel}",
                    _record_batches(
                        sh.source,
                        columns,
                        schema,
                        compression=compression,
                        storage_options=opts,
                        max_records=None,
                        batch_records=batch_records,
                        batch_bytes=batch_bytes,
                    ),
                    schema,
                )
                manifest.record(
                    sh.stem,
                    {
                        "source": sh.url,
                        "source_identity": sh.identity,
                        "format": format,
                        "columns": fingerprint,
                        "inferred": features is None,
                        "records": n,
                        "output": {"path": rel, "bytes": size, "crc32c": crc},
                    },
                )
                converted += 1
                records += n
        finally:
            manifest.compact()
    return {
        "shards": len(shards),
        "converted": converted,
        "already_complete": complete,
        "records": records,
        "seconds": time.monotonic() - started,
        "out": os.fspath(out),
    }


def _write_shard(pa: Any, pq: Any, fs: Any, final: str, batches: Iterator[Any], schema: Any) -> tuple[int, int, str]:
    """Stream ``batches`` into ``final`` (a row group each), published only when complete:
    (records, bytes, CRC32C)."""
    n = 0
    with AtomicFile(fs, final, spool=False) as af:  # the Parquet writer never seeks
        sink = _Sink(af.f)
        writer = pq.ParquetWriter(sink, schema, use_dictionary=_dictionary_columns(pa, schema))
        try:
            for batch in batches:
                writer.write_batch(batch)
                n += batch.num_rows
        except BaseException:
            try:
                writer.close()  # or its finalizer writes a footer into a file about to vanish
            except Exception:
                pass
            raise
        writer.close()
    return n, sink.size, sink.digest.value()
