"""One A2O/Perch record decoded, and the one per-record loop of the job.

:func:`decode_a2o_record` takes the fast path (:mod:`.fastpath`) and falls
back to the core's TensorFlow-semantics parser for anything unusual;
:func:`consume_records` is the loop every engine runs (local shards, Dask
shards and byte-range splits).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DecodeError, SchemaError
from ..example import FixedLenFeature, parse_example
from ..tensor import parse_tensor
from .fastpath import a2o_fields, packed_int64s

if TYPE_CHECKING:
    from .options import ExtractOptions
    from .rows import Encoder

#: the notebook's ``tf.io.parse_single_example`` spec
NOTEBOOK_SPEC = {
    "timestamp_s": FixedLenFeature([], "float32"),
    "filename": FixedLenFeature([], "string"),
    "embedding": FixedLenFeature([], "string"),
    "embedding_shape": FixedLenFeature([3], "int64"),
}


@dataclass
class A2ORecord:
    """One decoded record: the embedding is ``[T, C, D]`` (maybe a view into the read buffer)."""

    filename: str
    timestamp_s: np.float32
    embedding: np.ndarray


def _general_decode(payload: bytes) -> tuple[bytes, np.float32, bytes, np.ndarray]:
    """The notebook's spec, by TensorFlow's rules."""
    out = parse_example(payload, NOTEBOOK_SPEC)
    return (
        out["filename"][()],
        np.float32(out["timestamp_s"][()]),
        out["embedding"][()],
        np.asarray(out["embedding_shape"]),
    )


def decode_a2o_record(view: memoryview) -> A2ORecord:
    """Decode one A2O/Perch Example; other features (logits heads) are ignored."""
    filename_b: bytes | memoryview | None = None
    ts: np.float32 | None = None
    emb_bytes: bytes | memoryview | None = None
    declared: list[int] | np.ndarray | None = None
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
    check_embedding_dtype(embedding.dtype)
    try:
        filename = bytes(filename_b).decode("utf-8")
    except UnicodeDecodeError:
        raise SchemaError(f"filename is not UTF-8: {bytes(filename_b)[:80]!r}") from None
    return A2ORecord(filename=filename, timestamp_s=np.float32(ts), embedding=embedding)


def check_embedding_dtype(dtype: np.dtype) -> None:
    """Refuse embeddings a ``.npy`` cannot hold faithfully (strings, bfloat16, float8)."""
    if dtype.kind not in "fiucb" or dtype.names is not None:
        raise SchemaError(f"embedding dtype {dtype} cannot be written to a .npy file faithfully")
    if dtype.kind == "f" and dtype.type.__module__.startswith("ml_dtypes"):
        raise SchemaError(f"embedding dtype {dtype} (ml_dtypes) cannot be written to a .npy file faithfully")


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
    options: ExtractOptions,
    encoder: Encoder,
    emit: Callable[[np.ndarray, list[str]], None],
    stats: RecordStats,
) -> None:
    """Decode A2O records into ``emit(block [rows, D], encoded metadata rows)``.

    Undecodable records are skipped or raised per ``on_corrupt``, every error
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
            raise exc.located(path=source, index=index, offset=offset) from None
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
